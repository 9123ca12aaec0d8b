"""The ``golf`` command.

    golf demo                                   prepare the embedded corpus, train cpu-tiny, score, summarize
    golf data prepare|info|fetch                datasets (embedded corpus export, shard inspection, FineWeb)
    golf model info --preset NAME               parameter counts as JSON
    golf presets [NAME]                         the presets table, or one preset's details
    golf --version                              golflib's version
    golf train --preset P [--nproc N] [--set K=V ...]     training under torchrun
    golf run NOTEBOOK [-p NAME VALUE ...]       execute a notebook with papermill into runs/<id>/ (--executor slurm)
    golf eval RUN_DIR_OR_ARTIFACT               re-score an artifact (standard and sliding window)
    golf audit RUN_DIR [--perturb]              re-check a run's legality reports (+ perturbation test)
    golf gpu-check [--preset P] [--steps N]    GPU pre-flight vs the record (dry mode on CPU)
    golf bench NAME                             benchmarks writing JSON
    golf quant requant RUN_DIR [--set K=V ...]  re-quantize a trained checkpoint, report bytes and val_bpb
    golf quant budget RUN_DIR_OR_ARTIFACT       code + model bytes per tensor class vs 16,000,000 (exit 1 if over)
    golf budget --preset P [--checkpoint F]     pre-flight: the full-size model exported with the preset's recipe
    golf quant codecs RUN_DIR_OR_ARTIFACT       bytes per codec and the order-0 bound, per tensor class
    golf bundle [--preset P | --config C] --out F   single-file train_gpt.py; prints raw/minified/compressed bytes
    golf seeds --preset P --seeds 1337,42,2025  every seed through the bundled train_gpt.py, per-seed table
                                                (--executor submitit-local|slurm --executor-opt K=V [--dry-run])
    golf sweep status DIR                       every point of a sweep/ablation/seeds job: state, job id, score, log
    golf runs index|list                        runs/index.sqlite rebuilt from the run directories; query it
    golf compare RUN_A RUN_B ...                config diff, scores with Δbpb/Δnats, bytes, timings, curves figure
    golf record RUN_OR_SEEDS_DIR --name NAME    records/track_10min_16mb/YYYY-MM-DD_NAME/ (refused if not compliant)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from golflib.workbook.runs_cli import add_executor_args, add_parsers as add_runs_parsers


def _kv_pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--set expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def cmd_data_prepare(a) -> int:
    from golflib.data.prepare import prepare_dataset

    entry = prepare_dataset(a.root, corpus=a.corpus, vocab_size=a.vocab_size, val_fraction=a.val_fraction,
                            shard_size=a.shard_size, force=a.force, caseops=a.caseops)
    print(json.dumps({"dataset": entry["name"], "path": str(Path(a.root) / entry["path"]), **entry["stats"]},
                     indent=2))
    return 0


def cmd_data_info(a) -> int:
    from golflib.data.shards import shard_stats

    print(json.dumps(shard_stats(a.path, a.vocab_size, a.bos_id), indent=2))
    return 0


def cmd_data_fetch(a) -> int:
    from golflib.data.fineweb import fetch_fineweb

    out = fetch_fineweb(a.variant, a.train_shards, a.root, repo_id=a.repo_id, remote_root=a.remote_root,
                        skip_manifest=a.skip_manifest, refresh_manifest=a.refresh_manifest)
    print(json.dumps({k: (len(v) if isinstance(v, list) else v) for k, v in out.items()}, indent=2))
    return 0


def cmd_model_info(a) -> int:
    from golflib.model.gpt import GPT, count_params, param_groups_summary
    from golflib.presets import resolve

    cfg = resolve(a.preset, _kv_pairs(a.set), environ={}, scale=a.scale)
    model = GPT(cfg.model)
    info = {"preset": a.preset, "params": count_params(model), **param_groups_summary(model),
            "layers": cfg.model.num_layers, "model_dim": cfg.model.model_dim, "vocab_size": cfg.model.vocab_size}
    print(json.dumps(info, indent=2))
    return 0


def cmd_presets(a) -> int:
    from golflib.workbook.presets_cli import format_presets, preset_details, presets_table

    if a.name:
        print(preset_details(a.name))
    elif a.json:
        print(json.dumps(presets_table(), indent=2))
    else:
        print(format_presets(presets_table()))
    return 0


def cmd_train(a) -> int:
    from golflib.runlog import create_run_dir
    from golflib.presets import resolve
    from golflib.workbook.launch import launch_training
    from golflib.workbook.training import with_counted_code

    overrides = _kv_pairs(a.set)
    # once: the training runs on this config (--config), counting the submission's code (the bundle's bytes)
    cfg = with_counted_code(resolve(a.preset, overrides, scale=a.scale), overrides)
    run_dir = Path(a.run_dir) if a.run_dir else create_run_dir(a.runs_root, slug=a.preset)
    result = launch_training(run_dir, cfg, nproc=a.nproc,
                             meta={"preset": a.preset, "scale": a.scale, "overrides": overrides})
    group = "mixed" if result.scored_artifact == "mixed" else "quantized"
    print(json.dumps({"run_dir": str(run_dir), "scored_artifact": result.scored_artifact,
                      "bytes_total": result.bytes_total(), "val_bpb": result.score(f"{group}/standard").val_bpb},
                     indent=2))
    return 0


def cmd_run(a) -> int:
    from golflib.workbook.notebook import parse_param_value, run_notebook, submit_notebook
    from golflib.workbook.runs_cli import executor_from_args

    params = {name: parse_param_value(value) for name, value in (a.param or [])}
    settings = executor_from_args(a)
    if settings.kind == "local":
        out = run_notebook(a.notebook, params, run_dir=a.run_dir, runs_root=a.runs_root, timeout=a.timeout)
    else:
        out = submit_notebook(a.notebook, params, settings, run_dir=a.run_dir, runs_root=a.runs_root,
                              timeout=a.timeout)
        if out is None:
            return 0
    print(f"executed notebook: {out}")
    return 0


def cmd_demo(a) -> int:
    from golflib.workbook.demo import run_demo

    run_demo(train_seconds=a.seconds, nproc=a.nproc, smoke=a.smoke, runs_root=a.runs_root)
    return 0


def cmd_eval(a) -> int:
    from golflib.workbook.scoring import score_artifact

    from golflib.workbook.scoring import eval_summary

    out = score_artifact(a.target, stride=a.stride, val_max_tokens=a.val_max_tokens)
    print(json.dumps(out, indent=2) if a.json else eval_summary(out))
    return 0


def cmd_audit(a) -> int:
    from golflib.workbook.audit import audit_run

    out = audit_run(a.run_dir, perturb=a.perturb, slice_tokens=a.slice_tokens, cuts=a.cuts, seed=a.seed,
                    agg_tol=a.agg_tol, timeout=a.timeout)
    print(f"audit written to {out['written_to']}")
    return 0 if all(p["verdict"].startswith("PASS") for p in out["protocols"].values()) else 1


def cmd_gpu_check(a) -> int:
    from golflib.workbook.gpucheck import main

    return main(a.preset, a.steps, a.scale, a.out)


def cmd_bench(a) -> int:
    from golflib.workbook.bench import run_bench

    extra = {k: v for k, v in (("lrzip", a.lrzip or None), ("preset", a.preset), ("checkpoint", a.checkpoint))
             if v is not None}
    if extra and a.name != "quant":
        raise SystemExit(f"golf bench {a.name}: --lrzip, --preset and --checkpoint belong to `golf bench quant`")
    if a.checkpoint and not a.preset:
        raise SystemExit("golf bench quant: --checkpoint needs --preset (the model the weights belong to)")
    run_bench(a.name, run_dir=a.run, out=a.out, **extra)
    return 0


def cmd_quant_requant(a) -> int:
    from golflib.workbook.quant_lab import requantize

    out = requantize(a.run_dir, _kv_pairs(a.set), scheme=a.scheme, calibration=a.calibration,
                     val_max_tokens=a.val_max_tokens, out_dir=a.out_dir)
    print(json.dumps(out, indent=2))
    return 0


def cmd_quant_budget(a) -> int:
    from golflib.workbook.quant_cli import budget_main

    return budget_main(a.target, limit=a.limit, code_bytes=a.code_bytes, as_json=a.json)


def cmd_budget(a) -> int:
    from golflib.presets import resolve
    from golflib.workbook.quant_cli import preflight_main

    cfg = resolve(a.preset, _kv_pairs(a.set), scale=a.scale)
    return preflight_main(cfg, checkpoint=a.checkpoint, code_bytes=a.code_bytes, form=a.form, limit=a.limit,
                          gptq=not a.no_gptq, as_json=a.json)


def cmd_quant_codecs(a) -> int:
    from golflib.workbook.quant_cli import codecs_main

    return codecs_main(a.target, lrzip=a.lrzip)


def cmd_bundle(a) -> int:
    from golflib.config import Config
    from golflib.presets import resolve
    from golflib.record.script import make_script, write_script

    cfg = (Config.from_json_file(a.config) if a.config else
           resolve(a.preset, _kv_pairs(a.set), environ={}, scale=a.scale))
    script = make_script(cfg, form=a.form, codec=a.codec, data_root=None if a.keep_data_paths else "./data")
    paths = write_script(script, a.out)
    print(json.dumps({**{k: str(v) for k, v in paths.items()}, **script.stats}, indent=2))
    return 0


def cmd_seeds(a) -> int:
    from golflib.record.seeds import run_seeds

    from golflib.workbook.runs_cli import executor_from_args

    settings = executor_from_args(a)
    out = run_seeds(a.preset, a.seeds, nproc=a.nproc, scale=a.scale, overrides=_kv_pairs(a.set), form=a.form,
                    codec=a.codec, out_dir=a.out, runs_root=a.runs_root, score=a.score, executor=settings,
                    resume=a.resume, retry_failed=a.retry_failed)
    if settings.dry_run:
        return 0
    print((out.root / "seeds_table.md").read_text(encoding="utf-8"))
    print(f"seeds directory: {out.root}")
    return 0 if not out.failed else 1


def cmd_record(a) -> int:
    from golflib.record.folder import write_record

    base = [float(x) for x in a.base_nats.split(",") if x.strip()] if a.base_nats else None
    rec = write_record(a.source, a.name, records_root=a.records_root, track=a.track, score=a.score, form=a.form,
                       codec=a.codec, base_pr=a.base_pr, base_nats=base, base_threshold_nats=a.base_threshold_nats,
                       base_preset=a.base_preset, author=a.author, github_id=a.github_id, blurb=a.blurb,
                       date=a.date, nproc=a.nproc)
    print(rec.tree())
    if rec.significance is not None:
        print(rec.significance.summary())
    print(f"record written to {rec.path}")
    return 0


def cmd_lint(a) -> int:
    import json

    from golflib.record.lint import lint_file, summary

    found = lint_file(a.path)
    if a.json:
        print(json.dumps({"path": a.path, **summary(found), "findings": [f.to_dict() for f in found]}, indent=2))
    else:
        for f in found:
            print(f"{a.path}:{f.line}: {f.severity} [{f.rule}] {f.message}")
        s = summary(found)
        print(f"{s['flag']} flag(s), {s['review']} for review")
    return 1 if any(f.severity == "flag" for f in found) else 0


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every parser and sub-parser prints each option's default in ``--help`` (an option without help text gets an
    empty one so its default shows)."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _show_defaults(child)
        elif action.help is None and action.option_strings and action.default is not argparse.SUPPRESS:
            action.help = "(default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    from golflib import __version__

    p = argparse.ArgumentParser(prog="golf", description="golflib: a workbook for OpenAI's Parameter Golf")
    p.add_argument("--version", action="version", version=f"golf (golflib) {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("data", help="datasets").add_subparsers(dest="data_cmd", required=True)
    dp = d.add_parser("prepare", help="export a corpus (default: embedded) to tokenizer + shards + manifest")
    dp.add_argument("--root", default="data")
    dp.add_argument("--corpus", default="embedded", help="'embedded', a .jsonl ({\"text\": ...}) or a .txt file")
    dp.add_argument("--vocab-size", type=int, default=1024)
    dp.add_argument("--val-fraction", type=float, default=0.05)
    dp.add_argument("--shard-size", type=int, default=10**8, help="tokens per shard")
    dp.add_argument("--force", action="store_true", help="rebuild even if an identical export exists")
    dp.add_argument("--caseops", action="store_true",
                    help="CaseOps (#1729): case-transform before SentencePiece, write the val byte sidecar")
    dp.set_defaults(fn=cmd_data_prepare)
    di = d.add_parser("info", help="header and token statistics of one shard")
    di.add_argument("path")
    di.add_argument("--vocab-size", type=int, default=None, help="also check every id < VOCAB_SIZE")
    di.add_argument("--bos-id", type=int, default=1)
    di.set_defaults(fn=cmd_data_info)
    df = d.add_parser("fetch", help="download FineWeb shards from the Hugging Face hub (manifest-driven)")
    df.add_argument("--variant", default="sp1024")
    df.add_argument("--train-shards", type=int, default=80)
    df.add_argument("--root", default="data")
    df.add_argument("--repo-id", default=None)
    df.add_argument("--remote-root", default=None)
    df.add_argument("--skip-manifest", action="store_true")
    df.add_argument("--refresh-manifest", action="store_true", help="replace a manifest fetched from another repo")
    df.set_defaults(fn=cmd_data_fetch)

    m = sub.add_parser("model", help="model").add_subparsers(dest="model_cmd", required=True)
    mi = m.add_parser("info", help="parameter counts of a preset as JSON")
    mi.add_argument("--preset", default="baseline")
    mi.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    mi.add_argument("--scale", type=float, default=1.0, help="width factor in (0, 1] (CPU-sized, same structure)")
    mi.set_defaults(fn=cmd_model_info)

    pr = sub.add_parser("presets", help="the presets table (preset, record, params, published bpb, vocab), or one "
                        "preset's details")
    pr.add_argument("name", nargs="?", help="a preset: its description and every setting it changes")
    pr.add_argument("--json", action="store_true", help="the table as JSON")
    pr.set_defaults(fn=cmd_presets)

    t = sub.add_parser("train", help="train under torchrun into a new run directory")
    t.add_argument("--preset", default="baseline")
    t.add_argument("--nproc", type=int, default=1)
    t.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    t.add_argument("--scale", type=float, default=1.0, help="width factor in (0, 1] (CPU-sized, same structure)")
    t.add_argument("--run-dir", default=None)
    t.add_argument("--runs-root", default="runs")
    t.set_defaults(fn=cmd_train)

    r = sub.add_parser("run", help="execute a notebook with papermill into runs/<id>/")
    r.add_argument("notebook")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"))
    r.add_argument("--run-dir", default=None)
    r.add_argument("--runs-root", default="runs")
    r.add_argument("--timeout", type=int, default=4 * 3600, help="per-cell execution timeout (s)")
    add_executor_args(r)
    r.set_defaults(fn=cmd_run)

    de = sub.add_parser("demo", help="the main job: embedded corpus → cpu-tiny training → scores")
    de.add_argument("--seconds", type=float, default=None, help="training wall-clock (default 420)")
    de.add_argument("--nproc", type=int, default=1)
    de.add_argument("--smoke", action="store_true", help="tiny shape and val slice (for tests)")
    de.add_argument("--runs-root", default="runs")
    de.set_defaults(fn=cmd_demo)

    e = sub.add_parser("eval", help="score an artifact (run dir or .golf file)")
    e.add_argument("target")
    e.add_argument("--stride", type=int, default=None, help="sliding-window stride (default: the run's EVAL_STRIDE)")
    e.add_argument("--val-max-tokens", type=int, default=None,
                   help="score only this many val tokens (default: the run's VAL_MAX_TOKENS; 0 = all)")
    e.add_argument("--json", action="store_true", help="print the full result (ledgers, details) as JSON")
    e.set_defaults(fn=cmd_eval)

    au = sub.add_parser("audit", help="re-check a run's legality reports; --perturb runs the causality test")
    au.add_argument("run_dir")
    au.add_argument("--perturb", action="store_true", help="future-perturbation test on a val slice (SPEC §4.8)")
    au.add_argument("--slice-tokens", type=int, default=0,
                    help="perturb only the first N val targets, TTT settings scaled to them (default 0: the whole "
                         "val stream; the reproduction of result.json always uses the whole stream)")
    au.add_argument("--cuts", type=int, default=2, help="seeded stream cuts and document cuts (default 2 each, plus "
                    "one inside the first chunk, the first document and the longest document)")
    au.add_argument("--seed", type=int, default=0, help="seed of the cuts and replacement tokens (default 0)")
    au.add_argument("--agg-tol", type=float, default=None,
                    help="bits/byte the replayed val_bpb may differ from result.json (default 1e-6 for a CPU run, "
                         "5e-3 for a GPU run replayed on this CPU)")
    au.add_argument("--timeout", type=float, default=None, help="seconds per replay process (default: none)")
    au.set_defaults(fn=cmd_audit)

    gc = sub.add_parser("gpu-check", help="pre-flight of a GPU machine: backends, compile, ms/step, eval projection "
                        "vs the record (exit 1 on a silent fallback or a projection over a limit); dry on CPU")
    gc.add_argument("--preset", default="baseline", help="the preset to check at full shape (default baseline)")
    gc.add_argument("--steps", type=int, default=20, help="timed steps after the warm-up (default 20)")
    gc.add_argument("--scale", type=float, default=None, help="width factor (default 1 on CUDA, 0.125 dry)")
    gc.add_argument("--out", default=None, help="JSON path (default runs/gpu-check/<preset>-<time>.json)")
    gc.set_defaults(fn=cmd_gpu_check)

    b = sub.add_parser("bench", help="benchmarks writing JSON (runs/bench/<name>-<time>.json)")
    b.add_argument("name", help="train, ttt, ...")
    b.add_argument("--run", default=None, help="a run directory the benchmark uses (e.g. the demo run)")
    b.add_argument("--out", default=None, help="JSON output path")
    b.add_argument("--lrzip", action="store_true", help="quant: also #1855's per-group lrzip recipe (needs lrzip)")
    b.add_argument("--preset", default=None, help="quant: the codec table on this preset's full-size model")
    b.add_argument("--checkpoint", default=None, help="quant --preset: trained weights (.safetensors) of that "
                   "model (default: the pre-flight's Gaussian rows)")
    b.set_defaults(fn=cmd_bench)

    q = sub.add_parser("quant", help="quantization: re-quantize, byte budget, codec comparison") \
        .add_subparsers(dest="quant_cmd", required=True)
    qr = q.add_parser("requant", help="re-quantize a run's final_model.safetensors; print bytes and val_bpb")
    qr.add_argument("run_dir")
    qr.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="quantization fields, e.g. MATRIX_BITS=5 MATRIX_CLIP_SIGMAS=10 MIXED_CODEC=brotli")
    qr.add_argument("--scheme", choices=("mixed", "int8"), default="mixed")
    qr.add_argument("--calibration", choices=("train", "ar", "none"), default=None,
                    help="GPTQ Hessians from train batches (post hoc: analysis only), AR samples, or none (RTN)")
    qr.add_argument("--val-max-tokens", type=int, default=None, help="truncate val (smoke only)")
    qr.add_argument("--out-dir", default=None, help="where the new artifact goes (default: the run directory)")
    qr.set_defaults(fn=cmd_quant_requant)
    qb = q.add_parser("budget", help="code + model bytes per tensor class vs the limit (exit 1 when over)")
    qb.add_argument("target", help="a run directory (every *.golf in it) or an artifact file")
    qb.add_argument("--limit", default="16000000", help="decimal bytes or e.g. 15.9MB (MiB is refused)")
    qb.add_argument("--code-bytes", type=int, default=None,
                    help="code bytes to count (default: the run's result.json, else this checkout's training core)")
    qb.add_argument("--json", action="store_true", help="print JSON instead of a table")
    qb.set_defaults(fn=cmd_quant_budget)
    qc = q.add_parser("codecs", help="bytes per codec (one code per byte, bit-packed, entropy) vs order-0 bound")
    qc.add_argument("target", help="a run directory (its mixed artifact) or an artifact file")
    qc.add_argument("--lrzip", action="store_true", help="also #1855's per-group lrzip ZPAQ recipe (needs lrzip)")
    qc.set_defaults(fn=cmd_quant_codecs)

    bg = sub.add_parser("budget", help="pre-flight byte budget of a preset: full-size export with its recipe + the "
                        "bundle's code bytes vs 16,000,000 (exit 1 when over)")
    bg.add_argument("--preset", default="baseline")
    bg.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    bg.add_argument("--scale", type=float, default=1.0, help="width factor in (0, 1]")
    bg.add_argument("--checkpoint", default=None, help="trained weights (.safetensors): exact bytes instead of the "
                    "Gaussian-rows estimate")
    bg.add_argument("--no-gptq", action="store_true", help="with --checkpoint: skip GPTQ calibration (RTN codes)")
    bg.add_argument("--code-bytes", type=int, default=None, help="code bytes to count (default: bundle this config)")
    bg.add_argument("--form", choices=("compressed", "readable"), default="compressed",
                    help="which train_gpt.py form is counted")
    bg.add_argument("--limit", default="16000000", help="decimal bytes or e.g. 15.9MB (MiB is refused)")
    bg.add_argument("--json", action="store_true")
    bg.set_defaults(fn=cmd_budget)

    bu = sub.add_parser("bundle", help="write the single-file train_gpt.py (config baked in) and print its sizes")
    bu.add_argument("--preset", default="baseline")
    bu.add_argument("--config", default=None, help="a run's config.json to bake in instead of a preset")
    bu.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    bu.add_argument("--scale", type=float, default=1.0)
    bu.add_argument("--form", choices=("compressed", "readable"), default="compressed", help="the counted form")
    bu.add_argument("--codec", choices=("brotli", "lzma"), default="brotli")
    bu.add_argument("--keep-data-paths", action="store_true", help="bake data paths as they are (default: ./data)")
    bu.add_argument("--out", required=True, help="folder for train_gpt.py (+ train_gpt_readable.py)")
    bu.set_defaults(fn=cmd_bundle)

    se = sub.add_parser("seeds", help="run every seed through the bundled train_gpt.py; write the per-seed table")
    se.add_argument("--preset", required=True)
    se.add_argument("--seeds", required=True, help="comma-separated, e.g. 1337,42,2025 (all are kept)")
    se.add_argument("--nproc", type=int, default=1)
    se.add_argument("--scale", type=float, default=1.0)
    se.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    se.add_argument("--form", choices=("compressed", "readable"), default="compressed", help="the counted form")
    se.add_argument("--codec", choices=("brotli", "lzma"), default="brotli")
    se.add_argument("--score", default="auto", help="score key of the table (auto, quantized/sliding, ttt/lora ...)")
    se.add_argument("--out", default=None, help="seeds directory (default: runs/<time>_seeds-<preset>)")
    se.add_argument("--runs-root", default="runs")
    se.add_argument("--resume", action="store_true", help="continue --out: finished seeds are kept, the rest run")
    se.add_argument("--retry-failed", action="store_true", help="with --resume: run failed seeds again (their "
                    "folders are kept as seed_<S>.failed-<n>)")
    add_executor_args(se)
    se.set_defaults(fn=cmd_seeds)

    rc = sub.add_parser("record", help="write records/track_<track>/YYYY-MM-DD_<NAME>/ from seeds or a run")
    rc.add_argument("source", help="a seeds directory (golf seeds), a run directory, or a folder of runs")
    rc.add_argument("--name", required=True)
    rc.add_argument("--records-root", default="records")
    rc.add_argument("--track", choices=("10min_16mb", "non_record_16mb"), default="10min_16mb")
    rc.add_argument("--score", default="auto", help="auto | quantized/standard | quantized/sliding | ttt/<kind> | "
                    "ngram/<protocol> | mixed/standard (the same for every seed)")
    rc.add_argument("--form", choices=("compressed", "readable"), default="compressed",
                    help="counted form when train_gpt.py is generated here (package runs)")
    rc.add_argument("--codec", choices=("brotli", "lzma"), default="brotli")
    rc.add_argument("--base-pr", type=int, default=None, help="PR number of the record this one claims to beat")
    rc.add_argument("--base-nats", default=None, help="the base record's per-seed val_loss (nats), comma-separated")
    rc.add_argument("--base-threshold-nats", type=float, default=None, help="or its claimed mean val_loss (nats)")
    rc.add_argument("--base-preset", default=None, help="preset of the base record, for the changes table")
    rc.add_argument("--author", default="")
    rc.add_argument("--github-id", default="")
    rc.add_argument("--blurb", default="")
    rc.add_argument("--date", default=None, help="YYYY-MM-DD (default today)")
    rc.add_argument("--nproc", type=int, default=8, help="processes in the run command (when not from seeds.json)")
    rc.set_defaults(fn=cmd_record)

    li = sub.add_parser("lint", help="static legality lint of a train_gpt.py (SPEC §4.8 item 6); exit 1 on a flag")
    li.add_argument("path", help="a train_gpt.py: readable source or a golflib self-extracting stub")
    li.add_argument("--json", action="store_true")
    li.set_defaults(fn=cmd_lint)
    add_runs_parsers(sub)
    _show_defaults(p)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    if getattr(args, "seconds", "absent") is None:
        from golflib.workbook.demo import DEMO_TRAIN_SECONDS

        args.seconds = DEMO_TRAIN_SECONDS
    from golflib.errors import GolfError

    try:
        return args.fn(args)
    except (GolfError, ValueError, FileNotFoundError, FileExistsError, KeyError, RuntimeError, SyntaxError) as e:
        print(f"golf: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Training entry point: ``python -m golflib.train`` under plain python or ``torchrun`` (SPEC §2).

Flow: resolve the config (preset → env → ``--set``), set up the device and process group and the run directory,
then :func:`train`: a :class:`golflib.trainer.Trainer` loads the byte counter (LUTs or the CaseOps sidecar) and
the val stream, builds the GPT and the optimizer split, runs the compile warm-up and restore (§2.6) and trains
until ``ITERATIONS`` or the wall-clock cap with the warmdown of §2.5, validating every ``VAL_LOSS_EVERY`` steps
(timer paused); :func:`export_and_score` then exports the artifacts, reloads each **from disk** into a fresh model
and scores it (standard, sliding window, TTT, n-gram). Everything lands in one run directory
(see :mod:`golflib.runlog`).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from golflib.codesize import code_bytes, code_bytes_source, core_source
from golflib.config import Config
from golflib.settings.base import ConfigError
from golflib.data.loader import load_validation_tokens
from golflib.errors import parse_json
from golflib.eval.bpb import EvalResult
from golflib.eval.compiled import enable_compile
from golflib.eval.protocols import PROTOCOLS, get_protocol
from golflib.model.layers import CONTROL_PATTERNS
from golflib.quant.export import export_int8, load_artifact_model
from golflib.quant.fake_quant import set_late_qat
from golflib.quant.mixed import scheme_tag
from golflib.quant.prune import SIZE_LIMIT  # 16,000,000 bytes, decimal (SPEC §0)
from golflib.runlog import (CONSOLE_LOG, NOTEBOOK_FILES, SCRIPT_FILES, SEPARATOR, SOURCE_TAG, RunLogger, create_run_dir,
                            refuse_used_run_dir, write_json)
from golflib.runresult import ArtifactRecord, RunResult, Timings
from golflib.seams import check_bundle_covers
from golflib.runtime import (Runtime, autocast, cast_model_for_device, describe_device, init_runtime,
                             set_precision, should_compile)
from golflib.trainer import LoopResult, Trainer, counted_code

# A bundled train_gpt.py (golflib.record.bundle) sets this to its run's config ({ENV_NAME: value}); it is then the
# default instead of a preset, and environment variables and --set still override it.
BAKED_CONFIG: dict | None = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m golflib.train", description="Train, export and score (golflib).")
    p.add_argument("--preset", default=None, help="named preset (golflib.presets); default: baseline, or the "
                   "config baked into a bundled train_gpt.py")
    p.add_argument("--scale", type=float, default=1.0, help="width factor in (0, 1] shrinking the preset for CPU")
    p.add_argument("--config", default=None, help="a resolved config.json to start from instead of a preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override a config field (env-var or field name); repeatable")
    p.add_argument("--run-dir", default=None, help="existing (empty of training files) run directory to write into")
    p.add_argument("--runs-root", default="runs", help="where a new run directory is created")
    args = p.parse_args(argv)
    if args.preset is None and BAKED_CONFIG is None:
        args.preset = "baseline"
    return args


def parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def resolve_config(args: argparse.Namespace) -> Config:
    """``--config`` (a complete resolved config: no preset re-applied), ``--preset``, or the config baked into a
    bundle; then env, then ``--set``. Raises ``SystemExit`` when the config needs an optional module a bundle was
    built without (:func:`golflib.seams.check_bundle_covers`)."""
    overrides = parse_overrides(args.overrides)
    if args.config:
        cfg = Config.from_json_file(args.config).with_env().replace(overrides)
    elif args.preset is None:
        cfg = Config.from_dict(BAKED_CONFIG).with_env().replace(overrides)
    else:
        from golflib.presets import resolve  # an optional module: a bundle with a baked config has no presets

        cfg = resolve(args.preset, overrides, scale=args.scale)
    check_bundle_covers(cfg)
    return cfg


def launch_meta(args: argparse.Namespace) -> dict:
    """How the config was chosen: ``preset``, ``scale`` and ``overrides``. With ``--config`` (the launcher resolved
    the config once and wrote it, :func:`golflib.workbook.launch.launch_training`) they are the launcher's, read
    from that file's ``meta``; ``--set`` given here as well are listed under ``overrides_after_config``."""
    here = parse_overrides(args.overrides)
    if not args.config:
        return {"preset": args.preset, "scale": args.scale, "overrides": here}
    raw = parse_json(Path(args.config).read_bytes(), str(args.config), ConfigError)
    meta = raw.get("meta", {}) if isinstance(raw, dict) and isinstance(raw.get("meta"), dict) else {}
    out = {"preset": meta.get("preset"), "scale": meta.get("scale", 1.0), "overrides": meta.get("overrides", {}),
           "config_file": str(args.config)}
    if here:
        out["overrides_after_config"] = here
    return out


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:  # one git call per process: config.json and the log header both name it
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "sentencepiece", "safetensors", "golflib"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _portable_arg(arg: str) -> str:
    """A command-line argument without this machine's working directory (logs are read on other machines)."""
    cwd = str(Path.cwd().resolve())
    return arg.replace(cwd + "/", "./") if cwd != "/" else arg


def log_header(log: RunLogger, cfg: Config, device: dict, run_dir: Path, source: str) -> None:
    """The head of ``train.log``, before the first metric line: the command, the versions, the hardware, the code
    (bytes and SHA-256 of what runs: the bundled ``train_gpt.py`` itself, or the package's training core) and
    every hyperparameter as ``  name: value`` lines (lower-cased env names), as the records' logs begin
    (#1855 onward). ``source`` is :func:`golflib.codesize.core_source`; it goes to the end of the log
    (:func:`log_source`), out of the metric stream."""
    versions = _package_versions()
    log.log(SEPARATOR, console=False)
    log.log("command:" + " ".join(_portable_arg(a) for a in [Path(sys.executable).name, *sys.argv]),
            console=False)
    log.log(f"Running Python {sys.version}", console=False)
    log.log(f"Running PyTorch {torch.__version__}", console=False)
    log.log("versions:" + " ".join(f"{k}:{v}" for k, v in versions.items()), console=False)
    log.log("hardware:" + " ".join(f"{k}:{v}" for k, v in device.items()), console=False)
    log.log(f"code:{code_bytes_source()} bytes:{code_bytes()} sha256:{source_sha256(source)} "
            f"git:{_git_commit() or 'none'}", console=False)
    log.log("Hyperparameters:", console=False)
    for name, value in sorted(cfg.flat().items()):
        log.log(f"  {name.lower()}: {value}", console=False)
    log.log(SEPARATOR, console=False)
    log.log(f"run_dir:{_portable_arg(str(run_dir))}")


def source_sha256(source: str) -> str:
    """SHA-256 (hex) of the training core's source as UTF-8: the bundle file's own hash in a bundle."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def log_source(log: RunLogger, source: str) -> None:
    """Append the source of the code that ran to ``train.log``, after every metric line: the bundled
    ``train_gpt.py`` as submitted, or the package's training-core modules (``# ==== <module> ====`` sections).
    Only rank 0 writes the log."""
    if not log.master:
        return
    log.log(SEPARATOR, console=False)
    log.log(f"{SOURCE_TAG}{code_bytes_source()} chars:{len(source)} (the code that produced this log, verbatim)",
            console=False)
    log.log(SEPARATOR, console=False)
    log.log(source, console=False)


def _setup_run_dir(args: argparse.Namespace, cfg: Config, rt: Runtime) -> Path:
    """Rank 0 creates/validates the run dir and broadcasts its path."""
    path = [None]
    if rt.master:
        if args.run_dir:
            d = Path(args.run_dir)
            allow = [*NOTEBOOK_FILES, CONSOLE_LOG]
            if args.config and Path(args.config).resolve().parent == d.resolve():
                allow.append(Path(args.config).name)  # the config a launcher wrote for this run
            if BAKED_CONFIG is not None and Path(sys.argv[0]).resolve().parent == d.resolve():
                allow += SCRIPT_FILES  # a bundled train_gpt.py run beside its own outputs (launch_script)
            refuse_used_run_dir(d, allow)
            d.mkdir(parents=True, exist_ok=True)
        else:
            d = create_run_dir(args.runs_root, slug=args.preset or "train_gpt", run_id=cfg.train.run_id or None)
        path[0] = str(d)
    if rt.distributed:
        dist.broadcast_object_list(path, src=0)
    return Path(path[0])


def train(cfg: Config, rt: Runtime, log: RunLogger, run_dir: Path) -> RunResult | None:
    """Train, export and score; returns the :class:`golflib.runresult.RunResult` written to ``result.json`` on
    rank 0 (None on the other ranks, which hold no artifact record). The phases are
    :class:`golflib.trainer.Trainer`'s (set-up, warm-up, the timed loop, the exported weights), then
    :func:`export_and_score`."""
    t_start = time.perf_counter()
    trainer = Trainer(cfg, rt, log)
    loop = trainer.run_loop(trainer.warmup())
    t_post = time.perf_counter()  # everything after the training loop counts as evaluation time (SPEC §4.8 item 1)
    pre_val = trainer.finalize_weights(loop)
    scored = export_and_score(trainer, loop, run_dir)
    eval_wallclock = time.perf_counter() - t_post
    log.log(f"total_eval_time:{eval_wallclock:.1f}s (wall-clock after the training loop: export, round-trips and "
            f"every scoring pass)")
    if not rt.master:
        if rt.distributed:
            dist.barrier()  # wait for rank 0's result.json: no rank tears the process group down before it
        return None
    tokens_trained = loop.step * cfg.train.train_batch_tokens
    scores = {"pre_quant": pre_val, "pre_quant_live": loop.last_val, **scored["scores"]}
    result = RunResult(
        run_dir=str(run_dir), config=cfg.to_dict(),
        training={"steps": loop.step, "tokens_trained": tokens_trained,
                  "tokens_per_second": tokens_trained / max(loop.train_ms / 1000.0, 1e-9),
                  "model_params": trainer.n_params, "export_weights": trainer.averager.source,
                  "virtual_layers": list(trainer.base_model.virtual_layers())},
        timings=Timings(train_time_ms=loop.train_ms, step_avg_ms=loop.train_ms / max(loop.step, 1),
                        eval_seconds=scored["eval_seconds"], eval_wallclock_seconds=eval_wallclock,
                        total_seconds=time.perf_counter() - t_start),
        val={"val_tokens": int(trainer.val_tokens.numel() - 1), "val_max_tokens": cfg.train.val_max_tokens},
        code_bytes=scored["code_bytes"], code_source=scored["code_source"],
        scored_artifact=scored["scored_artifact"], artifacts=scored["artifacts"],
        scores={k: v for k, v in scores.items() if v is not None}, references=scored["references"],
        extras=scored["extras"], size_limit=SIZE_LIMIT)
    try:
        path = result.save(run_dir)
        log.log(f"result:{path.name} schema:golflib.run_result/{result.to_dict()['version']} "
                f"scores:{','.join(result.scores)}")
    finally:  # the other ranks wait here even when the result is refused
        if rt.distributed:
            dist.barrier()
    return result


def export_and_score(trainer: Trainer, loop: LoopResult, run_dir: Path) -> dict:
    """Export the baseline int8 artifact (and the records' format with ``MIXED_EXPORT``), reload each **from disk**
    into a fresh model and score it; then every further protocol (sliding window, TTT, n-gram) on the artifact a
    submission would ship. Returns the parts of the :class:`golflib.runresult.RunResult`: ``scores`` ({score key:
    EvalResult}), ``references``, ``artifacts`` (rank 0 only), ``scored_artifact``, ``code_bytes``,
    ``code_source``, ``eval_seconds`` and ``extras``."""
    cfg, rt, log, base_model = trainer.cfg, trainer.rt, trainer.log, trainer.base_model
    mc = cfg.model
    artifact = run_dir / f"final_model.int8_{cfg.quant.artifact_codec}.golf"
    n_code, code_source = counted_code(cfg)
    info = None
    if rt.master:
        from safetensors.torch import save_file

        save_file({k: v.detach().float().cpu().contiguous() for k, v in base_model.state_dict().items()},
                  str(run_dir / "final_model.safetensors"))
        info = export_int8(base_model.state_dict(), artifact, cfg.quant, mc)
        log.log(f"Serialized model int8+{info.codec}: {info.artifact_bytes} bytes (payload:{info.payload_bytes} "
                f"raw_state:{info.raw_bytes} payload_ratio:{info.raw_bytes / max(info.payload_bytes, 1):.2f}x)")
        log.log(f"Code size: {n_code} bytes ({code_source})")
        log.log(f"Total submission size int8+{info.codec}: {info.artifact_bytes + n_code} bytes "
                f"(limit {SIZE_LIMIT})")
    if rt.distributed:
        dist.barrier()
    q_model = load_artifact_model(artifact, mc, rt.device)
    cast_model_for_device(q_model, rt.device, CONTROL_PATTERNS)
    tag = f"final_int8_{cfg.quant.artifact_codec}"
    q_std = trainer.val_eval(q_model)
    for line in PROTOCOLS["standard"].log_lines(q_std, cfg, tag=tag):
        log.log(line)
    mixed, mixed_model = None, None
    if cfg.quant.mixed_export:  # int-k/SDClip/GPTQ artifact with MIXED_CODEC, reloaded (optional, golflib.seams)
        from golflib.quant.posttrain import ExportContext, mixed_export

        ectx = ExportContext(master=rt.master, distributed=rt.distributed, device=rt.device,
                             new_loader=trainer.new_loader, accum=trainer.accum, evaluate=trainer.val_eval,
                             prepare_model=lambda m: cast_model_for_device(m, rt.device, CONTROL_PATTERNS),
                             barrier=dist.barrier if rt.distributed else (lambda: None),
                             autocast_ctx=lambda: autocast(rt.device), log=log.log)
        mixed, mixed_model = mixed_export(cfg, base_model, run_dir, ectx, train_ms=loop.train_ms, code_bytes=n_code)
    # the artifact a submission would ship is the one every other protocol scores: the records' format when it was
    # exported (MIXED_EXPORT=1), else the baseline int8 one
    scored_model, scored_tag = (mixed_model, f"final_{scheme_tag(cfg.quant)}_{cfg.quant.mixed_codec}") if mixed \
        else (q_model, tag)
    q_slide, ttt, ngram = score_further(trainer, loop, scored_model, scored_tag)
    on = "mixed" if mixed else "quantized"
    scores = {"quantized/standard": q_std, f"{on}/sliding": q_slide, **ttt["scores"], **ngram["scores"]}
    if mixed:
        scores["mixed/standard"] = EvalResult(**mixed.pop("standard"))
    artifacts, extras = {}, {}
    if mixed and "calibration" in mixed:
        extras["calibration"] = mixed.pop("calibration")
    if rt.master:
        artifacts["int8"] = ArtifactRecord.build({"path": artifact.name, "scheme": info.scheme, "codec": info.codec,
                                                  "artifact_bytes": info.artifact_bytes,
                                                  "payload_bytes": info.payload_bytes}, n_code)
        if mixed:
            artifacts["mixed"] = ArtifactRecord.build(mixed, n_code)
    extras.update({"ttt_seconds": ttt["seconds"], "ngram_seconds": ngram["seconds"],
                   # #549's late QAT stays on in TTT: the perturbation audit's replay needs it (golflib.workbook.replay)
                   "ttt_late_qat": bool(loop.qat_on and cfg.train.late_qat_in_ttt)})
    eval_s = sum(r.seconds for k, r in scores.items() if r is not None and k != "mixed/standard")
    return {"scores": {k: v for k, v in scores.items() if v is not None},
            "references": {**ttt["references"], **ngram["references"]}, "artifacts": artifacts,
            "scored_artifact": "mixed" if mixed else "int8", "code_bytes": n_code, "code_source": code_source,
            "eval_seconds": eval_s, "extras": extras}


def score_further(trainer: Trainer, loop: LoopResult, scored_model, scored_tag: str):
    """The protocols after the standard round trip, on ``scored_model``: sliding window (``EVAL_STRIDE`` > 0, over
    the stream re-truncated at ``EVAL_SEQ_LEN``), the configured score-first TTT kinds and the n-gram mixer.
    Returns ``(sliding EvalResult | None, ttt, ngram)``; ``ttt`` / ``ngram`` are ``{"scores", "references",
    "seconds"}`` (empty when off) as :func:`golflib.eval.ttt.run_configured_ttt` returns them."""
    cfg, rt, log, tc = trainer.cfg, trainer.rt, trainer.log, trainer.cfg.train
    eval_len, luts = trainer.eval_len, trainer.luts
    q_slide = None
    if cfg.eval.eval_stride > 0:
        if eval_len != tc.train_seq_len:  # a different window length re-truncates the stream (SPEC §1.2)
            slide_tokens = load_validation_tokens(cfg.data.val_glob, eval_len, cfg.model.vocab_size,
                                                  tc.val_max_tokens)
        else:
            slide_tokens = trainer.val_tokens
        sliding = PROTOCOLS["sliding"]
        q_slide = sliding.run(scored_model, slide_tokens, luts, cfg, trainer.scoring_ctx)
        for line in sliding.log_lines(q_slide, cfg, tag=scored_tag):
            log.log(line)
    if loop.qat_on and tc.late_qat_in_ttt:  # #549's class flag stays set: its TTT steps train through fake quant
        set_late_qat(scored_model, tc.qat_bits, tc.qat_clip, modules=tc.late_qat_modules)
    ttt = {"scores": {}, "references": {}, "seconds": 0.0}
    if cfg.ttt.ttt_enabled:  # score-first TTT (an optional module, golflib.seams)
        from golflib.eval.ttt import run_configured_ttt

        ttt = run_configured_ttt(cfg, scored_model, luts, rt, log, reference=q_slide)
    ngram = {"scores": {}, "references": {}, "seconds": 0.0}
    if cfg.ngram.ngram_enabled:  # the n-gram mixer (optional)
        from golflib.eval.ngram_eval import run_configured_ngram

        ngram = run_configured_ngram(cfg, scored_model, luts, rt, log, reference=q_slide, ttt=ttt["scores"])
    if cfg.eval.eval_protocols:  # plugins' protocols (optional, golflib.plugins)
        from golflib.plugins import score_protocols

        custom = score_protocols(cfg, scored_model, luts, rt, log, scored_tag)
        ngram = {**ngram, "scores": {**ngram["scores"], **custom["scores"]}}  # their seconds stay in each result
    return q_slide, ttt, ngram


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = resolve_config(args)
    plugins = []
    if cfg.eval.eval_plugins:  # a competitor's protocols, mixers, model classes (optional, golflib.seams)
        from golflib.plugins import load_plugins

        plugins = load_plugins(cfg.eval.eval_plugins)
    for name in cfg.eval.eval_protocols:
        get_protocol(name)  # registered (by a plugin), before any training
    rt = init_runtime(cfg.train.device)
    set_precision(cfg.train.precision)
    enable_compile(should_compile(cfg.train.use_compile, rt.device))  # the scoring and TTT forwards too
    run_dir = _setup_run_dir(args, cfg, rt)
    source = core_source() if rt.master else ""  # read once: hashed into config.json and the log, logged at its end
    log = RunLogger(run_dir, master=rt.master)
    if rt.master:
        write_json(run_dir / "config.json", {
            "config": cfg.to_dict(),
            "meta": {**launch_meta(args), "bundled": BAKED_CONFIG is not None, "plugins": plugins,
                     # the training core's code, hashed: the perturbation audit replays only the code that scored
                     "core_sha256": source_sha256(source),
                     "git_commit": _git_commit(), "versions": _package_versions(), "device": describe_device(rt),
                     "argv": sys.argv, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        })
        log_header(log, cfg, describe_device(rt), run_dir, source)
    try:
        train(cfg, rt, log, run_dir)
    except BaseException as e:
        log.log(f"run_failed: {type(e).__name__}: {e}")
        raise
    finally:
        log_source(log, source)
        if rt.distributed and dist.is_initialized():
            dist.destroy_process_group()
        enable_compile(False)  # process-wide policies back to their defaults (main may run again in this process)
        set_precision("auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``golf quant budget`` and ``golf quant codecs``: reading artifacts of a run directory or a lone file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from golflib.quant.artifact import read_artifact
from golflib.quant.budget import budget_report, format_budget
from golflib.quant.report import codec_report


def artifacts_of(target: str | os.PathLike) -> list[Path]:
    """The ``*.golf`` files of a run directory (sorted), or ``[target]`` for a file. Raises
    ``FileNotFoundError`` when there is nothing to read."""
    target = Path(target)
    if target.is_dir():
        found = sorted(target.glob("*.golf"))
        if not found:
            raise FileNotFoundError(f"{target}: no *.golf artifact in this directory")
        return found
    if target.is_file():
        return [target]
    raise FileNotFoundError(f"{target}: neither a run directory nor an artifact file")


def code_bytes_for(artifact: Path) -> tuple[int, str]:
    """``(code bytes, where they came from)``: the run's ``result.json`` next to the artifact, else the training
    core of this checkout (:func:`golflib.codesize.code_bytes`)."""
    res = artifact.parent / "result.json"
    if res.is_file():
        n = json.loads(res.read_text()).get("code_bytes")
        if isinstance(n, int):
            return n, str(res)
    from golflib.codesize import code_bytes

    return code_bytes(), "training-core sources of this checkout"


def budget_main(target: str, *, limit: str = "16000000", code_bytes: int | None = None, as_json: bool = False,
                out=None) -> int:
    """Print the budget of every artifact of ``target``; returns 1 when any is at or over ``limit``, else 0."""
    out = out or sys.stdout
    reports = []
    for path in artifacts_of(target):
        n, source = (code_bytes, "--code-bytes") if code_bytes is not None else code_bytes_for(path)
        rep = budget_report(path, n, limit)
        rep["code_bytes_source"] = source
        reports.append(rep)
    if as_json:
        print(json.dumps(reports, indent=2), file=out)
    else:
        print("\n\n".join(format_budget(r) + f"\n  (code bytes from {r['code_bytes_source']})" for r in reports),
              file=out)
    return 0 if all(r["under_limit"] for r in reports) else 1


def codecs_main(target: str, out=None) -> int:
    """Print :func:`golflib.quant.report.codec_report` of the artifact (for a run directory: its artifacts with the
    most per-row code tensors, i.e. the mixed one when present)."""
    out = out or sys.stdout
    paths = artifacts_of(target)
    qs_list = [(p, read_artifact(p)) for p in paths]
    path, qs = max(qs_list, key=lambda x: sum(e.get("kind") == "per_row" and e.get("bits", 8) < 8
                                                for e in x[1].meta["tensors"].values()))
    print(json.dumps({"artifact": str(path), "classes": codec_report(qs)}, indent=2), file=out)
    return 0


def bundle_code_bytes(cfg, form: str = "compressed", codec: str = "brotli") -> tuple[int, str]:
    """Counted bytes of the single-file ``train_gpt.py`` bundled for ``cfg`` (:func:`golflib.record.script
    .make_script`) and a description."""
    from golflib.record.script import make_script

    script = make_script(cfg, form=form, codec=codec)
    what = f"bundled train_gpt.py for this config, {form}" + (f" ({codec} stub)" if form == "compressed" else "")
    return script.counted_bytes, what


def checkpoint_hessians(cfg, state: dict, log=print) -> dict | None:
    """GPTQ Hessians of a checkpoint the way the run collects them: ``GPTQ_CALIBRATION_BATCHES`` training
    micro-batches from ``TRAIN_LOADER`` (``GPTQ_CALIBRATION=train``; one process, so one micro-batch per step of
    ``TRAIN_BATCH_TOKENS / GLOBAL_MICROBATCHES`` tokens) or AR self-generated sequences (``ar``). Returns None, with
    a log line, when the recipe has no GPTQ or no training shards are at ``DATA_PATH``."""
    import glob

    from golflib.data.loaders import make_loader
    from golflib.model.gpt import GPT
    from golflib.quant.calib import ar_batches, collect_hessians, train_batches

    q, tc = cfg.quant, cfg.train
    if not (q.mixed_export and q.gptq_enabled):
        return None
    model = GPT(cfg.model)
    model.load_state_dict(state, strict=True)
    if q.gptq_calibration == "train":
        if not glob.glob(cfg.data.train_glob):
            log(f"budget: no training shards match {cfg.data.train_glob}: GPTQ not run, round-to-nearest codes")
            return None
        loader = make_loader(tc.train_loader, cfg.data.train_glob, 0, 1, "cpu", cfg.model.vocab_size, seed=tc.seed,
                             bos_id=cfg.model.bos_id)
        batches = train_batches(loader, q.gptq_calibration_batches, tc.train_batch_tokens, tc.train_seq_len,
                                tc.global_microbatches)
    else:
        batches = ar_batches(model, q.gptq_ar_seqs, tc.train_seq_len, temperature=q.gptq_ar_temperature,
                             seed=tc.seed)
    hessians, stats = collect_hessians(model, batches)
    log(f"budget: GPTQ Hessians from {q.gptq_calibration} ({stats['batches']} batches, {stats['tokens']} tokens, "
        f"{stats['seconds']:.1f}s)")
    return hessians


def preflight_main(cfg, *, checkpoint: str | None = None, code_bytes: int | None = None, form: str = "compressed",
                   limit: str = "16000000", gptq: bool = True, as_json: bool = False, out=None) -> int:
    """``golf budget``: the pre-flight budget of ``cfg`` (:func:`golflib.quant.preflight.preflight_budget`) with
    the code bytes of its bundle; returns 1 when the total is at or over ``limit``."""
    from golflib.quant.preflight import format_preflight, preflight_budget
    from golflib.quant.prune import parse_byte_target

    out = out or sys.stdout
    limit_b = parse_byte_target(limit)
    if code_bytes is None:
        code_bytes, source = bundle_code_bytes(cfg, form=form)
    else:
        source = "--code-bytes"
    state = hessians = None
    if checkpoint:
        from safetensors.torch import load_file

        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"--checkpoint {checkpoint}: no such file")
        state = load_file(checkpoint)
        if gptq:
            hessians = checkpoint_hessians(cfg, state, log=lambda m: print(m, file=sys.stderr))
    rep = preflight_budget(cfg, code_bytes=code_bytes, code_source=source, state=state, hessians=hessians,
                           limit=limit_b)
    print(json.dumps(rep, indent=2) if as_json else format_preflight(rep), file=out)
    return 0 if rep["fits"] else 1

"""``golf quant budget`` and ``golf quant codecs`` (reading the artifacts of a run directory or a lone file) and
``golf budget`` (the pre-flight byte budget of a config: :func:`preflight_main`, with the bundle's code bytes and,
for a checkpoint, GPTQ Hessians collected as a run collects them)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from golflib.quant.artifact import ArtifactError, read_artifact
from golflib.quant.budget import budget_report
from golflib.quant.prune import check_code_bytes, parse_limit
from golflib.quant.report import codec_report


def format_budget(rep: dict) -> str:
    """:func:`golflib.quant.budget.budget_report` as a table (tabulate): bytes, parameters and bits/parameter per
    tensor class, then header, artifact, code and the total against the 16,000,000-byte limit (decimal bytes)."""
    from tabulate import tabulate

    head = (f"{rep['artifact']}  scheme={rep['scheme']} codec={rep['codec']}"
            + ("" if rep["exact"] else "  (per-class bytes are standalone estimates)"))
    rows = [[cls, f"{c['bytes']:,}", f"{c['params']:,}",
             "" if c["bits_per_param"] is None else f"{c['bits_per_param']:.3f}"] for cls, c in rep["classes"].items()]
    rows += [["header", f"{rep['header_bytes']:,}", "", ""], ["artifact", f"{rep['artifact_bytes']:,}", "", ""],
             ["code", f"{rep['code_bytes']:,}", "", ""], ["total", f"{rep['bytes_total']:,}", "", ""]]
    status = "UNDER" if rep["under_limit"] else "OVER"
    table = tabulate(rows, headers=["class", "bytes", "params", "bits/param"], tablefmt="simple",
                     colalign=("left", "right", "right", "right"), disable_numparse=True)
    return (f"{head}\n{table}\ntotal {rep['bytes_total']:,} vs limit {rep['limit']:,}: {status} "
            f"(headroom {rep['headroom']:+,})")


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
        from golflib.workbook.resultfile import load_run_result

        return load_run_result(res).code_bytes, str(res)
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


def codecs_main(target: str, out=None, lrzip: bool = False) -> int:
    """Print :func:`golflib.quant.report.codec_report` of the artifact (for a run directory: its artifacts with the
    most per-row code tensors, i.e. the mixed one when present); ``lrzip`` adds #1855's per-group lrzip recipe
    (:mod:`golflib.quant.pergroup`; needs the ``lrzip`` binary, tens of seconds)."""
    out = out or sys.stdout
    paths = artifacts_of(target)
    qs_list = [(p, read_artifact(p)) for p in paths]
    path, qs = max(qs_list, key=lambda x: sum(e.get("kind") == "per_row" and e.get("bits", 8) < 8
                                                for e in x[1].meta["tensors"].values()))
    print(json.dumps({"artifact": str(path), "classes": codec_report(qs, pergroup=lrzip)}, indent=2), file=out)
    return 0


def bundle_code_bytes(cfg, form: str = "compressed", codec: str = "brotli") -> tuple[int, str]:
    """Counted bytes of the single-file ``train_gpt.py`` bundled for ``cfg``
    (:func:`golflib.record.script.make_script`) and a description."""
    from golflib.record.script import make_script

    script = make_script(cfg, form=form, codec=codec)
    what = f"bundled train_gpt.py for this config, {form}" + (f" ({codec} stub)" if form == "compressed" else "")
    return script.counted_bytes, what


def checkpoint_hessians(cfg, state: dict, log=print) -> dict | None:
    """GPTQ Hessians of a checkpoint collected as a run collects them (:func:`golflib.quant.posttrain.calibrate`:
    ``GPTQ_CALIBRATION`` train | ar, ``GPTQ_CALIB_LOADER``, ``GPTQ_CALIB_DENSE``, ``EMBED_GPTQ``,
    ``GPTQ_HESSIAN_DAMP``), in one process on CPU: one rank's micro-batches of
    ``TRAIN_BATCH_TOKENS / GLOBAL_MICROBATCHES`` tokens, rank-local Hessians. Returns None when the recipe has no
    GPTQ, and None with a log line when it calibrates on training data and no shards match ``DATA_PATH``."""
    import glob

    from golflib.data.loaders import make_loader
    from golflib.model.gpt import GPT
    from golflib.quant.posttrain import calibrate

    q, tc = cfg.quant, cfg.train
    if not (q.mixed_export and q.gptq_enabled):
        return None
    if q.gptq_calibration == "train" and not glob.glob(cfg.data.train_glob):
        log(f"budget: no training shards match {cfg.data.train_glob}: GPTQ not run, round-to-nearest codes")
        return None
    model = GPT(cfg.model)
    model.load_state_dict(state, strict=True)
    hessians, stats = calibrate(cfg, model, new_loader=lambda: make_loader(
        tc.train_loader, cfg.data.train_glob, 0, 1, "cpu", cfg.model.vocab_size, bos_id=cfg.model.bos_id),
        accum=tc.global_microbatches, device=torch.device("cpu"), distributed=False, train_ms=0.0, log=log)
    log(f"budget: GPTQ Hessians from {stats['source']} ({stats['batches']} batches, {stats['tokens']} tokens, "
        f"{stats['seconds']:.1f}s, {stats['hessians']})")
    return hessians


def preflight_main(cfg, *, checkpoint: str | None = None, code_bytes: int | None = None, form: str = "compressed",
                   limit: str = "16000000", gptq: bool = True, as_json: bool = False, out=None) -> int:
    """``golf budget``: the pre-flight budget of ``cfg`` (:func:`golflib.quant.preflight.preflight_budget`) with
    the code bytes of its bundle; returns 1 when the total is at or over ``limit``."""
    from golflib.quant.preflight import format_preflight, preflight_budget

    out = out or sys.stdout
    limit_b = parse_limit(limit)
    if code_bytes is None:
        code_bytes, source = bundle_code_bytes(cfg, form=form)
    else:
        code_bytes, source = check_code_bytes(code_bytes), "--code-bytes"
    state = hessians = None
    if checkpoint:
        from safetensors.torch import load_file

        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"--checkpoint {checkpoint}: no such file")
        try:
            state = load_file(checkpoint)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error type
            raise ArtifactError(f"--checkpoint {checkpoint}: not a safetensors checkpoint ({e})") from None
        if gptq:
            hessians = checkpoint_hessians(cfg, state, log=lambda m: print(m, file=sys.stderr))
    rep = preflight_budget(cfg, code_bytes=code_bytes, code_source=source, state=state, hessians=hessians,
                           limit=limit_b)
    print(json.dumps(rep, indent=2) if as_json else format_preflight(rep), file=out)
    return 0 if rep["fits"] else 1

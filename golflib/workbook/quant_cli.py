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

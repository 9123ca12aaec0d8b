"""Reading run directories: results, metrics, configs (workbook side of :mod:`golflib.runlog`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from golflib.errors import parse_json
from golflib.runlog import create_run_dir, write_json  # noqa: F401  (re-exported for notebooks)
from golflib.runresult import RunResult
from golflib.workbook.resultfile import load_run_result, save_extras


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; raises ``FileNotFoundError`` or :class:`~golflib.errors.GolfError` naming the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    return parse_json(path.read_bytes(), str(path))


def load_result(run_dir: str | os.PathLike) -> RunResult:
    """``result.json`` of a run as a validated :class:`golflib.runresult.RunResult`
    (:func:`golflib.workbook.resultfile.load_run_result`; raises ``FileNotFoundError`` when the run did not
    finish, :class:`golflib.runresult.RunResultError` for a file that does not follow the schema)."""
    return load_run_result(run_dir)


def load_config(run_dir: str | os.PathLike) -> dict:
    return load_json(Path(run_dir) / "config.json")


def load_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """All events of ``metrics.jsonl`` (empty list if the file does not exist yet)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from None
    return out


def update_result(run_dir: str | os.PathLike, **extras: Any) -> RunResult:
    """Add ``extras`` (e.g. reference scores computed by a notebook) to ``result.json`` (its ``extras``)."""
    return save_extras(run_dir, **extras)


def list_runs(root: str | os.PathLike = "runs") -> list[Path]:
    """Run directories under ``root`` (those with a ``config.json`` or an executed notebook), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (any(p.glob("*.ipynb")) or (p / "config.json").exists()))


def find_artifact(run_dir: str | os.PathLike) -> Path:
    """The run's scored ``*.golf`` artifact — the one its sliding, TTT and n-gram protocols scored
    (:attr:`golflib.runresult.RunResult.scored`: the mixed one with MIXED_EXPORT=1, else the int8 one);
    the first by name when no result is recorded. Raises ``FileNotFoundError`` when there is none. Other artifacts
    are scored by passing their file."""
    if (Path(run_dir) / "result.json").is_file():
        rr = load_run_result(run_dir)
        primary = rr.scored.path if rr.scored_artifact in rr.artifacts else None
        if primary and (Path(run_dir) / primary).is_file():
            return Path(run_dir) / primary
    found = sorted(Path(run_dir).glob("*.golf"))
    if not found:
        raise FileNotFoundError(f"{run_dir}: no *.golf artifact (did the training finish?)")
    return found[0]

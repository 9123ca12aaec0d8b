"""Run directories and the files a run writes (DESIGN.md "Runs, results, logs").

``runs/<run_id>/`` with ``run_id = YYYYMMDD-HHMMSS_<slug>`` is never overwritten: :func:`create_run_dir` refuses an
existing id, and a training refuses a directory that already holds any file it did not start from
(:func:`refuse_used_run_dir`). Files: ``config.json``,
``train.log`` (challenge line format: a short header, the metric lines, then the source of the code that ran:
:func:`metric_stream`), ``metrics.jsonl`` (one JSON object per event),
``result.json`` (final numbers).
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable

from golflib.errors import RunDirError

_SLUG_RE = re.compile(r"[^A-Za-z0-9._-]+")


def slugify(text: str) -> str:
    return _SLUG_RE.sub("-", text).strip("-")[:60] or "run"


def new_run_id(slug: str = "run") -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "_" + slugify(slug)


def create_run_dir(root: str | os.PathLike = "runs", slug: str = "run", run_id: str | None = None) -> Path:
    """Create a fresh run directory. With ``run_id`` given, an existing directory is an error
    (``FileExistsError``); generated ids get a ``-2``, ``-3`` … suffix on a same-second clash."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if run_id:
        path = root / slugify(run_id)
        path.mkdir(exist_ok=False)
        return path
    base = new_run_id(slug)
    for i in range(1, 1000):
        path = root / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir(exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a fresh run directory under {root}")


# What notebooks executed into a run directory leave there before they train (golf run / golf demo: 00_data's executed
# notebook, its parameters and its figures/): inputs and notebook outputs, never a file a training writes.
NOTEBOOK_FILES = ("*.ipynb", "*.params.json", "figures")
CONSOLE_LOG = "console.log"  # a launcher's copy of the training process output (golflib.workbook.launch)
# a run trained by its own bundled script keeps the script beside its outputs (golflib.workbook.launch.launch_script):
# the counted train_gpt.py, the readable form and the script's stats
SCRIPT_FILES = ("train_gpt.py", "train_gpt_readable.py", "script.json")


def refuse_used_run_dir(path: str | os.PathLike, allow: Iterable[str] = ()) -> None:
    """Raise :class:`~golflib.errors.RunDirError` when ``path`` holds any file or folder other than those matching
    the glob patterns ``allow`` (what launched this run: the executing notebook, the config file it was given, the
    launcher's console log): a run directory is never overwritten — not its log, its result, its checkpoint, its
    artifacts, nor anything else a run writes."""
    path = Path(path)
    if not path.is_dir():
        return
    allow = tuple(allow)
    found = sorted(p.name for p in path.iterdir() if not any(fnmatch.fnmatch(p.name, pat) for pat in allow))
    if found:
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise RunDirError(f"{path} already holds {', '.join(found[:5])}{more}: a run directory is never overwritten; "
                          "use a new one")


SEPARATOR = "=" * 100  # closes the log's header, and opens its source section
SOURCE_TAG = "source:"  # first line of the source section at the end of train.log (golflib.train.log_source)


def metric_stream(log: str) -> str:
    """The metric lines of a ``train.log``: everything after the header (which opens and closes with
    :data:`SEPARATOR`) except the source section (:data:`SOURCE_TAG` ``... chars:N`` between two separators, then
    exactly N characters of source), so a line appended after the source is still read as a metric line. Older
    logs (the source at the top, then the header) give the text after their last separator."""
    sep = SEPARATOR + "\n"
    if not log.startswith(sep):  # the older layout
        i = log.rfind(sep)
        return log[i + len(sep):] if i >= 0 else log
    end = log.find(sep, len(sep))
    body = log[end + len(sep):] if end >= 0 else ""
    start = body.find(sep + SOURCE_TAG)
    if start < 0:
        return body
    tag_end = body.find("\n", start + len(sep))
    m = re.search(r" chars:(\d+)", body[start:tag_end])
    src_start = body.find(sep, tag_end + 1)
    if m is None or src_start < 0:
        return body[:start]
    src_end = src_start + len(sep) + int(m.group(1)) + 1  # the source text and its closing newline
    return body[:start] + body[src_end:]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (tmp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class RunLogger:
    """Writes ``train.log`` and ``metrics.jsonl`` in ``run_dir`` (only when ``master``; other ranks are silent).

    ``log(msg)`` appends a line to the log and prints it (unless ``console=False``); ``metric(**fields)``
    appends a JSON object with a wall-clock ``time`` field.
    """

    def __init__(self, run_dir: str | os.PathLike, master: bool = True, console: bool = True):
        self.run_dir = Path(run_dir)
        self.master = master
        self.console = console
        self.log_path = self.run_dir / "train.log"
        self.metrics_path = self.run_dir / "metrics.jsonl"

    def log(self, msg: str, console: bool = True) -> None:
        if not self.master:
            return
        if console and self.console:
            print(msg, flush=True)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(msg + "\n")

    def metric(self, **fields: Any) -> None:
        if not self.master:
            return
        fields.setdefault("time", time.time())
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_jsonable(fields)) + "\n")

    def write_json(self, name: str, obj: Any) -> None:
        if self.master:
            write_json(self.run_dir / name, obj)

"""Per-point state of a sweep, an ablation or a seeds run: ``<folder>/sweep.json`` (issue 18).

Every point has a ``state`` — ``pending`` (planned), ``submitted`` (handed to an executor: its ``job_id`` and
``log`` are known), ``done`` (``score``: its val_bpb) or ``failed`` (``error``, and the log to read) — updated by
the process that drives the job each time a point changes, and written atomically, so an interrupted sweep loses
nothing that finished. A rerun skips what is ``done``; a ``failed`` point runs again only when asked
(``retry_failed``) and is otherwise reported as failed, never dropped. ``golf sweep status DIR`` prints the table.
The points' own outputs (run directories, results files) stay the truth; this file says how each one went.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable

from golflib.errors import GolfError, parse_json
from golflib.runlog import write_json

STATE_FILE = "sweep.json"
STATES = ("pending", "submitted", "done", "failed")


class SweepState:
    """The ``sweep.json`` of ``folder`` for a job of ``kind`` (``ttt``, ``ablation``, ``seeds``; None: whatever
    the file holds): read when it exists, else empty. Raises :class:`~golflib.errors.GolfError` when the file belongs to another
    kind of job, or is not a sweep state."""

    def __init__(self, folder: str | os.PathLike, kind: str | None, executor: dict | None = None):
        self.folder = Path(folder)
        self.path = self.folder / STATE_FILE
        self.kind = kind
        self.points: dict[str, dict[str, Any]] = {}
        self.executor = executor or {}
        if self.path.is_file():
            data = parse_json(self.path.read_bytes(), str(self.path), GolfError)
            if not isinstance(data, dict) or not isinstance(data.get("points"), dict):
                raise GolfError(f"{self.path}: not a sweep state (expected an object with 'points')")
            if kind is not None and data.get("kind") != kind:
                raise GolfError(f"{self.path}: holds a {data.get('kind')!r} job, not {kind!r}; use another folder")
            self.kind = data.get("kind", "")
            self.points = data["points"]

    def plan(self, key: str, label: str, run_dir: str = "") -> None:
        """Add a point as ``pending`` (a known point keeps its state)."""
        self.points.setdefault(key, {"label": label, "state": "pending", "run_dir": run_dir, "job_id": "",
                                     "log": "", "score": None, "error": ""})

    def state(self, key: str) -> str:
        return self.points.get(key, {}).get("state", "pending")

    def todo(self, keys: Iterable[str], retry_failed: bool = False) -> list[str]:
        """The keys to run: not ``done``, and not ``failed`` unless ``retry_failed``."""
        return [k for k in keys if self.state(k) not in (("done",) if retry_failed else ("done", "failed"))]

    def submitted(self, key: str, job_id: str, log: str) -> None:
        self.points[key].update(state="submitted", job_id=job_id, log=log, error="")
        self.save()

    def finished(self, key: str, state: str, *, job_id: str = "", log: str = "", score: float | None = None,
                 error: str = "", seconds: float | None = None) -> None:
        """Record how a point ended (``done`` or ``failed``) and save."""
        if state not in ("done", "failed"):
            raise ValueError(f"state {state!r}: expected 'done' or 'failed'")
        p = self.points[key]
        p.update(state=state, score=score, error=error, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        if job_id:
            p["job_id"] = job_id
        if log:
            p["log"] = log
        if seconds is not None:
            p["seconds"] = round(float(seconds), 1)
        self.save()

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"kind": self.kind, "executor": self.executor, "points": self.points})

    def rows(self) -> list[dict]:
        """One row per point in plan order: label, state, job_id, score, seconds, log, error (first line)."""
        return [{"point": p.get("label") or k, "state": p["state"], "job_id": p.get("job_id", ""),
                 "val_bpb": p.get("score"), "seconds": p.get("seconds"), "log": p.get("log", ""),
                 "error": last_line(p.get("error") or "")[:120]}
                for k, p in self.points.items()]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for p in self.points.values():
            out[p["state"]] = out.get(p["state"], 0) + 1
        return out


def keep_aside(path: str | os.PathLike) -> Path | None:
    """Move a failed or interrupted point's folder to ``<path>.failed-<n>`` (kept, with its logs) so a retry can
    start in a fresh folder: a run directory is never overwritten. Returns the new path; None (nothing moved) when
    the folder does not exist or is empty."""
    path = Path(path)
    if not path.is_dir() or not any(path.iterdir()):
        return None
    n = 1
    while path.with_name(f"{path.name}.failed-{n}").exists():
        n += 1
    return path.rename(path.with_name(f"{path.name}.failed-{n}"))


def last_line(text: str) -> str:
    """The last non-empty line of an error text (a traceback's exception line); ``""`` for none."""
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def load_state(folder: str | os.PathLike) -> SweepState:
    """The sweep state in ``folder`` (any kind); raises ``FileNotFoundError`` naming the missing file."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sweep state here (a TTT sweep, ablation or seeds run writes one)")
    return SweepState(folder, None)


def status_text(folder: str | os.PathLike) -> str:
    """``golf sweep status``: a table of every point (state, job id, val_bpb, seconds, log or error) and the counts
    per state."""
    from tabulate import tabulate

    st = load_state(folder)
    rows = st.rows()
    table = tabulate([[r["point"], r["state"], r["job_id"], "—" if r["val_bpb"] is None else f"{r['val_bpb']:.5f}",
                       "" if r["seconds"] is None else r["seconds"],
                       r["error"] if r["state"] == "failed" else r["log"]] for r in rows],
                     headers=["point", "state", "job", "val_bpb", "seconds", "log / error"], tablefmt="github")
    counts = ", ".join(f"{n} {s}" for s, n in st.counts().items() if n)
    return f"{st.kind} job in {st.folder}: {len(rows)} point(s): {counts}\n\n{table}\n"

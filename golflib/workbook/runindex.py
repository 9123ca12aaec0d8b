"""The runs index: one SQLite file over every run directory under ``runs/`` (issue 18).

``golf runs index`` (and :func:`build_index`) walks ``runs/`` for run directories — any folder holding a
``config.json`` (a training run: a notebook run, a seed of a seeds directory, a point of an ablation), at most four
levels down — and rebuilds ``runs/index.sqlite`` from them; the run directories stay the truth and the index can be
deleted at any time. Tables:

``runs``    run_id (the path under ``runs/``), path, state (``done``: result.json reads; ``failed``: the log has
            ``run_failed:``; else ``incomplete``), created, preset, seed, steps, train_time_s, step_avg_ms,
            eval_time_s, code_bytes, scored_artifact, artifact_bytes, bytes_total, scored_key, val_bpb, error
``scores``  run_id, key (``quantized/standard``, ``ttt/lora``...), val_bpb (bits/byte), val_loss (nats/token), mode,
            tokens, bytes, seconds, legal
``config``  run_id, name (the env-var name), value (JSON text)

Query it with any SQLite client or :func:`query`, e.g.
``SELECT run_id, val_bpb FROM runs WHERE state = 'done' ORDER BY val_bpb LIMIT 5``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator

INDEX_FILE = "index.sqlite"
MAX_DEPTH = 4  # runs/<seeds dir>/seed_1337/, runs/<ablation run>/ablation/<point>/
SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, path TEXT NOT NULL, state TEXT NOT NULL, created TEXT, preset TEXT,
    seed INTEGER, steps INTEGER, train_time_s REAL, step_avg_ms REAL, eval_time_s REAL, code_bytes INTEGER,
    scored_artifact TEXT, artifact_bytes INTEGER, bytes_total INTEGER, scored_key TEXT, val_bpb REAL, error TEXT);
CREATE TABLE scores (run_id TEXT NOT NULL, key TEXT NOT NULL, val_bpb REAL, val_loss REAL, mode TEXT,
    tokens INTEGER, bytes INTEGER, seconds REAL, legal INTEGER, PRIMARY KEY (run_id, key));
CREATE TABLE config (run_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, name));
"""
# the score a run is listed by, best first: what a record of that run would claim (golflib.record.results)
HEADLINE_KEYS = ("ttt/phased", "ttt/lora", "ttt/chunked", "mixed/sliding", "quantized/sliding", "mixed/standard",
                 "quantized/standard")


def run_dirs(runs_root: str | os.PathLike = "runs") -> Iterator[Path]:
    """Every run directory under ``runs_root`` (a folder with ``config.json``), sorted, at most
    :data:`MAX_DEPTH` levels down."""
    root = Path(runs_root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        if depth >= MAX_DEPTH:
            dirnames[:] = []
        if "config.json" in filenames and depth > 0:
            found.append(Path(dirpath))
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "figures"]
    return iter(sorted(found))


def flat_config(raw: dict) -> dict[str, Any]:
    """``{ENV_NAME: value}`` of a ``config.json`` (the ``config`` object: groups of fields)."""
    from golflib.config import Config

    try:
        return Config.from_dict(raw["config"]).flat()
    except Exception:  # noqa: BLE001 — an older or foreign config: its fields as they are, upper-cased
        out = {}
        for group in (raw.get("config") or {}).values():
            if isinstance(group, dict):
                out.update({str(k).upper(): v for k, v in group.items()})
        return out


def headline(scores: dict) -> str | None:
    """The score key a run is listed by (:data:`HEADLINE_KEYS` order), or None."""
    return next((k for k in HEADLINE_KEYS if k in scores), None)


def _row(run_dir: Path, run_id: str) -> tuple[dict, list[tuple], list[tuple]]:
    from golflib.workbook.resultfile import load_run_result

    raw = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    meta = raw.get("meta") or {}
    cfg = flat_config(raw)
    row: dict[str, Any] = {"run_id": run_id, "path": str(run_dir), "state": "incomplete",
                           "created": meta.get("created"), "preset": meta.get("preset"), "seed": cfg.get("SEED"),
                           "error": None}
    scores: list[tuple] = []
    try:
        r = load_run_result(run_dir)
    except FileNotFoundError:
        r = None
    except Exception as e:  # noqa: BLE001 — an unreadable result is listed as such, not skipped
        r, row["error"] = None, f"result.json: {e}"[:500]
    log = run_dir / "train.log"
    if r is not None:
        key = headline(r.scores)
        art = r.scored
        row.update(state="done", steps=int(r.training.get("steps") or 0),
                   train_time_s=r.timings.train_time_ms / 1000.0, step_avg_ms=r.timings.step_avg_ms,
                   eval_time_s=r.timings.eval_wallclock_seconds, code_bytes=r.code_bytes,
                   scored_artifact=r.scored_artifact, artifact_bytes=art.artifact_bytes, bytes_total=art.bytes_total,
                   scored_key=key, val_bpb=r.scores[key].val_bpb if key else None)
        for k, e in r.scores.items():
            legal = (e.ledger or {}).get("legal") if isinstance(e.ledger, dict) else None
            scores.append((run_id, k, e.val_bpb, e.val_loss, e.mode, e.tokens, e.bytes, e.seconds,
                           None if legal is None else int(bool(legal))))
    elif log.is_file():
        failed = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()
                  if ln.startswith("run_failed:")]
        if failed:
            row.update(state="failed", error=failed[-1][:500])
    config = [(run_id, k, json.dumps(v, default=str)) for k, v in sorted(cfg.items())]
    return row, scores, config


def build_index(runs_root: str | os.PathLike = "runs", db_path: str | os.PathLike | None = None) -> Path:
    """Rebuild the index of ``runs_root`` into ``db_path`` (default ``<runs_root>/index.sqlite``): written to a
    temporary file and moved into place, so a reader never sees half an index. Returns the path."""
    root = Path(runs_root)
    db = Path(db_path) if db_path else root / INDEX_FILE
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(db.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.executescript(SCHEMA)
        cols = ("run_id", "path", "state", "created", "preset", "seed", "steps", "train_time_s", "step_avg_ms",
                "eval_time_s", "code_bytes", "scored_artifact", "artifact_bytes", "bytes_total", "scored_key",
                "val_bpb", "error")
        for run_dir in run_dirs(root):
            row, scores, config = _row(run_dir, run_dir.relative_to(root).as_posix())
            con.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [row.get(c) for c in cols])
            con.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", scores)
            con.executemany("INSERT INTO config VALUES (?, ?, ?)", config)
        con.commit()
    finally:
        con.close()
    os.replace(tmp, db)
    return db


def query(db_path: str | os.PathLike, sql: str, params: tuple = ()) -> list[dict]:
    """Rows of ``sql`` on the index as dicts; raises ``FileNotFoundError`` when the index does not exist (build it
    with :func:`build_index` / ``golf runs index``)."""
    db = Path(db_path)
    if not db.is_file():
        raise FileNotFoundError(f"{db}: no runs index; build it with `golf runs index`")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, params)]
    finally:
        con.close()

"""Per-seed results of a record: which (artifact, evaluation protocol) is scored, and the per-seed table.

A run's ``result.json`` holds several scores: the int8 artifact under the standard protocol, the mixed artifact
(``MIXED_EXPORT=1``, the records' format) under the standard protocol, and — on the artifact the run scores
(``result["scored_artifact"]``: the mixed one when it was exported, else int8) — the sliding-window, TTT and n-gram
protocols. A record claims exactly one of them for every seed (chosen before looking at the numbers, the same for
all seeds). Score keys:

``quantized/standard`` · ``quantized/sliding`` (the int8 artifact) · ``mixed/standard`` ·
``mixed/sliding`` (the mixed artifact) · ``ttt/<kind>`` (chunked | lora | phased) ·
``ngram/<protocol>`` (sliding | chunked | lora | phased, with the normalised n-gram mixer, ``NGRAM_ENABLED=1``) —
the last two on the scored artifact. Every key a run scored has its legality report checked by
:mod:`golflib.record.compliance`, claimed or not. ``auto`` = the one TTT kind when exactly one ran, else the scored
artifact's sliding window when it ran, else its standard round trip.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from golflib.config import Config
from golflib.runresult import SCORE_KEYS as RUN_SCORE_KEYS
from golflib.runresult import RunResult
from golflib.workbook.resultfile import load_run_result
from golflib.workbook.runs import load_json

# the keys a record may claim (pre_quant / pre_quant_live are not scores of an artifact)
SCORE_KEYS = tuple(k for k in RUN_SCORE_KEYS if not k.startswith("pre_quant"))


@dataclass
class SeedRun:
    """One finished training run: ``seed`` (TRAIN ``SEED``), its directory, ``config.json``, ``result.json`` and
    ``train.log`` text."""

    seed: int
    run_dir: Path
    config_json: dict
    result: RunResult
    log: str
    metrics: list[dict] = field(default_factory=list)

    @property
    def config(self) -> Config:
        return Config.from_dict(self.config_json["config"])

    @property
    def meta(self) -> dict:
        return self.config_json.get("meta", {})


def load_seed_run(run_dir: str | os.PathLike) -> SeedRun:
    """Read a finished run directory; raises ``FileNotFoundError``/``ValueError`` naming the missing/bad file."""
    run_dir = Path(run_dir)
    cfg = load_json(run_dir / "config.json")
    result = load_run_result(run_dir)
    log_path = run_dir / "train.log"
    if not log_path.is_file():
        raise FileNotFoundError(f"{log_path}: missing (every seed's log is part of a record)")
    metrics = []
    mpath = run_dir / "metrics.jsonl"
    if mpath.is_file():
        metrics = [json.loads(line) for line in mpath.read_text(encoding="utf-8").splitlines() if line.strip()]
    seed = int(cfg["config"]["train"]["seed"])
    return SeedRun(seed, run_dir, cfg, result, log_path.read_text(encoding="utf-8"), metrics)


def resolve_score_key(result: RunResult, score: str = "auto") -> str:
    """The score key (module docstring) for ``score``; raises ``ValueError`` when the run has no such score or
    ``auto`` is ambiguous (several TTT kinds)."""
    if score != "auto":
        if score not in SCORE_KEYS:
            raise ValueError(f"score {score!r}: expected auto or one of {', '.join(SCORE_KEYS)}")
        score_entry(result, score)  # raises when absent
        return score
    ttt = [k[4:] for k in result.scores if k.startswith("ttt/")]
    if len(ttt) > 1:
        raise ValueError(f"score auto is ambiguous: the run scored TTT kinds {', '.join(ttt)}; choose one with "
                         f"score=ttt/<kind> (the same for every seed)")
    if ttt:
        return f"ttt/{ttt[0]}"
    group = "mixed" if result.scored_artifact == "mixed" else "quantized"
    return f"{group}/sliding" if result.has(f"{group}/sliding") else f"{group}/standard"


def score_entry(result: RunResult, key: str) -> tuple[dict, dict]:
    """``(entry, artifact)`` of a score key: the EvalResult as a dict and ``{"path", "artifact_bytes"}`` of the
    artifact it scored. Raises ``ValueError`` when the run did not score it."""
    try:
        entry, art = result.score(key), result.artifact_of(key)
    except KeyError as e:
        raise ValueError(f"score {key}: {e.args[0]}") from None
    return entry.to_dict(), {"path": art.path, "artifact_bytes": int(art.artifact_bytes)}


def protocol_entries(result: RunResult) -> dict[str, dict]:
    """Every scored entry of a run with its key (``pre_quant``, the score keys that ran), as dicts."""
    return {k: result.scores[k].to_dict() for k in RUN_SCORE_KEYS if k in result.scores and k != "pre_quant_live"}


def tokens_per_byte(entry: dict) -> float:
    """Scored targets per byte of a score entry (SPEC §1.4), for nats ↔ bpb."""
    return entry["tokens"] / entry["bytes"]


def seed_row(run: SeedRun, key: str, code_bytes: int) -> dict:
    """One row of the per-seed table for score ``key`` with ``code_bytes`` counted (the record's train_gpt.py):
    seed, steps, step_avg_ms, train_time_s, pre_quant_bpb, quantized_bpb (int8 standard round-trip), val_loss and
    val_bpb of the scored protocol, eval_mode, artifact_bytes, code_bytes, bytes_total, eval_time_s."""
    r = run.result
    entry, art = score_entry(r, key)
    eval_s = r.timings.eval_wallclock_seconds
    return {
        "seed": run.seed,
        "steps": int(r.training["steps"]),
        "step_avg_ms": float(r.timings.step_avg_ms),
        "train_time_s": float(r.timings.train_time_ms) / 1000.0,
        "pre_quant_bpb": r.scores["pre_quant"].val_bpb if r.has("pre_quant") else None,
        "quantized_bpb": r.score("quantized/standard").val_bpb,
        "val_loss": float(entry["val_loss"]),
        "val_bpb": float(entry["val_bpb"]),
        "eval_mode": entry["mode"],
        "artifact_bytes": art["artifact_bytes"],
        "code_bytes": int(code_bytes),
        "bytes_total": art["artifact_bytes"] + int(code_bytes),
        "eval_time_s": float(eval_s) if not math.isnan(eval_s) else float(r.timings.eval_seconds),
        "run_dir": str(run.run_dir),
    }


TABLE_COLUMNS = (("seed", "seed", "{}"), ("steps", "steps", "{}"), ("step_avg_ms", "ms/step", "{:.2f}"),
                 ("train_time_s", "train s", "{:.1f}"), ("pre_quant_bpb", "pre-quant bpb", "{:.5f}"),
                 ("quantized_bpb", "int8 bpb", "{:.5f}"), ("val_loss", "val_loss (nats)", "{:.5f}"),
                 ("val_bpb", "val_bpb", "{:.5f}"), ("eval_mode", "eval_mode", "{}"),
                 ("artifact_bytes", "artifact bytes", "{:,}"), ("bytes_total", "bytes_total", "{:,}"),
                 ("eval_time_s", "eval s", "{:.1f}"))


def _cell(fmt: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return fmt.format(v)


def markdown_table(rows: list[dict], summary: dict | None = None) -> str:
    """The per-seed table in Markdown (plus a mean/std row when ``summary`` is given)."""
    head = "| " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |"
    sep = "|" + "|".join("---:" for _ in TABLE_COLUMNS) + "|"
    lines = [head, sep]
    for r in rows:
        lines.append("| " + " | ".join(_cell(fmt, r.get(k)) for k, _, fmt in TABLE_COLUMNS) + " |")
    if summary:
        cells = []
        for k, _, fmt in TABLE_COLUMNS:
            if k == "seed":
                cells.append(f"**mean of {summary['n_seeds']}**")
            elif k == "val_bpb":
                cells.append(f"**{summary['val_bpb']:.5f}** ± {summary['val_bpb_std']:.5f}")
            elif k == "val_loss":
                cells.append(f"**{summary['val_loss']:.5f}** ± {summary['val_loss_std']:.5f}")
            elif k == "bytes_total":
                cells.append(f"max {summary['bytes_total']:,}")
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summarize(rows: list[dict]) -> dict:
    """Mean over *all* seeds (never a subset, SPEC trap 11) of val_bpb and val_loss, their sample std (ddof 1;
    0 for one seed), and bytes_total = the max over seeds."""
    import numpy as np

    if not rows:
        raise ValueError("no seeds")
    bpb = np.array([r["val_bpb"] for r in rows], dtype=np.float64)
    nats = np.array([r["val_loss"] for r in rows], dtype=np.float64)
    ddof = 1 if len(rows) > 1 else 0
    return {"n_seeds": len(rows), "seeds": [r["seed"] for r in rows], "val_bpb": float(bpb.mean()),
            "val_bpb_std": float(bpb.std(ddof=ddof)), "val_loss": float(nats.mean()),
            "val_loss_std": float(nats.std(ddof=ddof)), "bytes_total": int(max(r["bytes_total"] for r in rows)),
            "artifact_bytes_max": int(max(r["artifact_bytes"] for r in rows)),
            "train_steps_mean": float(np.mean([r["steps"] for r in rows])),
            "step_avg_ms_mean": float(np.mean([r["step_avg_ms"] for r in rows]))}

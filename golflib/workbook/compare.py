"""``golf compare RUN_A RUN_B ...``: runs side by side (issue 18).

:func:`compare_runs` reads each run directory (``config.json``, ``result.json``, ``metrics.jsonl``) and returns a
:class:`Comparison`: the config fields that differ, every score each run has with Δbpb (bits/byte) and Δnats
(nats/token) against the first run, the bytes (code, scored artifact, total) and the timings. :func:`compare_text`
prints it (tables through ``tabulate``); :func:`plot_compare` overlays the runs' curves (train loss and pre-quant
val_bpb against step and training time) in one figure.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from golflib.runresult import RunResult
from golflib.workbook.runindex import flat_config

# configuration fields that name where things are or which run this is, not what was trained
NOT_METHOD = {"RUN_ID", "DATA_PATH", "TOKENIZER_PATH", "TRAIN_FILES", "VAL_FILES", "COUNTED_CODE_BYTES"}


@dataclass
class RunView:
    """One run as compared: ``name`` (its folder), ``path``, ``result``, flat ``config`` and ``metrics`` events."""

    name: str
    path: Path
    result: RunResult
    config: dict
    metrics: list[dict] = field(default_factory=list)


@dataclass
class Comparison:
    """``runs``; ``config_diff`` rows ``(field, [value per run])``; ``scores`` rows ``{"key", "mode", "val_bpb":
    [...], "val_loss": [...], "delta_bpb": [...], "delta_nats": [...]}`` (None where a run lacks the score; deltas
    against the first run); ``bytes`` and ``timings`` rows ``(label, [value per run])``."""

    runs: list[RunView]
    config_diff: list[tuple[str, list]]
    scores: list[dict]
    bytes: list[tuple[str, list]]
    timings: list[tuple[str, list]]


def load_view(path: str | os.PathLike) -> RunView:
    """Read one finished run; raises ``FileNotFoundError``/``RunResultError`` naming the file."""
    from golflib.workbook.resultfile import load_run_result
    from golflib.workbook.runs import load_metrics

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a run directory (no config.json)")
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    result = load_run_result(path)
    metrics = load_metrics(path) if (path / "metrics.jsonl").is_file() else []
    return RunView(path.name, path, result, flat_config(raw), metrics)


def _delta(values: list, first) -> list:
    return [None if v is None or first is None else v - first for v in values]


def compare_runs(paths: Sequence[str | os.PathLike]) -> Comparison:
    """The :class:`Comparison` of at least two run directories (the first is the reference). Raises
    ``ValueError`` for fewer than two."""
    if len(paths) < 2:
        raise ValueError(f"golf compare needs at least two runs; got {len(paths)}")
    runs = [load_view(p) for p in paths]
    names = sorted({k for r in runs for k in r.config} - NOT_METHOD)
    diff = [(k, [r.config.get(k) for r in runs]) for k in names
            if len({json.dumps(r.config.get(k), default=str) for r in runs}) > 1]
    keys = []
    for r in runs:
        keys += [k for k in r.result.scores if k not in keys]
    scores = []
    for k in keys:
        have = [r.result.scores.get(k) for r in runs]
        bpb = [None if e is None else e.val_bpb for e in have]
        nats = [None if e is None else e.val_loss for e in have]
        mode = next(e.mode for e in have if e is not None)
        scores.append({"key": k, "mode": mode, "val_bpb": bpb, "val_loss": nats, "delta_bpb": _delta(bpb, bpb[0]),
                       "delta_nats": _delta(nats, nats[0])})
    by = [
        ("code bytes", [r.result.code_bytes for r in runs]),
        ("scored artifact", [r.result.scored_artifact for r in runs]),
        ("artifact bytes", [r.result.scored.artifact_bytes for r in runs]),
        ("bytes_total", [r.result.bytes_total() for r in runs]),
        ("headroom to 16,000,000", [r.result.size_limit - r.result.bytes_total() for r in runs]),
    ]
    tm = [
        ("steps", [int(r.result.training.get("steps") or 0) for r in runs]),
        ("train time (s)", [r.result.timings.train_time_ms / 1000.0 for r in runs]),
        ("step avg (ms)", [r.result.timings.step_avg_ms for r in runs]),
        ("eval wall-clock (s)", [r.result.timings.eval_wallclock_seconds for r in runs]),
        ("tokens trained", [int(r.result.training.get("tokens_trained") or 0) for r in runs]),
    ]
    return Comparison(runs, diff, scores, by, tm)


def _num(v, fmt: str) -> str:
    if v is None:
        return "—"
    return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def compare_text(c: Comparison) -> str:
    """The comparison as text: the runs, the config diff, the scores (val_bpb per run, Δbpb and Δnats against the
    first run), the bytes and the timings."""
    from tabulate import tabulate

    names = [f"[{i}] {r.name}" for i, r in enumerate(c.runs)]
    out = ["runs (Δ against [0]):"] + [f"  {n}  ({r.path})" for n, r in zip(names, c.runs)] + [""]
    idx = [f"[{i}]" for i in range(len(c.runs))]
    if c.config_diff:
        out.append(tabulate([[k, *[_num(v, "g") for v in vals]] for k, vals in c.config_diff],
                            headers=["config (differs)", *idx], tablefmt="github"))
    else:
        out.append("config: identical (data paths and run ids aside)")
    out.append("")
    rows = []
    for s in c.scores:
        rows.append([s["key"], s["mode"], *[_num(v, ".5f") for v in s["val_bpb"]],
                     *[_num(v, "+.5f") for v in s["delta_bpb"][1:]], *[_num(v, "+.5f") for v in s["delta_nats"][1:]]])
    out.append(tabulate(rows, headers=["score", "mode", *[f"val_bpb {i}" for i in idx],
                                       *[f"Δbpb {i}" for i in idx[1:]], *[f"Δnats {i}" for i in idx[1:]]],
                        tablefmt="github", disable_numparse=True))
    out.append("")
    out.append(tabulate([[label, *[_num(v, ",") for v in vals]] for label, vals in c.bytes],
                        headers=["bytes", *idx], tablefmt="github", disable_numparse=True))
    out.append("")
    out.append(tabulate([[label, *[_num(v, ",.1f" if isinstance(v, float) else ",") for v in vals]]
                         for label, vals in c.timings], headers=["timing", *idx], tablefmt="github",
                        disable_numparse=True))
    return "\n".join(out) + "\n"


def plot_compare(c: Comparison, save_to=None, name: str = "compare"):
    """Train loss and pre-quant val_bpb of every run, overlaid, against step and training time (s); the val axis
    is zoomed so that the last half of every run's evaluations is in view. Saved as ``<name>.png`` + ``.svg`` into
    ``save_to``."""
    import matplotlib.pyplot as plt

    from golflib.workbook.plots import _save, zoom_limits

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    limits = []
    for i, r in enumerate(c.runs):
        train = [m for m in r.metrics if m.get("kind") == "train"]
        val = [m for m in r.metrics if m.get("kind") == "val"]
        label = f"[{i}] {r.name}"
        for col, key, scale in ((0, "step", 1.0), (1, "train_time_ms", 1e-3)):
            axes[0, col].plot([m[key] * scale for m in train], [m["train_loss"] for m in train], lw=1, label=label)
            axes[1, col].plot([m[key] * scale for m in val], [m["val_bpb"] for m in val], "o-", ms=3, label=label)
        if len(val) >= 2:
            limits.append(zoom_limits([m["val_bpb"] for m in val]))
    for col, xlabel in ((0, "step"), (1, "training time (s)")):
        axes[0, col].set_ylabel("train loss (nats/token)")
        axes[1, col].set_ylabel("val_bpb (pre-quant)")
        for row in (0, 1):
            axes[row, col].set_xlabel(xlabel)
            axes[row, col].grid(alpha=0.3)
        if limits:  # every run's last half of evaluations in view
            axes[1, col].set_ylim(min(lo for lo, _ in limits), max(hi for _, hi in limits))
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("golf compare: " + " vs ".join(r.name for r in c.runs), fontsize=10)
    fig.tight_layout()
    return _save(fig, name, save_to)

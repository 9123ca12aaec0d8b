"""Figures of a record: every seed's curves together, the per-seed scores against a baseline, the byte budget."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt

from golflib.record.results import SeedRun
from golflib.workbook.plots import _save


def plot_seed_curves(runs: Sequence[SeedRun], rows: Sequence[dict] | None = None, save_to=None):
    """Train loss (nats/token) and val_bpb against step for every seed, from each run's ``metrics.jsonl``; the
    scored val_bpb of each seed (``rows`` of the per-seed table) is marked at its last step."""
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4))
    scored = {r["seed"]: r for r in rows or []}
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        train = [m for m in run.metrics if m.get("kind") == "train"]
        val = [m for m in run.metrics if m.get("kind") == "val"]
        a0.plot([m["step"] for m in train], [m["train_loss"] for m in train], lw=1, color=color,
                label=f"seed {run.seed}")
        a1.plot([m["step"] for m in val], [m["val_bpb"] for m in val], "o-", ms=3, color=color,
                label=f"seed {run.seed} (pre-quant)")
        if run.seed in scored:
            a1.plot([int(run.result.training["steps"])], [scored[run.seed]["val_bpb"]], "*", ms=11, color=color,
                    label=f"seed {run.seed} scored ({scored[run.seed]['eval_mode']})")
    a0.set_xlabel("step")
    a0.set_ylabel("train loss (nats/token)")
    a0.set_title("train loss, all seeds")
    a1.set_xlabel("step")
    a1.set_ylabel("val_bpb")
    a1.set_title("val_bpb, all seeds")
    for ax in (a0, a1):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, "seed_curves", save_to)


def plot_seed_scores(rows: Sequence[dict], summary: dict, baseline_bpb: Sequence[float] = (),
                     baseline_label: str = "base record", save_to=None):
    """Each seed's scored val_bpb, the mean ± std over all seeds with their count n (one seed: no ± shown), and the
    baseline's seeds or threshold."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = list(range(len(rows)))
    ax.plot(xs, [r["val_bpb"] for r in rows], "o", color="C0", label="seeds (all run)")
    for x, r in zip(xs, rows):
        ax.annotate(f"{r['val_bpb']:.5f}", (x, r["val_bpb"]), textcoords="offset points", xytext=(6, 0),
                    fontsize=8, va="center")
    m, s = summary["val_bpb"], summary["val_bpb_std"]
    n = len(rows)
    if n > 1:
        ax.axhline(m, color="C0", lw=1.5, label=f"mean {m:.5f} ± {s:.5f} (std over n={n} seeds)")
        ax.axhspan(m - s, m + s, color="C0", alpha=0.12)
    else:  # one seed has no spread: say so instead of printing ± 0
        ax.axhline(m, color="C0", lw=1.5, label=f"{m:.5f} (n=1 seed: no spread measured)")
    for i, b in enumerate(baseline_bpb):
        ax.axhline(b, color="C3", ls="--", lw=1, label=f"{baseline_label}" if i == 0 else None)
    ax.set_xticks(xs)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_xticklabels([f"seed {r['seed']}" for r in rows])
    ax.set_ylabel("val_bpb")
    ax.set_title(f"scored val_bpb per seed ({rows[0]['eval_mode'] if rows else ''})")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, "seed_scores", save_to)

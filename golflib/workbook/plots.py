"""Figures for the notebooks and PR write-ups (matplotlib; Agg when headless).

Each function returns the ``Figure`` and, when ``save_to`` is given, writes a PNG (200 dpi) and an SVG into every
folder listed there (e.g. ``figures/10_train/`` and the run directory), returning the paths in ``fig.saved_paths``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib.pyplot as plt  # matplotlib falls back to Agg without a display; Jupyter sets its inline backend

SIZE_LIMIT = 16_000_000


PNG_DPI = 200  # PR-ready raster; the SVG next to it scales without loss


def _save(fig, name: str, save_to: Iterable[str | os.PathLike] | None):
    """Write ``<name>.png`` (``PNG_DPI``) and ``<name>.svg`` into every folder of ``save_to``; the paths go to
    ``fig.saved_paths`` (PNG first)."""
    fig.saved_paths = []
    for folder in save_to or []:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for ext, kw in (("png", {"dpi": PNG_DPI}), ("svg", {})):
            path = folder / f"{name}.{ext}"
            fig.savefig(path, bbox_inches="tight", **kw)
            fig.saved_paths.append(str(path))
    return fig


def plot_training_curves(metrics: Sequence[dict], title: str = "", save_to=None):
    """Train loss and val_bpb against step and training wall-clock (seconds), from ``metrics.jsonl`` events."""
    train = [m for m in metrics if m.get("kind") == "train"]
    val = [m for m in metrics if m.get("kind") == "val"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for col, key, scale, label in ((0, "step", 1.0, "step"), (1, "train_time_ms", 1e-3, "training time (s)")):
        ax = axes[0, col]
        ax.plot([m[key] * scale for m in train], [m["train_loss"] for m in train], lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel("train loss (nats/token)")
        ax.grid(alpha=0.3)
        ax = axes[1, col]
        ax.plot([m[key] * scale for m in val], [m["val_bpb"] for m in val], "o-", ms=3)
        ax.set_xlabel(label)
        ax.set_ylabel("val_bpb (pre-quant)")
        ax.grid(alpha=0.3)
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    return _save(fig, "training_curves", save_to)


def plot_size_budget(code_bytes: int, model_bytes: int, limit: int = SIZE_LIMIT, label: str = "", save_to=None):
    """Stacked bar of code + compressed model bytes against the 16,000,000-byte (decimal) limit."""
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.barh([0], [model_bytes], color="#4c72b0", label=f"model {model_bytes:,} B")
    ax.barh([0], [code_bytes], left=[model_bytes], color="#dd8452", label=f"code {code_bytes:,} B")
    ax.axvline(limit, color="red", ls="--", label=f"limit {limit:,} B")
    total = code_bytes + model_bytes
    ax.set_xlim(0, max(limit, total) * 1.05)
    ax.set_yticks([])
    ax.set_xlabel("bytes (decimal)")
    ax.set_title(f"{label} total {total:,} B = {100 * total / limit:.1f}% of the budget")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, "size_budget", save_to)


def plot_scores(scores: dict[str, float], title: str = "val_bpb by evaluation", save_to=None):
    """Horizontal bars of named val_bpb values (lower is better), annotated with 4 decimals."""
    names = list(scores)
    vals = [scores[n] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.2))
    bars = ax.barh(names, vals, color="#55a868")
    for b, v in zip(bars, vals):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {v:.4f}", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("val_bpb (bits per byte)")
    ax.set_xlim(0, max(vals) * 1.18)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, "scores", save_to)


def plot_doc_lengths(train_lengths: Sequence[int], val_lengths: Sequence[int], save_to=None):
    """Histogram of document lengths in tokens (BOS included) for train and val."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    top = max(max(train_lengths, default=1), max(val_lengths, default=1))
    bins = min(60, max(10, top // 20))
    ax.hist(train_lengths, bins=bins, range=(0, top), alpha=0.6, density=True, label=f"train ({len(train_lengths)})")
    ax.hist(val_lengths, bins=bins, range=(0, top), alpha=0.6, density=True, label=f"val ({len(val_lengths)})")
    ax.set_xlabel("document length (tokens, incl. BOS)")
    ax.set_ylabel("density")
    ax.legend()
    ax.set_title("token length per document")
    fig.tight_layout()
    return _save(fig, "doc_token_lengths", save_to)


def plot_ablation(summary: Sequence[dict], metric: str = "val_bpb", title: str = "ablation", save_to=None):
    """Bars of each variant's mean ``metric`` with ±1 std error bars; the base's mean as a dashed line."""
    names = [s["variant"] for s in summary]
    means = [s["mean"] for s in summary]
    stds = [s["std"] for s in summary]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names)), 4))
    colors = ["#8c8c8c" if n == "base" else "#4c72b0" for n in names]
    ax.bar(range(len(names)), means, yerr=stds, color=colors, capsize=4)
    base = next(s["mean"] for s in summary if s["variant"] == "base")
    ax.axhline(base, color="k", ls="--", lw=1)
    for i, s in enumerate(summary):
        ax.text(i, s["mean"], f"{s['delta_vs_base']:+.4f}", ha="center", va="bottom", fontsize=8)
    lo, hi = min(m - s for m, s in zip(means, stds)), max(m + s for m, s in zip(means, stds))
    pad = max(hi - lo, 1e-3) * 0.5
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, "ablation", save_to)

"""Figures for the notebooks and PR write-ups (matplotlib; Agg when headless).

Each function returns the ``Figure`` and, when ``save_to`` is given, writes a PNG (200 dpi) and an SVG into every
folder listed there (e.g. ``figures/10_train/`` and the run directory), returning the paths in ``fig.saved_paths``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib.pyplot as plt  # matplotlib falls back to Agg without a display; Jupyter sets its inline backend
from matplotlib.ticker import FuncFormatter

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


def zoom_limits(values: Sequence[float], tail: float = 0.5) -> tuple[float, float]:
    """y-limits covering the last ``tail`` fraction of ``values`` (at least 2 points) with 15% padding, so the end of
    training — where runs differ — fills the axis."""
    last = list(values)[-max(2, int(len(values) * tail)):]
    lo, hi = min(last), max(last)
    pad = max(hi - lo, 1e-3) * 0.15
    return lo - pad, hi + pad


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
        ys = [m["val_bpb"] for m in val]
        ax.plot([m[key] * scale for m in val], ys, "o-", ms=3)
        ax.set_xlabel(label)
        ax.set_ylabel("val_bpb (pre-quant)")
        ax.grid(alpha=0.3)
        if len(ys) >= 3:  # zoom on the last part of training: the first evaluations would set the scale
            lo, hi = zoom_limits(ys)
            ax.set_ylim(lo, hi)
            if ys[0] > hi:
                ax.annotate(f"step 0: {ys[0]:.3f} (off scale)", xy=(0.02, 0.95), xycoords="axes fraction",
                            fontsize=8, va="top")
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
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e6:g} MB"))
    ax.set_xlabel("bytes (decimal MB = 1,000,000 B)")
    ax.set_title(f"{label} total {total:,} B = {100 * total / limit:.1f}% of the budget")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, "size_budget", save_to)


def plot_scores(scores: dict[str, float], title: str = "val_bpb by evaluation", save_to=None, *,
                reference: str | None = None, scored: str | None = None):
    """Δ val_bpb of every named score against ``reference`` (default: the first entry that is not a
    ``"(reference)"`` baseline such as the unigram), as horizontal bars around 0 annotated with the value and the Δ
    (4 decimals), so a 0.005-bpb difference is visible. Entries labelled ``"(reference)"`` are far off the scale
    and named in the subtitle instead; ``scored`` (the metric the run submits) is drawn in a darker colour with its
    label in bold. Lower is better."""
    far = {n: v for n, v in scores.items() if "(reference)" in n}
    names = [n for n in scores if n not in far]
    if not names:
        raise ValueError("plot_scores: no score to plot besides references")
    reference = reference or names[0]
    if reference not in scores:
        raise ValueError(f"plot_scores: reference {reference!r} is not one of {list(scores)}")
    base = scores[reference]
    deltas = [scores[n] - base for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.6))
    colors = ["#2a6f3e" if n == scored else "#8fbf9f" for n in names]
    bars = ax.barh(names, deltas, color=colors)
    span = max(max(abs(d) for d in deltas), 0.002)
    for b, n, d in zip(bars, names, deltas):
        ax.text(d + (0.02 * span if d >= 0 else -0.02 * span), b.get_y() + b.get_height() / 2,
                f"{scores[n]:.4f} ({d:+.4f})", va="center", ha="left" if d >= 0 else "right", fontsize=8,
                fontweight="bold" if n == scored else "normal")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlim(min(min(deltas), 0) - 0.45 * span, max(max(deltas), 0) + 0.45 * span)
    ax.invert_yaxis()
    for label in ax.get_yticklabels():
        if label.get_text() == scored:
            label.set_fontweight("bold")
    ax.set_xlabel(f"Δ val_bpb vs {reference} = {base:.4f} (bits per byte; lower is better)")
    sub = "; ".join(f"{n} {v:.4f}" for n, v in far.items())
    ax.set_title(title + (f"\n{sub}" if sub else ""), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
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
    """Bars of each variant's mean ``metric`` with ±1 std error bars; the base's mean as a dashed line. Variants
    without a finished seed are left out; a label says how many seeds of a variant failed."""
    failed = {s["variant"]: s.get("failed", 0) for s in summary}
    summary = [s for s in summary if s["mean"] is not None]
    names = [s["variant"] + (f" ({failed[s['variant']]} failed)" if failed[s["variant"]] else "") for s in summary]
    means = [s["mean"] for s in summary]
    stds = [s["std"] for s in summary]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names)), 4))
    colors = ["#8c8c8c" if s["variant"] == "base" else "#4c72b0" for s in summary]
    ax.bar(range(len(names)), means, yerr=stds, color=colors, capsize=4)
    base = next((s["mean"] for s in summary if s["variant"] == "base"), None)
    if base is not None:
        ax.axhline(base, color="k", ls="--", lw=1)
    for i, s in enumerate(summary):
        if s["delta_vs_base"] is not None:
            ax.text(i, s["mean"], f"{s['delta_vs_base']:+.4f}", ha="center", va="bottom", fontsize=8)
    if means:
        lo, hi = min(m - s for m, s in zip(means, stds)), max(m + s for m, s in zip(means, stds))
        pad = max(hi - lo, 1e-3) * 0.5
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, "ablation", save_to)

"""Figures of ``notebooks/20_ttt_sweep.ipynb`` (matplotlib; rows from :func:`golflib.workbook.ttt_sweep.run_sweep`).

Each function returns the ``Figure``; with ``save_to`` it writes ``<name>.png`` into every listed folder (paths in
``fig.saved_paths``), like :mod:`golflib.workbook.plots`.
"""

from __future__ import annotations

import numpy as np
import matplotlib.pyplot as plt

from golflib.workbook.plots import _save

KIND_COLORS = {"chunked": "#4c72b0", "lora": "#dd8452", "phased": "#55a868", "none": "#333333"}


def _chunked(rows):
    return [r for r in rows if r["point"]["kind"] == "chunked" and r.get("val_bpb") is not None]


def _label(point: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items())


def plot_lr_epochs_heatmaps(rows: list[dict], save_to=None):
    """val_bpb heatmap over (lr, epochs) for chunked TTT, one panel per freeze value; where several optimizers or
    chunk sizes were swept each cell shows the best of them. The no-TTT reference is in the title."""
    pts = _chunked(rows)
    ref = next((r["val_bpb"] for r in rows if r["point"]["kind"] == "none"), None)
    if not pts:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no chunked TTT points in this sweep", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, "ttt_heatmap_lr_epochs", save_to)
    freezes = sorted({r["point"].get("freeze", 0) for r in pts}) or [0]
    lrs = sorted({r["point"]["lr"] for r in pts})
    eps = sorted({r["point"].get("epochs", 0) for r in pts})
    fig, axes = plt.subplots(1, len(freezes), figsize=(4.2 * len(freezes) + 1, 3.6), squeeze=False)
    vals = [r["val_bpb"] for r in pts] or [0.0]
    vmin, vmax = min(vals), max(vals)
    if ref is not None and vmin < ref < vmax:  # colour contrast where TTT helps; blow-ups saturate
        vmax = ref + (ref - vmin)
    for ax, f in zip(axes[0], freezes):
        grid = np.full((len(eps), len(lrs)), np.nan)
        for r in pts:
            if r["point"].get("freeze", 0) == f:
                i, j = eps.index(r["point"].get("epochs", 0)), lrs.index(r["point"]["lr"])
                grid[i, j] = np.nanmin([grid[i, j], r["val_bpb"]])
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis_r", vmin=vmin, vmax=vmax)
        for i in range(len(eps)):
            for j in range(len(lrs)):
                if np.isfinite(grid[i, j]):
                    dark = (grid[i, j] - vmin) / max(vmax - vmin, 1e-12) > 0.5
                    ax.text(j, i, f"{grid[i, j]:.4f}", ha="center", va="center", fontsize=7,
                            color="w" if dark else "k")
        ax.set_xticks(range(len(lrs)), [f"{v:g}" for v in lrs], rotation=45)
        ax.set_yticks(range(len(eps)), [str(e) for e in eps])
        ax.set_xlabel("TTT_LR")
        ax.set_ylabel("TTT_EPOCHS")
        ax.set_title(f"freeze={f}")
    fig.colorbar(im, ax=axes[0].tolist(), label="val_bpb")
    fig.suptitle("chunked score-first TTT: val_bpb" + (f" (no TTT: {ref:.4f})" if ref is not None else ""))
    return _save(fig, "ttt_heatmap_lr_epochs", save_to)


def plot_chunk_curves(rows: list[dict], top: int = 3, save_to=None):
    """Running val_bpb after each chunk (chunked) or round (doc kinds) for the ``top`` best points and the no-TTT
    reference (top), and the running Δbpb of the chunked points against the reference interpolated at the same
    number of scored targets (bottom)."""
    ok = [r for r in rows if r.get("val_bpb") is not None and r.get("curve")]
    ref = next((r for r in ok if r["point"]["kind"] == "none"), None)
    best = sorted([r for r in ok if r["point"]["kind"] != "none"], key=lambda r: r["val_bpb"])[:top]
    fig, (ax, dx) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, height_ratios=(3, 2))

    def xy(r):
        c = r["curve"]
        return (np.array([e.get("scored_tokens", e.get("docs_done")) for e in c], dtype=float),
                np.array([e["running_val_bpb"] for e in c]))

    if ref is not None:
        rx, ry = xy(ref)
        ax.plot(rx, ry, "k--", lw=1.3, label=f"no TTT → {ref['val_bpb']:.4f}")
        dx.axhline(0.0, color="k", ls="--", lw=1)
    for r in best:
        x, y = xy(r)
        label = _label(r["point"]) + f" → {r['val_bpb']:.4f}"
        ax.plot(x, y, lw=1.3, label=label)
        if ref is not None and r["point"]["kind"] == "chunked":
            dx.plot(x, y - np.interp(x, rx, ry), lw=1.3, label=label)
    ax.set_ylabel("running val_bpb")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"per-chunk running val_bpb, best {len(best)} points")
    dx.set_xlabel("scored targets (chunked) / documents done (doc kinds)")
    dx.set_ylabel("running Δbpb vs no TTT")
    dx.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, "ttt_chunk_curves", save_to)


def plot_delta_vs_seconds(rows: list[dict], budget_seconds: float | None = None, save_to=None):
    """Δbpb versus no-TTT against eval seconds on this machine, one colour per kind; ``budget_seconds`` draws the
    eval budget (600 s on 8×H100; CPU seconds are not comparable)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    deltas = [r["delta_bpb"] for r in rows if r.get("delta_bpb")]
    for kind, color in KIND_COLORS.items():
        pts = [r for r in rows if r["point"]["kind"] == kind and r.get("delta_bpb") is not None]
        if pts:
            ax.scatter([r["seconds"] for r in pts], [r["delta_bpb"] for r in pts], c=color, s=22, label=kind,
                       marker="o" if kind != "none" else "x")
    if deltas:  # gains are ~1e-3 while a diverged LR costs ~1e-1: linear near 0, logarithmic beyond
        ax.set_yscale("symlog", linthresh=max(1e-4, min(abs(d) for d in deltas)))
    if budget_seconds:
        ax.axvline(budget_seconds, color="red", ls="--", label=f"budget {budget_seconds:g} s")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xlabel("eval seconds (this machine)")
    ax.set_ylabel("Δ val_bpb vs no TTT (symlog; lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("TTT gain against evaluation cost")
    fig.tight_layout()
    return _save(fig, "ttt_delta_vs_seconds", save_to)


def plot_lr_sweep(rows: list[dict], epochs: int | None = None, save_to=None):
    """val_bpb against TTT_LR (log scale) for chunked SGD TTT, one line per freeze value at ``epochs`` (default:
    the largest swept) — the shape of seed #757's LR sweep, measured with legal score-first TTT."""
    pts = _chunked(rows)
    ep = max((r["point"].get("epochs", 0) for r in pts), default=0) if epochs is None else epochs
    ref = next((r["val_bpb"] for r in rows if r["point"]["kind"] == "none"), None)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    best = np.inf
    for f in sorted({r["point"].get("freeze", 0) for r in pts}):
        sel = {}
        for r in pts:
            if r["point"].get("freeze", 0) == f and r["point"].get("epochs") == ep:
                lr = r["point"]["lr"]
                sel[lr] = min(sel.get(lr, np.inf), r["val_bpb"])
        xs = sorted(sel)
        best = min([best] + [sel[x] for x in xs])
        for ax in axes:
            ax.plot(xs, [sel[x] for x in xs], "o-", label=f"freeze={f}")
    for ax, title in zip(axes, ("full range", "zoom around the no-TTT score")):
        if ref is not None:
            ax.axhline(ref, color="k", ls="--", lw=1, label=f"no TTT {ref:.4f}")
        ax.set_xscale("log")
        ax.set_xlabel("TTT_LR (SGD, momentum 0.9)")
        ax.set_ylabel("val_bpb")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(title, fontsize=9)
    if ref is not None and np.isfinite(best) and best < ref:
        axes[1].set_ylim(best - 0.5 * (ref - best), ref + 1.5 * (ref - best))
    fig.suptitle(f"legal chunked TTT LR sweep, {ep} epoch(s) per chunk (#757 shape)")
    fig.tight_layout()
    return _save(fig, "ttt_lr_sweep", save_to)

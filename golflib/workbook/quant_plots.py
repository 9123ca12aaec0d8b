"""Figures of ``notebooks/30_quant_analysis.ipynb`` (matplotlib; each returns the Figure and, with ``save_to``,
writes ``<name>.png`` into every listed folder like :mod:`golflib.workbook.plots`)."""

from __future__ import annotations

import re
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from golflib.workbook.plots import SIZE_LIMIT, _save


def _role(name: str) -> str:
    return re.sub(r"^blocks\.\d+\.", "", name).removesuffix(".weight")


def plot_error_heatmap(rows: Sequence[dict], title: str = "", save_to=None):
    """Relative MSE ``‖W−Ŵ‖²/‖W‖²`` (log colour scale) of every quantized tensor: layers × tensor roles, plus a row
    for the non-block tensors (embedding, head)."""
    q = [r for r in rows if r["kind"] != "passthrough"]
    roles = sorted({_role(r["name"]) for r in q if r["layer"] is not None})
    layers = sorted({r["layer"] for r in q if r["layer"] is not None})
    others = [r for r in q if r["layer"] is None]
    grid = np.full((len(layers) + (1 if others else 0), max(len(roles), len(others), 1)), np.nan)
    for r in q:
        if r["layer"] is not None:
            grid[layers.index(r["layer"]), roles.index(_role(r["name"]))] = r["rel_mse"]
    for j, r in enumerate(others):
        grid[-1, j] = r["rel_mse"]
    fig, ax = plt.subplots(figsize=(1.4 * grid.shape[1] + 3, 0.5 * grid.shape[0] + 2))
    im = ax.imshow(np.log10(np.maximum(grid, 1e-12)), aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(roles)), roles, rotation=30, ha="right")
    ax.set_yticks(range(grid.shape[0]), [f"layer {i}" for i in layers] +
                  (["/".join(_role(r["name"]) for r in others)] if others else []))
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1e}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, label="log10 relative MSE")
    ax.set_title(title or "quantization error per tensor")
    fig.tight_layout()
    return _save(fig, "quant_error_heatmap", save_to)


def plot_bits_sweep(rows: Sequence[dict], baseline_bpb: float | None = None, save_to=None):
    """Post-quant val_bpb against the bit width of each class (one line per class)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for cls in sorted({r["class"] for r in rows}):
        pts = sorted((r["bits"], r["val_bpb"]) for r in rows if r["class"] == cls)
        ax.plot(*zip(*pts), "o-", label=cls)
    if baseline_bpb is not None:
        ax.axhline(baseline_bpb, color="k", ls="--", lw=1, label="pre-quant")
    ax.set_xlabel("bits of the class (others at the run's settings)")
    ax.set_ylabel("val_bpb after quantization")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, "quant_bits_sweep", save_to)


def plot_sdclip_pareto(rows: Sequence[dict], save_to=None):
    """Artifact bytes vs val_bpb for the SDClip k sweep, Pareto points joined."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.scatter([r["artifact_bytes"] for r in rows], [r["val_bpb"] for r in rows], c="C0")
    for r in rows:
        ax.annotate(f"k={r['k']:g}", (r["artifact_bytes"], r["val_bpb"]), fontsize=8, xytext=(3, 3),
                    textcoords="offset points")
    front = sorted((r["artifact_bytes"], r["val_bpb"]) for r in rows if r["pareto"])
    if front:
        ax.plot(*zip(*front), "C1-", lw=1, label="Pareto front")
        ax.legend()
    ax.set_xlabel("artifact bytes (decimal)")
    ax.set_ylabel("val_bpb after quantization")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, "quant_sdclip_pareto", save_to)


def plot_gptq_vs_rtn(rows: Sequence[dict], save_to=None):
    """val_bpb of GPTQ and round-to-nearest at each matrix bit width (grouped bars)."""
    bits = sorted({r["bits"] for r in rows})
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, method in enumerate(("rtn", "gptq")):
        vals = [next(r["val_bpb"] for r in rows if r["bits"] == b and r["method"] == method) for b in bits]
        ax.bar(np.arange(len(bits)) + (i - 0.5) * 0.38, vals, width=0.38, label=method)
    ax.set_xticks(range(len(bits)), [f"int{b}" for b in bits])
    lo = min(r["val_bpb"] for r in rows)
    ax.set_ylim(lo - 0.05 * abs(lo), None)
    ax.set_ylabel("val_bpb after quantization")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, "quant_gptq_vs_rtn", save_to)


def plot_codec_comparison(report: dict, save_to=None):
    """Bytes of the same codes per codec (one code per byte / bit-packed / entropy coder) for each class, and each
    codec's ratio to the class's order-0 bound (annotated)."""
    classes = [c for c in report if c != "all" and report[c].get("symbols")]
    codecs = [("zlib", "one_per_byte"), ("zstd", "one_per_byte"), ("lzma", "one_per_byte"), ("brotli", "one_per_byte"),
              ("brotli", "bitpacked"), ("entropy", None)]
    fig, ax = plt.subplots(figsize=(2.2 * len(classes) + 4, 4.5))
    width = 0.8 / len(codecs)
    for i, (codec, layout) in enumerate(codecs):
        vals = [report[c]["entropy"] if layout is None else report[c][layout][codec] for c in classes]
        label = "entropy (context range coder)" if layout is None else f"{codec} ({layout.replace('_', ' ')})"
        bars = ax.bar(np.arange(len(classes)) + (i - len(codecs) / 2 + 0.5) * width, vals, width=width, label=label)
        for b, c, v in zip(bars, classes, vals):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v / report[c]['order0']['total']:.3f}", ha="center",
                    va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_ylabel("bytes (labels: ratio to the order-0 bound)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, "quant_codec_comparison", save_to)


def plot_budget_stack(budgets: dict[str, dict], limit: int = SIZE_LIMIT, save_to=None):
    """Stacked bars of code + header + per-class bytes of each artifact (``{label: budget_report dict}``): against
    the limit (left) and zoomed to the artifacts (right)."""
    labels = list(budgets)
    classes = sorted({c for b in budgets.values() for c in b["classes"]})
    fig, axes = plt.subplots(1, 2, figsize=(4.5 * len(labels) + 4, 4.5))
    for ax, with_limit in zip(axes, (True, False)):
        bottom = np.zeros(len(labels))
        for part in ["code", "header", *classes]:
            vals = np.array([b["code_bytes"] if part == "code" else b["header_bytes"] if part == "header"
                             else b["classes"].get(part, {}).get("bytes", 0) for b in budgets.values()], float)
            ax.bar(labels, vals, bottom=bottom, label=part)
            bottom += vals
        for i, total in enumerate(bottom):
            ax.text(i, total, f"{int(total):,}", ha="center", va="bottom", fontsize=8)
        if with_limit:
            ax.axhline(limit, color="r", ls="--", label=f"limit {limit:,} B")
            ax.set_title("against the limit")
        else:
            ax.set_title("zoomed")
        ax.set_ylabel("bytes (decimal)")
    axes[0].legend(fontsize=7, loc="center right")
    fig.tight_layout()
    return _save(fig, "quant_budget", save_to)

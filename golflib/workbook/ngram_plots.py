"""Figures of ``notebooks/40_ngram.ipynb`` (rows from :mod:`golflib.workbook.ngram_lab`). Each function returns the
``Figure``; with ``save_to`` it writes ``<name>.png`` into every listed folder (see :mod:`golflib.workbook.plots`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from golflib.workbook.plots import _save


def plot_order_schedule(rows: list[dict], save_to=None):
    """val_bpb against the highest n-gram order, one line per (protocol, α schedule, tilt β); the model alone of
    each protocol as a dashed line."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for pi, protocol in enumerate(protocols):
        pr = [r for r in rows if r["protocol"] == protocol]
        base = next(r for r in pr if r["schedule"] == "model")
        ax.axhline(base["val_bpb"], color="grey", ls=styles[pi % 4], lw=1,
                   label=f"{protocol}: model alone {base['val_bpb']:.4f}")
        keys = list(dict.fromkeys((r["schedule"], r["tilt_beta"]) for r in pr if r["schedule"] != "model"))
        for ki, (sched, beta) in enumerate(keys):
            pts = sorted((r["max_order"], r["val_bpb"]) for r in pr if (r["schedule"], r["tilt_beta"]) == (sched, beta))
            x, y = zip(*pts)
            ax.plot(x, y, marker="o", ls=styles[pi % 4], color=colors[ki % len(colors)],
                    label=f"{protocol}: {sched}" + (f", tilt β={beta:g}" if beta else ""))
    ax.set_xlabel("highest n-gram order (orders 2..n, exact counts)")
    ax.set_ylabel("val_bpb")
    ax.set_title("n-gram mixing: val_bpb vs order and α schedule")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, "ngram_order_schedule", save_to)


def plot_bucket_gains(rows: list[dict], save_to=None):
    """Left: each bucket's contribution to the total Δbpb (they sum to it). Right: bpb of the model and of the
    mixture inside each bucket, with the bucket's share of the bytes."""
    per = [r for r in rows if r["hit_order"] >= 0 and not r["bucket"].startswith("repeated")]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [r["bucket"] for r in per]
    x = np.arange(len(per))
    a.bar(x, [r["delta_bpb_contribution"] for r in per],
          color=["tab:green" if r["delta_bpb_contribution"] < 0 else "tab:red" for r in per])
    a.axhline(0, color="black", lw=0.8)
    a.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    a.set_ylabel("Δbpb contribution (mix − model)")
    a.set_title("gain by highest order with a context hit", fontsize=10)
    w = 0.4
    b.bar(x - w / 2, [r["bpb_model"] for r in per], w, label="model")
    b.bar(x + w / 2, [r["bpb_mix"] for r in per], w, label="mixture")
    for i, r in enumerate(per):
        b.text(i, max(r["bpb_model"], r["bpb_mix"]), f"{100 * r['share_bytes']:.1f}%", ha="center", va="bottom",
               fontsize=7)
    b.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    b.set_ylabel("bpb inside the bucket (label: share of bytes)")
    b.set_title("model vs mixture inside each bucket", fontsize=10)
    b.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, "ngram_bucket_gains", save_to)


def plot_implied_mass(im: dict, save_to=None):
    """Left: histogram of Σ_v p(v) of the #940 hashed blend at each bucket count, and golflib's (all 1.0).
    Right: the val_bpb each one reports, next to the model alone."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    allm = np.concatenate([r["masses"] for r in im["940"]] + [im["golflib"]["masses"], np.ones(1)])
    bins = np.logspace(np.log10(max(allm.min(), 1e-3) * 0.9), np.log10(allm.max() * 1.1 + 1e-9), 50)
    for r in im["940"]:
        a.hist(r["masses"], bins=bins, alpha=0.6,
               label=f"#940 blend, {r['buckets']:,} buckets (load {r['load_factor']:.2g})")
    a.hist(im["golflib"]["masses"], bins=bins, alpha=0.9, color="black", label="golflib mixer (normalised)")
    a.axvline(1.0, color="black", ls="--", lw=0.8)
    a.set_xscale("log")
    a.set_xlabel("Σ_v p(v) over the whole vocabulary")
    a.set_ylabel("sampled positions")
    a.set_title("implied mass of the scored 'distribution'")
    a.legend(fontsize=7)
    names = [f"#940\n{r['buckets']:,} b." for r in im["940"]] + ["golflib"]
    vals = [r["val_bpb"] for r in im["940"]] + [im["golflib"]["val_bpb"]]
    b.bar(range(len(vals)), vals, color=["tab:red"] * len(im["940"]) + ["tab:green"])
    b.axhline(im["model_bpb"], color="grey", ls="--", label=f"model alone {im['model_bpb']:.4f}")
    b.set_xticks(range(len(vals)), names, fontsize=8)
    b.set_ylabel("reported val_bpb")
    b.set_title("what each scorer reports (#940: illegal, C1/C2)")
    b.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, "ngram_implied_mass", save_to)


def plot_throughput(rows: list[dict], save_to=None):
    """Tokens/s: the mixer alone at each vocabulary size, and end to end per protocol (model + mixer)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r["label"] for r in rows]
    ax.barh(range(len(rows)), [r["tokens_per_second"] for r in rows], color="tab:blue")
    for i, r in enumerate(rows):
        ax.text(r["tokens_per_second"], i, f" {r['tokens_per_second']:,.0f}", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.set_xlabel("scored tokens per second (CPU)")
    ax.set_title("n-gram mixer throughput")
    fig.tight_layout()
    return _save(fig, "ngram_throughput", save_to)

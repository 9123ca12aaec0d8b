"""``golf bench ngram``: throughput of the n-gram mixer and what it is worth on a trained artifact.

Always: scored tokens/s of :class:`golflib.eval.ngram.NgramMixer` alone at vocabulary 1024 and 8192 (synthetic
stream, random logits, default settings; once with the default block updates every 64 positions and once with one
update per 4,096-position batch). With ``--run RUN_DIR`` (e.g. a demo-style cpu-tiny run): val_bpb of the artifact
with and without the mixer (the run's ``NGRAM_*`` settings) for sliding-window eval and for each TTT kind in
``kinds`` (the run's TTT settings), i.e. Δbpb with and without TTT; plus the #940 hashed blend replayed on the same
sliding-window logits at the challenge's load factor (the bpb it would report and its implied mass).
"""

from __future__ import annotations

from typing import Any

from golflib.workbook import ngram_lab
from golflib.workbook.bench import register


@register("ngram")
def bench_ngram(run_dir: str | None = None, kinds: tuple[str, ...] = ("chunked",), val_max_tokens: int = 0,
                n_tokens: int = 16384, vocab_sizes: tuple[int, ...] = (1024, 8192)) -> dict[str, Any]:
    """See the module docstring; ``val_max_tokens`` > 0 evaluates a slice (not a val_bpb)."""
    out: dict[str, Any] = {"mixer": []}
    for v in vocab_sizes:
        for every in (64, 0):
            r = ngram_lab.mixer_throughput(v, n_tokens, update_every=every)
            out["mixer"].append({**r, "update_every": every})
    if not run_dir:
        out["run"] = None
        return out
    source = ngram_lab.load_source(run_dir, val_max_tokens)
    ncfg = source.cfg.ngram
    settings = dict(orders=ncfg.ngram_orders, schedule=ncfg.ngram_alpha_schedule, alpha=ncfg.ngram_alpha,
                    tilt_beta=ncfg.ngram_tilt_beta, tilt_tau=ncfg.ngram_tilt_tau, update_every=ncfg.ngram_update_every)
    run: dict[str, Any] = {"run_dir": str(run_dir), "targets": source.tokens.numel() - 1,
                           "slice": bool(val_max_tokens), "settings": settings, "protocols": {}}
    sliding = None
    for protocol in ("sliding", *kinds):
        rec = ngram_lab.record(source, protocol)
        sliding = rec if protocol == "sliding" else sliding
        base = ngram_lab.replay(rec, source)
        mixed = ngram_lab.replay(rec, source, ngram_lab.make_mixer(source, **settings))
        run["protocols"][protocol] = {
            "val_bpb_model": base["val_bpb"], "val_bpb_mixed": mixed["val_bpb"],
            "delta_bpb": mixed["val_bpb"] - base["val_bpb"], "legal": mixed["legal"],
            "model_seconds": rec.seconds, "mixer_seconds": mixed["ngram"]["seconds"],
            "mixer_tokens_per_second": mixed["ngram"]["tokens_per_second"],
            "end_to_end_tokens_per_second": rec.n_scored / (rec.seconds + mixed["ngram"]["seconds"]),
            "mean_alpha": mixed["ngram"]["mean_alpha"], "hit_order_counts": mixed["ngram"]["hit_order_counts"]}
    im = ngram_lab.implied_mass_rows(sliding, source, [ngram_lab.challenge_buckets(run["targets"])], mass_rows=2,
                                     golf_settings=settings)
    r = im["940"][0]
    run["hashed_940"] = {k: r[k] for k in ("buckets", "load_factor", "val_bpb", "c2_violations", "mass_mean",
                                           "mass_median", "mass_max")}
    run["golflib_mass"] = {k: im["golflib"][k] for k in ("mass_min", "mass_max", "c2_violations")}
    out["run"] = run
    return out

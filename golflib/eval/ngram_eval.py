"""Running the n-gram mixer (:mod:`golflib.eval.ngram`) inside golflib's scoring protocols, and its training
integration.

Protocols (``NGRAM_PROTOCOLS``): ``sliding`` — the sliding-window eval of :mod:`golflib.eval.sliding` (a fixed
model); ``chunked`` / ``lora`` / ``phased`` — the score-first TTT kinds of :mod:`golflib.eval.ttt`, each on a fresh
copy of the model, with the mixer applied to the *adapted* model's logits of every scored batch. The protocols' own
loops do the work: the mixer is the hook they call right after recording a batch as scored, so the ledger of each
run proves that the cache, like the adapted weights, only ever learned from scored targets. Result modes get a
``+ngram`` suffix (``sliding+ngram``, ``ttt_chunked+ngram`` …) and ``details["ngram"]`` holds the mixer's summary.
"""

from __future__ import annotations

import copy

import torch

from golflib.config import Config
from golflib.data.bytecount import ByteCounter
from golflib.data.loader import load_validation_tokens
from golflib.eval.bpb import EvalResult
from golflib.eval.context import ScoringContext
from golflib.eval.protocols import NGRAM_LABELS
from golflib.eval.scorelog import score_lines
from golflib.eval.ngram import build_mixer
from golflib.eval.sliding import eval_sliding
from golflib.eval.protocols import eval_window
from golflib.eval.ttt import run_ttt_kind



def eval_with_mixer(protocol: str, model, val_tokens: torch.Tensor, luts: ByteCounter, cfg: Config,
                    ctx: ScoringContext | None = None) -> EvalResult:
    """Score ``val_tokens`` (int64 ``[n_targets + 1]``) with ``protocol`` (sliding | chunked | lora | phased) and the
    n-gram mixer ``ctx.mixer`` (built from ``cfg.ngram`` — ``NGRAM_MIXER`` — when None), in ``ctx``
    (:class:`golflib.eval.context.ScoringContext`; None: single process on the CPU). TTT kinds adapt ``model`` in
    place (pass a copy) with ``cfg.ttt`` settings; sliding uses ``EVAL_SEQ_LEN``/``EVAL_STRIDE``.
    ``ctx.scores_out``: ``[n_targets]`` NLLs (sliding, TTT kinds) or ``[n_targets, V]`` mixed log-prob rows (TTT
    kinds) for the perturbation test. Under torchrun each rank's cache holds the targets that rank scored (legal,
    weaker than one shared cache). Returns the protocol's :class:`EvalResult` with mode ``<mode>+ngram`` and
    ``details["ngram"]`` = the mixer's summary. Raises ``ValueError`` for an unknown protocol."""
    ctx = ctx or ScoringContext()
    mixer, scores_out = ctx.mixer, ctx.scores_out
    if mixer is None:
        mixer = build_mixer(cfg.ngram, val_tokens, cfg.model.vocab_size, cfg.model.bos_id,
                            device=ctx.torch_device)  # the model's device: the mixture runs by the logits
    L = eval_window(cfg)
    if protocol == "sliding":
        if scores_out is not None and scores_out.dim() != 1:
            raise ValueError("sliding+ngram writes per-target NLLs: scores_out must be [n_targets]")
        res = eval_sliding(model, val_tokens, luts, seq_len=L, stride=cfg.eval.eval_stride or L,
                           batch_seqs=cfg.eval.eval_batch_seqs, rank=ctx.rank, world_size=ctx.world_size,
                           device=ctx.device, ledger=ctx.ledger, nll_out=scores_out, mixer=mixer, dump=ctx.dump)
    elif protocol in ("chunked", "lora", "phased"):
        res = run_ttt_kind(protocol, model, val_tokens, luts, cfg, ctx.replace(mixer=mixer))
    else:
        raise ValueError(f"unknown n-gram protocol {protocol!r}; expected sliding, chunked, lora or phased")
    res.mode = f"{res.mode}+ngram"
    res.details = {**res.details, "ngram": mixer.summary(), "world_size": ctx.world_size}
    return res


def ngram_log_lines(protocol: str, res: EvalResult) -> list[str]:
    """``<label> val_loss:… val_bpb:… eval_time:…ms eval_mode:…``, its ``_exact`` twin, the mixer line (mean α,
    hit rate, C2 rows, mixer tokens/s) and the ledger verdict."""
    label = NGRAM_LABELS[protocol]
    ng, rep = res.details.get("ngram", {}), res.ledger or {}
    hits = ng.get("hit_order_counts", {})
    hit_rate = 1.0 - hits.get("0", 0) / max(ng.get("positions", 0), 1)
    return [*score_lines(label, res),
            f"{label}_mixer schedule:{ng.get('settings', {}).get('schedule')} mean_alpha:{ng.get('mean_alpha', 0):.4f} "
            f"context_hit_rate:{hit_rate:.4f} tilt_rate:{ng.get('tilt_rate', 0):.4f} c2_rows:{ng.get('c2_rows')} "
            f"c2_max_sum_err:{ng.get('c2_max_abs_sum_error', 0):.2e} tokens_per_s:{ng.get('tokens_per_second', 0):.0f}",
            f"{label}_ledger legal:{int(bool(rep.get('legal')))} scored:{rep.get('n_scored')}/{rep.get('n_targets')} "
            f"updates:{rep.get('n_updates')} c2_rows:{rep.get('c2_rows_checked')} order:{rep.get('order')}"]


def run_configured_ngram(cfg: Config, model, luts: ByteCounter, rt, log, reference: EvalResult | None = None,
                         ttt: dict | None = None, val_tokens: torch.Tensor | None = None) -> dict:
    """Training integration: when ``NGRAM_ENABLED``, score every protocol of ``NGRAM_PROTOCOLS`` with a fresh mixer
    on a fresh copy of ``model`` (the dequantized artifact model) over the val stream truncated at the TTT/eval
    window length and log each result. Returns ``{"scores": {"ngram/<protocol>": EvalResult}, "references":
    {"ngram/<protocol>": {"mode", "delta_bpb"}}, "seconds"}``; the reference is the same protocol without the
    mixer — the sliding-window result ``reference`` for ``sliding``, ``ttt["ttt/<kind>"]`` (the TTT pass's scores)
    for a TTT kind. A TTT kind the TTT pass did not score (``TTT_ENABLED=0`` or not in ``TTT_KINDS``) is skipped
    (logged), so every entry has its reference. Empty scores when disabled. ``rt``:
    :class:`golflib.runtime.Runtime`; ``log``: a :class:`golflib.runlog.RunLogger`."""
    out: dict = {"scores": {}, "references": {}, "seconds": 0.0}
    if not cfg.ngram.ngram_enabled:
        return out
    if val_tokens is None:
        val_tokens = load_validation_tokens(cfg.data.val_glob, eval_window(cfg), cfg.model.vocab_size,
                                            cfg.train.val_max_tokens)
    ttt = ttt or {}
    for protocol in cfg.ngram.ngram_protocols:
        if protocol != "sliding" and f"ttt/{protocol}" not in ttt:
            log.log(f"ngram:skip protocol:{protocol} (a TTT kind is mixed only when the TTT pass scored it too: "
                    f"TTT_ENABLED=1 and TTT_KINDS includes it)")
            continue
        log.log(f"ngram:start protocol:{protocol} orders:{','.join(map(str, cfg.ngram.ngram_orders))} "
                f"schedule:{cfg.ngram.ngram_alpha_schedule} tilt_beta:{cfg.ngram.ngram_tilt_beta} "
                f"targets:{val_tokens.numel() - 1}")
        ctx = ScoringContext(device=rt.device, rank=rt.rank, world_size=rt.world_size, log=log.log)
        res = eval_with_mixer(protocol, copy.deepcopy(model), val_tokens, luts, cfg, ctx)
        for line in ngram_log_lines(protocol, res):
            log.log(line)
        ref = reference if protocol == "sliding" else ttt.get(f"ttt/{protocol}")
        out["scores"][f"ngram/{protocol}"] = res
        if ref is not None:
            out["references"][f"ngram/{protocol}"] = {"mode": ref.mode, "delta_bpb": res.val_bpb - ref.val_bpb}
        out["seconds"] += res.seconds
    return out

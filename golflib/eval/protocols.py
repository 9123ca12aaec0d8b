"""The scoring protocols, one registry: training, ``golf eval`` and ``golf audit`` score through it (the TTT sweep
and bench call the same :func:`golflib.eval.ttt.run_ttt_kind` its TTT entries call).

Every protocol is a :class:`Protocol`: its name (the protocol part of a score key, SPEC §5.4: ``standard``,
``sliding``, ``ttt/<kind>``, ``ngram/<protocol>``), the records' log label, the window length its val stream is
truncated at (SPEC §1.2) and ``run(model, tokens, luts, cfg, ctx) -> EvalResult`` with the protocol's settings taken
whole from the config groups and the run-time objects from a :class:`~golflib.eval.context.ScoringContext`
(device, ranks, ledger, per-token score sink, log, mixer). So the number ``golf eval`` or the audit computes is the
number the run logged, by construction: the same function with the same settings.

=================  ====================================================  =========================  ==============
name               what                                                  label                      stream
=================  ====================================================  =========================  ==============
standard           non-overlapping windows, or #1855's doc-isolated       ``<tag>_roundtrip``        TRAIN_SEQ_LEN
                   batches (EVAL_DOC_ISOLATED=1)
sliding            sliding windows at EVAL_STRIDE (EVAL_WINDOWS set)      ``<tag>_sliding_window``   EVAL_SEQ_LEN
ttt/<kind>         score-first TTT (:mod:`golflib.eval.ttt`)              ``legal_ttt`` ...          EVAL_SEQ_LEN
ngram/<protocol>   the n-gram mixer on sliding or a TTT kind              ``ngram_sliding`` ...      EVAL_SEQ_LEN
=================  ====================================================  =========================  ==============

The TTT and n-gram protocols live in optional modules of the training core (:mod:`golflib.seams`) and are
imported when first run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from golflib.eval.bpb import EvalResult, eval_standard
from golflib.eval.context import ScoringContext
from golflib.eval.scorelog import score_lines
from golflib.eval.sliding import eval_sliding

TTT_LABELS = {"chunked": "legal_ttt", "lora": "quantized_ttt_lora", "phased": "quantized_ttt_phased"}
NGRAM_LABELS = {"sliding": "ngram_sliding", "chunked": "ngram_ttt", "lora": "ngram_ttt_lora",
                "phased": "ngram_ttt_phased"}


def eval_window(cfg) -> int:
    """Window length of the sliding, TTT and n-gram protocols: ``EVAL_SEQ_LEN`` or ``TRAIN_SEQ_LEN`` (tokens)."""
    return cfg.eval.eval_seq_len or cfg.train.train_seq_len


def _kw(ctx: ScoringContext) -> dict:
    return dict(rank=ctx.rank, world_size=ctx.world_size, device=ctx.device, ledger=ctx.ledger, nll_out=ctx.scores_out,
                dump=ctx.dump)


def run_standard(model, tokens, luts, cfg, ctx: ScoringContext | None = None) -> EvalResult:
    """The standard val_bpb: non-overlapping ``TRAIN_SEQ_LEN`` windows in batches of ``VAL_BATCH_SIZE`` tokens, or
    #1855's doc-isolated flat batches (``EVAL_DOC_ISOLATED=1``: segments at every BOS and every ``EVAL_SEQ_LEN``
    from a document's start, ``GLOBAL_MICROBATCHES / world_size`` micro-batches)."""
    ctx = ctx or ScoringContext()
    tc = cfg.train
    if cfg.eval.eval_doc_isolated:  # an optional module (golflib.seams)
        from golflib.eval.doc_eval import eval_doc_isolated

        return eval_doc_isolated(model, tokens, luts, seq_len=eval_window(cfg), batch_tokens=tc.val_batch_size,
                                 grad_accum_steps=max(1, tc.global_microbatches // ctx.world_size),
                                 bos_id=cfg.model.bos_id, **_kw(ctx))
    return eval_standard(model, tokens, luts, seq_len=tc.train_seq_len, batch_tokens=tc.val_batch_size, **_kw(ctx))


def run_sliding(model, tokens, luts, cfg, ctx: ScoringContext | None = None) -> EvalResult:
    """Sliding windows of ``EVAL_SEQ_LEN`` at ``EVAL_STRIDE`` (the ``EVAL_WINDOWS`` set), ``EVAL_BATCH_SEQS`` per
    batch; ``ctx.mixer`` is not applied here (that is ``ngram/sliding``)."""
    ctx = ctx or ScoringContext()
    L = eval_window(cfg)
    return eval_sliding(model, tokens, luts, seq_len=L, stride=cfg.eval.eval_stride or L,
                        batch_seqs=cfg.eval.eval_batch_seqs, window_set=cfg.eval.eval_windows, **_kw(ctx))


UNITS = ("stream", "document")  # the unit a protocol's evaluation order is causal in (the perturbation audit's unit)


@dataclass(frozen=True)
class Protocol:
    """One scoring protocol (module docstring). ``run(model, tokens, luts, cfg, ctx)``: ``tokens`` int64
    ``[n_targets + 1]`` truncated at ``seq_len(cfg)``; ``luts`` the run's byte counter; returns an
    :class:`EvalResult`. ``label`` may hold ``{tag}`` (the artifact tag, e.g. ``final_int8_zlib``); ``fields(cfg)``
    the protocol's extra log fields. ``unit``: where its evaluation order is causal — ``stream`` (every target
    scored from the stream's past only) or ``document`` (documents in any order that depends only on their
    boundaries, each document in stream order: the length-sorted doc-LoRA queues accepted in #1610/#1626); the
    future-perturbation audit (:mod:`golflib.workbook.audit`) perturbs in this unit."""

    name: str
    label: str
    run: Callable[..., EvalResult]
    seq_len: Callable[..., int]
    fields: Callable[..., dict] | None = None
    unit: str = "stream"

    def log_lines(self, res: EvalResult, cfg, tag: str = "") -> list[str]:
        """The score line and its ``_exact`` twin (:func:`golflib.eval.scorelog.score_lines`)."""
        return score_lines(self.label.format(tag=tag), res, self.fields(cfg) if self.fields else None)


def _ttt(kind: str) -> Callable[..., EvalResult]:
    def run(model, tokens, luts, cfg, ctx: ScoringContext | None = None) -> EvalResult:
        from golflib.eval.ttt import run_ttt_kind  # optional (golflib.seams)

        return run_ttt_kind(kind, model, tokens, luts, cfg, ctx)
    return run


def _ngram(protocol: str) -> Callable[..., EvalResult]:
    def run(model, tokens, luts, cfg, ctx: ScoringContext | None = None) -> EvalResult:
        from golflib.eval.ngram_eval import eval_with_mixer  # optional (golflib.seams)

        return eval_with_mixer(protocol, model, tokens, luts, cfg, ctx)
    return run


def _train_len(cfg) -> int:
    return cfg.train.train_seq_len


def _sliding_fields(cfg) -> dict:
    return {"stride": cfg.eval.eval_stride, "eval_seq_len": eval_window(cfg)}


DOC_ORDER_KINDS = ("lora", "phased")  # length-sorted document queues (#1530, #1610/#1626)
PROTOCOLS: dict[str, Protocol] = {
    "standard": Protocol("standard", "{tag}_roundtrip", run_standard, _train_len),
    "sliding": Protocol("sliding", "{tag}_sliding_window", run_sliding, eval_window, _sliding_fields),
    **{f"ttt/{k}": Protocol(f"ttt/{k}", label, _ttt(k), eval_window,
                            unit="document" if k in DOC_ORDER_KINDS else "stream") for k, label in TTT_LABELS.items()},
    **{f"ngram/{p}": Protocol(f"ngram/{p}", label, _ngram(p), eval_window,
                              unit="document" if p in DOC_ORDER_KINDS else "stream")
       for p, label in NGRAM_LABELS.items()},
}
CUSTOM = "custom/"  # the name prefix of protocols registered by plugins (golflib.plugins.register_protocol)


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name``; raises ``ValueError`` listing the names (a ``custom/`` name is registered
    by the plugin that defines it: ``EVAL_PLUGINS``)."""
    if name not in PROTOCOLS:
        hint = " (custom protocols are registered by their plugin: set EVAL_PLUGINS)" if name.startswith(CUSTOM) else ""
        raise ValueError(f"unknown scoring protocol {name!r}; expected one of {', '.join(PROTOCOLS)}{hint}")
    return PROTOCOLS[name]

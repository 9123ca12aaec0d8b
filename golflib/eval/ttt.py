"""Test-time training entry point: run the configured score-first TTT protocols (SPEC §3.E) from a
:class:`golflib.config.Config` and log them in the challenge's line format (SPEC §5.4).

Kinds (``TTT_KINDS``), each on a fresh copy of the dequantized artifact model:

========  ==========================================  ==============================  =====================
kind      protocol                                    module                          log label
========  ==========================================  ==============================  =====================
chunked   chunked full-model TTT (#461/#549)          :mod:`golflib.eval.ttt_chunked`  ``legal_ttt_exact``
lora      per-document batched LoRA (#1530)           :mod:`golflib.eval.ttt_lora`     ``quantized_ttt_lora``
phased    doc-LoRA + phased global SGD (#1610/#1626)  :mod:`golflib.eval.ttt_phased`   ``quantized_ttt_phased``
========  ==========================================  ==============================  =====================

No warm-up or compile step runs here (TTT is eager), so nothing touches val tokens before they are scored; the
ledger of each protocol proves the order of scoring and learning.
"""

from __future__ import annotations

import copy
import torch

from golflib.config import Config
from golflib.data.bytecount import ByteCounter
from golflib.data.loader import load_validation_tokens
from golflib.eval.bpb import EvalResult
from golflib.eval.context import ScoringContext
from golflib.eval.protocols import TTT_LABELS, eval_window
from golflib.eval.scorelog import score_lines



def protocol(kind: str):
    """``(settings class, run function)`` of TTT kind ``kind``, imported on first use: each kind is an optional
    module of the training core (:mod:`golflib.seams`), so a bundle carries only the kinds its config runs. Raises
    ``ValueError`` for an unknown kind."""
    if kind == "chunked":
        from golflib.eval.ttt_chunked import ChunkedTTTSettings, eval_ttt_chunked

        return ChunkedTTTSettings, eval_ttt_chunked
    if kind == "lora":
        from golflib.eval.ttt_lora import LoRATTTSettings, eval_ttt_lora

        return LoRATTTSettings, eval_ttt_lora
    if kind == "phased":
        from golflib.eval.ttt_phased import PhasedTTTSettings, eval_ttt_phased

        return PhasedTTTSettings, eval_ttt_phased
    raise ValueError(f"unknown TTT kind {kind!r}; expected chunked, lora or phased")


def ttt_settings(kind: str, cfg: Config, n_targets: int, bos_id: int | None = None):
    """The settings object of TTT kind ``kind`` from ``cfg``: ``ChunkedTTTSettings`` (chunked, progress every
    tenth of the ``n_targets`` targets' chunks), ``LoRATTTSettings`` (lora) or ``PhasedTTTSettings`` (phased), each
    from its module (:func:`protocol`). ``bos_id`` defaults to the config's ``BOS_ID``. Raises ``ValueError`` for an
    unknown kind."""
    settings_cls, _ = protocol(kind)
    if kind == "chunked":
        return settings_cls.from_config(cfg, n_targets)
    return settings_cls.from_config(cfg, bos_id)


def run_ttt_kind(kind: str, model, val_tokens: torch.Tensor, luts: ByteCounter, cfg: Config,
                 ctx: ScoringContext | None = None, bos_id: int | None = None) -> EvalResult:
    """Run TTT kind ``kind`` (chunked | lora | phased) with the settings :func:`ttt_settings` derives from
    ``cfg`` on ``model`` (adapted in place) over ``val_tokens`` (int64 ``[n_targets + 1]``), in ``ctx``
    (:class:`golflib.eval.context.ScoringContext`: device, rank/world, ledger, score sink, log, mixer). Raises
    ``ValueError`` for an unknown kind. Chunked TTT scores ``TTT_WINDOWS`` (else ``EVAL_WINDOWS``) windows;
    ``TTT_LORA_ADAPTERS=per_slot`` seeds the adapters' draws with ``SEED`` (#1855's fixture reseeds the global
    RNG with SEED at the TTT start); phased TTT's global SGD uses sequences of the eval length (#1855:
    EVAL_SEQ_LEN, not TTT_EVAL_SEQ_LEN)."""
    settings = ttt_settings(kind, cfg, val_tokens.numel() - 1, bos_id)
    return protocol(kind)[1](model, val_tokens, luts, settings, ctx)


def log_lines(kind: str, res: EvalResult) -> list[str]:
    """The two log lines of a TTT result: ``<label> val_loss:… val_bpb:… eval_time:…ms eval_mode:…`` and its
    8-decimal ``<label>_exact`` twin (SPEC §5.4), plus the legality verdict."""
    label = TTT_LABELS[kind]
    rep = res.ledger or {}
    return [*score_lines(label, res),
            f"{label}_ledger legal:{int(bool(rep.get('legal')))} scored:{rep.get('n_scored')}/{rep.get('n_targets')} "
            f"updates:{rep.get('n_updates')} order:{rep.get('order')}"]


def run_configured_ttt(cfg: Config, model, luts: ByteCounter, rt, log, reference: EvalResult | None = None,
                       val_tokens: torch.Tensor | None = None) -> dict:
    """Training integration: when ``TTT_ENABLED``, run every kind of ``TTT_KINDS`` on a fresh copy of ``model``
    (the dequantized artifact model) over the val stream truncated at the TTT window length and log each result.
    Returns ``{"scores": {"ttt/<kind>": EvalResult}, "references": {"ttt/<kind>": {"mode", "delta_bpb"}},
    "seconds": total}`` (references against ``reference``, the sliding-window result of the same model: the
    no-TTT number); empty scores when disabled. ``rt`` is the :class:`golflib.runtime.Runtime`, ``log`` a
    :class:`golflib.runlog.RunLogger`."""
    out: dict = {"scores": {}, "references": {}, "seconds": 0.0}
    if not cfg.ttt.ttt_enabled:
        return out
    L = eval_window(cfg)
    if val_tokens is None:
        val_tokens = load_validation_tokens(cfg.data.val_glob, L, cfg.model.vocab_size, cfg.train.val_max_tokens)
    for kind in cfg.ttt.ttt_kinds:
        log.log(f"ttt:start kind:{kind} targets:{val_tokens.numel() - 1}")
        ctx = ScoringContext(device=rt.device, rank=rt.rank, world_size=rt.world_size, log=log.log)
        res = run_ttt_kind(kind, copy.deepcopy(model), val_tokens, luts, cfg, ctx)
        for line in log_lines(kind, res):
            log.log(line)
        out["scores"][f"ttt/{kind}"] = res
        if reference is not None:
            out["references"][f"ttt/{kind}"] = {"mode": reference.mode, "delta_bpb": res.val_bpb - reference.val_bpb}
        out["seconds"] += res.seconds
    return out

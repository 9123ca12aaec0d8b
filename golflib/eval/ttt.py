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
from typing import Callable

import torch

from golflib.config import Config
from golflib.data.bytecount import ByteCounter
from golflib.data.loader import load_validation_tokens
from golflib.eval.bpb import EvalResult
from golflib.eval.ledger import Ledger
from golflib.eval.ttt_chunked import eval_ttt_chunked
from golflib.eval.ttt_lora import eval_ttt_lora
from golflib.eval.ttt_phased import eval_ttt_phased

LABELS = {"chunked": "legal_ttt", "lora": "quantized_ttt_lora", "phased": "quantized_ttt_phased"}


def ttt_seq_len(cfg: Config) -> int:
    """Window length of TTT scoring: ``EVAL_SEQ_LEN`` or ``TRAIN_SEQ_LEN``."""
    return cfg.eval.eval_seq_len or cfg.train.train_seq_len


def run_ttt_kind(kind: str, model, val_tokens: torch.Tensor, luts: ByteCounter, cfg: Config, *, rank: int = 0,
                 world_size: int = 1, device: torch.device | str = "cpu", ledger: Ledger | None = None,
                 scores_out: torch.Tensor | None = None, log: Callable[[str], None] | None = None,
                 bos_id: int | None = None, mixer=None) -> EvalResult:
    """Run TTT kind ``kind`` (chunked | lora | phased) with ``cfg.ttt`` settings on ``model`` (adapted in place)
    over ``val_tokens`` (int64 ``[n_targets + 1]``). ``scores_out``: optional ``[n_targets]`` NLL or
    ``[n_targets, V]`` log-prob output (for :func:`golflib.eval.ledger.perturbation_test`). Raises ``ValueError``
    for an unknown kind. ``bos_id`` (documents for lora/phased) defaults to the config's ``BOS_ID``. ``mixer``: an
    optional :class:`golflib.eval.ngram.NgramMixer` applied to the adapted model's logits of every scored batch.
    Chunked TTT scores ``TTT_WINDOWS`` (else ``EVAL_WINDOWS``) windows; ``TTT_LORA_ADAPTERS=per_slot`` seeds the
    adapters' draws with ``SEED`` (#1855's fixture reseeds the global RNG with SEED at the TTT start); phased
    TTT's global SGD uses sequences of the eval length (#1855: EVAL_SEQ_LEN, not TTT_EVAL_SEQ_LEN)."""
    t, L = cfg.ttt, ttt_seq_len(cfg)
    bos_id = getattr(cfg.model, "bos_id", 1) if bos_id is None else bos_id
    common = dict(rank=rank, world_size=world_size, device=device, ledger=ledger, scores_out=scores_out, log=log,
                  mixer=mixer)
    if kind == "chunked":
        return eval_ttt_chunked(model, val_tokens, luts, seq_len=L, stride=cfg.eval.eval_stride or L,
                                chunk_tokens=t.ttt_chunk_tokens, epochs=t.ttt_epochs, lr=t.ttt_lr,
                                optimizer=t.ttt_optimizer, momentum=t.ttt_momentum,
                                freeze_blocks=t.ttt_freeze_blocks, batch_seqs=t.ttt_batch_seqs,
                                grad_clip=t.ttt_grad_clip, eval_batch_seqs=cfg.eval.eval_batch_seqs,
                                log_every=max(1, -(-(val_tokens.numel() - 1) // t.ttt_chunk_tokens) // 10),
                                window_set=t.ttt_windows or cfg.eval.eval_windows, **common)
    per_slot = t.ttt_lora_adapters == "per_slot"
    lora = dict(window=t.ttt_eval_seq_len or L, chunk_size=t.ttt_chunk_size, batch_docs=t.ttt_batch_size,
                lora_rank=t.ttt_lora_rank, lr=t.ttt_lora_lr, lora_alpha=t.ttt_lora_alpha, beta1=t.ttt_beta1,
                beta2=t.ttt_beta2, weight_decay=t.ttt_weight_decay, warm_start_a=t.ttt_warm_start_a, bos_id=bos_id,
                sites=t.ttt_lora_sites, adapters=t.ttt_lora_adapters, last_window=t.ttt_lora_last_window,
                seed=cfg.train.seed if per_slot else 0)
    if kind == "lora":
        return eval_ttt_lora(model, val_tokens, luts, **lora, **common)
    if kind == "phased":
        return eval_ttt_phased(model, val_tokens, luts, **lora, prefix_docs=t.phased_ttt_prefix_docs,
                               num_phases=t.phased_ttt_num_phases, global_lr=t.global_ttt_lr,
                               global_momentum=t.global_ttt_momentum, global_epochs=t.global_ttt_epochs,
                               global_chunk_tokens=t.global_ttt_chunk_tokens,
                               global_batch_seqs=t.global_ttt_batch_seqs, global_grad_clip=t.global_ttt_grad_clip,
                               global_seq_len=L, **common)
    raise ValueError(f"unknown TTT kind {kind!r}; expected chunked, lora or phased")


def log_lines(kind: str, res: EvalResult) -> list[str]:
    """The two log lines of a TTT result: ``<label> val_loss:… val_bpb:… eval_time:…ms eval_mode=…`` and its
    8-decimal ``<label>_exact`` twin (SPEC §5.4), plus the legality verdict."""
    label, ms = LABELS[kind], 1000 * res.seconds
    rep = res.ledger or {}
    return [f"{label} val_loss:{res.val_loss:.4f} val_bpb:{res.val_bpb:.4f} eval_time:{ms:.0f}ms eval_mode={res.mode}",
            f"{label}_exact val_loss:{res.val_loss:.8f} val_bpb:{res.val_bpb:.8f} eval_mode={res.mode} "
            f"eval_time:{ms:.0f}ms",
            f"{label}_ledger legal:{int(bool(rep.get('legal')))} scored:{rep.get('n_scored')}/{rep.get('n_targets')} "
            f"updates:{rep.get('n_updates')} order:{rep.get('order')}"]


def run_configured_ttt(cfg: Config, model, luts: ByteCounter, rt, log, reference: EvalResult | None = None,
                       val_tokens: torch.Tensor | None = None) -> dict | None:
    """Training integration: when ``TTT_ENABLED``, run every kind of ``TTT_KINDS`` on a fresh copy of ``model``
    (the dequantized artifact model) over the val stream truncated at the TTT window length, log each result, and
    return ``{kind: EvalResult.to_dict() + delta_bpb_vs_sliding}`` plus ``"seconds"`` (all kinds); None when
    disabled. ``rt`` is the :class:`golflib.runtime.Runtime`, ``log`` a :class:`golflib.runlog.RunLogger`,
    ``reference`` the sliding-window result of the same model (the no-TTT number)."""
    if not cfg.ttt.ttt_enabled:
        return None
    L = ttt_seq_len(cfg)
    if val_tokens is None:
        val_tokens = load_validation_tokens(cfg.data.val_glob, L, cfg.model.vocab_size, cfg.train.val_max_tokens)
    out: dict = {"seconds": 0.0}
    for kind in cfg.ttt.ttt_kinds:
        log.log(f"ttt:start kind={kind} targets:{val_tokens.numel() - 1}")
        res = run_ttt_kind(kind, copy.deepcopy(model), val_tokens, luts, cfg, rank=rt.rank, world_size=rt.world_size,
                           device=rt.device, log=log.log)
        for line in log_lines(kind, res):
            log.log(line)
        entry = res.to_dict()
        if reference is not None:
            entry["reference_mode"] = reference.mode
            entry["delta_bpb_vs_sliding"] = res.val_bpb - reference.val_bpb
        out[kind] = entry
        out["seconds"] += res.seconds
    return out

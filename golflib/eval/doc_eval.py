"""Document-isolated evaluation in flat batches: #1855's "diagnostic" standard eval (pre-quant post-EMA and the
quantized round trip), and the BOS segmentation it shares with the global SGD of phased TTT.

Segmentation (#1855 ``_build_cu_seqlens``): a flat row of tokens is cut at position 0, at every BOS *input* and,
inside each of those pieces, every ``max_len`` tokens from the piece's start. Attention never crosses a cut.

:func:`eval_doc_isolated`: the target stream is viewed as ``N // L`` sequences of ``L = seq_len`` targets, split
contiguously across ranks, and each rank's range is truncated to a whole number of batches of
``batch_tokens // (world_size · grad_accum_steps) // L`` sequences (#1855 drops the rest: ~0.4 % of sp8192 val at
full size). Each batch is ONE row of ``batch_seqs · L`` tokens segmented as above, so a document that crosses a
sequence boundary keeps its context. The dropped positions are declared in the ledger (``Ledger.skip``).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from golflib.data.bytecount import ByteCounter
from golflib.eval.bpb import BPBAccumulator, EvalResult, finish_ledger
from golflib.eval.compiled import forward_of
from golflib.eval.ledger import Ledger
from golflib.runtime import autocast, synchronize

DOC_EVAL_TRUNCATION = "#1855 eval_val: each rank's sequences truncated to whole batches"


def bos_segment_ids(x: torch.Tensor, bos_id: int, max_len: int = 0) -> torch.Tensor:
    """Segment ids (int64, same shape as the 1-D ``x``, non-decreasing from 0) of a flat token row: a new segment
    at position 0, at every ``x[i] == bos_id`` and every ``max_len`` tokens from the start of the piece between two
    BOS (``max_len <= 0``: no length cut). This is #1855's ``_build_cu_seqlens`` boundary set. Raises
    ``ValueError`` for a tensor that is not 1-D."""
    if x.dim() != 1:
        raise ValueError(f"bos_segment_ids: expected a 1-D token row, got shape {tuple(x.shape)}")
    t = x.numel()
    idx = torch.arange(t, device=x.device)
    opens = x == bos_id
    if t:
        opens[0] = True
    piece_start = torch.cummax(torch.where(opens, idx, torch.zeros_like(idx)), dim=0).values
    new = opens
    if max_len > 0:
        new = opens | ((idx - piece_start) % max_len == 0)
    return torch.cumsum(new.to(torch.int64), dim=0) - 1


def doc_eval_ranges(n_targets: int, seq_len: int, batch_seqs: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(first, end)`` sequence range a rank scores: its contiguous share of ``n_targets // seq_len`` sequences,
    truncated to a multiple of ``batch_seqs``."""
    total = n_targets // seq_len
    s0, s1 = total * rank // world_size, total * (rank + 1) // world_size
    return s0, s0 + (s1 - s0) // batch_seqs * batch_seqs


@torch.no_grad()
def eval_doc_isolated(model, val_tokens: torch.Tensor, luts: ByteCounter, *, seq_len: int, batch_tokens: int,
                      grad_accum_steps: int = 1, bos_id: int = 1, rank: int = 0, world_size: int = 1,
                      device: torch.device | str = "cpu", ledger: Ledger | None = None,
                      nll_out: torch.Tensor | None = None, dump=None) -> EvalResult:
    """#1855's doc-isolated standard eval of ``val_tokens`` (int64 ``[n_targets + 1]``, documents opened by
    ``bos_id``); see the module docstring.

    ``batch_tokens``: VAL_BATCH_SIZE (all ranks); each rank's flat batch holds
    ``batch_tokens // (world_size · grad_accum_steps) // seq_len`` sequences (#1855: ``grad_accum_steps = 8 //
    world``, so 8 sequences of 2048 at full size on any world size; ``seq_len`` = EVAL_SEQ_LEN, also the segment
    length cap). ``model.token_nll(x, y, doc_ids=ids)`` gives fp32 NLL ``[1, T]``. Scored positions go to
    ``ledger`` (strict, stream order when None), the truncated tail is declared there with
    :meth:`golflib.eval.ledger.Ledger.skip`; ``nll_out`` (float ``[n_targets]``) receives this rank's NLLs.
    Returns the all-reduced :class:`EvalResult` (mode ``standard_doc``; ``details``: batch sequences, dropped
    targets). Raises ``ValueError`` when a rank's batch holds no whole sequence (as the record) or a rank's share of
    val holds no whole batch (the record would score nothing).
    """
    device = torch.device(device)
    t0 = time.perf_counter()
    n = val_tokens.numel() - 1
    local_tokens = batch_tokens // (world_size * grad_accum_steps)
    if local_tokens < seq_len:
        raise ValueError(f"VAL_BATCH_SIZE={batch_tokens} gives {local_tokens} tokens per rank and batch "
                         f"(WORLD_SIZE={world_size}, grad accumulation {grad_accum_steps}), less than one sequence "
                         f"of EVAL_SEQ_LEN={seq_len}")
    per_batch = local_tokens // seq_len
    ledger = Ledger(n) if ledger is None else ledger
    ranges = [doc_eval_ranges(n, seq_len, per_batch, r, world_size) for r in range(world_size)]
    kept = np.zeros(n, dtype=bool)
    for a, b in ranges:
        kept[a * seq_len:b * seq_len] = True
    if not kept.all():
        ledger.skip(np.flatnonzero(~kept), DOC_EVAL_TRUNCATION)
    short = [r for r, (a, b) in enumerate(ranges) if b <= a]
    if short:  # every rank decides the same (the ranges are computed for all): no rank waits in the all-reduce
        held = (n // seq_len) * (short[0] + 1) // world_size - (n // seq_len) * short[0] // world_size
        raise ValueError(f"VAL_BATCH_SIZE={batch_tokens}: each rank's batch holds {per_batch} sequences of "
                         f"EVAL_SEQ_LEN={seq_len} but rank {short[0]} holds only {held} whole sequences of the "
                         f"{n:,} val targets, so nothing would be scored; lower VAL_BATCH_SIZE (or raise "
                         f"VAL_MAX_TOKENS)")
    s0, s1 = ranges[rank]
    luts = luts.to(device)
    acc = BPBAccumulator(device)
    was_training = model.training
    model.eval()
    for b0 in range(s0, s1, per_batch):
        b1 = min(b0 + per_batch, s1)
        row = val_tokens[b0 * seq_len:b1 * seq_len + 1].to(device=device, dtype=torch.int64)
        x, y = row[:-1], row[1:]
        ids = bos_segment_ids(x, bos_id, seq_len)
        positions = np.arange(b0 * seq_len, b1 * seq_len)
        if dump is not None:  # the audit's replay (golflib.eval.dump is an optional module, never bundled)
            from golflib.eval.dump import model_nll

            nll = model_nll(model, x[None], y[None], positions, dump, ledger, doc_ids=ids[None])[0]
        else:
            with autocast(device):
                nll = forward_of(model, "token_nll")(x[None], y[None], doc_ids=ids[None])[0].float()
        ledger.score(positions)
        if nll_out is not None:
            nll_out[b0 * seq_len:b1 * seq_len] = nll.cpu()
        acc.add(nll, x, y, luts, positions)
    model.train(was_training)
    acc.all_reduce()
    report = finish_ledger(ledger, lambda: np.arange(s0 * seq_len, s1 * seq_len), device, world_size)
    synchronize(device)
    res = acc.result("standard_doc", time.perf_counter() - t0, report)
    res.details = {"seq_len": seq_len, "batch_seqs": per_batch, "dropped_targets": int((~kept).sum())}
    return res

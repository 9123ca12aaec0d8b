"""Sliding-window evaluation with a fixed window set (SPEC §3.A1, #50; tail fix of #1218).

Windows of length ``L`` start at ``ws ∈ {0, S, 2S, …}`` with ``ws + (L − S) < N`` (N = number of targets). Window
``ws`` feeds inputs ``x[ws : ws + wlen]`` (``wlen = min(L, N − ws)``) and scores its targets at window offsets
``[L − S, wlen)`` — all of ``[0, wlen)`` for the first window — so every target is scored exactly once and, past
the first window, with at least ``L − S`` tokens of context. Scored positions are recorded in a
:class:`golflib.eval.ledger.Ledger` (stream order; a fixed predictor never updates).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from golflib.data.luts import ByteLUTs
from golflib.eval.bpb import BPBAccumulator, EvalResult, finish_ledger
from golflib.eval.ledger import Ledger
from golflib.runtime import autocast, synchronize


@dataclass(frozen=True)
class Window:
    """One window: inputs/targets ``[start, start + length)`` of the target stream; scored window offsets
    ``[score_from, length)``."""

    start: int
    length: int
    score_from: int


def sliding_windows(n_targets: int, seq_len: int, stride: int) -> list[Window]:
    """The fixed window set described in the module docstring. Raises ``ValueError`` unless
    ``0 < stride <= seq_len`` and ``n_targets > 0``."""
    if not 0 < stride <= seq_len:
        raise ValueError(f"EVAL_STRIDE={stride} must be in (0, EVAL_SEQ_LEN={seq_len}]")
    if n_targets <= 0:
        raise ValueError("nothing to score: n_targets must be > 0")
    out = []
    ws = 0
    while ws == 0 or ws + (seq_len - stride) < n_targets:
        wlen = min(seq_len, n_targets - ws)
        out.append(Window(ws, wlen, 0 if ws == 0 else seq_len - stride))
        ws += stride
    return out


def scored_positions(windows: list[Window]) -> np.ndarray:
    """Target positions scored by ``windows``, in scoring order (int64)."""
    return np.concatenate([np.arange(w.start + w.score_from, w.start + w.length) for w in windows])


def window_batches(windows: list[Window], batch_seqs: int):
    """Yield consecutive runs of at most ``batch_seqs`` windows of equal length (one forward pass each)."""
    i = 0
    while i < len(windows):
        j = i
        while j < len(windows) and j - i < batch_seqs and windows[j].length == windows[i].length:
            j += 1
        yield windows[i:j]
        i = j


def score_window_batch(model, val_tokens: torch.Tensor, batch: list[Window], device: torch.device,
                       adapter=None, rows: bool = False):
    """Forward one batch of equal-length windows. Returns ``(positions, nll, prev_ids, tgt_ids, logits_rows)``:
    int64 numpy positions of the scored targets (row-major, the order of the other outputs), their fp32 NLL in
    nats, input and target ids (int64 tensors on ``device``), and — with ``rows`` — the scored rows' fp32 logits
    ``[n, V]`` (else None). Call under ``torch.inference_mode()`` for scoring."""
    wlen = batch[0].length
    idx = torch.tensor([w.start for w in batch])[:, None] + torch.arange(wlen + 1)[None, :]
    seqs = val_tokens[idx].to(device)
    x, y = seqs[:, :-1], seqs[:, 1:]
    with autocast(device):
        logits = model.logits(x, adapter) if adapter is not None else model.logits(x)
    logits = logits.float()
    offs = torch.tensor([w.score_from for w in batch], device=device)
    mask = torch.arange(wlen, device=device)[None, :] >= offs[:, None]
    sel = logits[mask]
    nll = torch.nn.functional.cross_entropy(sel, y[mask], reduction="none")
    positions = np.concatenate([np.arange(w.start + w.score_from, w.start + w.length) for w in batch])
    return positions, nll, x[mask], y[mask], (sel if rows else None)


@torch.no_grad()
def eval_sliding(model, val_tokens: torch.Tensor, luts: ByteLUTs, *, seq_len: int, stride: int, batch_seqs: int = 32,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
                 ledger: Ledger | None = None, nll_out: torch.Tensor | None = None, mixer=None) -> EvalResult:
    """Sliding-window val_bpb over ``val_tokens`` (int64 ``[n_targets + 1]``).

    Windows are split contiguously across ranks and batched ``batch_seqs`` at a time (windows of equal length
    only, so the short tail windows form their own batches). ``model.token_nll`` gives fp32 NLL per target.
    Scored positions go to ``ledger`` (a strict stream-order :class:`Ledger` when None); ``nll_out`` (float
    ``[n_targets]``, optional) receives this rank's per-target NLLs in nats. Returns the all-reduced
    :class:`EvalResult` (mode ``sliding``) carrying the ledger report. ``mixer`` (optional, e.g.
    :class:`golflib.eval.ngram.NgramMixer`): called as ``mixer(positions, logits_rows, targets, ledger)`` once
    the model scored each batch; it records the scoring (and its own cache updates) in ``ledger``, and its NLLs
    replace the model's.
    """
    device = torch.device(device)
    t0 = time.perf_counter()
    n_targets = val_tokens.numel() - 1
    windows = sliding_windows(n_targets, seq_len, stride)
    w0, w1 = len(windows) * rank // world_size, len(windows) * (rank + 1) // world_size
    mine = windows[w0:w1]
    luts = luts.to(device)
    acc = BPBAccumulator(device)
    ledger = Ledger(n_targets) if ledger is None else ledger
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in window_batches(mine, batch_seqs):
            if mixer is not None:  # the mixer records the scoring and its own updates in the ledger
                positions, nll_s, xs, ys, rows = score_window_batch(model, val_tokens, batch, device, rows=True)
                nll_s, _ = mixer(positions, rows, ys, ledger)
                if nll_out is not None:
                    nll_out[torch.from_numpy(positions)] = nll_s.cpu()
                acc.add(nll_s, xs, ys, luts)
                continue
            wlen = batch[0].length
            idx = torch.tensor([w.start for w in batch])[:, None] + torch.arange(wlen + 1)[None, :]
            seqs = val_tokens[idx].to(device)
            x, y = seqs[:, :-1], seqs[:, 1:]
            with autocast(device):
                nll = model.token_nll(x, y).float()
            offs = torch.tensor([w.score_from for w in batch], device=device)
            mask = torch.arange(wlen, device=device)[None, :] >= offs[:, None]
            positions = np.concatenate([np.arange(w.start + w.score_from, w.start + w.length) for w in batch])
            ledger.score(positions)
            if nll_out is not None:
                nll_out[torch.from_numpy(positions)] = nll[mask].cpu()
            acc.add(nll[mask], x[mask], y[mask], luts)
    model.train(was_training)
    acc.all_reduce()
    report = finish_ledger(ledger, lambda: scored_positions(mine) if mine else np.zeros(0, np.int64), device,
                           world_size)
    synchronize(device)
    return acc.result("sliding", time.perf_counter() - t0, report)

"""Sliding-window evaluation (SPEC §3.A1, #50): the fixed window set of #1218 and the records' earlier ones.

``fixed`` (default): windows of length ``L`` start at ``ws ∈ {0, S, 2S, …}`` with ``ws + (L − S) < N`` (N = number
of targets). Window ``ws`` feeds inputs ``x[ws : ws + wlen]`` (``wlen = min(L, N − ws)``) and scores its targets at
window offsets ``[L − S, wlen)`` — all of ``[0, wlen)`` for the first window — so every target is scored exactly
once and, past the first window, with at least ``L − S`` tokens of context. Windows of equal length are batched.

``legacy`` (#287, #414, #549, #1019) and ``legacy_stride`` (#461's sliding and TTT windows, #549's TTT windows):
starts ``ws ∈ range(0, N, S)`` kept if ``wlen >= 1`` (every start) or, for ``legacy_stride``, if ``wlen >= S`` or
``ws == 0``; scored offsets ``[0 if ws == 0 else max(wlen − S, 0), wlen)``. Every window whose end is clipped at N
scores the last targets again (with N a multiple of S: the last S targets ``L/S`` times, 32 at L=2048, S=64) — the
double count SPEC §3.A1 ⚠ describes, recorded in the ledger as a declared C4 deviation (``LEGACY_REPEAT``) and
counted in the score as the records count it. Windows are batched ``batch_seqs`` at a time in order, each batch
zero-padded to ``L`` (so the model sees length ``L``, RoPE tables included, as in the records).

Scored positions are recorded in a :class:`golflib.eval.ledger.Ledger` (stream order; a fixed predictor never
updates).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from golflib.data.bytecount import ByteCounter
from golflib.eval.bpb import BPBAccumulator, EvalResult, finish_ledger
from golflib.eval.ledger import Ledger
from golflib.runtime import autocast, synchronize
from golflib.settings.training import EVAL_WINDOW_SETS
from golflib.eval.compiled import forward_of
from golflib.progress import Progress


LEGACY_REPEAT = "pre-#1218 sliding window set: clipped tail windows score the last targets again (SPEC 3.A1)"


@dataclass(frozen=True)
class Window:
    """One window: inputs/targets ``[start, start + length)`` of the target stream; scored window offsets
    ``[score_from, length)``."""

    start: int
    length: int
    score_from: int


def sliding_windows(n_targets: int, seq_len: int, stride: int, window_set: str = "fixed") -> list[Window]:
    """The window set ``window_set`` (fixed | legacy | legacy_stride) described in the module docstring. Raises
    ``ValueError`` unless ``0 < stride <= seq_len``, ``n_targets > 0`` and the set is known."""
    if not 0 < stride <= seq_len:
        raise ValueError(f"EVAL_STRIDE={stride} must be in (0, EVAL_SEQ_LEN={seq_len}]")
    if n_targets <= 0:
        raise ValueError("nothing to score: n_targets must be > 0")
    if window_set not in EVAL_WINDOW_SETS:
        raise ValueError(f"EVAL_WINDOWS={window_set!r}: expected one of {', '.join(EVAL_WINDOW_SETS)}")
    out = []
    if window_set != "fixed":
        min_len = stride if window_set == "legacy_stride" else 1
        for ws in range(0, n_targets, stride):
            wlen = min(ws + seq_len, n_targets) - ws
            if wlen >= min_len or ws == 0:
                out.append(Window(ws, wlen, 0 if ws == 0 else max(wlen - stride, 0)))
        return out
    ws = 0
    while ws == 0 or ws + (seq_len - stride) < n_targets:
        wlen = min(seq_len, n_targets - ws)
        out.append(Window(ws, wlen, 0 if ws == 0 else seq_len - stride))
        ws += stride
    return out


def scored_positions(windows: list[Window]) -> np.ndarray:
    """Target positions scored by ``windows``, in scoring order (int64)."""
    return np.concatenate([np.arange(w.start + w.score_from, w.start + w.length) for w in windows])


def window_batches(windows: list[Window], batch_seqs: int, padded: bool = False):
    """Yield consecutive runs of at most ``batch_seqs`` windows (one forward pass each): of equal length, or —
    ``padded``, the legacy sets — any lengths (the batch is zero-padded to the window length)."""
    if padded:
        for i in range(0, len(windows), batch_seqs):
            yield windows[i:i + batch_seqs]
        return
    i = 0
    while i < len(windows):
        j = i
        while j < len(windows) and j - i < batch_seqs and windows[j].length == windows[i].length:
            j += 1
        yield windows[i:j]
        i = j


def window_tensors(val_tokens: torch.Tensor, batch: list[Window], device: torch.device, pad_to: int = 0):
    """Inputs, targets and scored mask of a window batch: ``x, y`` int64 ``[B, T]`` and ``mask`` bool ``[B, T]`` on
    ``device``, with ``T`` the common window length, or ``pad_to`` (zero padding after each window's end, as the
    records' legacy batches). Also the int64 numpy scored positions, row-major (the order of ``x[mask]``)."""
    width = max(pad_to, max(w.length for w in batch))
    if all(w.length == width for w in batch):  # one gather (every window full width)
        idx = torch.tensor([w.start for w in batch])[:, None] + torch.arange(width + 1)[None, :]
        seqs = val_tokens[idx].to(torch.int64)
        x, y = seqs[:, :-1], seqs[:, 1:]
    else:
        x = torch.zeros(len(batch), width, dtype=torch.int64)
        y = torch.zeros(len(batch), width, dtype=torch.int64)
        for i, w in enumerate(batch):
            seq = val_tokens[w.start:w.start + w.length + 1].to(torch.int64)
            x[i, :w.length], y[i, :w.length] = seq[:-1], seq[1:]
    col = torch.arange(width)[None, :]
    lo = torch.tensor([w.score_from for w in batch])[:, None]
    hi = torch.tensor([w.length for w in batch])[:, None]
    mask = (col >= lo) & (col < hi)
    positions = np.concatenate([np.arange(w.start + w.score_from, w.start + w.length) for w in batch])
    return x.to(device), y.to(device), mask.to(device), positions


def score_window_batch(model, val_tokens: torch.Tensor, batch: list[Window], device: torch.device,
                       adapter=None, rows: bool = False, pad_to: int = 0):
    """Forward one batch of windows (equal lengths, or any lengths zero-padded to ``pad_to``). Returns
    ``(positions, nll, prev_ids, tgt_ids, logits_rows)``: int64 numpy positions of the scored targets (row-major,
    the order of the other outputs), their fp32 NLL in nats, input and target ids (int64 tensors on ``device``),
    and — with ``rows`` — the scored rows' fp32 logits ``[n, V]`` (else None). Call under
    ``torch.inference_mode()`` for scoring."""
    x, y, mask, positions = window_tensors(val_tokens, batch, device, pad_to)
    with autocast(device):
        logits = forward_of(model, "logits")(x, adapter)
    logits = logits.float()
    sel = logits[mask]
    nll = torch.nn.functional.cross_entropy(sel, y[mask], reduction="none")
    return positions, nll, x[mask], y[mask], (sel if rows else None)


@torch.no_grad()
def eval_sliding(model, val_tokens: torch.Tensor, luts: ByteCounter, *, seq_len: int, stride: int, batch_seqs: int = 32,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
                 ledger: Ledger | None = None, nll_out: torch.Tensor | None = None, mixer=None,
                 window_set: str = "fixed", dump=None) -> EvalResult:
    """Sliding-window val_bpb over ``val_tokens`` (int64 ``[n_targets + 1]``).

    Windows (``window_set``: fixed | legacy | legacy_stride, see the module docstring; ``EVAL_WINDOWS``) are split
    contiguously across ranks and batched ``batch_seqs`` at a time (fixed: windows of equal length only, so the
    short tail windows form their own batches; legacy: in order, zero-padded to ``seq_len``). ``model.token_nll``
    gives fp32 NLL per target. Scored positions go to ``ledger`` (a strict stream-order :class:`Ledger` when
    None; a legacy set declares its repeated tail there); ``nll_out`` (float ``[n_targets]``, optional) receives
    this rank's per-target NLLs in nats (a repeated target keeps its last score). Returns the all-reduced
    :class:`EvalResult` (mode ``sliding``, ``details["window_set"]``) carrying the ledger report; a legacy set's
    sums count the repeated targets as often as they are scored (the records' numbers). ``mixer`` (optional,
    e.g. :class:`golflib.eval.ngram.NgramMixer`; fixed set only, else ``ValueError``): called as
    ``mixer(positions, logits_rows, targets, ledger)`` once the model scored each batch; it records the scoring
    (and its own cache updates) in ``ledger``, and its NLLs replace the model's. ``dump`` (optional
    :class:`golflib.eval.dump.ScoreDump`) receives every scored batch — the mixed rows when a mixer is on.
    """
    device = torch.device(device)
    t0 = time.perf_counter()
    n_targets = val_tokens.numel() - 1
    windows = sliding_windows(n_targets, seq_len, stride, window_set)
    legacy = window_set != "fixed"
    if legacy and mixer is not None:
        raise ValueError(f"EVAL_WINDOWS={window_set}: the n-gram mixer needs the fixed window set (a legacy set "
                         "scores the tail twice)")
    repeat = LEGACY_REPEAT if legacy else None
    w0, w1 = len(windows) * rank // world_size, len(windows) * (rank + 1) // world_size
    mine = windows[w0:w1]
    luts = luts.to(device)
    acc = BPBAccumulator(device)
    ledger = Ledger(n_targets) if ledger is None else ledger
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        batches = list(window_batches(mine, batch_seqs, padded=legacy))
        prog = Progress(len(batches), "sliding" if mixer is None else "ngram/sliding", "batches", enabled=rank == 0)
        for batch in prog.wrap(batches):
            if mixer is not None:  # the mixer records the scoring and its own updates in the ledger
                positions, nll_s, xs, ys, rows = score_window_batch(model, val_tokens, batch, device, rows=True)
                want = dump is not None and dump.wants_rows(positions)
                nll_s, mixed = mixer(positions, rows, ys, ledger, rows=want)
                if nll_out is not None:
                    nll_out[torch.from_numpy(positions)] = nll_s.cpu()
                if dump is not None:
                    dump.write(positions, nll_s, mixed, log_probs=True, ledger=ledger)
                acc.add(nll_s, xs, ys, luts, positions)
                continue
            x, y, mask, positions = window_tensors(val_tokens, batch, device, seq_len if legacy else 0)
            if dump is not None:  # the audit's replay (golflib.eval.dump is an optional module, never bundled)
                from golflib.eval.dump import model_nll

                nll = model_nll(model, x, y, positions, dump, ledger, mask=mask)
            else:
                with autocast(device):
                    nll = forward_of(model, "token_nll")(x, y).float()
            ledger.score(positions, repeat=repeat)
            if nll_out is not None:
                nll_out[torch.from_numpy(positions)] = nll[mask].cpu()
            acc.add(nll[mask], x[mask], y[mask], luts, positions)
    model.train(was_training)
    acc.all_reduce()
    report = finish_ledger(ledger, lambda: scored_positions(mine) if mine else np.zeros(0, np.int64), device,
                           world_size, repeat=repeat)
    synchronize(device)
    res = acc.result("sliding", time.perf_counter() - t0, report)
    res.details = {"window_set": window_set, "windows": len(windows), "seq_len": seq_len, "stride": stride}
    return res

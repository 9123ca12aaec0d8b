"""A faithful re-implementation of the #940-style hashed, target-keyed n-gram blend — **illegal**, kept only to
measure it (SPEC §3.F4, §4.5). It lives in the workbook (never reachable from the training core) so notebook 40 and
the tests can show what the reported numbers of #727/#753/#770/#940 actually measured.

Mechanics (from the #940 record's ``eval_val_sliding``; #770 is identical): orders ``2..7``; per order two
``uint32`` tables of ``B = 4,194,304`` buckets (``B`` a power of two). For the target at token index ``j`` and
context width ``w = order − 1``::

    h        = XOR_{k<w} tokens[j − w + k] · P[k mod 7]                (uint64 wrap-around)
    ctx_key  = h & (B − 1)
    full_key = (h XOR tokens[j] · P[w mod 7]) & (B − 1)               ← the target is hashed into the key
    P = (36313, 27191, 51647, 81929, 131071, 175447, 209591)

The highest order whose ``ctx`` count is ≥ ``min_count`` (2) wins and gives ``p_ng = min(full, ctx) / ctx``; the
"probability" of the target is ``(1 − α)·p_model(y) + α·p_ng`` with #940's entropy α, or ``p_model(y)`` when no
order matched; NLL ``= −log clip(p, 1e-12, 1)``. After each window's scored segment both tables of every order are
incremented (``np.add.at``) — score-first in time, but the bucket read at position ``t`` is selected by ``x_t``
(C1) and the implied distribution is not normalised (C2): :meth:`HashedBlend940.candidate_prob` evaluates it for
any candidate so :func:`golflib.eval.implied.implied_mass` can sum it.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from golflib.data.bytecount import ByteCounter
from golflib.eval.bpb import BPBAccumulator
from golflib.eval.implied import implied_rows
from golflib.eval.ledger import Ledger
from golflib.eval.ngram import entropy_alpha
from golflib.eval.sliding import score_window_batch, sliding_windows, window_batches

PRIMES_940 = np.array([36313, 27191, 51647, 81929, 131071, 175447, 209591], dtype=np.uint64)


class HashedBlend940:
    """The hashed cache of #940 over ``tokens`` (int ``[n_targets + 1]``). Positions follow golflib's convention
    (target position ``t`` ↔ token index ``j = t + 1``). ``buckets`` must be a power of two."""

    def __init__(self, tokens, *, min_order: int = 2, max_order: int = 7, buckets: int = 4_194_304,
                 min_count: int = 2):
        if buckets < 1 or buckets & (buckets - 1):
            raise ValueError(f"buckets={buckets} must be a power of two")
        toks = tokens.detach().cpu().numpy() if hasattr(tokens, "detach") else np.asarray(tokens)
        self.tokens = toks.astype(np.uint64).reshape(-1)
        self.widths = list(range(min_order - 1, max_order))  # context widths, low to high
        self.mask = np.uint64(buckets - 1)
        self.buckets, self.min_count = buckets, min_count
        self.ctx = [np.zeros(buckets, np.uint32) for _ in self.widths]
        self.full = [np.zeros(buckets, np.uint32) for _ in self.widths]

    def _hash(self, j: np.ndarray, w: int) -> np.ndarray:
        h = np.zeros(j.size, dtype=np.uint64)
        for k in range(w):
            h ^= self.tokens[j - (w - k)] * PRIMES_940[k % len(PRIMES_940)]
        return h

    def _full_key(self, h: np.ndarray, cand: np.ndarray, w: int) -> np.ndarray:
        return ((h[:, None] ^ (cand.astype(np.uint64) * PRIMES_940[w % len(PRIMES_940)])) & self.mask).astype(np.int64)

    def candidate_prob(self, positions, candidates) -> tuple[np.ndarray, np.ndarray]:
        """``(p_ng [n, C], matched [n])``: the cache's value for each candidate target (matched order chosen by
        context counts only, as in #940) and whether any order matched."""
        j = np.asarray(positions, dtype=np.int64).reshape(-1) + 1
        cand = np.asarray(candidates, dtype=np.int64).reshape(j.size, -1)
        p = np.zeros(cand.shape)
        matched = np.zeros(j.size, dtype=bool)
        for oi in range(len(self.widths) - 1, -1, -1):
            w = self.widths[oi]
            fill = ~matched & (j >= w)
            if not fill.any():
                continue
            rows = np.flatnonzero(fill)
            h = self._hash(j[rows], w)
            c = self.ctx[oi][(h & self.mask).astype(np.int64)].astype(np.float64)
            hit = c >= self.min_count
            rows, h, c = rows[hit], h[hit], c[hit]
            f = self.full[oi][self._full_key(h, cand[rows], w)].astype(np.float64)
            p[rows] = np.clip(np.minimum(f, c[:, None]) / np.maximum(c[:, None], 1.0), 0.0, 1.0)
            matched[rows] = True
        return p, matched

    def update(self, positions) -> None:
        """Increment both tables of every order for the targets of ``positions`` (after they were scored)."""
        j = np.asarray(positions, dtype=np.int64).reshape(-1) + 1
        for oi, w in enumerate(self.widths):
            jv = j[j >= w]
            if jv.size == 0:
                continue
            h = self._hash(jv, w)
            np.add.at(self.ctx[oi], (h & self.mask).astype(np.int64), 1)
            np.add.at(self.full[oi], self._full_key(h, self.tokens[jv].astype(np.int64)[:, None], w)[:, 0], 1)

    def blend(self, positions, candidates, p_model_cand: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """#940's blended value for each candidate: ``(1 − α)·p_model + α·p_ng`` where an order matched, else
        ``p_model``. ``p_model_cand`` ``[n, C]``, ``alpha`` ``[n]``."""
        p_ng, matched = self.candidate_prob(positions, candidates)
        a = np.where(matched, alpha, 0.0)[:, None]
        return (1.0 - a) * p_model_cand + a * p_ng


def window_batches_940(model, val_tokens: torch.Tensor, *, seq_len: int, stride: int, batch_seqs: int = 32,
                       device: torch.device | str = "cpu"):
    """Yield ``(positions, logits_rows, targets, segment_lengths)`` for every batch of golflib's sliding-window set
    (:mod:`golflib.eval.sliding`), forwarded under ``torch.inference_mode()``; ``segment_lengths`` are the scored
    lengths of the batch's windows, in order (the unit #940 updates its tables by)."""
    n = val_tokens.numel() - 1
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in window_batches(sliding_windows(n, seq_len, stride), batch_seqs):
            pos, _, _, yt, rows = score_window_batch(model, val_tokens, batch, torch.device(device), rows=True)
            yield pos, rows, yt, [w.length - w.score_from for w in batch]
    model.train(was_training)


def score_940(batches, val_tokens: torch.Tensor, luts: ByteCounter, *, buckets: int = 4_194_304, min_count: int = 2,
              mass_rows: int = 4) -> dict:
    """The #940 evaluation over ``batches`` of ``(positions, logits_rows, targets, segment_lengths)`` (see
    :func:`window_batches_940`): the val_bpb the blend *reports*, plus its implied mass ``Σ_v`` at ``mass_rows``
    evenly spread rows of every batch, checked by a non-strict :class:`~golflib.eval.ledger.Ledger` (whose C2
    count records the violation). Returns ``{"val_bpb", "val_loss", "tokens", "bytes", "masses" (float64 [m]),
    "mass_positions", "matched_rate", "ledger", "buckets", "load_factor", "seconds"}``."""
    t0 = time.perf_counter()
    n = val_tokens.numel() - 1
    toks = val_tokens.detach().cpu().to(torch.int64)
    cache = HashedBlend940(toks, buckets=buckets, min_count=min_count)
    ledger = Ledger(n, strict=False)
    acc = BPBAccumulator("cpu")
    luts = luts.to("cpu")
    masses, mass_pos, matched_total = [], [], 0
    for pos, rows, yt, seg_lengths in batches:
        logp = torch.log_softmax(rows.detach().double().cpu(), dim=-1)
        alpha = entropy_alpha(-(logp.exp() * logp).sum(-1)).numpy()
        y = yt.detach().cpu().numpy()
        nll = np.empty(pos.size)
        pick = set(np.linspace(0, pos.size - 1, min(mass_rows, pos.size)).round().astype(int).tolist())
        a = 0
        for length in seg_lengths:  # one window's segment at a time, updating in between, as #940 does
            b = a + length
            seg = slice(a, b)
            ledger.score(pos[seg])
            p_y = np.exp(logp[seg].numpy()[np.arange(b - a), y[seg]])
            p = cache.blend(pos[seg], y[seg][:, None], p_y[:, None], alpha[seg])[:, 0]
            matched_total += int(cache.candidate_prob(pos[seg], y[seg][:, None])[1].sum())
            nll[seg] = -np.log(np.clip(p, 1e-12, 1.0))
            local = [i - a for i in sorted(pick) if a <= i < b]
            if local:
                lp = logp[seg].numpy()[local]
                implied = implied_rows(lambda q, c, lp=lp, al=alpha[seg][local]: cache.blend(q, c, np.exp(lp), al),
                                       pos[seg][local], lp.shape[1])
                ledger.check_normalized(implied, pos[seg][local])
                masses.append(implied.sum(1))
                mass_pos.append(pos[seg][local])
            cache.update(pos[seg])
            ledger.update(pos[seg], persistent=True)
            a = b
        t = torch.from_numpy(np.asarray(pos, dtype=np.int64))
        acc.add(torch.from_numpy(nll).float(), toks[t], toks[t + 1], luts, t)
    res = acc.result("sliding+ngram940", time.perf_counter() - t0, ledger.report())
    return {"val_bpb": res.val_bpb, "val_loss": res.val_loss, "tokens": res.tokens, "bytes": res.bytes,
            "masses": np.concatenate(masses) if masses else np.zeros(0),
            "mass_positions": np.concatenate(mass_pos) if mass_pos else np.zeros(0, np.int64),
            "matched_rate": matched_total / max(n, 1), "ledger": res.ledger, "buckets": buckets,
            "load_factor": n / buckets, "seconds": res.seconds}


def eval_sliding_940(model, val_tokens: torch.Tensor, luts: ByteCounter, *, seq_len: int, stride: int,
                     batch_seqs: int = 32, buckets: int = 4_194_304, min_count: int = 2, mass_rows: int = 4,
                     device: torch.device | str = "cpu") -> dict:
    """#940's sliding-window evaluation of ``model`` on ``val_tokens``: :func:`score_940` over
    :func:`window_batches_940` (the window set is golflib's, with the #1218 tail fix)."""
    batches = window_batches_940(model, val_tokens, seq_len=seq_len, stride=stride, batch_seqs=batch_seqs,
                                 device=device)
    return score_940(batches, val_tokens, luts, buckets=buckets, min_count=min_count, mass_rows=mass_rows)

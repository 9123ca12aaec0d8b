"""Exact online n-gram counts and their interpolated Witten–Bell distribution over the whole vocabulary, on the
model's device.

Counts are *collision-free*: a context of length ``k`` (the ``k`` input tokens ending at position ``t``) gets an
integer id through a backward trie — level 1 ids are the token ids themselves, and the level-``k`` id is the id
registered for the pair ``(level-(k-1) id, older token)`` under the key ``parent_id · V + token`` (exact in int64).
Follower counts ``c(h, v)`` are kept under ``ctx_id · V + v``; ``c(h)`` and ``N1+(h)`` in dense per-context arrays.

Every table lives on ``device`` (the model's: the mixer then runs where the logits are, issue 14) as a handful of
sorted *runs* (:class:`SortedRuns`, a log-structured merge): an update appends the block's keys as a new run and
merges the newest runs while one is at least ``1/MERGE_FACTOR`` of the size of the run before it, so an update
costs ``O(block · log E)`` amortised instead of the ``O(E)`` of inserting into one sorted array (which at the full
val set's tens of millions of entries would copy gigabytes per 64-position block); a lookup is one
``torch.searchsorted`` per run (≈ log_8 of the table size runs). A count is the sum over runs; a context id is
found in at most one run.

Position convention (as :mod:`golflib.eval.ledger`): target position ``t`` predicts ``tokens[t + 1]`` from
``tokens[:t + 1]``; its length-``k`` context is ``tokens[t - k + 1 .. t]``. With ``bos_id`` set, contexts do not
reach across a document boundary: the BOS opening a document may be a context's oldest token, nothing before it.

Smoothing: **interpolated Witten–Bell** (Witten & Bell 1991, "The zero-frequency problem", IEEE Trans. Inf. Theory
37(4); in the interpolated form of Chen & Goodman 1999, "An empirical study of smoothing techniques for language
modeling"; the escape method C of PPM, Moffat 1990). For a context ``h`` of length ``k`` with ``c(h)`` follower
tokens of which ``N1+(h)`` are distinct:

    p_k(v | h) = (c(h, v) + N1+(h) · p_{k-1}(v | h')) / (c(h) + N1+(h))        (= p_{k-1} when c(h) = 0)

with ``h'`` the context one token shorter; the chain ends in the unigram, itself interpolated the same way with the
uniform distribution ``1/V`` — so every token keeps mass (the floor) and each row sums to 1 by construction.
Witten–Bell needs only ``c(h)`` and ``N1+(h)`` per context, which an online cache maintains exactly; interpolated
Kneser–Ney would also need continuation counts of every lower-order context.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

MERGE_FACTOR = 8  # merge the newest run into the one before while newest · 8 >= previous: ≈ log_8(E / block) runs


def _as_long(x, device: torch.device) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(device=device, dtype=torch.int64).reshape(-1)
    return torch.as_tensor(np.asarray(x, dtype=np.int64), device=device).reshape(-1)


def expand_ranges(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """For ranges ``[lo[i], hi[i])`` (int64 ``[n]``): (owner row of each element, element index), row-major."""
    lengths = (hi - lo).clamp_min(0)
    total = int(lengths.sum())
    owner = torch.repeat_interleave(torch.arange(lo.numel(), device=lo.device), lengths, output_size=total)
    starts = torch.cumsum(lengths, 0) - lengths
    idx = lo[owner] + (torch.arange(total, device=lo.device) - starts[owner])
    return owner, idx


class SortedRuns:
    """A map int64 key → int64 value as sorted runs on ``device``; values of a key in several runs add up (a count
    table), or a key is added once (an id table). :meth:`add` takes sorted unique keys."""

    def __init__(self, device: torch.device):
        self.device = device
        self.keys: list[Tensor] = []
        self.vals: list[Tensor] = []

    def __len__(self) -> int:
        return sum(k.numel() for k in self.keys)

    def add(self, keys: Tensor, vals: Tensor) -> None:
        if keys.numel() == 0:
            return
        self.keys.append(keys)
        self.vals.append(vals)
        while len(self.keys) > 1 and self.keys[-1].numel() * MERGE_FACTOR >= self.keys[-2].numel():
            k = torch.cat([self.keys[-2], self.keys.pop()])
            v = torch.cat([self.vals[-2], self.vals.pop()])
            k, order = torch.sort(k, stable=True)
            uniq, inverse = torch.unique_consecutive(k, return_inverse=True)
            self.keys[-1] = uniq
            self.vals[-1] = torch.zeros(uniq.numel(), dtype=v.dtype, device=v.device).index_add_(0, inverse, v[order])

    def lookup(self, query: Tensor) -> tuple[Tensor, Tensor]:
        """``(found bool [n], value int64 [n])``: whether each key is stored, and its value summed over runs (0 if
        absent)."""
        found = torch.zeros(query.shape, dtype=torch.bool, device=query.device)
        total = torch.zeros(query.shape, dtype=torch.int64, device=query.device)
        for k, v in zip(self.keys, self.vals):
            i = torch.searchsorted(k, query).clamp_max(k.numel() - 1)
            hit = k[i] == query
            found |= hit
            total += torch.where(hit, v[i], 0)
        return found, total

    def ranges(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Every stored ``(row, key, value)`` with ``lo[row] <= key < hi[row]``, over all runs (a key stored in two
        runs appears twice; their values add up)."""
        rows, keys, vals = [], [], []
        for k, v in zip(self.keys, self.vals):
            owner, idx = expand_ranges(torch.searchsorted(k, lo), torch.searchsorted(k, hi))
            rows.append(owner)
            keys.append(k[idx])
            vals.append(v[idx])
        if not rows:
            empty = torch.zeros(0, dtype=torch.int64, device=lo.device)
            return empty, empty, empty
        return torch.cat(rows), torch.cat(keys), torch.cat(vals)


class NgramCounts:
    """Exact counts of n-gram orders ``orders`` (each ≥ 2; context length ``n - 1``) over a token stream, on
    ``device`` (default: the stream's).

    ``tokens``: the evaluation stream, int ``[n_targets + 1]`` (numpy or torch); only ``tokens[:t + 1]`` is read
    to look up position ``t`` and ``tokens[t + 1]`` when position ``t`` is *added* (after it was scored).
    ``vocab_size``: V (token ids must be ``< V``). ``bos_id``: documents start at this token (None: contexts may
    span documents). Positions may be numpy arrays or int64 tensors; results are tensors on ``device``. Raises
    ``ValueError`` for orders outside ``[2, 32]`` or tokens outside ``[0, V)``.
    """

    def __init__(self, tokens, vocab_size: int, orders=(2, 3, 4, 5, 6, 7), bos_id: int | None = None,
                 device: torch.device | str | None = None):
        orders = tuple(sorted({int(o) for o in orders}))
        if not orders or orders[0] < 2 or orders[-1] > 32:
            raise ValueError(f"NGRAM_ORDERS={orders}: n-gram orders must be integers in [2, 32]")
        if device is None:
            device = tokens.device if isinstance(tokens, Tensor) else "cpu"
        self.device = torch.device(device)
        self.tokens = _as_long(tokens, self.device)
        self.V = int(vocab_size)
        if self.tokens.numel() < 2 or int(self.tokens.min()) < 0 or int(self.tokens.max()) >= self.V:
            raise ValueError(f"NgramCounts: tokens must be a stream of >= 2 ids in [0, {self.V})")
        self.orders = orders
        self.levels = tuple(o - 1 for o in orders)  # context lengths that carry counts
        self.max_level = self.levels[-1]
        self.bos_id = bos_id
        zeros = lambda n: torch.zeros(n, dtype=torch.int64, device=self.device)  # noqa: E731
        self._ctx = {k: SortedRuns(self.device) for k in range(2, self.max_level + 1)}  # key -> context id
        self._n_ctx = {k: 0 for k in range(2, self.max_level + 1)}
        self._pairs = {k: SortedRuns(self.device) for k in self.levels}  # ctx_id * V + v -> count
        self._ctx_total = {k: zeros(self.V if k == 1 else 0) for k in self.levels}
        self._ctx_types = {k: zeros(self.V if k == 1 else 0) for k in self.levels}
        self.unigram = zeros(self.V)
        self.n_added = 0
        self._added = torch.zeros(self.tokens.numel() - 1, dtype=torch.bool, device=self.device)

    # ---- contexts ------------------------------------------------------------------------------------------
    def context_ids(self, positions, register: bool = False) -> dict[int, Tensor]:
        """``{k: ids int64 [n]}`` for every context length ``1..max_level`` at ``positions`` (-1 = context never
        seen, or not available: before the stream start or across a BOS). ``register`` (used by :meth:`add`)
        assigns ids to unseen contexts."""
        t = _as_long(positions, self.device)
        out = {1: self.tokens[t].clone()}
        ok = torch.ones(t.shape, dtype=torch.bool, device=self.device)
        for k in range(2, self.max_level + 1):
            back = t - k + 1
            ok = ok & (back >= 0)
            if self.bos_id is not None:  # extend past x_{t-k+2} only when it does not open a document
                ok &= self.tokens[(back + 1).clamp_min(0)] != self.bos_id
            parent = out[k - 1]
            ok &= parent >= 0
            keys = parent * self.V + self.tokens[back.clamp_min(0)]
            hit, found_id = self._ctx[k].lookup(keys)
            ids = torch.where(ok & hit, found_id, -1)
            if register:
                miss = ok & ~hit
                if bool(miss.any()):
                    new = torch.unique(keys[miss])  # sorted
                    base = self._n_ctx[k]
                    self._ctx[k].add(new, base + torch.arange(new.numel(), device=self.device))
                    self._n_ctx[k] += new.numel()
                    ids = torch.where(miss, base + torch.searchsorted(new, keys), ids)
            out[k] = ids
        return out

    # ---- updates -------------------------------------------------------------------------------------------
    def add(self, positions) -> None:
        """Add the targets ``tokens[t + 1]`` of ``positions`` (already scored) to the counts. Raises
        ``ValueError`` for a position outside the stream or added twice."""
        t = _as_long(positions, self.device)
        if t.numel() == 0:
            return
        if int(t.min()) < 0 or int(t.max()) >= self._added.numel():
            raise ValueError(f"NgramCounts.add: positions must be in [0, {self._added.numel()})")
        if bool(self._added[t].any()) or torch.unique(t).numel() != t.numel():
            raise ValueError("NgramCounts.add: a position was added twice")
        self._added[t] = True
        y = self.tokens[t + 1]
        self.unigram += torch.bincount(y, minlength=self.V)
        self.n_added += int(t.numel())
        ids = self.context_ids(t, register=True)
        for k in self.levels:
            ok = ids[k] >= 0
            if k > 1:  # grow per-context arrays to the number of registered contexts
                n = self._n_ctx[k]
                for arr in (self._ctx_total, self._ctx_types):
                    if arr[k].numel() < n:
                        grown = torch.zeros(max(n, 2 * arr[k].numel()), dtype=torch.int64, device=self.device)
                        grown[:arr[k].numel()] = arr[k]
                        arr[k] = grown
            pair = ids[k][ok] * self.V + y[ok]
            uniq, cnt = torch.unique(pair, return_counts=True)
            exists, _ = self._pairs[k].lookup(uniq)
            self._pairs[k].add(uniq, cnt)
            self._ctx_total[k].index_add_(0, uniq // self.V, cnt)
            new = uniq[~exists]
            self._ctx_types[k].index_add_(0, new // self.V, torch.ones_like(new))

    @property
    def added_mask(self) -> np.ndarray:
        """bool ``[n_targets]``: positions whose target is in the counts (a host copy)."""
        return self._added.cpu().numpy()

    def count(self, level: int, ctx_ids, token) -> Tensor:
        """``c(h, v)`` for contexts ``ctx_ids`` of length ``level`` (−1 = unseen → 0) and tokens ``token``."""
        ctx_ids, token = _as_long(ctx_ids, self.device), _as_long(token, self.device)
        _, c = self._pairs[level].lookup(ctx_ids.clamp_min(0) * self.V + token)
        return torch.where(ctx_ids >= 0, c, 0)

    def totals(self, level: int, ctx_ids) -> tuple[Tensor, Tensor]:
        """``(c(h), N1+(h))`` for contexts of length ``level`` (0 for −1)."""
        ctx_ids = _as_long(ctx_ids, self.device)
        tot = self._ctx_total[level]
        ok = (ctx_ids >= 0) & (ctx_ids < tot.numel())
        if tot.numel() == 0:
            return torch.zeros_like(ctx_ids), torch.zeros_like(ctx_ids)
        j = torch.where(ok, ctx_ids, 0)
        return torch.where(ok, tot[j], 0), torch.where(ok, self._ctx_types[level][j], 0)

    def followers(self, level: int, ctx_ids) -> tuple[Tensor, Tensor, Tensor]:
        """Every stored ``(row, token, count)`` for the contexts ``ctx_ids`` (rows index ``ctx_ids``); a token may
        appear in several entries of a row, whose counts add up."""
        ctx_ids = _as_long(ctx_ids, self.device)
        base = torch.where(ctx_ids >= 0, ctx_ids * self.V, -1)
        hi = torch.where(ctx_ids >= 0, base + self.V, -1)  # an empty range for unseen contexts
        rows, keys, vals = self._pairs[level].ranges(base, hi)
        return rows, keys % self.V, vals

    # ---- the distribution ----------------------------------------------------------------------------------
    def distribution(self, positions, *, dtype=torch.float64, with_hint: bool = False):
        """Interpolated Witten–Bell distribution at ``positions`` from the current counts.

        Returns ``(probs, hit_order, hint, hint_prob, hint_count)`` on ``device``: ``probs`` ``[n, V]``
        (``dtype``), every row > 0 and summing to 1; ``hit_order`` int64 ``[n]`` — the highest n-gram order whose
        context has been seen (0 when none has); with ``with_hint`` the most frequent follower of that context
        (``-1`` without a hit; ties → smaller id), its maximum-likelihood probability ``c(h, v)/c(h)`` (float64)
        and ``c(h)`` (else None). Memory: two ``[n, V]`` tensors.
        """
        t = _as_long(positions, self.device)
        n = t.numel()
        ids = self.context_ids(t)
        remaining = torch.ones(n, dtype=torch.float64, device=self.device)
        hit_order = torch.zeros(n, dtype=torch.int64, device=self.device)
        hit_level = torch.zeros(n, dtype=torch.int64, device=self.device)
        flat = torch.zeros(n * self.V, dtype=dtype, device=self.device)
        for k in reversed(self.levels):  # highest order first: λ_k · ML_k, then pass the rest down
            c, types = self.totals(k, ids[k])
            seen = c > 0
            newly = seen & (hit_order == 0)
            hit_order = torch.where(newly, k + 1, hit_order)
            hit_level = torch.where(newly, k, hit_level)
            denom = torch.where(seen, c + types, 1).to(torch.float64)
            weight = torch.where(seen, remaining / denom, 0.0)  # λ_k / c(h) = 1 / (c(h) + N1+(h))
            rows, toks, cnt = self.followers(k, torch.where(seen, ids[k], -1))
            flat.index_add_(0, rows * self.V + toks, (weight[rows] * cnt).to(dtype))
            remaining = remaining * torch.where(seen, types / denom, 1.0)
        seen_total = self.n_added
        seen_types = int((self.unigram > 0).sum())
        probs = flat.view(n, self.V)
        floor = remaining * (seen_types / (seen_total + seen_types) if seen_total else 1.0)
        probs += (floor / self.V).to(dtype)[:, None]
        if seen_total:
            uni_w = remaining / (seen_total + seen_types)
            probs += uni_w.to(dtype)[:, None] * self.unigram.to(dtype)[None, :]
        if not with_hint:
            return probs, hit_order, None, None, None
        hint = torch.full((n,), -1, dtype=torch.int64, device=self.device)
        hint_prob = torch.zeros(n, dtype=torch.float64, device=self.device)
        hint_count = torch.zeros(n, dtype=torch.int64, device=self.device)
        for k in self.levels:
            sel = torch.nonzero(hit_level == k).squeeze(-1)
            if sel.numel() == 0:
                continue
            r, v, cnt = self.followers(k, ids[k][sel])
            dense = torch.zeros(sel.numel() * self.V, dtype=torch.int64, device=self.device)
            dense.index_add_(0, r * self.V + v, cnt)
            top = dense.view(sel.numel(), self.V).max(dim=1)
            c, _ = self.totals(k, ids[k][sel])
            hint[sel] = top.indices
            hint_prob[sel] = top.values.to(torch.float64) / c.clamp_min(1)
            hint_count[sel] = c
        return probs, hit_order, hint, hint_prob, hint_count

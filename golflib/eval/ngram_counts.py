"""Exact online n-gram counts and their interpolated Witten–Bell distribution over the whole vocabulary.

Counts are *collision-free*: a context of length ``k`` (the ``k`` input tokens ending at position ``t``) gets an
integer id through a backward trie — level 1 ids are the token ids themselves, and the level-``k`` id is the id
registered for the pair ``(level-(k-1) id, older token)`` in a sorted key table (``key = parent_id · V + token``,
exact in int64). Follower counts ``c(h, v)`` live in a sorted table keyed by ``ctx_id · V + v``. Lookups are
``np.searchsorted`` over whole batches (``O(n log E)`` for ``n`` positions and ``E`` stored entries); an update
merges the batch's new keys with ``np.insert`` (``O(E)`` per update, fine for the CPU-scale streams golflib
evaluates; a GPU hash table would replace it at 62 M tokens).

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


def _locate(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each ``query`` in sorted ``keys`` (clipped) and whether it is present."""
    if keys.size == 0:
        return np.zeros(query.shape, np.int64), np.zeros(query.shape, bool)
    i = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return i, keys[i] == query


def _expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[lo[i], hi[i])``: (owner row of each element, element index), row-major, without a loop."""
    lengths = np.maximum(hi - lo, 0)
    total = int(lengths.sum())
    owner = np.repeat(np.arange(lo.size, dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    idx = lo[owner] + (np.arange(total, dtype=np.int64) - starts[owner])
    return owner, idx


class NgramCounts:
    """Exact counts of n-gram orders ``orders`` (each ≥ 2; context length ``n - 1``) over a token stream.

    ``tokens``: the evaluation stream, int ``[n_targets + 1]`` (numpy or torch); only ``tokens[:t + 1]`` is read
    to look up position ``t`` and ``tokens[t + 1]`` when position ``t`` is *added* (after it was scored).
    ``vocab_size``: V (token ids must be ``< V``). ``bos_id``: documents start at this token (None: contexts may
    span documents). Raises ``ValueError`` for orders outside ``[2, 32]`` or tokens outside ``[0, V)``.
    """

    def __init__(self, tokens, vocab_size: int, orders=(2, 3, 4, 5, 6, 7), bos_id: int | None = None):
        orders = tuple(sorted({int(o) for o in orders}))
        if not orders or orders[0] < 2 or orders[-1] > 32:
            raise ValueError(f"NGRAM_ORDERS={orders}: n-gram orders must be integers in [2, 32]")
        toks = tokens.detach().cpu().numpy() if hasattr(tokens, "detach") else np.asarray(tokens)
        self.tokens = toks.astype(np.int64, copy=False).reshape(-1)
        self.V = int(vocab_size)
        if self.tokens.size < 2 or self.tokens.min() < 0 or self.tokens.max() >= self.V:
            raise ValueError(f"NgramCounts: tokens must be a stream of >= 2 ids in [0, {self.V})")
        self.orders = orders
        self.levels = tuple(o - 1 for o in orders)  # context lengths that carry counts
        self.max_level = self.levels[-1]
        self.bos_id = bos_id
        # context-id tries for levels 2..max_level (level 1 ids are token ids)
        self._ctx_keys = {k: np.zeros(0, np.int64) for k in range(2, self.max_level + 1)}
        self._ctx_ids = {k: np.zeros(0, np.int64) for k in range(2, self.max_level + 1)}
        self._n_ctx = {k: 0 for k in range(2, self.max_level + 1)}
        # follower counts per counted level: sorted pair keys ctx_id * V + v, counts; per-context c(h), N1+(h)
        self._pair_keys = {k: np.zeros(0, np.int64) for k in self.levels}
        self._pair_counts = {k: np.zeros(0, np.int64) for k in self.levels}
        self._ctx_total = {k: np.zeros(self.V if k == 1 else 0, np.int64) for k in self.levels}
        self._ctx_types = {k: np.zeros(self.V if k == 1 else 0, np.int64) for k in self.levels}
        self.unigram = np.zeros(self.V, np.int64)
        self.n_added = 0
        self._added = np.zeros(self.tokens.size - 1, dtype=bool)  # positions whose target is in the counts

    # ---- contexts ------------------------------------------------------------------------------------------
    def context_ids(self, positions: np.ndarray, register: bool = False) -> dict[int, np.ndarray]:
        """``{k: ids [n]}`` for every context length ``1..max_level`` at ``positions`` (int64; -1 = context never
        seen, or not available: before the stream start or across a BOS). ``register`` (used by :meth:`add`)
        assigns ids to unseen contexts."""
        t = np.asarray(positions, dtype=np.int64)
        out = {1: self.tokens[t].copy()}
        ok = np.ones(t.size, dtype=bool)
        for k in range(2, self.max_level + 1):
            back = t - k + 1
            ok = ok & (back >= 0)
            if self.bos_id is not None:  # extend past x_{t-k+2} only when it does not open a document
                ok &= self.tokens[np.maximum(back + 1, 0)] != self.bos_id
            parent = out[k - 1]
            ok &= parent >= 0
            keys = parent * self.V + self.tokens[np.maximum(back, 0)]
            i, hit = _locate(self._ctx_keys[k], keys)
            ids = np.where(ok & hit, self._ctx_ids[k][i] if self._ctx_keys[k].size else -1, -1)
            if register:
                miss = ok & ~hit
                if miss.any():
                    new = np.unique(keys[miss])
                    new_ids = self._n_ctx[k] + np.arange(new.size, dtype=np.int64)
                    at = np.searchsorted(self._ctx_keys[k], new)
                    self._ctx_keys[k] = np.insert(self._ctx_keys[k], at, new)
                    self._ctx_ids[k] = np.insert(self._ctx_ids[k], at, new_ids)
                    self._n_ctx[k] += new.size
                    i, hit = _locate(self._ctx_keys[k], keys)
                    ids = np.where(ok & hit, self._ctx_ids[k][i], -1)
            out[k] = ids
        return out

    # ---- updates -------------------------------------------------------------------------------------------
    def add(self, positions) -> None:
        """Add the targets ``tokens[t + 1]`` of ``positions`` (already scored) to the counts. Raises
        ``ValueError`` for a position outside the stream or added twice."""
        t = np.asarray(positions, dtype=np.int64).reshape(-1)
        if t.size == 0:
            return
        if t.min() < 0 or t.max() >= self._added.size:
            raise ValueError(f"NgramCounts.add: positions must be in [0, {self._added.size})")
        if self._added[t].any() or np.unique(t).size != t.size:
            raise ValueError("NgramCounts.add: a position was added twice")
        self._added[t] = True
        y = self.tokens[t + 1]
        self.unigram += np.bincount(y, minlength=self.V)
        self.n_added += int(t.size)
        ids = self.context_ids(t, register=True)
        for k in self.levels:
            ok = ids[k] >= 0
            if k > 1:  # grow per-context arrays to the number of registered contexts
                n = self._n_ctx[k]
                for arr in (self._ctx_total, self._ctx_types):
                    if arr[k].size < n:
                        arr[k] = np.concatenate([arr[k], np.zeros(max(n, 2 * arr[k].size) - arr[k].size, np.int64)])
            pair = ids[k][ok] * self.V + y[ok]
            uniq, cnt = np.unique(pair, return_counts=True)
            i, hit = _locate(self._pair_keys[k], uniq)
            self._pair_counts[k][i[hit]] += cnt[hit]
            new, new_cnt = uniq[~hit], cnt[~hit]
            at = np.searchsorted(self._pair_keys[k], new)
            self._pair_keys[k] = np.insert(self._pair_keys[k], at, new)
            self._pair_counts[k] = np.insert(self._pair_counts[k], at, new_cnt)
            np.add.at(self._ctx_total[k], uniq // self.V, cnt)
            np.add.at(self._ctx_types[k], new // self.V, 1)

    @property
    def added_mask(self) -> np.ndarray:
        """bool ``[n_targets]``: positions whose target is in the counts (a copy)."""
        return self._added.copy()

    def count(self, level: int, ctx_ids: np.ndarray, token: np.ndarray) -> np.ndarray:
        """``c(h, v)`` for contexts ``ctx_ids`` of length ``level`` (−1 = unseen → 0) and tokens ``token``."""
        ctx_ids = np.asarray(ctx_ids, np.int64)
        i, hit = _locate(self._pair_keys[level], np.maximum(ctx_ids, 0) * self.V + np.asarray(token, np.int64))
        return np.where(hit & (ctx_ids >= 0), self._pair_counts[level][i] if self._pair_keys[level].size else 0, 0)

    def totals(self, level: int, ctx_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(c(h), N1+(h))`` for contexts of length ``level`` (0 for −1)."""
        ctx_ids = np.asarray(ctx_ids, np.int64)
        ok = (ctx_ids >= 0) & (ctx_ids < self._ctx_total[level].size)
        j = np.where(ok, ctx_ids, 0)
        tot = self._ctx_total[level]
        if tot.size == 0:
            return np.zeros(ctx_ids.size, np.int64), np.zeros(ctx_ids.size, np.int64)
        return np.where(ok, tot[j], 0), np.where(ok, self._ctx_types[level][j], 0)

    def followers(self, level: int, ctx_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored ``(row, token, count)`` for the contexts ``ctx_ids`` (rows index ``ctx_ids``), row-major."""
        ctx_ids = np.asarray(ctx_ids, np.int64)
        keys = self._pair_keys[level]
        base = np.where(ctx_ids >= 0, ctx_ids, -1) * self.V
        lo = np.where(ctx_ids >= 0, np.searchsorted(keys, base), 0)
        hi = np.where(ctx_ids >= 0, np.searchsorted(keys, base + self.V), 0)
        owner, idx = _expand_ranges(lo, hi)
        return owner, keys[idx] % self.V, self._pair_counts[level][idx]

    # ---- the distribution ----------------------------------------------------------------------------------
    def distribution(self, positions, *, dtype=torch.float64, with_hint: bool = False):
        """Interpolated Witten–Bell distribution at ``positions`` from the current counts.

        Returns ``(probs, hit_order, hint, hint_prob, hint_count)``: ``probs`` torch ``[n, V]`` (``dtype``), every
        row > 0 and summing to 1; ``hit_order`` int64 ``[n]`` — the highest n-gram order whose context has been
        seen (0 when none has); with ``with_hint`` the most frequent follower of that context (``-1`` without a
        hit; ties → smaller id), its maximum-likelihood probability ``c(h, v)/c(h)`` and ``c(h)`` (else None).
        Memory: two ``[n, V]`` tensors.
        """
        t = np.asarray(positions, dtype=np.int64).reshape(-1)
        n = t.size
        ids = self.context_ids(t)
        remaining = np.ones(n)
        entries = []  # (rows, tokens, weight per count)
        hit_order = np.zeros(n, np.int64)
        hit_level = np.zeros(n, np.int64)
        for k in reversed(self.levels):  # highest order first: λ_k · ML_k, then pass the rest down
            c, types = self.totals(k, ids[k])
            seen = c > 0
            newly = seen & (hit_order == 0)
            hit_order[newly], hit_level[newly] = k + 1, k
            denom = np.where(seen, c + types, 1)
            weight = np.where(seen, remaining / denom, 0.0)  # λ_k / c(h) = 1 / (c(h) + N1+(h))
            rows, toks, cnt = self.followers(k, np.where(seen, ids[k], -1))
            entries.append((rows, toks, weight[rows] * cnt))
            remaining = remaining * np.where(seen, types / denom, 1.0)
        seen_total, seen_types = self.n_added, int((self.unigram > 0).sum())
        uni_w = remaining / (seen_total + seen_types) if seen_total else np.zeros(n)
        floor = remaining * (seen_types / (seen_total + seen_types) if seen_total else 1.0)
        probs = torch.from_numpy(floor / self.V).to(dtype)[:, None].expand(n, self.V).clone()
        if seen_total:
            probs += torch.from_numpy(uni_w).to(dtype)[:, None] * torch.from_numpy(self.unigram).to(dtype)[None, :]
        rows = np.concatenate([e[0] for e in entries]) if entries else np.zeros(0, np.int64)
        if rows.size:
            toks = np.concatenate([e[1] for e in entries])
            vals = np.concatenate([e[2] for e in entries])
            flat = torch.from_numpy(rows * self.V + toks)
            probs.view(-1).index_add_(0, flat, torch.from_numpy(vals).to(dtype))
        if not with_hint:
            return probs, hit_order, None, None, None
        hint = np.full(n, -1, np.int64)
        hint_prob = np.zeros(n)
        hint_count = np.zeros(n, np.int64)
        for k in self.levels:
            sel = np.flatnonzero(hit_level == k)
            if sel.size == 0:
                continue
            r, v, cnt = self.followers(k, ids[k][sel])
            dense = torch.zeros(sel.size, self.V, dtype=torch.int64)
            dense.view(-1)[torch.from_numpy(r * self.V + v)] = torch.from_numpy(cnt)
            top = dense.max(dim=1)
            c, _ = self.totals(k, ids[k][sel])
            hint[sel] = top.indices.numpy()
            hint_prob[sel] = top.values.numpy() / np.maximum(c, 1)
            hint_count[sel] = c
        return probs, hit_order, hint, hint_prob, hint_count

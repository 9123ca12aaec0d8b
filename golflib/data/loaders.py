"""The record loaders (SPEC §3.D9), alongside the baseline sequential loader of :mod:`golflib.data.loader`.

Every loader has ``next_batch(global_tokens, seq_len, grad_accum_steps) -> (x, y, doc_ids)`` with ``x``, ``y`` int64
``[local_tokens // seq_len, seq_len]`` (``local_tokens = global_tokens // (world · accum)``) and ``doc_ids`` either
None or int64 of the same shape (document-packing loader: attention is restricted to equal ids).

* :class:`CoprimeStrideLoader` (#726 → #1060/#1218): per-shard random phase and a stride coprime with the number of
  seq-length blocks, so every block is visited once per pass in a scrambled order; each batch mixes a growing number
  of shards (max(8, W) → max(32, 8W) over the first 1,800 batches) chosen ∝ remaining_blocks^α (α 0.9 → 0.5);
  windows interleaved round-robin. All ranks build the same global window list and take ``windows[rank::world]``.
* :class:`ShuffledSequenceLoader` (#1394): shards split by rank; per shard a random phase and a random permutation of
  sequence starts; each sequence comes from a shard chosen ∝ its remaining sequences (memmap reads).
* :class:`DocumentPackingLoader` (#1530 → #1855): the contiguous stream (starting at a shard's first BOS), one span
  per rank, and document ids from BOS positions so attention never crosses documents (VarLen).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from golflib.data.loader import DistributedTokenLoader
from golflib.data.shards import list_shards, load_shard


def _local_seqs(global_tokens: int, seq_len: int, world: int, accum: int) -> int:
    local = global_tokens // (world * accum)
    if local % seq_len:
        raise ValueError(f"per-rank micro-batch of {local} tokens is not a multiple of TRAIN_SEQ_LEN={seq_len}")
    return local // seq_len


def _windows_to_xy(shards: list[np.ndarray], windows: list[tuple[int, int]], seq_len: int, device):
    arr = np.stack([np.asarray(shards[s][o:o + seq_len + 1], dtype=np.int64) for s, o in windows])
    t = torch.from_numpy(arr)
    return t[:, :-1].to(device), t[:, 1:].to(device), None


def path_seed(paths) -> int:
    """64-bit FNV-1a-style seed of the shard paths (identical on every rank)."""
    h = 0
    for p in paths:
        for b in str(p).encode():
            h = ((h ^ b) * 1099511628211) % 2**64
    return h


class _ShardCursor:
    """Coprime-stride walk over the seq-length blocks of one shard."""

    def __init__(self, n_tokens: int, seq_len: int, rng: np.random.Generator):
        self.n, self.seq, self.rng = n_tokens, seq_len, rng
        self.reset()

    def reset(self) -> None:
        max_phase = max(0, min(self.seq - 1, self.n - self.seq - 1))
        self.phase = int(self.rng.integers(0, max_phase + 1))
        self.blocks = max(0, (self.n - 1 - self.phase) // self.seq)
        self.start = int(self.rng.integers(0, max(self.blocks, 1)))
        self.stride = 1
        if self.blocks > 1:
            while True:
                s = int(self.rng.integers(1, self.blocks))
                if math.gcd(s, self.blocks) == 1:
                    self.stride = s
                    break
        self.taken = 0

    @property
    def remaining(self) -> int:
        return self.blocks - self.taken

    def take(self) -> int:
        if self.remaining <= 0:
            self.reset()
        block = (self.start + self.taken * self.stride) % self.blocks
        self.taken += 1
        return self.phase + block * self.seq


class CoprimeStrideLoader:
    """#1218's loader (see module docstring). Shards shorter than ``seq_len + 1`` tokens are skipped."""

    def __init__(self, pattern: str, rank: int, world_size: int, device="cpu", vocab_size: int | None = None,
                 seed: int = 0):
        self.files = list_shards(pattern)
        self.rank, self.world, self.device = rank, world_size, torch.device(device)
        self.shards = [load_shard(f, vocab_size) for f in self.files]
        self.rng = np.random.default_rng((path_seed(self.files) + seed) % 2**64)
        self.cursors: list[_ShardCursor] | None = None
        self.batches = 0
        self.tokens_served = 0

    def _global_windows(self, n_seqs: int, seq_len: int) -> list[tuple[int, int]]:
        if self.cursors is None:
            self.cursors = [_ShardCursor(s.size, seq_len, self.rng) for s in self.shards]
        eligible = [i for i, c in enumerate(self.cursors) if c.blocks > 0]
        if not eligible:
            raise ValueError(f"no train shard has more than seq_len={seq_len} tokens")
        for i in eligible:
            if self.cursors[i].remaining <= 0:
                self.cursors[i].reset()
        progress = min(self.batches / 1800.0, 1.0)
        alpha = 0.9 - 0.4 * progress
        low = min(max(8, self.world), len(eligible), n_seqs)
        high = min(max(32, 8 * self.world), len(eligible), n_seqs)
        mix = max(1, int(round(low + progress * (high - low))))
        w = np.array([self.cursors[i].remaining ** alpha for i in eligible], dtype=np.float64)
        chosen = self.rng.choice(eligible, size=mix, replace=False, p=w / w.sum())
        extra = self.rng.multinomial(n_seqs - mix, np.ones(mix) / mix) if n_seqs > mix else np.zeros(mix, int)
        buckets = []
        for shard, k in zip(self.rng.permutation(chosen), 1 + extra):
            wins = [(int(shard), self.cursors[shard].take()) for _ in range(int(k))]
            buckets.append([wins[i] for i in self.rng.permutation(len(wins))])
        out: list[tuple[int, int]] = []
        while any(buckets):
            for b in self.rng.permutation(len(buckets)):
                if buckets[b]:
                    out.append(buckets[b].pop())
        return out

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int):
        n_local = _local_seqs(global_tokens, seq_len, self.world, grad_accum_steps)
        windows = self._global_windows(n_local * self.world, seq_len)
        self.batches += 1
        self.tokens_served += n_local * self.world * seq_len
        return _windows_to_xy(self.shards, windows[self.rank::self.world], seq_len, self.device)


class ShuffledSequenceLoader:
    """#1394's loader (see module docstring). With fewer shards than ranks every rank reads all shards with its own
    random order (the record assumes many shards)."""

    def __init__(self, pattern: str, rank: int, world_size: int, device="cpu", vocab_size: int | None = None,
                 seed: int = 0):
        files = list_shards(pattern)
        self.files = files[rank::world_size] if len(files) >= world_size else files
        self.rank, self.world, self.device = rank, world_size, torch.device(device)
        self.shards = [load_shard(f, vocab_size) for f in self.files]
        self.rng = np.random.default_rng(seed * 1_000_003 + rank)
        self.starts: list[list[int]] | None = None
        self.tokens_served = 0

    def _reset(self, seq_len: int) -> None:
        self.starts = []
        for s in self.shards:
            phase = int(self.rng.integers(0, seq_len))
            n = max(0, (s.size - 1 - phase) // seq_len)
            self.starts.append([phase + int(i) * seq_len for i in self.rng.permutation(n)])
        if not any(self.starts):
            raise ValueError(f"no train shard has more than seq_len={seq_len} tokens")

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int):
        n_local = _local_seqs(global_tokens, seq_len, self.world, grad_accum_steps)
        if self.starts is None:
            self._reset(seq_len)
        windows = []
        for _ in range(n_local):
            rem = np.array([len(s) for s in self.starts], dtype=np.float64)
            if rem.sum() == 0:
                self._reset(seq_len)
                rem = np.array([len(s) for s in self.starts], dtype=np.float64)
            shard = int(self.rng.choice(len(self.starts), p=rem / rem.sum()))
            windows.append((shard, self.starts[shard].pop()))
        self.tokens_served += n_local * self.world * seq_len
        return _windows_to_xy(self.shards, windows, seq_len, self.device)


class DocumentPackingLoader:
    """#1530's loader (see module docstring). Rows of ``seq_len`` tokens; ``doc_ids[r, t]`` counts the BOS tokens in
    ``x[r, :t+1]``, so a document is cut at row boundaries (segments ≤ TRAIN_SEQ_LEN, as the record's cu_seqlens)."""

    def __init__(self, pattern: str, rank: int, world_size: int, device="cpu", vocab_size: int | None = None,
                 bos_id: int = 1):
        self.files = list_shards(pattern)
        self.rank, self.world, self.device, self.bos = rank, world_size, torch.device(device), bos_id
        self.vocab_size = vocab_size
        self.file_idx = -1
        self.epochs = 0
        self._next_shard()
        self.tokens_served = 0

    def _next_shard(self) -> None:
        self.file_idx = (self.file_idx + 1) % len(self.files)
        if self.file_idx == 0 and hasattr(self, "tokens"):
            self.epochs += 1
        self.tokens = load_shard(self.files[self.file_idx], self.vocab_size)
        bos = np.flatnonzero(np.asarray(self.tokens[:1_000_000]) == self.bos)
        self.pos = int(bos[0]) if bos.size else 0

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int):
        n_local = _local_seqs(global_tokens, seq_len, self.world, grad_accum_steps)
        span = n_local * seq_len + 1
        tries = 0
        while self.tokens.size - self.pos < span * self.world:
            self._next_shard()  # the short tail of a shard is dropped, like the record
            tries += 1
            if tries > len(self.files):
                raise ValueError(f"every train shard is shorter than one global span of {span * self.world} tokens")
        start = self.pos + self.rank * span
        part = torch.from_numpy(np.asarray(self.tokens[start:start + span], dtype=np.int64))
        self.pos += span * self.world
        self.tokens_served += n_local * seq_len * self.world
        x = part[:-1].view(n_local, seq_len)
        y = part[1:].view(n_local, seq_len)
        doc = torch.cumsum((x == self.bos).to(torch.int64), dim=1)
        return x.to(self.device), y.to(self.device), doc.to(self.device)


class SequentialLoader(DistributedTokenLoader):
    """The baseline loader with the ``(x, y, doc_ids=None)`` interface."""

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int):
        x, y = super().next_batch(global_tokens, seq_len, grad_accum_steps)
        return x, y, None


def make_loader(kind: str, pattern: str, rank: int, world_size: int, device="cpu", vocab_size: int | None = None,
                seed: int = 0, bos_id: int = 1):
    """Construct the ``TRAIN_LOADER`` named ``kind``; raises ``ValueError`` for an unknown kind."""
    if kind == "sequential":
        return SequentialLoader(pattern, rank, world_size, device, vocab_size)
    if kind == "coprime":
        return CoprimeStrideLoader(pattern, rank, world_size, device, vocab_size, seed)
    if kind == "shuffled":
        return ShuffledSequenceLoader(pattern, rank, world_size, device, vocab_size, seed)
    if kind == "packed":
        return DocumentPackingLoader(pattern, rank, world_size, device, vocab_size, bos_id)
    raise ValueError(f"TRAIN_LOADER={kind!r}: expected sequential, coprime, shuffled or packed")

"""The record loaders (SPEC §3.D9), alongside the baseline sequential loader of :mod:`golflib.data.loader`.

Every loader has ``next_batch(global_tokens, seq_len, grad_accum_steps) -> (x, y, doc_ids)`` (int64 tensors on the
loader's device; ``local_tokens = global_tokens // (world · accum)`` tokens per rank and micro-step):

* :class:`CoprimeStrideLoader` (#726 → #1060, #1218, #1487; the three records' code is the same algorithm):
  ``x``, ``y`` ``[local_tokens // seq_len, seq_len]``, ``doc_ids`` None. Every rank builds the same global list
  of windows per micro-step and keeps ``windows[rank::world]``. Per shard a coprime-stride walk over its
  seq-length blocks (random phase, start, stride; every block once per pass); each micro-step mixes a growing
  number of shards (max(8, W) → max(32, 8W) over the first 1,800 micro-steps) chosen ∝ remaining_blocks^α
  (α 0.9 → 0.5), the windows interleaved in random rounds. Seeded by a hash of the shard path strings only.
* :class:`ShuffledSequenceLoader` (#1394; #1855's GPTQ calibration loader): shapes as above. Shards split by rank
  (``files[rank::world]``), seeded by the rank only; per shard a random phase and a permutation of sequence starts;
  each sequence comes from a shard chosen ∝ its remaining sequences.
* :class:`DocumentPackingLoader` (#1530 → #1855): the contiguous stream (each shard from its first BOS), one span
  per rank, returned as ONE row: ``x``, ``y``, ``doc_ids`` ``[1, local_tokens]``; ``doc_ids`` (non-decreasing, from
  0) starts a new segment at every BOS and every ``seq_len`` tokens from a document's start (the record's
  ``cu_seqlens``), and attention is restricted to equal ids.

Exactness: given the same shard files (and, for the coprime loader, the same path strings), each loader returns the
same batches as its record's loader, token for token; ``tests/data/test_loaders.py`` pins them against numbers
taken from the records' own classes.
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
    """The coprime loader's 64-bit seed (#726 lineage): ``s = 0``; for each path in order and each byte ``b`` of
    ``str(path).encode()`` (UTF-8): ``s = ((s ^ b) · 1099511628211) mod 2^64``. The same on every rank."""
    h = 0
    for p in paths:
        for b in str(p).encode():
            h = ((h ^ b) * 1099511628211) % 2**64
    return h


def _random_phase(rng: np.random.Generator, n_tokens: int, seq_len: int) -> int:
    """Phase of a shard's windows, the records' rule: ``max_phase = min(L−1, max(0, n−L−1))``, a draw in
    ``[0, max_phase]`` only when ``max_phase > 0`` (no draw otherwise)."""
    max_phase = min(seq_len - 1, max(0, n_tokens - seq_len - 1))
    return int(rng.integers(max_phase + 1)) if max_phase > 0 else 0


class _ShardCursor:
    """Coprime-stride walk over the seq-length blocks of one shard (#726 lineage). Drawn at construction and at
    every reset, in this order: the phase (:func:`_random_phase`), the start (only when blocks > 1), the stride
    (only when blocks > 1: the first ``integers(1, blocks)`` coprime with ``blocks``; else 1)."""

    def __init__(self, n_tokens: int, seq_len: int, rng: np.random.Generator):
        self.n, self.seq, self.rng = n_tokens, seq_len, rng
        self.reset()

    def reset(self) -> None:
        self.phase = _random_phase(self.rng, self.n, self.seq)
        self.blocks = max(0, (self.n - 1 - self.phase) // self.seq)
        self.start = int(self.rng.integers(self.blocks)) if self.blocks > 1 else 0
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
        """Token offset of the next block's window (a window is ``seq_len + 1`` tokens); resets (new draws) when
        the pass is exhausted."""
        if self.remaining <= 0:
            self.reset()
        block = (self.start + self.taken * self.stride) % self.blocks
        self.taken += 1
        return self.phase + block * self.seq


class CoprimeStrideLoader:
    """The coprime-stride multi-shard loader of #726 → #1060, #1218, #1487 (see the module docstring).

    ``pattern``'s matches (sorted, as :func:`golflib.data.shards.list_shards` returns them: ``Path`` objects of the
    ``glob.glob`` strings, as the records build them) seed ``np.random.Generator(PCG64(path_seed(files)))``; no SEED
    enters it, so a run reproduces the record's batches only when its shard paths are the same strings (e.g. the
    record's relative ``./data/datasets/fineweb10B_sp8192/fineweb_train_*.bin`` from the same working directory).

    Per micro-step: ``progress = min(steps/1800, 1)``; each shard with ≥ 1 block (``(n−1)//L``) weighs
    ``remaining^α``, α = 0.9 − 0.4·progress, where ``remaining`` is ``max(left in its pass, 1)`` once its cursor
    exists, else its block count; ``mix`` shards are drawn without replacement; each gets 1 + a multinomial share of
    the other windows ∝ its probability; shards and counts are permuted together; each shard's windows (from its
    cursor, created the first time it is drawn) are permuted when more than one; then rounds over the non-empty
    buckets in random order, each popping one window from the end of each bucket.

    The batch shape is fixed by the first call (the record's); a later call with other sizes raises ``ValueError``.
    Raises ``ValueError`` when no shard has more than ``seq_len`` tokens.
    """

    def __init__(self, pattern: str, rank: int, world_size: int, device="cpu", vocab_size: int | None = None):
        self.files = list_shards(pattern)
        self.rank, self.world, self.device = rank, world_size, torch.device(device)
        self.shards = [load_shard(f, vocab_size) for f in self.files]
        self.rng = np.random.Generator(np.random.PCG64(path_seed(self.files)))
        self.cursors: list[_ShardCursor | None] = [None] * len(self.files)
        self.shape: tuple[int, int, int] | None = None
        self.batches = 0
        self.tokens_served = 0

    def _weights(self, eligible: list[int], seq_len: int, alpha: float) -> np.ndarray:
        # remaining ≥ 1 for every eligible shard, so the weights are positive and finite (the record's fallback to
        # uniform weights cannot trigger)
        w = np.power([float(max(c.remaining, 1)) if (c := self.cursors[si]) is not None
                      else float((self.shards[si].size - 1) // seq_len) for si in eligible], alpha)
        return w / float(w.sum())

    def _take(self, si: int, seq_len: int) -> int:
        if self.cursors[si] is None:
            self.cursors[si] = _ShardCursor(int(self.shards[si].size), seq_len, self.rng)
        return self.cursors[si].take()

    def _global_windows(self, n_global: int, seq_len: int) -> list[tuple[int, int]]:
        eligible = [i for i, s in enumerate(self.shards) if (s.size - 1) // seq_len > 0]
        if not eligible:
            raise ValueError(f"no train shard has more than seq_len={seq_len} tokens")
        ec = len(eligible)
        progress = min(self.batches / 1800.0, 1.0)
        probs = self._weights(eligible, seq_len, 0.90 - 0.40 * progress)
        low = min(max(8, self.world), ec, n_global)
        high = min(max(32, 8 * self.world), ec, n_global)
        mix = max(1, min(int(round(low + progress * (high - low))), ec, n_global))
        picked = self.rng.choice(ec, size=mix, replace=False, p=probs)
        chosen = np.asarray(eligible, dtype=np.int64)[picked]
        p_chosen = probs[picked].copy()
        p_chosen /= p_chosen.sum()
        counts = np.ones(mix, dtype=np.int64)
        if n_global > mix:
            counts += self.rng.multinomial(n_global - mix, p_chosen).astype(np.int64)
        order = self.rng.permutation(mix)
        buckets: list[list[tuple[int, int]]] = []
        for si, k in zip(chosen[order].tolist(), counts[order].tolist()):
            wins = [(si, self._take(si, seq_len)) for _ in range(k)]
            if len(wins) > 1:
                wins = [wins[j] for j in self.rng.permutation(len(wins)).tolist()]
            buckets.append(wins)
        out: list[tuple[int, int]] = []
        active = [b for b in range(len(buckets)) if buckets[b]]
        while active:
            still = []
            for j in self.rng.permutation(len(active)).tolist():
                b = active[j]
                out.append(buckets[b].pop())
                if buckets[b]:
                    still.append(b)
            active = still  # the next round's list is in this round's (permuted) order, as the record's
        return out

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int):
        """``(x, y, None)``: x, y int64 ``[local // seq_len, seq_len]`` (rank's share of the global windows)."""
        n_local = _local_seqs(global_tokens, seq_len, self.world, grad_accum_steps)
        shape = (global_tokens, seq_len, grad_accum_steps)
        self.shape = self.shape or shape
        if shape != self.shape:
            raise ValueError(f"batch shape {shape} is not the first call's {self.shape}")
        windows = self._global_windows(n_local * self.world, seq_len)
        self.batches += 1
        self.tokens_served += n_local * self.world * seq_len
        return _windows_to_xy(self.shards, windows[self.rank::self.world], seq_len, self.device)


class ShuffledSequenceLoader:
    """#1394's loader, also #1855's GPTQ calibration loader (see the module docstring).

    Rank ``r`` reads ``files[r::world]`` with ``np.random.Generator(PCG64(r))`` (the records use no SEED). At the
    first call (the record: at construction; nothing draws in between) and whenever every shard is exhausted, each
    shard in order draws its phase (:func:`_random_phase`) then ``permutation((n−1−phase)//L)``; its starts
    ``phase + order·L`` are popped from the end. Each sequence of a micro-batch picks shard
    ``choice(len(files), p=remaining/remaining.sum())``.

    With fewer shards than ranks every rank reads all shards (each with its own rank seed; the record cannot run
    there). ``seq_len`` is fixed by the first call; another one raises ``ValueError``, as does a set of shards with
    no sequence of ``seq_len + 1`` tokens.
    """

    def __init__(self, pattern: str, rank: int, world_size: int, device="cpu", vocab_size: int | None = None):
        files = list_shards(pattern)
        self.files = files[rank::world_size] if len(files) >= world_size else files
        self.rank, self.world, self.device = rank, world_size, torch.device(device)
        self.shards = [load_shard(f, vocab_size) for f in self.files]
        self.rng = np.random.Generator(np.random.PCG64(rank))
        self.seq_len: int | None = None
        self.starts: list[list[int]] = []
        self.tokens_served = 0

    def _reset(self) -> None:
        self.starts = []
        for s in self.shards:
            phase = _random_phase(self.rng, int(s.size), self.seq_len)
            order = self.rng.permutation(max(0, (int(s.size) - 1 - phase) // self.seq_len))
            self.starts.append((phase + order * self.seq_len).tolist())
        if not any(self.starts):
            raise ValueError(f"no train shard has more than seq_len={self.seq_len} tokens")

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int):
        """``(x, y, None)``: x, y int64 ``[local // seq_len, seq_len]``."""
        n_local = _local_seqs(global_tokens, seq_len, self.world, grad_accum_steps)
        if self.seq_len is None:
            self.seq_len = seq_len
            self._reset()
        if seq_len != self.seq_len:
            raise ValueError(f"seq_len {seq_len} is not the first call's {self.seq_len}")
        remaining = np.array([len(s) for s in self.starts], dtype=np.float64)
        windows = []
        for _ in range(n_local):
            total = remaining.sum()
            if total <= 0:
                self._reset()
                remaining = np.array([len(s) for s in self.starts], dtype=np.float64)
                total = remaining.sum()
            shard = int(self.rng.choice(len(self.starts), p=remaining / total))
            windows.append((shard, self.starts[shard].pop()))
            remaining[shard] -= 1
        self.tokens_served += n_local * self.world * seq_len
        return _windows_to_xy(self.shards, windows, seq_len, self.device)


def packed_doc_ids(x: torch.Tensor, bos_id: int, max_len: int) -> torch.Tensor:
    """Segment ids of packed token rows (#1530 → #1855's ``cu_seqlens``): along the last dim a new segment starts at
    position 0, at every ``bos_id`` token and every ``max_len`` tokens from the start of the current document (the
    last BOS at or before the position, else the row start); ``max_len = 0`` cuts at BOS only.

    ``x``: integer ``[..., T]``. Returns int64 of the same shape, non-decreasing along T, 0 at position 0 and +1 at
    every cut.
    """
    t = x.size(-1)
    pos = torch.arange(t, device=x.device).expand(x.shape)
    bos = x == bos_id
    doc_start = torch.cummax(torch.where(bos, pos, torch.zeros_like(pos)), dim=-1).values
    cut = bos.clone()
    cut[..., 0] = True
    if max_len > 0:
        cut |= (pos - doc_start) % max_len == 0
    return torch.cumsum(cut.to(torch.int64), dim=-1) - 1


class DocumentPackingLoader:
    """#1530 → #1855's loader (see the module docstring); deterministic, no RNG.

    Shards in sorted order, wrapping; in each shard the cursor starts at its first BOS (at 0 if it has none; the
    record requires one). Per micro-step, with ``span = local + 1``: a shard whose remainder from the cursor is
    shorter than ``world · span`` is dropped (next shard); rank ``r`` takes ``tokens[cursor + r·span :][:span]``;
    ``cursor += world · span``. ``x = span[:-1]``, ``y = span[1:]`` as one row ``[1, local]``, ``doc_ids =
    packed_doc_ids(x, bos_id, seq_len)``. ``local`` need not be a multiple of ``seq_len``.

    Raises ``ValueError`` when every shard is shorter than one global span (the record would loop forever).
    """

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
        self.pos = 0
        for a in range(0, self.tokens.size, 1 << 20):  # the first BOS, read in 1M-token pieces (shards: 100M)
            hit = np.flatnonzero(np.asarray(self.tokens[a:a + (1 << 20)]) == self.bos)
            if hit.size:
                self.pos = a + int(hit[0])
                break

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int):
        """``(x, y, doc_ids)``, each int64 ``[1, local]``."""
        local = global_tokens // (self.world * grad_accum_steps)
        span = local + 1
        tries = 0
        while self.tokens.size - self.pos < span * self.world:
            self._next_shard()  # the short tail of a shard is dropped, like the record
            tries += 1
            if tries > len(self.files):
                raise ValueError(f"every train shard is shorter than one global span of {span * self.world} tokens")
        start = self.pos + self.rank * span
        part = torch.from_numpy(np.asarray(self.tokens[start:start + span], dtype=np.int64))
        self.pos += span * self.world
        self.tokens_served += local * self.world
        x, y = part[None, :-1], part[None, 1:]
        doc = packed_doc_ids(x, self.bos, seq_len)
        return x.to(self.device), y.to(self.device), doc.to(self.device)


def make_loader(kind: str, pattern: str, rank: int, world_size: int, device="cpu", vocab_size: int | None = None,
                bos_id: int = 1):
    """Construct the ``TRAIN_LOADER`` named ``kind`` (sequential | coprime | shuffled | packed).

    No loader takes SEED: no record's does (coprime: the shard path hash; shuffled: the rank). Raises
    ``ValueError`` for an unknown kind.
    """
    if kind == "sequential":
        return DistributedTokenLoader(pattern, rank, world_size, device, vocab_size)
    if kind == "coprime":
        return CoprimeStrideLoader(pattern, rank, world_size, device, vocab_size)
    if kind == "shuffled":
        return ShuffledSequenceLoader(pattern, rank, world_size, device, vocab_size)
    if kind == "packed":
        return DocumentPackingLoader(pattern, rank, world_size, device, vocab_size, bos_id)
    raise ValueError(f"TRAIN_LOADER={kind!r}: expected sequential, coprime, shuffled or packed")

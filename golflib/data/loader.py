"""Token loaders for training and the validation stream (SPEC §1.2, §2.7).

The baseline loader is one shared sequential stream over the train shards in sorted order, wrapping around; each
call takes ``world * (local + 1)`` contiguous tokens and rank ``r`` uses the r-th slice, ``x = slice[:-1]``,
``y = slice[1:]``. Documents are packed back to back (attention crosses document boundaries).
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import torch

from golflib.data.shards import ShardError, list_shards, load_shard


class TokenStream:
    """Reads shards sequentially and wraps around forever. ``take(n)`` returns the next ``n`` tokens as an int64
    tensor of shape ``[n]`` (copied out of the memmap)."""

    def __init__(self, pattern: str, vocab_size: int | None = None):
        self.files = list_shards(pattern)
        self.vocab_size = vocab_size
        self.file_idx = 0
        self.tokens = load_shard(self.files[0], vocab_size)
        self.pos = 0
        self.epochs = 0  # number of completed passes over all shards

    def _advance(self) -> None:
        self.file_idx = (self.file_idx + 1) % len(self.files)
        if self.file_idx == 0:
            self.epochs += 1
        self.tokens = load_shard(self.files[self.file_idx], self.vocab_size)
        self.pos = 0

    def take(self, n: int) -> torch.Tensor:
        parts: list[np.ndarray] = []
        remaining = n
        while remaining > 0:
            avail = self.tokens.size - self.pos
            if avail <= 0:
                self._advance()
                continue
            k = min(remaining, avail)
            parts.append(np.asarray(self.tokens[self.pos:self.pos + k]))
            self.pos += k
            remaining -= k
        arr = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return torch.from_numpy(arr.astype(np.int64))


class DistributedTokenLoader:
    """Baseline sequential loader: every rank reads the same stream and keeps its own disjoint span.

    ``next_batch(global_tokens, seq_len, grad_accum_steps)`` returns ``(x, y, None)``: int64 tensors of shape
    ``[local_tokens // seq_len, seq_len]`` on ``device`` with ``local_tokens = global_tokens // (world * accum)``,
    and no document ids (the interface every loader of :mod:`golflib.data.loaders` shares).
    """

    def __init__(self, pattern: str, rank: int, world_size: int, device: torch.device | str = "cpu",
                 vocab_size: int | None = None):
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        self.stream = TokenStream(pattern, vocab_size)
        self.tokens_served = 0  # global tokens consumed so far (all ranks)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int):
        local = global_tokens // (self.world_size * grad_accum_steps)
        if local % seq_len:
            raise ValueError(f"per-rank micro-batch of {local} tokens is not a multiple of TRAIN_SEQ_LEN={seq_len}")
        span = local + 1
        chunk = self.stream.take(span * self.world_size)
        self.tokens_served += local * self.world_size
        part = chunk[self.rank * span:(self.rank + 1) * span]
        x = part[:-1].reshape(-1, seq_len)
        y = part[1:].reshape(-1, seq_len)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True), None


def load_validation_tokens(pattern: str, seq_len: int, vocab_size: int | None = None,
                           max_tokens: int = 0) -> torch.Tensor:
    """The val stream, truncated like every record (SPEC §1.2): keeps ``floor((N-1)/L)*L + 1`` tokens so the
    number of targets is a multiple of ``seq_len``; up to ``L-1`` tail tokens are never scored.

    Returns an int64 tensor of shape ``[n_targets + 1]``. ``max_tokens > 0`` first cuts the stream to that many
    tokens (smoke tests only; such a number is not a val_bpb). Byte sidecars (``*_val_bytes_*``, a CaseOps dataset)
    matching ``pattern`` are not token shards and are skipped; :func:`golflib.data.bytecount.load_byte_counter`
    reads them. Raises ``ValueError`` when the split is shorter than one sequence.
    """
    files = list_shards(pattern)
    tokens = np.concatenate([np.asarray(load_shard(f, vocab_size)) for f in files])
    if max_tokens > 0:
        tokens = tokens[:max_tokens]
    usable = ((tokens.size - 1) // seq_len) * seq_len
    if usable <= 0:
        raise ShardError(f"validation split {pattern!r} has {tokens.size} tokens, too short for seq_len={seq_len}")
    return torch.from_numpy(tokens[:usable + 1].astype(np.int64))


def count_shard_tokens(pattern: str) -> int:
    """Total tokens over the shards matching ``pattern`` (headers only)."""
    from golflib.data.shards import read_header

    return sum(read_header(Path(f)).num_tokens for f in list_shards(pattern))


def load_val_byte_sidecar(val_pattern: str, sidecar_pattern: str, n_tokens: int, bos_id: int = 1,
                          max_tokens: int = 0) -> torch.Tensor:
    """The CaseOps val byte sidecar (SPEC §1.4) aligned with :func:`load_validation_tokens`: int64
    ``[n_tokens]``, entry ``i`` the original UTF-8 bytes token ``i`` accounts for (target ``i`` scores
    ``sidecar[i + 1]`` bytes). ``n_tokens``: the length of the (truncated) val token stream; ``max_tokens`` as
    there.

    The sidecar shards are checked against the val token shards before use: the same number of files, each pair
    the same length, and 0 at every BOS. Raises ``ValueError`` naming the file and what differs."""
    val_files, side_files = list_shards(val_pattern), sorted(Path(p) for p in glob.glob(sidecar_pattern))
    if len(side_files) != len(val_files):
        raise ValueError(f"byte sidecar {sidecar_pattern!r}: {len(side_files)} files for {len(val_files)} val "
                         f"token shards ({val_pattern!r}); expected one sidecar per val shard")
    parts = []
    for vf, sf in zip(val_files, side_files):
        toks, side = load_shard(vf), load_shard(sf)
        if toks.size != side.size:
            raise ValueError(f"{sf}: {side.size:,} sidecar entries for {toks.size:,} tokens in {vf}; they must be "
                             f"aligned one to one")
        bad = np.flatnonzero((np.asarray(toks) == bos_id) & (np.asarray(side) != 0))
        if bad.size:
            raise ValueError(f"{sf}: position {int(bad[0])} is a BOS in {vf} but counts {int(side[bad[0]])} bytes "
                             f"(BOS must count 0)")
        parts.append(np.asarray(side, dtype=np.int64))
    side = np.concatenate(parts)
    if max_tokens > 0:
        side = side[:max_tokens]
    if n_tokens > side.size:
        raise ValueError(f"byte sidecar {sidecar_pattern!r}: {side.size:,} entries, fewer than the {n_tokens:,} "
                         f"val tokens")
    return torch.from_numpy(side[:n_tokens])

"""The challenge's token shard format (SPEC §1.1): writer, memmap reader, validation.

Layout: 256 little-endian int32 header words (1,024 bytes) — ``h[0] = 20240520`` (magic), ``h[1] = 1`` (version),
``h[2] = num_tokens``, the rest zero — followed by ``num_tokens`` little-endian uint16 token ids.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golflib.errors import GolfError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_BYTES = 2
MAX_TOKENS = 2**31 - 1


class ShardError(GolfError):
    """A shard file is malformed; the message names the file and what was expected."""


@dataclass(frozen=True)
class ShardHeader:
    """Parsed shard header. ``num_tokens`` counts uint16 entries after the 1,024-byte header."""

    path: str
    magic: int
    version: int
    num_tokens: int
    file_bytes: int


def write_shard(path: str | os.PathLike, tokens: np.ndarray) -> int:
    """Write ``tokens`` (1-D integer array, values in [0, 65535]) as a shard; returns the file size in bytes.

    Raises :class:`ShardError` if a token does not fit uint16 or the shard would hold ≥ 2^31 tokens.
    The file is written to ``path + ".tmp"`` then renamed, so a crash never leaves a half-written shard.
    """
    path = Path(path)
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ShardError(f"{path}: expected a 1-D token array, got shape {arr.shape}")
    if arr.size >= MAX_TOKENS:
        raise ShardError(f"{path}: {arr.size} tokens is more than a shard can hold (< 2^31)")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
        raise ShardError(f"{path}: token ids must be in [0, 65535] for uint16 storage, "
                         f"got range [{int(arr.min())}, {int(arr.max())}]")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, arr.size
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(header.tobytes())
        fh.write(arr.astype("<u2", copy=False).tobytes())
    os.replace(tmp, path)
    return HEADER_BYTES + TOKEN_BYTES * arr.size


def read_header(path: str | os.PathLike) -> ShardHeader:
    """Read and check a shard header and the file size. Raises :class:`ShardError` naming the file on:
    a file shorter than the header, wrong magic, wrong version, a negative count, or
    ``file size != 1024 + 2 * num_tokens`` (truncated or padded file)."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: no such shard file")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ShardError(f"{path}: truncated: {size} bytes, expected at least the {HEADER_BYTES}-byte header")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    magic, version, n = int(header[0]), int(header[1]), int(header[2])
    if magic != SHARD_MAGIC:
        raise ShardError(f"{path}: wrong magic {magic}, expected {SHARD_MAGIC} (not a challenge token shard)")
    if version != SHARD_VERSION:
        raise ShardError(f"{path}: unsupported shard version {version}, expected {SHARD_VERSION}")
    if n < 0:
        raise ShardError(f"{path}: negative token count {n} in header")
    expected = HEADER_BYTES + TOKEN_BYTES * n
    if size != expected:
        kind = "truncated" if size < expected else "has trailing bytes"
        raise ShardError(f"{path}: {kind}: size {size} bytes != 1024 + 2*num_tokens = {expected} "
                         f"(num_tokens={n} in header)")
    return ShardHeader(str(path), magic, version, n, size)


def load_shard(path: str | os.PathLike, vocab_size: int | None = None, *, mmap: bool = True) -> np.ndarray:
    """Return the shard's tokens as a read-only uint16 array of shape ``[num_tokens]``.

    With ``mmap=True`` (default) the array is an ``np.memmap`` (no copy). If ``vocab_size`` is given, every id is
    checked to be ``< vocab_size`` (one pass over the data) and :class:`ShardError` names the first bad id.
    """
    hdr = read_header(path)
    if mmap:
        tokens = np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(hdr.num_tokens,)) \
            if hdr.num_tokens else np.zeros(0, dtype=np.uint16)
    else:
        tokens = np.fromfile(path, dtype="<u2", count=hdr.num_tokens, offset=HEADER_BYTES)
        if tokens.size != hdr.num_tokens:
            raise ShardError(f"{path}: short read: {tokens.size} of {hdr.num_tokens} tokens")
    if vocab_size is not None and tokens.size:
        top = int(tokens.max())
        if top >= vocab_size:
            bad = int(np.argmax(np.asarray(tokens) >= vocab_size))
            raise ShardError(f"{path}: token id {int(tokens[bad])} at index {bad} is >= vocab_size {vocab_size}")
    return tokens


def validate_shard(path: str | os.PathLike, vocab_size: int | None = None) -> ShardHeader:
    """Full check of one shard (header, size, and ids < ``vocab_size`` when given); returns the header."""
    hdr = read_header(path)
    load_shard(path, vocab_size)
    return hdr


def list_shards(pattern: str) -> list[Path]:
    """Sorted shard files matching ``pattern``; byte sidecars (names containing ``_bytes_``) are excluded.

    Raises ``FileNotFoundError`` naming the pattern when nothing matches."""
    files = [Path(p) for p in sorted(glob.glob(pattern)) if "_bytes_" not in os.path.basename(p)]
    if not files:
        raise FileNotFoundError(f"no shard files match {pattern!r}")
    return files


def shard_stats(path: str | os.PathLike, vocab_size: int | None = None, bos_id: int = 1) -> dict:
    """Header and token statistics of one shard (what ``golf data info`` prints)."""
    hdr = read_header(path)
    tokens = load_shard(path, vocab_size)
    out = {
        "path": str(path),
        "magic": hdr.magic,
        "version": hdr.version,
        "num_tokens": hdr.num_tokens,
        "file_bytes": hdr.file_bytes,
    }
    if tokens.size:
        arr = np.asarray(tokens)
        counts = np.bincount(arr)
        out.update({
            "min_id": int(arr.min()),
            "max_id": int(arr.max()),
            "distinct_ids": int((counts > 0).sum()),
            "bos_id": bos_id,
            "bos_count": int(counts[bos_id]) if bos_id < counts.size else 0,
            "top_ids": [[int(i), int(counts[i])] for i in np.argsort(-counts)[:10]],
        })
        p = counts[counts > 0] / arr.size
        out["unigram_entropy_bits"] = float(-(p * np.log2(p)).sum())
    return out

"""Byte codecs for the artifact: zlib-9, zstd-22, lzma-9e, brotli-11, each optionally after a byte shuffle.

Byte shuffle (#1089/#1218): regroup bytes by their position modulo ``stride`` (all first bytes, then all second
bytes, ...) so that multi-byte numbers' high and low bytes compress separately. Codec names: ``zlib``, ``zstd``,
``lzma``, ``brotli`` and the shuffled forms ``zlib+shuffle2`` etc. (``shuffleK`` with K in 2..8).
"""

from __future__ import annotations

import lzma
import re
import zlib

import numpy as np

BASE_CODECS = ("zlib", "zstd", "lzma", "brotli")
_SHUFFLE_RE = re.compile(r"^(?P<base>[a-z]+)(?:\+shuffle(?P<stride>[2-8]))?$")


class CodecError(ValueError):
    """Unknown codec name or a payload that does not decode."""


def parse_codec(name: str) -> tuple[str, int]:
    """``"brotli+shuffle2"`` → ``("brotli", 2)``; ``"zlib"`` → ``("zlib", 1)``. Raises :class:`CodecError`."""
    m = _SHUFFLE_RE.match(name or "")
    if not m or m.group("base") not in BASE_CODECS:
        raise CodecError(f"unknown codec {name!r}; expected one of {BASE_CODECS}, optionally with +shuffle2..8")
    return m.group("base"), int(m.group("stride") or 1)


def byte_shuffle(data: bytes, stride: int) -> bytes:
    """Regroup bytes by position mod ``stride``; a tail shorter than ``stride`` is appended unchanged."""
    if stride <= 1:
        return data
    n = len(data) // stride * stride
    body = np.frombuffer(data, dtype=np.uint8, count=n).reshape(-1, stride).T.tobytes()
    return body + data[n:]


def byte_unshuffle(data: bytes, stride: int) -> bytes:
    if stride <= 1:
        return data
    n = len(data) // stride * stride
    body = np.frombuffer(data, dtype=np.uint8, count=n).reshape(stride, -1).T.tobytes()
    return body + data[n:]


def _compress_base(data: bytes, base: str) -> bytes:
    if base == "zlib":
        return zlib.compress(data, level=9)
    if base == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=22).compress(data)
    if base == "lzma":
        return lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    if base == "brotli":
        import brotli

        return brotli.compress(data, quality=11)
    raise CodecError(f"unknown codec {base!r}")


def _decompress_base(data: bytes, base: str) -> bytes:
    try:
        if base == "zlib":
            return zlib.decompress(data)
        if base == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().decompress(data)
        if base == "lzma":
            return lzma.decompress(data)
        if base == "brotli":
            import brotli

            return brotli.decompress(data)
    except CodecError:
        raise
    except Exception as e:  # noqa: BLE001 - each library raises its own error type
        raise CodecError(f"{base}: payload does not decode ({type(e).__name__}: {e})") from None
    raise CodecError(f"unknown codec {base!r}")


def compress(data: bytes, codec: str) -> bytes:
    """Compress ``data`` with ``codec`` (see module docstring)."""
    base, stride = parse_codec(codec)
    return _compress_base(byte_shuffle(data, stride), base)


def decompress(data: bytes, codec: str) -> bytes:
    """Inverse of :func:`compress`; raises :class:`CodecError` on a corrupt payload."""
    base, stride = parse_codec(codec)
    return byte_unshuffle(_decompress_base(data, base), stride)

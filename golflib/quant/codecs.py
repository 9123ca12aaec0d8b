"""Byte codecs for the artifact: zlib-9, zstd-22, lzma and brotli-11 at the records' settings, each optionally after
a byte shuffle (SPEC §3.B12).

Base codecs: ``zlib`` (level 9), ``zstd`` (level 22, #287/#414/#461), ``lzma`` = ``lzma9e`` (preset 9 | EXTREME,
golflib's), ``lzma9`` (preset 9, #1019), ``lzma6`` (preset 6, #549; #1394/#1487's lzma option), ``brotli``
(quality 11, default window 22: #1855's non-per-group path) and ``brotli24`` (quality 11, ``lgwin=24``: the
remainder stream of #1855's per-group codec).

Byte shuffles (#1089 → #1218): regroup bytes by their position modulo ``stride`` (all first bytes, then all second
bytes, ...) so that multi-byte numbers' high and low bytes compress separately.

* ``+shuffleK`` (golflib's, K in 2..8): the ``len // K · K`` leading bytes regrouped, a shorter tail appended
  unchanged, no header.
* ``+bshfK`` (the records' framing, #1394/#1487 ``_byte_shuffle``): ``b"BSHF" | u8 K | src[0::K] | src[1::K] | …``
  (the tail bytes go with their position class), so ``compress(raw, "brotli+bshf2")`` is byte for byte the
  records' ``_compress(raw, "brotli")``. Payloads shorter than K are stored without header, as the records do.
"""

from __future__ import annotations

import lzma
import re
import zlib

import numpy as np

from golflib.errors import GolfError

BASE_CODECS = ("zlib", "zstd", "lzma", "lzma6", "lzma9", "lzma9e", "brotli", "brotli24")
_SHUFFLE_RE = re.compile(r"^(?P<base>[a-z0-9]+)(?:\+(?P<kind>shuffle|bshf)(?P<stride>[2-8]))?$")
BSHF_MAGIC = b"BSHF"
_LZMA_PRESETS = {"lzma": 9 | lzma.PRESET_EXTREME, "lzma9e": 9 | lzma.PRESET_EXTREME, "lzma9": 9, "lzma6": 6}


class CodecError(GolfError):
    """Unknown codec name or a payload that does not decode."""


def parse_codec(name: str) -> tuple[str, int]:
    """``"brotli+shuffle2"`` → ``("brotli", 2)``; ``"brotli+bshf2"`` → ``("brotli", -2)`` (a negative stride is the
    records' BSHF framing); ``"zlib"`` → ``("zlib", 1)``. Raises :class:`CodecError`."""
    m = _SHUFFLE_RE.match(name or "")
    if not m or m.group("base") not in BASE_CODECS:
        raise CodecError(f"unknown codec {name!r}; expected one of {BASE_CODECS}, optionally with +shuffle2..8 or "
                         f"+bshf2..8")
    stride = int(m.group("stride") or 1)
    return m.group("base"), -stride if m.group("kind") == "bshf" else stride


def byte_shuffle(data: bytes, stride: int) -> bytes:
    """Regroup bytes by position mod ``stride``; a tail shorter than ``stride`` is appended unchanged."""
    if stride <= 1:
        return data
    n = len(data) // stride * stride
    body = np.frombuffer(data, dtype=np.uint8, count=n).reshape(-1, stride).T.tobytes()
    return body + data[n:]


def byte_unshuffle(data: bytes, stride: int) -> bytes:
    """Inverse of :func:`byte_shuffle` for the same ``stride``."""
    if stride <= 1:
        return data
    n = len(data) // stride * stride
    body = np.frombuffer(data, dtype=np.uint8, count=n).reshape(stride, -1).T.tobytes()
    return body + data[n:]


def bshf_shuffle(data: bytes, stride: int) -> bytes:
    """The records' framed shuffle (#1394/#1487): ``b"BSHF" | u8 stride | data[0::stride] | data[1::stride] | …``;
    data shorter than ``stride`` (or ``stride <= 1``) is returned unchanged."""
    if stride <= 1 or len(data) < stride:
        return data
    src = np.frombuffer(data, dtype=np.uint8)
    return BSHF_MAGIC + bytes([stride]) + b"".join(src[p::stride].tobytes() for p in range(stride))


def bshf_unshuffle(data: bytes) -> bytes:
    """Inverse of :func:`bshf_shuffle`: data without the ``BSHF`` header is returned unchanged (as the records: a
    short unframed payload that itself began with ``BSHF`` would be misread; golflib's artifacts start with their
    own magic, so theirs never does)."""
    if len(data) < 5 or data[:4] != BSHF_MAGIC:
        return data
    stride = data[4]
    payload = np.frombuffer(data, dtype=np.uint8, offset=5)
    if stride < 2:
        return payload.tobytes()
    n = payload.size
    out = np.empty(n, dtype=np.uint8)
    off = 0
    for p in range(stride):
        k = n // stride + (1 if p < n % stride else 0)
        out[p::stride] = payload[off:off + k]
        off += k
    return out.tobytes()


def _compress_base(data: bytes, base: str) -> bytes:
    if base == "zlib":
        return zlib.compress(data, level=9)
    if base == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=22).compress(data)
    if base in _LZMA_PRESETS:
        return lzma.compress(data, preset=_LZMA_PRESETS[base])
    if base in ("brotli", "brotli24"):
        import brotli

        return brotli.compress(data, quality=11) if base == "brotli" else brotli.compress(data, quality=11, lgwin=24)
    raise CodecError(f"unknown codec {base!r}")


def _decompress_base(data: bytes, base: str) -> bytes:
    try:
        if base == "zlib":
            return zlib.decompress(data)
        if base == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().decompress(data)
        if base in _LZMA_PRESETS:
            return lzma.decompress(data)
        if base in ("brotli", "brotli24"):
            import brotli

            return brotli.decompress(data)
    except CodecError:
        raise
    except Exception as e:  # noqa: BLE001 - each library raises its own error type
        raise CodecError(f"{base}: payload does not decode ({type(e).__name__}: {e})") from None
    raise CodecError(f"unknown codec {base!r}")


ZSTD_FEED = 512  # zstd input bytes per decompressobj call (zstd expands at most ~32,000x: ≤ 16 MB per call)


def _stream_base(data: bytes, base: str, limit: int) -> tuple[bytes, str]:
    """Decompress at most ``limit + 1`` bytes of ``data``; returns ``(output, state)`` with state ``"end"`` (the
    stream ended exactly at the end of ``data``), ``"more"`` (output reached ``limit + 1`` bytes), ``"truncated"``
    or ``"trailing:<n>"`` (``n`` bytes after the end of the stream). Nothing larger than about ``limit`` is ever
    allocated."""
    cap = limit + 1
    if base == "zlib":
        d = zlib.decompressobj()
        out = d.decompress(data, cap)
        if len(out) >= cap:
            return out, "more"
        if not d.eof:
            return out, "truncated"
        return out, f"trailing:{len(d.unused_data)}" if d.unused_data else "end"
    if base in _LZMA_PRESETS:
        d = lzma.LZMADecompressor()
        out = d.decompress(data, max_length=cap)
        if len(out) >= cap:
            return out, "more"
        if not d.eof:
            return out, "truncated"
        return out, f"trailing:{len(d.unused_data)}" if d.unused_data else "end"
    if base in ("brotli", "brotli24"):
        import brotli

        d = brotli.Decompressor()
        out = bytearray(d.process(data, output_buffer_limit=cap))
        while len(out) < cap and not d.is_finished() and not d.can_accept_more_data():
            out += d.process(b"", output_buffer_limit=cap - len(out))
        if len(out) >= cap:
            return bytes(out), "more"
        return bytes(out), "end" if d.is_finished() else "truncated"  # brotli refuses trailing bytes itself
    if base == "zstd":
        import zstandard

        d = zstandard.ZstdDecompressor().decompressobj()
        out = bytearray()
        for i in range(0, len(data), ZSTD_FEED):
            out += d.decompress(data[i:i + ZSTD_FEED])
            if len(out) >= cap:
                return bytes(out), "more"
            if d.eof:
                rest = len(d.unused_data) + max(0, len(data) - i - ZSTD_FEED)
                return bytes(out), f"trailing:{rest}" if rest else "end"
        return bytes(out), "truncated"
    raise CodecError(f"unknown codec {base!r}")


def _stream_checked(data: bytes, base: str, limit: int) -> tuple[bytes, str]:
    """:func:`_stream_base` with every library's own error turned into :class:`CodecError`."""
    try:
        return _stream_base(data, base, limit)
    except CodecError:
        raise
    except Exception as e:  # noqa: BLE001 - each library raises its own error type
        raise CodecError(f"{base}: payload does not decode ({type(e).__name__}: {e})") from None


def decompress_bounded(data: bytes, codec: str, limit: int, *, exact: bool = False) -> bytes:
    """:func:`decompress` for untrusted input: the output may not exceed ``limit`` bytes (``exact``: must be
    exactly ``limit``), the stream must end exactly at the end of ``data``, and no more than about ``limit`` bytes
    are ever allocated (a decompression bomb is refused after ``limit + 1`` output bytes). Raises
    :class:`CodecError` saying which of these failed."""
    base, stride = parse_codec(codec)
    framing = len(BSHF_MAGIC) + 1 if stride < 0 else 0  # the records' BSHF header precedes the shuffled bytes
    raw, state = _stream_checked(data, base, limit + framing)
    if state == "more":
        raise CodecError(f"{base}: payload decompresses to more than the {limit:,} bytes its header allows "
                         "(a decompression bomb or a corrupt header)")
    if state == "truncated":
        raise CodecError(f"{base}: payload ends before its compressed stream does (truncated file)")
    if state.startswith("trailing:"):
        raise CodecError(f"{base}: {state.split(':')[1]} trailing bytes after the compressed stream")
    out = bshf_unshuffle(raw) if stride < 0 else byte_unshuffle(raw, stride)
    if len(out) > limit or (exact and len(out) != limit):
        raise CodecError(f"{codec}: payload decompresses to {len(out):,} bytes, its header declares {limit:,}")
    return out


def decompress_prefix(data: bytes, codec: str, n: int) -> bytes:
    """The first ``n`` decompressed bytes (fewer if the payload is shorter) of an unshuffled codec's payload,
    allocating about ``n`` bytes. Raises :class:`CodecError` for a shuffled codec (its first bytes are not a
    prefix) or a payload that does not decode."""
    base, stride = parse_codec(codec)
    if stride != 1:
        raise CodecError(f"{codec}: a shuffled payload has no decodable prefix")
    return _stream_checked(data, base, n)[0][:n]


def compress(data: bytes, codec: str) -> bytes:
    """Compress ``data`` with ``codec`` (see module docstring)."""
    base, stride = parse_codec(codec)
    return _compress_base(bshf_shuffle(data, -stride) if stride < 0 else byte_shuffle(data, stride), base)


def decompress(data: bytes, codec: str) -> bytes:
    """Inverse of :func:`compress`; raises :class:`CodecError` on a corrupt payload."""
    base, stride = parse_codec(codec)
    raw = _decompress_base(data, base)
    return bshf_unshuffle(raw) if stride < 0 else byte_unshuffle(raw, stride)

"""The pickle-free artifact container.

Layout::

    b"GOLF" | u8 container version (1) | u8 n | codec name (n ASCII bytes) | codec(safetensors bytes)

The safetensors payload holds the storage tensors of a :class:`~golflib.quant.int8.QuantizedState`; its
``__metadata__["golf"]`` is the JSON metadata (format, scheme, per-tensor kind/bits/clip, and the codec). Loading
never executes code: anything that is not this container — a ``torch.save`` zip, a raw pickle, a zlib-compressed
pickle like the official ``.ptz`` — is refused with :class:`ArtifactError` before any byte is interpreted.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from golflib.quant.codecs import CodecError, compress, decompress, parse_codec
from golflib.quant.int8 import FORMAT, QuantizedState

MAGIC = b"GOLF"
CONTAINER_VERSION = 1


class ArtifactError(ValueError):
    """The file is not a valid golflib artifact (the message names the file and what was expected)."""


def _safetensors_bytes(qs: QuantizedState) -> bytes:
    from safetensors.torch import save

    return save(qs.tensors, metadata={"golf": json.dumps(qs.meta, sort_keys=True, separators=(",", ":"))})


def encode_artifact(qs: QuantizedState, codec: str = "zlib") -> bytes:
    """Serialize and compress ``qs`` into container bytes (records ``codec`` in the metadata)."""
    parse_codec(codec)
    qs.meta["codec"] = codec
    name = codec.encode("ascii")
    return MAGIC + struct.pack("<BB", CONTAINER_VERSION, len(name)) + name + compress(_safetensors_bytes(qs), codec)


def write_artifact(path: str | os.PathLike, qs: QuantizedState, codec: str = "zlib") -> int:
    """Write the artifact to ``path`` (atomic rename); returns its size in bytes."""
    blob = encode_artifact(qs, codec)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
    return len(blob)


def _describe_foreign(head: bytes) -> str:
    if head.startswith(b"PK"):
        return "a zip archive (torch.save output?)"
    if head[:1] == b"\x80":
        return "a Python pickle"
    if head[:1] == b"\x78":
        return "a zlib stream (the official int8+zlib .ptz is a compressed torch pickle)"
    if head.startswith(b"\xfd7zXZ"):
        return "an xz/lzma stream"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "a zstd stream"
    return f"unknown bytes {head[:8]!r}"


def decode_artifact(blob: bytes, source: str = "<bytes>") -> QuantizedState:
    """Parse container bytes; raises :class:`ArtifactError` naming ``source`` for anything malformed."""
    from safetensors.torch import load

    if len(blob) < 6 or blob[:4] != MAGIC:
        raise ArtifactError(f"{source}: not a golflib artifact (expected magic {MAGIC!r}); it looks like "
                            f"{_describe_foreign(blob[:8])}. Refusing to load it: artifacts must be pickle-free.")
    version, n = struct.unpack("<BB", blob[4:6])
    if version != CONTAINER_VERSION:
        raise ArtifactError(f"{source}: container version {version}, expected {CONTAINER_VERSION}")
    codec = blob[6:6 + n].decode("ascii", errors="replace")
    try:
        raw = decompress(blob[6 + n:], codec)
    except CodecError as e:
        raise ArtifactError(f"{source}: {e}") from None
    if len(raw) < 8:
        raise ArtifactError(f"{source}: payload too short for a safetensors header")
    (hlen,) = struct.unpack("<Q", raw[:8])
    try:
        header = json.loads(raw[8:8 + hlen])
        meta = json.loads(header["__metadata__"]["golf"])
    except (ValueError, KeyError, TypeError):
        raise ArtifactError(f"{source}: safetensors payload lacks the golflib metadata") from None
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{source}: metadata format {meta.get('format')!r}, expected {FORMAT!r}")
    try:
        tensors = load(raw)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type
        raise ArtifactError(f"{source}: corrupt safetensors payload ({e})") from None
    return QuantizedState(tensors=tensors, meta=meta)


def read_artifact(path: str | os.PathLike) -> QuantizedState:
    """Load an artifact from disk (see :func:`decode_artifact`)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    return decode_artifact(path.read_bytes(), str(path))

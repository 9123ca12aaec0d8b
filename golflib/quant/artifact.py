"""The pickle-free artifact container.

Version 1 (byte codecs: zlib, zstd, lzma, brotli, optionally ``+shuffleK``)::

    b"GOLF" | u8 1 | u8 n | codec name (n ASCII bytes) | codec(safetensors bytes)

The safetensors payload holds the storage tensors of a :class:`~golflib.quant.int8.QuantizedState`; its
``__metadata__["golf"]`` is the JSON metadata (format, scheme, per-tensor kind/bits/clip, the model config, codec).

Version 2 (``codec="entropy"`` or ``"pergroup-lrzip"``), sections so code matrices are coded on their own::

    b"GOLF" | u8 2 | u32 LE header length | brotli(JSON header) | section bytes, in header order

The header is ``{"meta": <metadata as in v1>, "codec": "entropy" | "pergroup-lrzip" (absent: entropy), "coder":
{...model constants}, "sections": [...]}``; a section is one of

* ``{"name": "<tensor>.q", "codec": "rc", "shape", "bits", "kind", "level", "length", "crc32"}``: codes,
  range-coded by :mod:`golflib.quant.entropy` (``entropy``);
* ``{"name": "group:<role>", "codec": "lrzip", "members": [<tensor>.q, ...], "sorted"}`` and before a sorted group
  ``{"name": "perm:<role>", "codec": "perm", "members"}``: #1855's per-group lrzip ZPAQ codec
  (:mod:`golflib.quant.pergroup`; ``pergroup-lrzip``);
* ``{"name": "rest:<class>", "codec": "brotli", "length", "crc32"}``: the other storage tensors of one tensor class
  as a brotli-11 safetensors blob.

Every section's CRC-32 is checked before it is decoded.

Loading is bounded by the file's own headers before any large allocation (:mod:`golflib.quant.limits`: an element
budget from the file size, safetensors payloads decompressed no further than their headers declare, range-coded
sections checked against the tensors they name, every tensor's storage, bit width and finiteness checked).
Loading never executes code: anything that is not one of these containers — a ``torch.save`` zip, a raw pickle, a
zlib-compressed pickle like the official ``.ptz`` — is refused with :class:`ArtifactError` before any byte is
interpreted.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from golflib.errors import parse_json
from golflib.quant.classes import entry_class
from golflib.quant.codecs import CodecError, compress, decompress_bounded, decompress_prefix, parse_codec
from golflib.quant.entropy import (CODER_NAME, ID_RANGE, LEVEL_OFFSET, N_LEVELS, PRIOR, SCALE, WARM, WARM_IDS,
                                   EntropyCoder, EntropyError, kind_of)
from golflib.quant.int8 import QuantizedState
from golflib.quant.limits import (MAX_HEADER_JSON, MAX_SAFETENSORS_HEADER, ArtifactError, ElementBudget, check_meta,
                                  check_storage, safetensors_index, shape_numel)

MAGIC = b"GOLF"
CONTAINER_VERSION = 1  # byte-codec container
CONTAINER_VERSION_SECTIONS = 2  # per-tensor sections (entropy codec)
ENTROPY_CODEC = "entropy"
PERGROUP_CODEC = "pergroup-lrzip"  # #1855's per-group lrzip ZPAQ recipe (golflib.quant.pergroup)
SECTION_CODECS = (ENTROPY_CODEC, PERGROUP_CODEC)
REST_CODEC = "brotli"
MAX_HEADER_BYTES = 64 << 20


def check_codec(codec: str) -> str:
    """Return ``codec`` if it is ``entropy``, ``pergroup-lrzip`` or a byte codec
    (:func:`~golflib.quant.codecs.parse_codec`); raises :class:`~golflib.quant.codecs.CodecError`."""
    if codec not in SECTION_CODECS:
        try:
            parse_codec(codec)
        except CodecError as e:
            raise CodecError(f"{e} (or one of {SECTION_CODECS})") from None
    return codec


def _meta_json(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))


def _safetensors_bytes(tensors: dict, meta: dict | None = None) -> bytes:
    from safetensors.torch import save

    return save(tensors, metadata=None if meta is None else {"golf": _meta_json(meta)})


def coded_tensors(qs: QuantizedState) -> list[str]:
    """Storage names of the code matrices the entropy codec range-codes: ``<name>.q`` of every per-row tensor with
    2-D int8 codes of 2..8 bits, in metadata order."""
    out = []
    for name, e in qs.meta["tensors"].items():
        q = qs.tensors.get(name + ".q")
        if e.get("kind") == "per_row" and q is not None and q.dtype == torch.int8 and q.ndim == 2 \
                and 2 <= int(e.get("bits", 0)) <= 8:
            out.append(name + ".q")
    return out


def _coder_constants() -> dict:
    """The entropy model's constants a decoder must share with the encoder (stored in, and checked against, the
    version-2 header)."""
    return {"name": CODER_NAME, "prior": PRIOR, "scale": SCALE, "id_range": ID_RANGE, "n_levels": N_LEVELS,
            "level_offset": LEVEL_OFFSET, "warm": WARM, "warm_ids": WARM_IDS}


def _constriction_version() -> str:
    import importlib.metadata as md

    try:
        return md.version("constriction")
    except md.PackageNotFoundError:
        return "unknown"


def storage_owner(storage_name: str, tensors_meta: dict) -> str:
    """The state-dict tensor a storage tensor belongs to (``x.q``/``x.scale``/``x.lqer.a.q`` → ``x``)."""
    if storage_name in tensors_meta:
        return storage_name
    for cand in (storage_name.split(".lqer.")[0], storage_name.rsplit(".", 1)[0]):
        if cand in tensors_meta:
            return cand
    return storage_name


def _encode_sections(qs: QuantizedState, codec: str = ENTROPY_CODEC) -> bytes:
    coder = EntropyCoder()
    sections, chunks = [], []
    coded = coded_tensors(qs)
    if codec == PERGROUP_CODEC:  # the lrzip binary: only this codec needs it (an optional module, golflib.seams)
        from golflib.quant.pergroup import container_sections

        sections, chunks, coded, coder_cfg = container_sections(qs, coded)
    for sname in (coded if codec == ENTROPY_CODEC else []):
        name = sname[:-2]
        bits = int(qs.meta["tensors"][name]["bits"])
        kind = kind_of(name, bits)
        blob, info = coder.encode(qs.tensors[sname].numpy(), bits, kind)
        sections.append({"name": sname, "codec": "rc", "shape": list(qs.tensors[sname].shape), "bits": bits,
                         "kind": kind, "level": info["level"], "length": len(blob), "crc32": zlib.crc32(blob),
                         "class": entry_class(name, qs.meta["tensors"][name])})
        chunks.append(blob)
    coded_set = set(coded)
    by_class: dict[str, dict] = {}
    for sname, t in qs.tensors.items():
        if sname in coded_set:
            continue
        base = storage_owner(sname, qs.meta["tensors"])
        cls = entry_class(base, qs.meta["tensors"].get(base, {}))
        by_class.setdefault(cls, {})[sname] = t.contiguous()
    for cls in sorted(by_class):
        blob = compress(_safetensors_bytes(by_class[cls]), REST_CODEC)
        sections.append({"name": f"rest:{cls}", "codec": REST_CODEC, "length": len(blob),
                         "crc32": zlib.crc32(blob), "class": cls})
        chunks.append(blob)
    if codec == ENTROPY_CODEC:
        coder_cfg = {**_coder_constants(), "step": coder.step, "constriction": _constriction_version()}
    header = {"meta": qs.meta, "codec": codec, "coder": coder_cfg, "sections": sections}
    hbytes = compress(_meta_json(header).encode("utf-8"), REST_CODEC)
    return MAGIC + struct.pack("<BI", CONTAINER_VERSION_SECTIONS, len(hbytes)) + hbytes + b"".join(chunks)


def encode_artifact(qs: QuantizedState, codec: str = "zlib") -> bytes:
    """Serialize and compress ``qs`` into container bytes (records ``codec`` in the metadata): version 2 for
    ``entropy`` and ``pergroup-lrzip``, version 1 for byte codecs."""
    check_codec(codec)
    qs.meta["codec"] = codec
    if codec in SECTION_CODECS:
        return _encode_sections(qs, codec)
    name = codec.encode("ascii")
    return MAGIC + struct.pack("<BB", CONTAINER_VERSION, len(name)) + name + compress(_safetensors_bytes(
        qs.tensors, qs.meta), codec)


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


def _load_safetensors(raw: bytes, source: str) -> dict:
    from safetensors.torch import load

    try:
        return load(raw)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type
        raise ArtifactError(f"{source}: corrupt safetensors payload ({e})") from None


def _bounded_safetensors(payload: bytes, codec: str, source: str, budget: ElementBudget) -> tuple[bytes, dict]:
    """Decompress a compressed safetensors payload no further than its own header allows (header first, then
    exactly the bytes its tensors need; a shuffled codec has no readable prefix and is bounded by ``budget``
    instead) and return ``(raw bytes, safetensors header)``."""
    try:
        if parse_codec(codec)[1] == 1:
            head = decompress_prefix(payload, codec, 8)
            hlen = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            if hlen > MAX_SAFETENSORS_HEADER:
                raise ArtifactError(f"{source}: safetensors header of {hlen:,} bytes (at most "
                                    f"{MAX_SAFETENSORS_HEADER:,})")
            head = decompress_prefix(payload, codec, 8 + hlen)
            hlen, header, data_bytes = safetensors_index(head, source, budget)
            raw = decompress_bounded(payload, codec, 8 + hlen + data_bytes, exact=True)
        else:
            raw = decompress_bounded(payload, codec, 8 + MAX_SAFETENSORS_HEADER + 8 * budget.left)
            hlen, header, data_bytes = safetensors_index(raw, source, budget)
            if len(raw) != 8 + hlen + data_bytes:
                raise ArtifactError(f"{source}: payload of {len(raw):,} bytes, its safetensors header declares "
                                    f"{8 + hlen + data_bytes:,}")
    except CodecError as e:
        raise ArtifactError(f"{source}: {e}") from None
    return raw, header


def _decode_v1(blob: bytes, source: str) -> QuantizedState:
    n = blob[5]
    codec = blob[6:6 + n].decode("ascii", errors="replace")
    budget = ElementBudget(len(blob), source)
    try:
        parse_codec(codec)
    except CodecError as e:
        raise ArtifactError(f"{source}: {e}") from None
    raw, header = _bounded_safetensors(blob[6 + n:], codec, source, budget)
    golf = header.get("__metadata__", {}).get("golf")
    if golf is None:
        raise ArtifactError(f"{source}: safetensors payload lacks the golflib metadata")
    meta = check_meta(parse_json(golf, f"{source} metadata", ArtifactError), source, budget)
    tensors = _load_safetensors(raw, source)
    check_storage(tensors, meta, source)
    return QuantizedState(tensors=tensors, meta=meta)


def read_sections(blob: bytes, source: str = "<bytes>") -> tuple[dict, list[tuple[dict, bytes]]]:
    """Parse a version-2 container into ``(header, [(section entry, section bytes), ...])``, checking the header
    (bounded decompression, JSON depth, the metadata's tensor table against the file's element budget), lengths
    and CRC-32s (no section is decoded). Raises :class:`ArtifactError`."""
    if len(blob) < 9:
        raise ArtifactError(f"{source}: truncated version-2 header")
    (hlen,) = struct.unpack("<I", blob[5:9])
    if hlen > min(MAX_HEADER_BYTES, len(blob) - 9):
        raise ArtifactError(f"{source}: header length {hlen} exceeds the file")
    try:
        text = decompress_bounded(blob[9:9 + hlen], REST_CODEC, MAX_HEADER_JSON)
    except CodecError as e:
        raise ArtifactError(f"{source}: version-2 header: {e}") from None
    header = parse_json(text, f"{source} header", ArtifactError)
    if not isinstance(header, dict) or not isinstance(header.get("sections"), list) or "meta" not in header:
        raise ArtifactError(f"{source}: version-2 header lacks its 'meta' object or 'sections' list")
    check_meta(header["meta"], source, ElementBudget(len(blob), source))
    pos, out = 9 + hlen, []
    for s in header["sections"]:
        try:
            length, crc = int(s["length"]), int(s["crc32"])
            name = str(s["name"])
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{source}: malformed section entry {str(s)[:80]} (needs name, length, crc32)") \
                from None
        data = blob[pos:pos + length]
        if length < 0 or len(data) != length:
            raise ArtifactError(f"{source}: section {name!r} runs past the end of the file")
        if zlib.crc32(data) != crc:
            raise ArtifactError(f"{source}: section {name!r} fails its CRC-32 check (corrupt file)")
        out.append((s, data))
        pos += length
    if pos != len(blob):
        raise ArtifactError(f"{source}: {len(blob) - pos} trailing bytes after the last section")
    return header, out


def _rc_section(s: dict, meta: dict, source: str, budget: ElementBudget) -> tuple[tuple[int, ...], int, str, int]:
    """Check a range-coded section's entry against the tensor it names; returns ``(shape, bits, kind, level)``."""
    name = str(s["name"])
    where = f"{source}: section {name!r}"
    owner = name[:-2] if name.endswith(".q") else None
    e = meta["tensors"].get(owner) if owner else None
    if e is None or e["kind"] != "per_row":
        raise ArtifactError(f"{where}: names no per-row tensor of the metadata")
    try:
        shape, bits, kind, level = s["shape"], s["bits"], s["kind"], s["level"]
    except KeyError as k:
        raise ArtifactError(f"{where}: entry lacks {k}") from None
    n = shape_numel(shape, where)
    shape = tuple(shape)
    rows = e["shape"][0] if e["shape"] else 1
    if len(shape) != 2 or n != shape_numel(e["shape"], where) or shape[0] != rows:
        raise ArtifactError(f"{where}: code shape {list(shape)} is not the [rows, cols] matrix of the declared "
                            f"shape {e['shape']} ({shape_numel(e['shape'], where):,} symbols)")
    if bits != e["bits"] or kind != kind_of(owner, int(bits)):
        raise ArtifactError(f"{where}: bits {bits!r} / kind {kind!r}, the metadata says {e['bits']} bits "
                            f"({kind_of(owner, int(e['bits']))!r})")
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < N_LEVELS:
        raise ArtifactError(f"{where}: level {level!r}, expected a whole number in [0, {N_LEVELS})")
    budget.take(n, f"section {name!r}")
    return shape, int(bits), kind, level


def _section_coder(header: dict, source: str, budget: ElementBudget):
    """The header's section codec and its decoder: for ``entropy`` an :class:`EntropyCoder` (constants checked
    against this golflib), for ``pergroup-lrzip`` a :class:`golflib.quant.pergroup.GroupDecoder`."""
    codec = header.get("codec", ENTROPY_CODEC)
    coder_cfg = header.get("coder", {})
    if codec == PERGROUP_CODEC:
        from golflib.quant.pergroup import GroupDecoder

        return codec, GroupDecoder(coder_cfg, header["meta"], source, budget)
    if codec != ENTROPY_CODEC:
        raise ArtifactError(f"{source}: version-2 codec {str(codec)[:40]!r}, expected one of {SECTION_CODECS}")
    expected = _coder_constants()
    if not isinstance(coder_cfg, dict) or any(coder_cfg.get(k) != v for k, v in expected.items()):
        raise ArtifactError(f"{source}: entropy coder {str(coder_cfg)[:200]} is not the one this golflib "
                            f"implements ({expected})")
    try:
        return codec, EntropyCoder(float(coder_cfg["step"]))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise ArtifactError(f"{source}: bad entropy coder settings ({e})") from None


def _decode_v2(blob: bytes, source: str) -> QuantizedState:
    header, sections = read_sections(blob, source)
    meta = header["meta"]
    budget = ElementBudget(len(blob), source)
    codec, coder = _section_coder(header, source, budget)
    coder_cfg = header.get("coder", {})
    tensors: dict[str, torch.Tensor] = {}

    def add(part: dict, where: str) -> None:
        clash = sorted(set(part) & set(tensors))
        if clash:
            raise ArtifactError(f"{where}: stores {clash[:3]} a second time")
        tensors.update(part)

    for s, data in sections:
        name = str(s.get("name"))
        if s.get("codec") == "rc" and codec == ENTROPY_CODEC:
            shape, bits, kind, level = _rc_section(s, meta, source, budget)
            try:
                q = coder.decode(data, shape, bits, kind, level)
            except (EntropyError, ValueError, IndexError, OverflowError) as e:
                note = ""
                if coder_cfg.get("constriction") != _constriction_version():
                    note = (f" (written with constriction {coder_cfg.get('constriction')}, this is "
                            f"{_constriction_version()}: install the writer's version)")
                raise ArtifactError(f"{source}: section {name!r}: {e}{note}") from None
            add({name: torch.from_numpy(np.ascontiguousarray(q))}, f"{source} section {name!r}")
        elif s.get("codec") in ("lrzip", "perm") and codec == PERGROUP_CODEC:
            add(coder.section(s, data), f"{source} section {name!r}")
        elif s.get("codec") == REST_CODEC:
            where = f"{source} section {name!r}"
            raw, _ = _bounded_safetensors(data, REST_CODEC, where, budget)
            add(_load_safetensors(raw, where), where)
        else:
            raise ArtifactError(f"{source}: section {name!r} has codec {s.get('codec')!r}, not one a {codec!r} "
                                "container holds")
    check_storage(tensors, meta, source)
    return QuantizedState(tensors=tensors, meta=meta)


def decode_artifact(blob: bytes, source: str = "<bytes>") -> QuantizedState:
    """Parse container bytes; raises :class:`ArtifactError` naming ``source`` for anything malformed."""
    if len(blob) < 6 or blob[:4] != MAGIC:
        raise ArtifactError(f"{source}: not a golflib artifact (expected magic {MAGIC!r}); it looks like "
                            f"{_describe_foreign(blob[:8])}. Refusing to load it: artifacts must be pickle-free.")
    version = blob[4]
    if version == CONTAINER_VERSION:
        return _decode_v1(blob, source)
    if version == CONTAINER_VERSION_SECTIONS:
        return _decode_v2(blob, source)
    raise ArtifactError(f"{source}: container version {version}, expected {CONTAINER_VERSION} or "
                        f"{CONTAINER_VERSION_SECTIONS}")


def read_artifact(path: str | os.PathLike) -> QuantizedState:
    """Load an artifact from disk (see :func:`decode_artifact`)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    return decode_artifact(path.read_bytes(), str(path))

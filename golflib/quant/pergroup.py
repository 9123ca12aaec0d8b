"""The top record's weight codec, reproduced on golflib's code symbols for measurement (issue 19, SPEC §3.B).

#1855's recipe (ported there from #1586 via #1667/#1729):

1. Group the int8 code matrices by role across layers: ``tok_emb.weight``, then ``attn.c_k``, ``attn.c_q``,
   ``attn.c_v``, ``attn.proj``, ``mlp.fc``, ``mlp.proj`` (each ``.weight``), layers in order.
2. For ``tok_emb``, ``c_q`` and ``mlp.fc``, reorder each matrix's rows by greedy nearest-neighbour L1 chaining
   (start at row 0, always move to the closest unused row); the permutations are stored as uint16 and compressed
   together with brotli (quality 11).
3. Transpose every matrix to column-major and concatenate the group's bytes.
4. Compress each group with ``lrzip -z -L 9`` (ZPAQ, the ``lrzip`` system binary).

The record's remainder (scales, LQER factors, gates, metadata) goes through brotli separately.

Two uses:

* measurement on code symbols (:func:`pergroup_bytes`, ``golf quant codecs --lrzip``): the bytes of the groups plus
  the permutations, codes that fit no group brotli'd; every stream is decompressed again and compared;
* the artifact codec ``MIXED_CODEC=pergroup-lrzip`` (:mod:`golflib.quant.artifact` container version 2):
  :func:`group_sections` makes one ``lrzip`` section per group and one ``perm`` section per sorted group, and
  :func:`decode_group` inverts them. Decoding untrusted bytes is bounded: the size the lrzip stream declares in its
  own header must equal what the container's tensors need before the binary runs, the binary runs with its output
  file size capped at that (``RLIMIT_FSIZE``) and a time limit, and every permutation must be one.

A missing ``lrzip`` binary raises :class:`LrzipError` naming how to install it.
"""

from __future__ import annotations

import os
import resource
import shutil
import struct
import subprocess
import tempfile
import time
import zlib

import brotli
import numpy as np
import torch

from golflib.errors import GolfError
from golflib.quant.classes import entry_class
from golflib.quant.codecs import CodecError, decompress_bounded
from golflib.quant.limits import ArtifactError, shape_numel

GROUP_ORDER = ("tok_emb.weight", "attn.c_k.weight", "attn.c_q.weight", "attn.c_v.weight", "attn.proj.weight",
               "mlp.fc.weight", "mlp.proj.weight")
SIMSORT = frozenset({"tok_emb.weight", "attn.c_q.weight", "mlp.fc.weight"})
LRZIP_LEVEL = 9
LRZIP_MAGIC = b"LRZI"
CODER_ENTRY = {"name": "pergroup-lrzip", "lrzip_level": LRZIP_LEVEL}  # the container header's "coder"
LRZIP_TIMEOUT_S = 600  # a full-size group takes tens of seconds; a stream that runs longer is refused


class LrzipError(GolfError):
    """The ``lrzip`` binary is missing or failed."""


def lrzip_binary() -> str:
    """Path of the ``lrzip`` binary; raises :class:`LrzipError` when it is not installed."""
    path = shutil.which("lrzip")
    if path is None:
        raise LrzipError("the lrzip binary is not installed (it is the ZPAQ compressor of #1855's per-group codec): "
                         "apt-get install lrzip")
    return path


def _run(args: list[str], what: str, max_file_bytes: int | None = None) -> None:
    def cap() -> None:  # in the child: no file it writes may exceed max_file_bytes
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=LRZIP_TIMEOUT_S,
                              preexec_fn=cap if max_file_bytes is not None else None)
    except subprocess.TimeoutExpired:
        raise LrzipError(f"{what} ran longer than {LRZIP_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise LrzipError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")


def lrzip_compress(data: bytes, level: int = LRZIP_LEVEL) -> bytes:
    """``lrzip -z -L level`` (ZPAQ) of ``data``, through temporary files as the record does."""
    exe = lrzip_binary()
    with tempfile.TemporaryDirectory(prefix="golf-lrzip-") as tmp:
        inp, out = os.path.join(tmp, "in.bin"), os.path.join(tmp, "in.bin.lrz")
        with open(inp, "wb") as fh:
            fh.write(data)
        _run([exe, "-z", "-L", str(level), "-q", "-o", out, inp], "lrzip -z")
        with open(out, "rb") as fh:
            return fh.read()


def lrzip_declared_size(data: bytes) -> int:
    """The decompressed size (bytes) an lrzip 0.6 stream declares in its header (``LRZI`` | u8 major 0 | u8 minor 6
    | u64 LE size). Raises :class:`LrzipError` for anything else."""
    if len(data) < 14 or data[:4] != LRZIP_MAGIC:
        raise LrzipError(f"not an lrzip stream (starts {data[:6]!r}, expected {LRZIP_MAGIC!r})")
    if data[4] != 0 or data[5] != 6:
        raise LrzipError(f"lrzip format {data[4]}.{data[5]}, expected 0.6 (what lrzip 0.6x writes)")
    return struct.unpack("<Q", data[6:14])[0]


def lrzip_decompress(data: bytes, expected: int | None = None) -> bytes:
    """The inverse of :func:`lrzip_compress`. With ``expected`` (bytes; for untrusted input) the stream's header
    must declare exactly that size before the binary runs, the binary may write no file larger than that, and the
    output must be exactly that long. Raises :class:`LrzipError`."""
    if expected is not None:
        declared = lrzip_declared_size(data)
        if declared != expected:
            raise LrzipError(f"lrzip stream declares {declared:,} bytes, the container's tensors need {expected:,}")
    exe = lrzip_binary()
    with tempfile.TemporaryDirectory(prefix="golf-lrzip-") as tmp:
        inp, out = os.path.join(tmp, "in.lrz"), os.path.join(tmp, "out.bin")
        with open(inp, "wb") as fh:
            fh.write(data)
        cap = None if expected is None else expected + 1  # one byte more shows a stream that runs long
        _run([exe, "-d", "-f", "-q", "-o", out, inp], "lrzip -d", max_file_bytes=cap)
        with open(out, "rb") as fh:
            raw = fh.read(cap) if cap is not None else fh.read()
    if expected is not None and len(raw) != expected:
        raise LrzipError(f"lrzip stream decompressed to {len(raw):,} bytes, its header declares {expected:,}")
    return raw


def similarity_order(q: np.ndarray) -> np.ndarray:
    """#1855's row order for ``q`` (int8 ``[rows, cols]``): start at row 0, then repeatedly the unused row nearest
    to the current one in L1 distance (float32; ties to the lowest index). Returns the permutation as uint16.
    Raises ``ValueError`` for more than 65,536 rows (the stored dtype)."""
    n = q.shape[0]
    if n > 1 << 16:
        raise ValueError(f"{n} rows: the permutation is stored as uint16 (at most 65,536 rows)")
    x = q.astype(np.float32)
    used = np.zeros(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    order[0], used[0] = 0, True
    cur = x[0]
    for i in range(1, n):
        unused = np.flatnonzero(~used)
        best = unused[int(np.argmin(np.abs(x[unused] - cur).sum(axis=1)))]
        order[i], used[best] = best, True
        cur = x[best]
    return order.astype(np.uint16)


def group_of(name: str) -> str | None:
    """The role group of a tensor name (``blocks.3.attn.c_q.weight`` → ``attn.c_q.weight``), None for others."""
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) > 2 and parts[1].isdigit():
        key = ".".join(parts[2:])
        return key if key in GROUP_ORDER else None
    return name if name in GROUP_ORDER else None


def group_streams(items: list[tuple[str, np.ndarray]]) -> tuple[dict[str, bytes], bytes, list[str]]:
    """``({group: raw bytes}, uint16 permutations, names of codes in no group)`` for ``items`` (name, int8
    ``[rows, cols]`` codes): steps 1–3 of the module docstring."""
    groups: dict[str, list[tuple[int, np.ndarray]]] = {}
    rest = []
    for name, q in items:
        key = group_of(name)
        if key is None or q.ndim != 2:
            rest.append(name)
            continue
        layer = int(name.split(".")[1]) if name.startswith("blocks.") else 0
        groups.setdefault(key, []).append((layer, q))
    raw, perms = {}, []
    for key in GROUP_ORDER:
        if key not in groups:
            continue
        chunks = []
        for _, q in sorted(groups[key], key=lambda t: t[0]):
            q = np.asarray(q, dtype=np.int8)
            if key in SIMSORT:
                order = similarity_order(q)
                perms.append(order.tobytes())
                q = q[order.astype(np.int64)]
            chunks.append(np.ascontiguousarray(q.T).tobytes())
        raw[key] = b"".join(chunks)
    return raw, b"".join(perms), rest


def pergroup_bytes(items: list[tuple[str, np.ndarray]]) -> dict:
    """Bytes of ``items`` (name, int8 codes) under #1855's per-group recipe: ``{"groups": {group: lrzip bytes},
    "perms": brotli bytes of the permutations, "rest": brotli bytes of codes in no group, "total", "symbols",
    "seconds": {"encode", "decode"}}``. Every stream is decompressed and compared; raises ``AssertionError`` on a
    mismatch (never expected) and :class:`LrzipError` without the binary."""
    lrzip_binary()
    by_name = dict(items)
    t0 = time.perf_counter()
    raw, perms, rest = group_streams(items)
    packed = {k: lrzip_compress(v) for k, v in raw.items()}
    perm_blob = brotli.compress(perms, quality=11) if perms else b""
    rest_raw = b"".join(np.asarray(by_name[n], dtype=np.int8).tobytes() for n in rest)
    rest_blob = brotli.compress(rest_raw, quality=11, lgwin=24) if rest_raw else b""
    t1 = time.perf_counter()
    for k, blob in packed.items():
        if lrzip_decompress(blob) != raw[k]:
            raise AssertionError(f"lrzip round trip failed on group {k}")
    if perm_blob and brotli.decompress(perm_blob) != perms:
        raise AssertionError("permutation round trip failed")
    t2 = time.perf_counter()
    out = {"groups": {k: len(v) for k, v in packed.items()}, "perms": len(perm_blob), "rest": len(rest_blob),
           "symbols": int(sum(np.asarray(q).size for _, q in items)),
           "seconds": {"encode": round(t1 - t0, 3), "decode": round(t2 - t1, 3)}}
    out["total"] = sum(out["groups"].values()) + out["perms"] + out["rest"]
    return out


def group_sections(codes: dict[str, np.ndarray]) -> tuple[list[tuple[dict, bytes]], list[str]]:
    """The artifact sections of #1855's recipe for ``codes`` (``{storage name "<tensor>.q": int8 [rows, cols]}``).

    Returns ``(sections, grouped)``: per group in :data:`GROUP_ORDER`, a ``perm`` section when the group's rows are
    sorted (``{"name": "perm:<group>", "codec": "perm", "members"}``: the uint16 permutations in member order,
    brotli-11) and then the group itself (``{"name": "group:<group>", "codec": "lrzip", "members", "sorted"}``:
    ``lrzip -z -L 9`` of the members' column-major codes, layers in order); ``grouped`` lists the storage names
    the sections hold (the caller stores every other code matrix elsewhere)."""
    members: dict[str, list[tuple[int, str]]] = {}
    for sname, q in codes.items():
        key = group_of(sname[:-2]) if sname.endswith(".q") else None
        if key is None or q.ndim != 2:
            continue
        layer = int(sname.split(".")[1]) if sname.startswith("blocks.") else 0
        members.setdefault(key, []).append((layer, sname))
    out, grouped = [], []
    for key in GROUP_ORDER:
        if key not in members:
            continue
        names = [n for _, n in sorted(members[key])]
        raw, perms = group_streams([(n[:-2], codes[n]) for n in names])[:2]
        if key in SIMSORT:
            out.append(({"name": f"perm:{key}", "codec": "perm", "members": names},
                        brotli.compress(perms, quality=11)))
        out.append(({"name": f"group:{key}", "codec": "lrzip", "members": names, "sorted": key in SIMSORT},
                    lrzip_compress(raw[key])))
        grouped += names
    return out, grouped


def decode_perms(data: bytes, rows: list[int]) -> list[np.ndarray]:
    """The permutations of a ``perm`` section for members with ``rows`` rows each (int64 arrays); the brotli output
    is bounded by ``2·Σ rows`` bytes and each must be a permutation of ``range(rows)``. Raises
    :class:`LrzipError`."""
    try:
        raw = decompress_bounded(data, "brotli", 2 * sum(rows), exact=True)
    except CodecError as e:
        raise LrzipError(f"row permutations: {e}") from None
    flat = np.frombuffer(raw, dtype="<u2").astype(np.int64)
    out, pos = [], 0
    for n in rows:
        p = flat[pos:pos + n]
        if not np.array_equal(np.sort(p), np.arange(n)):
            raise LrzipError(f"row permutation {len(out)} of its group is not a permutation of 0..{n - 1}")
        out.append(p)
        pos += n
    return out


def decode_group(data: bytes, shapes: list[tuple[int, int]], perms: list[np.ndarray] | None) -> list[np.ndarray]:
    """The members' int8 ``[rows, cols]`` codes from a ``group`` section: ``shapes`` (checked by the caller against
    the container's metadata) fix the exact decompressed size before lrzip runs; ``perms`` (one per member, from
    :func:`decode_perms`) undo the row sort. Raises :class:`LrzipError`."""
    sizes = [r * c for r, c in shapes]
    raw = np.frombuffer(lrzip_decompress(data, expected=sum(sizes)), dtype=np.int8)
    out, pos = [], 0
    for i, (r, c) in enumerate(shapes):
        q = raw[pos:pos + r * c].reshape(c, r).T
        pos += r * c
        if perms is not None:
            orig = np.empty_like(q)
            orig[perms[i]] = q
            q = orig
        out.append(np.ascontiguousarray(q))
    return out


def container_sections(qs, coded: list[str]) -> tuple[list[dict], list[bytes], list[str], dict]:
    """The ``pergroup-lrzip`` part of a version-2 container (:mod:`golflib.quant.artifact`) for the code matrices
    ``coded`` (storage names) of ``qs`` (a :class:`~golflib.quant.int8.QuantizedState`): ``(section entries,
    section bytes, storage names the sections hold, the header's "coder" entry)``; entries carry length, CRC-32 and
    the tensor class, and the caller stores every other tensor in its ``rest:`` sections."""
    parts, grouped = group_sections({s: qs.tensors[s].numpy() for s in coded})
    sections, chunks = [], []
    for entry, blob in parts:
        owner = entry["members"][0][:-2]
        sections.append({**entry, "length": len(blob), "crc32": zlib.crc32(blob),
                         "class": entry_class(owner, qs.meta["tensors"][owner])})
        chunks.append(blob)
    return sections, chunks, grouped, CODER_ENTRY


class GroupDecoder:
    """Decodes the ``perm`` and ``group`` sections of one ``pergroup-lrzip`` container, checking each against the
    container's metadata before lrzip runs (members must be distinct per-row matrices; their element count is
    taken from the file's element budget and fixes lrzip's output size). Raises
    :class:`~golflib.quant.limits.ArtifactError` naming the file and section."""

    def __init__(self, coder_cfg, meta: dict, source: str, budget):
        if coder_cfg != CODER_ENTRY:
            raise ArtifactError(f"{source}: section coder {str(coder_cfg)[:200]}, expected {CODER_ENTRY}")
        self.meta, self.source, self.budget = meta, source, budget
        self.perms: dict[str, tuple[list, list[np.ndarray]]] = {}

    def _members(self, s: dict) -> list[tuple[str, tuple[int, int]]]:
        where = f"{self.source}: section {str(s.get('name'))!r}"
        members = s.get("members")
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            raise ArtifactError(f"{where}: 'members' must be a non-empty list of tensor names")
        out = []
        for m in members:
            e = self.meta["tensors"].get(m[:-2]) if m.endswith(".q") else None
            if e is None or e["kind"] != "per_row" or len(e["shape"]) < 2:
                raise ArtifactError(f"{where}: member {m!r} names no per-row matrix of the metadata")
            n, cols = shape_numel(e["shape"], where), int(e["shape"][-1])
            out.append((m, (n // cols if cols else 0, cols)))  # codes are stored [numel / last dim, last dim]
        if len(set(members)) != len(members):
            raise ArtifactError(f"{where}: a member is listed twice")
        if s.get("codec") == "lrzip":
            self.budget.take(sum(r * c for _, (r, c) in out), f"section {s.get('name')!r}")
        return out

    def section(self, s: dict, data: bytes) -> dict:
        """The tensors (``{storage name: int8 tensor}``) of one section; ``{}`` for a ``perm`` section, whose
        permutations are kept for the group that follows it."""
        name = str(s.get("name"))
        members = self._members(s)
        try:
            if s["codec"] == "perm":
                self.perms[name[len("perm:"):]] = (list(s["members"]),
                                                   decode_perms(data, [r for _, (r, _) in members]))
                return {}
            role, p = name[len("group:"):], None
            if s.get("sorted"):
                if role not in self.perms or self.perms[role][0] != s["members"]:
                    raise ArtifactError(f"{self.source}: section {name!r} is sorted but no 'perm:{role}' section "
                                        "with the same members precedes it")
                p = self.perms[role][1]
            codes = decode_group(data, [shape for _, shape in members], p)
        except LrzipError as e:
            raise ArtifactError(f"{self.source}: section {name!r}: {e}") from None
        return {m: torch.from_numpy(q) for (m, _), q in zip(members, codes)}

"""The top record's weight codec, reproduced on golflib's code symbols for measurement (issue 19, SPEC §3.B).

#1855's recipe (ported there from #1586 via #1667/#1729):

1. Group the int8 code matrices by role across layers: ``tok_emb.weight``, then ``attn.c_k``, ``attn.c_q``,
   ``attn.c_v``, ``attn.proj``, ``mlp.fc``, ``mlp.proj`` (each ``.weight``), layers in order.
2. For ``tok_emb``, ``c_q`` and ``mlp.fc``, reorder each matrix's rows by greedy nearest-neighbour L1 chaining
   (start at row 0, always move to the closest unused row); the permutations are stored as uint16 and compressed
   together with brotli (quality 11).
3. Transpose every matrix to column-major and concatenate the group's bytes.
4. Compress each group with ``lrzip -z -L 9`` (ZPAQ, the ``lrzip`` system binary).

The record's remainder (scales, LQER factors, gates, metadata) goes through brotli separately. Here only the code
symbols are compared: :func:`pergroup_bytes` returns the bytes of the groups plus the permutations, and codes that
fit no group are brotli'd. Every stream is decompressed again and compared, so a number here is a round trip.
A missing ``lrzip`` binary raises :class:`LrzipError` naming how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import brotli
import numpy as np

from golflib.errors import GolfError

GROUP_ORDER = ("tok_emb.weight", "attn.c_k.weight", "attn.c_q.weight", "attn.c_v.weight", "attn.proj.weight",
               "mlp.fc.weight", "mlp.proj.weight")
SIMSORT = frozenset({"tok_emb.weight", "attn.c_q.weight", "mlp.fc.weight"})
LRZIP_LEVEL = 9


class LrzipError(GolfError):
    """The ``lrzip`` binary is missing or failed."""


def lrzip_binary() -> str:
    """Path of the ``lrzip`` binary; raises :class:`LrzipError` when it is not installed."""
    path = shutil.which("lrzip")
    if path is None:
        raise LrzipError("the lrzip binary is not installed (it is the ZPAQ compressor of #1855's per-group codec): "
                         "apt-get install lrzip")
    return path


def _run(args: list[str], what: str) -> None:
    proc = subprocess.run(args, capture_output=True, text=True)
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


def lrzip_decompress(data: bytes) -> bytes:
    """The inverse of :func:`lrzip_compress`."""
    exe = lrzip_binary()
    with tempfile.TemporaryDirectory(prefix="golf-lrzip-") as tmp:
        inp, out = os.path.join(tmp, "in.lrz"), os.path.join(tmp, "out.bin")
        with open(inp, "wb") as fh:
            fh.write(data)
        _run([exe, "-d", "-f", "-q", "-o", out, inp], "lrzip -d")
        with open(out, "rb") as fh:
            return fh.read()


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

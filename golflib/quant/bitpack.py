"""Bit-packing of b-bit codes (b = 2…8): ``q + qmax`` (in ``[0, 2^b − 2]``) written as ``b`` bits each,
least-significant bit first, into a byte string; :func:`unpack` inverts it given the count.
"""

from __future__ import annotations

import numpy as np

from golflib.quant.intn import qmax


def pack(q: np.ndarray, bits: int) -> bytes:
    """Pack signed codes ``q`` (any shape, values in ``[-qmax, qmax]``) into ``ceil(n·bits/8)`` bytes."""
    m = qmax(bits)
    v = (np.asarray(q).astype(np.int16).ravel() + m).astype(np.uint8)
    if v.size and (int(v.max()) > 2 * m):
        raise ValueError(f"codes outside [-{m}, {m}] cannot be packed in {bits} bits")
    planes = (v[:, None] >> np.arange(bits, dtype=np.uint8)[None, :]) & 1
    return np.packbits(planes.ravel(), bitorder="little").tobytes()


def unpack(data: bytes, n: int, bits: int) -> np.ndarray:
    """``n`` signed int8 codes from :func:`pack` output. Raises ``ValueError`` when ``data`` is too short."""
    m = qmax(bits)
    need = -(-n * bits // 8)
    if len(data) < need:
        raise ValueError(f"packed data of {len(data)} bytes is shorter than {need} bytes for {n} {bits}-bit codes")
    planes = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[:n * bits].reshape(n, bits)
    v = (planes.astype(np.int16) << np.arange(bits, dtype=np.int16)[None, :]).sum(axis=1)
    return (v - m).astype(np.int8)

"""Symmetric int-k quantization, k = 2…8 (SPEC §3.B2).

A code ``q`` is an integer in ``[-qmax, qmax]`` with ``qmax = 2^(k-1) - 1`` (int6: ±31, int8: ±127), stored in an
``int8`` container; the weight it stands for is ``q * scale``. Per-row quantization uses one scale per output row
(``scale`` shape ``[rows]``), per-tensor quantization one scale for the whole tensor. Rounding is
round-half-to-even (``torch.round``), the same in export, GPTQ and fake-quant, so all three agree bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_BITS, MAX_BITS = 2, 8


def check_bits(bits: int, what: str = "bits") -> int:
    """Return ``bits`` if it is an int in [2, 8], else raise ``ValueError`` naming ``what``."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{what}={bits!r}: expected an integer bit width in [{MIN_BITS}, {MAX_BITS}]")
    return bits


def qmax(bits: int) -> int:
    """Largest code of a symmetric ``bits``-bit quantizer: ``2^(bits-1) - 1`` (int6 → 31)."""
    return (1 << (check_bits(bits) - 1)) - 1


def fp16_exact(scale: Tensor) -> Tensor:
    """``scale`` rounded to float16 and returned as float32: the value the artifact stores (scales are fp16), so
    quantizing with it makes dequantization from disk exact."""
    return scale.to(torch.float16).float()


def quantize_rows(w: Tensor, scale: Tensor, bits: int) -> Tensor:
    """Per-row codes ``clamp(round(w / scale[:, None]), -qmax, qmax)`` as int8.

    ``w``: float ``[rows, cols]``; ``scale``: float ``[rows]`` (> 0). Returns int8 ``[rows, cols]``.
    """
    m = qmax(bits)
    return torch.clamp(torch.round(w.float() / scale.float()[:, None]), -m, m).to(torch.int8)


def dequantize_rows(q: Tensor, scale: Tensor) -> Tensor:
    """``q * scale[:, None]`` in float32: ``q`` int8 ``[rows, cols]``, ``scale`` ``[rows]``."""
    return q.float() * scale.float()[:, None]


def quantize_tensor(w: Tensor, scale: float, bits: int) -> Tensor:
    """Per-tensor codes ``clamp(round(w / scale), -qmax, qmax)`` as int8 (any shape)."""
    m = qmax(bits)
    return torch.clamp(torch.round(w.float() / scale), -m, m).to(torch.int8)

"""Small building blocks of the GPT: weightless RMSNorm, the fp32-master linear, rotary embeddings (SPEC §2.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Parameters whose names contain one of these stay fp32 and go to the scalar Adam group / fp32 passthrough
# (the official CONTROL_TENSOR_NAME_PATTERNS).
CONTROL_PATTERNS = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes", "q_gain",
                    "skip_weight", "skip_weights")


def rms_norm(x: Tensor) -> Tensor:
    """Weightless RMSNorm over the last dim (``F.rms_norm`` with the default eps)."""
    return F.rms_norm(x, (x.size(-1),))


class RMSNorm(nn.Module):
    """Weightless RMSNorm module (no parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x)


class CastedLinear(nn.Linear):
    """``nn.Linear`` whose weight stays fp32 and is cast to the activation dtype at matmul time (bf16 on CUDA)."""

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


class Rotary(nn.Module):
    """RoPE tables for ``dim`` rotated dims with half-split pairing (dim i pairs with i + dim/2).

    ``forward(seq_len, device, dtype)`` returns ``(cos, sin)``, each of shape ``[1, seq_len, 1, dim/2]`` so they
    broadcast over ``[B, T, H, dim]`` tensors.
    """

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"rotary dim must be even, got {dim}")
        self.dim = dim
        self.base = base
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple[int, torch.device, Tensor, Tensor] | None = None

    def forward(self, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        c = self._cache
        if c is None or c[0] != seq_len or c[1] != device:
            with torch.inference_mode(False):  # normal tensors, usable by later training steps
                c = self._tables(seq_len, device)
            self._cache = c
        return c[2].to(dtype), c[3].to(dtype)

    def _tables(self, seq_len: int, device: torch.device) -> tuple[int, torch.device, Tensor, Tensor]:
        t = torch.arange(seq_len, device=device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq.to(device))
        return seq_len, device, freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` of shape ``[B, T, H, D]`` (D = rotary dim) with half-split pairs."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)

"""Small building blocks of the GPT: weightless RMSNorm, the fp32-master linear, rotary embeddings (SPEC §2.2)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Parameters whose names contain one of these stay fp32 and go to the scalar Adam group / fp32 passthrough
# (the official CONTROL_TENSOR_NAME_PATTERNS).
CONTROL_PATTERNS = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes", "q_gain",
                    "skip_weight", "skip_weights", "skip_gates", "attn_gate", "smear", "ve_layer_scales",
                    "ve_shared.scale", "bigram.scale", "parallel_resid_lambdas", "parallel_post_lambdas", "lane_merge",
                    "vr_lambda")


def rms_norm(x: Tensor) -> Tensor:
    """Weightless RMSNorm over the last dim (``F.rms_norm`` with the default eps)."""
    return F.rms_norm(x, (x.size(-1),))


class RMSNorm(nn.Module):
    """Weightless RMSNorm module (no parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x)


class CastedLinear(nn.Linear):
    """``nn.Linear`` whose weight stays fp32 and is cast to the activation dtype at matmul time (bf16 on CUDA).

    ``qat_fn`` (None by default) is a weight transform applied in every *training-mode* forward, e.g. the STE fake
    quantizer of late QAT (SPEC §3.B3): like the records (#414 → #1019 check ``self.training``), evaluation, GPTQ
    calibration and the pre-quantization score see the float weights. It is an *instance* attribute read inside
    ``forward``: ``torch.compile`` guards on it and recompiles when it changes, instead of constant-folding a class
    flag (SPEC §7.2 trap 2).
    """

    qat_fn: Callable[[Tensor], Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self.qat_fn is None or not self.training else self.qat_fn(self.weight)
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, w.to(x.dtype), bias)


class Rotary(nn.Module):
    """RoPE tables for the first ``rope_dims`` dims of each head with half-split pairing inside them
    (dim i pairs with i + rope_dims/2); partial RoPE (C8, #315) leaves dims >= rope_dims position-free.

    NTK-style base rescale for long eval (A2): when ``train_len > 0`` and ``seq_len > train_len`` the base becomes
    ``base * (seq_len / train_len) ** (d_r / (d_r - 2))`` (d_r = rope_dims), stretching the low frequencies.

    ``forward(seq_len, device, dtype)`` returns ``(cos, sin)``, each ``[1, seq_len, 1, rope_dims/2]``.
    """

    def __init__(self, rope_dims: int, base: float = 10000.0, train_len: int = 0):
        super().__init__()
        if rope_dims % 2 or rope_dims <= 0:
            raise ValueError(f"ROPE_DIMS must be a positive even number, got {rope_dims}")
        self.dim = rope_dims
        self.base = base
        self.train_len = train_len
        self._cache: tuple[int, torch.device, Tensor, Tensor] | None = None

    def effective_base(self, seq_len: int) -> float:
        if self.train_len > 0 and seq_len > self.train_len and self.dim > 2:
            return self.base * (seq_len / self.train_len) ** (self.dim / (self.dim - 2))
        return self.base

    def forward(self, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        if torch.compiler.is_compiling():  # part of the graph (one small fused kernel), no cache side effect: a
            c = self._tables(seq_len, device)  # table made inside an inference-mode graph would poison training
            return c[2].to(dtype), c[3].to(dtype)
        c = self._cache
        if c is None or c[0] != seq_len or c[1] != device:
            with torch.inference_mode(False):  # normal tensors, usable by later training steps
                c = self._tables(seq_len, device)
            self._cache = c
        return c[2].to(dtype), c[3].to(dtype)

    def _tables(self, seq_len: int, device: torch.device) -> tuple[int, torch.device, Tensor, Tensor]:
        base = self.effective_base(seq_len)
        inv_freq = 1.0 / (base ** (torch.arange(0, self.dim, 2, dtype=torch.float32, device=device) / self.dim))
        t = torch.arange(seq_len, device=device, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)
        return seq_len, device, freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first ``2 * cos.size(-1)`` dims of ``x`` (``[B, T, H, D]``) with half-split pairs; the remaining
    dims pass through unchanged (partial RoPE)."""
    rd = 2 * cos.size(-1)
    xr, xp = (x, None) if rd == x.size(-1) else (x[..., :rd], x[..., rd:])
    half = rd // 2
    x1, x2 = xr[..., :half], xr[..., half:]
    out = torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)
    return out if xp is None else torch.cat((out, xp), dim=-1)

"""Causal attention backends: FlashAttention when present on CUDA, PyTorch SDPA everywhere else.

Both take ``q`` of shape ``[B, T, H, D]`` and ``k, v`` of shape ``[B, T, H_kv, D]`` (GQA when ``H_kv < H``) and
return ``[B, T, H, D]``. The choice is automatic: FlashAttention 3 (``flash_attn_interface``) or 2 (``flash_attn``)
is used only for CUDA tensors in fp16/bf16; the SDPA path is the tested fallback.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _load_flash():
    try:  # FlashAttention 3 (Hopper)
        from flash_attn_interface import flash_attn_func  # type: ignore

        return "fa3", flash_attn_func
    except Exception:  # noqa: BLE001 - optional dependency
        pass
    try:
        from flash_attn import flash_attn_func  # type: ignore

        return "fa2", flash_attn_func
    except Exception:  # noqa: BLE001
        return None, None


# Resolved once at import: the lookup must not happen inside a torch.compile'd graph.
FLASH_NAME, FLASH_FN = _load_flash()


def attention_backend(q: Tensor) -> str:
    """Name of the backend :func:`causal_attention` will use for ``q``: ``fa3``, ``fa2`` or ``sdpa``."""
    if FLASH_FN is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        return FLASH_NAME
    return "sdpa"


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal (GQA) attention; see the module docstring for shapes."""
    backend = attention_backend(q)
    if backend != "sdpa":
        out = FLASH_FN(q, k, v, causal=True)
        return out[0] if isinstance(out, tuple) else out
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                                       enable_gqa=k.size(2) != q.size(2))
    return y.transpose(1, 2)

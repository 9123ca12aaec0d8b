"""Causal attention backends and exclusive self-attention.

``causal_attention(q, k, v, doc_ids=None)`` takes ``q`` ``[B, T, H, D]`` and ``k, v`` ``[B, T, H_kv, D]`` (GQA when
``H_kv < H``) and returns ``[B, T, H, D]``. With ``doc_ids`` (int ``[B, T]``, non-decreasing along T) attention is
also restricted to keys of the same document (VarLen-style isolation, SPEC §3.D6). The backend is automatic:
FlashAttention 3 (``flash_attn_interface``) or 2 (``flash_attn``) for CUDA tensors in fp16/bf16 (varlen kernel when
``doc_ids`` is given); PyTorch SDPA everywhere else — the tested fallback — which with ``doc_ids`` runs each document
segment as one row of a padded batch (a dense block-diagonal mask only inside a compiled graph).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _load_flash():
    try:  # FlashAttention 3 (Hopper)
        from flash_attn_interface import flash_attn_func, flash_attn_varlen_func  # type: ignore

        return "fa3", flash_attn_func, flash_attn_varlen_func
    except Exception:  # noqa: BLE001 - optional dependency
        pass
    try:
        from flash_attn import flash_attn_func, flash_attn_varlen_func  # type: ignore

        return "fa2", flash_attn_func, flash_attn_varlen_func
    except Exception:  # noqa: BLE001
        return None, None, None


# Resolved once at import: the lookup must not happen inside a torch.compile'd graph.
FLASH_NAME, FLASH_FN, FLASH_VARLEN_FN = _load_flash()


def attention_backend(q: Tensor) -> str:
    """Name of the backend :func:`causal_attention` will use for ``q``: ``fa3``, ``fa2`` or ``sdpa``."""
    if FLASH_FN is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        return FLASH_NAME
    return "sdpa"


class Segments:
    """Document ids ``[B, T]`` of a packed batch with the derived attention structures, computed once per forward
    and shared by every layer: the segments (maximal runs of one id inside a row) as flat start/length arrays, a
    gather index that packs them into a right-padded ``[S, L_max]`` batch for SDPA, ``cu_seqlens`` for the
    FlashAttention varlen kernel, and (for a compiled graph, where shapes must not depend on the data) a boolean
    ``[B, 1, T, T]`` mask (key s visible from query t iff ``s <= t`` and same document)."""

    def __init__(self, doc_ids: Tensor):
        self.doc_ids = doc_ids
        self._mask: Tensor | None = None
        self._cu: tuple[Tensor, int] | None = None
        self._packing: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def mask(self) -> Tensor:
        if self._mask is None:
            t = self.doc_ids.size(1)
            causal = torch.ones(t, t, dtype=torch.bool, device=self.doc_ids.device).tril()
            self._mask = (causal[None] & (self.doc_ids[:, :, None] == self.doc_ids[:, None, :]))[:, None]
        return self._mask

    def _starts(self) -> Tensor:
        b, t = self.doc_ids.shape
        starts = torch.ones_like(self.doc_ids, dtype=torch.bool)
        starts[:, 1:] = self.doc_ids[:, 1:] != self.doc_ids[:, :-1]
        return starts.reshape(-1).nonzero().squeeze(-1)

    @property
    def cu_seqlens(self) -> tuple[Tensor, int]:
        if self._cu is None:
            b, t = self.doc_ids.shape
            flat = self._starts().to(torch.int32)
            cu = torch.cat([flat, torch.tensor([b * t], dtype=torch.int32, device=flat.device)])
            self._cu = (cu, t)  # segments never exceed a row: T is a static upper bound (no .item())
        return self._cu

    @property
    def packing(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(gather [S, L_max], segment_of [B·T], offset_of [B·T])``: flat position of every (segment, offset)
        slot (padding slots repeat the segment's last position) and the inverse map."""
        if self._packing is None:
            n = self.doc_ids.numel()
            starts = self._starts()
            ends = torch.cat([starts[1:], torch.tensor([n], device=starts.device)])
            lengths = ends - starts
            width = int(lengths.max())
            offs = torch.arange(width, device=starts.device)
            gather = starts[:, None] + torch.minimum(offs[None, :], lengths[:, None] - 1)
            seg_of = torch.repeat_interleave(torch.arange(starts.numel(), device=starts.device), lengths)
            off_of = torch.arange(n, device=starts.device) - starts[seg_of]
            self._packing = (gather, seg_of, off_of)
        return self._packing


def _segment_sdpa(q: Tensor, k: Tensor, v: Tensor, seg: Segments) -> Tensor:
    """Document-isolated causal attention by packing the segments into a padded batch: each segment attends only to
    itself, exactly as the varlen kernel; padding sits after a segment's real tokens, so causality keeps it out of
    every real query. Memory ``O(S·L_max²)`` instead of ``O(T²)`` per row."""
    b, t = seg.doc_ids.shape
    gather, seg_of, off_of = seg.packing
    flat = [z.reshape(b * t, *z.shape[2:]) for z in (q, k, v)]
    qp, kp, vp = (z[gather].transpose(1, 2) for z in flat)  # [S, H, L_max, D]
    y = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True, enable_gqa=kp.size(1) != qp.size(1))
    return y.transpose(1, 2)[seg_of, off_of].view(b, t, *q.shape[2:])


def _varlen(q: Tensor, k: Tensor, v: Tensor, seg: Segments) -> Tensor:
    b, t = seg.doc_ids.shape
    cu, max_len = seg.cu_seqlens
    out = FLASH_VARLEN_FN(q.reshape(b * t, *q.shape[2:]), k.reshape(b * t, *k.shape[2:]),
                          v.reshape(b * t, *v.shape[2:]), cu, cu, max_len, max_len, causal=True)
    out = out[0] if isinstance(out, tuple) else out
    return out.view(b, t, *q.shape[2:])


def causal_attention(q: Tensor, k: Tensor, v: Tensor, doc_ids: Tensor | Segments | None = None) -> Tensor:
    """Causal (GQA) attention, optionally document-isolated (``doc_ids`` or a shared :class:`Segments`); see the
    module docstring for shapes."""
    if doc_ids is not None and not isinstance(doc_ids, Segments):
        doc_ids = Segments(doc_ids)
    backend = attention_backend(q)
    if backend != "sdpa":
        if doc_ids is not None and not torch.compiler.is_compiling():  # nonzero() has a data-dependent shape
            return _varlen(q, k, v, doc_ids)
        if doc_ids is None:
            out = FLASH_FN(q, k, v, causal=True)
            return out[0] if isinstance(out, tuple) else out
    if doc_ids is not None and not torch.compiler.is_compiling():
        return _segment_sdpa(q, k, v, doc_ids)
    gqa = k.size(2) != q.size(2)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if doc_ids is None:
        y = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=gqa)
    else:  # compiled graph: data-independent shapes, a dense block-diagonal mask
        y = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=doc_ids.mask, enable_gqa=gqa)
    return y.transpose(1, 2)


def exclusive_self_attention(y: Tensor, v: Tensor) -> Tensor:
    """XSA (arXiv 2603.09078; #265, #287, #478): remove from each head output the component along the token's own
    value vector, ``y_t ← y_t − (y_t·v̂_t) v̂_t`` with v̂ the unit value of the KV head serving that query head.

    ``y``: ``[B, T, H, D]``, ``v``: ``[B, T, H_kv, D]``. GQA-efficient form: ``y`` is viewed as
    ``[B, T, H_kv, H/H_kv, D]`` and the normalised ``v`` broadcast over the group (no ``repeat_interleave``).
    """
    b, t, h, d = y.shape
    hk = v.size(2)
    y5 = y.view(b, t, hk, h // hk, d)
    vn = F.normalize(v, dim=-1).unsqueeze(3)
    y5 = y5 - (y5 * vn).sum(-1, keepdim=True) * vn
    return y5.view(b, t, h, d)

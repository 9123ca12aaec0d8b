"""A stand-in for ``flash_attn_interface`` (FlashAttention 3) built on PyTorch SDPA, so a record's script runs on
CPU in the reference harness. Same calling convention: ``flash_attn_func(q, k, v, causal=True)`` with ``q``
``[B, T, H, D]``, ``k, v`` ``[B, T, H_kv, D]`` (GQA) → ``[B, T, H, D]``; ``flash_attn_varlen_func(q, k, v,
cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=True, ...)`` with packed ``[N, H, D]`` inputs and
``cu_seqlens`` int32 ``[S + 1]`` → ``[N, H, D]``, every segment attending only to itself."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flash_attn_func(q, k, v, causal=True, softmax_scale=None, **_ignored):
    gqa = k.size(2) != q.size(2)
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal,
                                       scale=softmax_scale, enable_gqa=gqa)
    return y.transpose(1, 2)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, causal=True,
                           softmax_scale=None, **_ignored):
    if not torch.equal(cu_seqlens_q, cu_seqlens_k):
        raise NotImplementedError("fake varlen attention: only cu_seqlens_q == cu_seqlens_k")
    out = torch.empty_like(q)
    cu = [int(c) for c in cu_seqlens_q.tolist()]
    for a, b in zip(cu[:-1], cu[1:]):
        if b > a:
            out[a:b] = flash_attn_func(q[None, a:b], k[None, a:b], v[None, a:b], causal, softmax_scale)[0]
    return out

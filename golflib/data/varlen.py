"""FlashAttention varlen boundaries of packed document batches (#1530 → #1855; SPEC §3.D6).

A packed batch carries document ids ``[B, T]`` (:func:`golflib.data.loaders.packed_doc_ids`); the varlen kernel
wants the flat start offset of every segment. Computed on the host (or by the loader's thread), outside a compiled
graph — ``nonzero`` has a data-dependent shape — and padded to a multiple of a bucket so the compiled step sees a
handful of shapes, each warmed before the timer (#1855 warms 64, 128, 192, 256).
"""

from __future__ import annotations

import torch
from torch import Tensor

CU_BUCKET = 64  # #1855 pads cu_seqlens to a multiple of 64 entries: a handful of shapes, so few recompiles


def segment_starts(doc_ids: Tensor) -> Tensor:
    """Flat start offsets (int64 ``[S]``) of the segments of ``doc_ids`` int ``[B, T]``: maximal runs of one id
    inside a row; row ``r`` starts at ``r·T``."""
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    return starts.reshape(-1).nonzero().squeeze(-1)


def cu_seqlens_padded(doc_ids: Tensor, bucket: int = CU_BUCKET) -> Tensor:
    """The varlen boundaries of a packed batch, as #1855's ``_build_cu_seqlens``: int32 ``[P]`` flat start offsets
    of every segment of ``doc_ids`` int ``[B, T]`` then ``B·T``, padded with ``B·T`` (empty trailing segments) to
    ``P``, the next multiple of ``bucket``. Pass it to the model with ``max_seqlen`` (the segment length cap,
    TRAIN_SEQ_LEN) so a compiled graph calls the varlen kernel with static shapes. Raises ``ValueError`` for
    ``doc_ids`` that is not 2-D."""
    if doc_ids.dim() != 2:
        raise ValueError(f"cu_seqlens_padded: expected doc_ids [B, T], got shape {tuple(doc_ids.shape)}")
    b, t = doc_ids.shape
    flat = segment_starts(doc_ids).to(torch.int32)
    n = flat.numel() + 1
    padded = -(-n // bucket) * bucket
    cu = torch.full((padded,), b * t, dtype=torch.int32, device=doc_ids.device)
    cu[:flat.numel()] = flat
    return cu

"""Corpus statistics from shards: document lengths (split at BOS) and token counts."""

from __future__ import annotations

import numpy as np

from golflib.data.shards import list_shards, load_shard


def doc_lengths(pattern: str, bos_id: int = 1) -> np.ndarray:
    """Length in tokens (BOS included) of every document in the shards matching ``pattern``, in stream order.

    Documents are delimited by BOS; a stream that does not start with BOS contributes its leading fragment as one
    document. Returns int64 ``[n_docs]``."""
    tokens = np.concatenate([np.asarray(load_shard(f)) for f in list_shards(pattern)])
    starts = np.flatnonzero(tokens == bos_id)
    if starts.size == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    return np.diff(np.concatenate([starts, [tokens.size]])).astype(np.int64)

"""A pinned, prefetching wrapper around any train loader (SPEC §3.D9; #1530 → #1855's DocumentPackingLoader).

The training step asks for a micro-batch and should not wait for it: :class:`PrefetchLoader` builds the next
``depth`` micro-batches on a background thread while the GPU runs the current one — the inner loader's
``next_batch`` (shard reads, the record loaders' sampling), and for packed documents the FlashAttention varlen
boundaries (:func:`golflib.data.varlen.cu_seqlens_padded`, padded to a bucket so a compiled step sees few
shapes). On CUDA the host tensors are pinned and the copies to the GPU are asynchronous (``non_blocking``).

The inner loader is called from that one thread only, in order, so the batches (and every random draw of the
record loaders) are exactly those of the inner loader called directly: the prefetch changes when a batch is made,
never which.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from golflib.data.varlen import CU_BUCKET, cu_seqlens_padded


@dataclass
class Batch:
    """One micro-batch: int64 ``x``, ``y`` ``[B, T]``; for packed documents ``doc_ids`` (int64 ``[B, T]``) and
    ``cu_seqlens`` (int32, padded to a multiple of the bucket), else None."""

    x: Tensor
    y: Tensor
    doc_ids: Tensor | None = None
    cu_seqlens: Tensor | None = None

    def model_kwargs(self, max_seqlen: int) -> dict:
        """Keyword arguments of :meth:`golflib.model.gpt.GPT.forward` for the document structure (empty without
        one); ``max_seqlen``: the segment length cap (TRAIN_SEQ_LEN)."""
        if self.doc_ids is None:
            return {}
        return dict(doc_ids=self.doc_ids, cu_seqlens=self.cu_seqlens, max_seqlen=max_seqlen)


class PrefetchLoader:
    """``loader`` (built on the CPU; any loader of :mod:`golflib.data.loader` / :mod:`golflib.data.loaders`) with
    ``depth`` micro-batches of ``(global_tokens, seq_len, accum)`` prepared ahead on a background thread and moved
    to ``device`` (pinned, non-blocking on CUDA). ``depth = 0`` builds each batch on demand in the caller's thread
    (same batches). ``cu_bucket``: the varlen boundary padding. Call :meth:`close` (or use it as a context manager)
    to stop the thread. ``wait_seconds`` accumulates the time :meth:`next_batch` spent waiting for a batch."""

    def __init__(self, loader, device: torch.device | str, global_tokens: int, seq_len: int, accum: int,
                 depth: int = 2, cu_bucket: int = CU_BUCKET):
        if depth < 0:
            raise ValueError(f"LOADER_PREFETCH={depth}: must be >= 0")
        self.loader, self.device = loader, torch.device(device)
        self.args = (global_tokens, seq_len, accum)
        self.depth, self.cu_bucket = depth, cu_bucket
        self.pin = self.device.type == "cuda"
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="golflib-loader") if depth else None
        self._queue: deque[Future] = deque()
        self.wait_seconds = 0.0
        self.batches = 0

    @property
    def tokens_served(self) -> int:
        """Global tokens the inner loader has produced (including prefetched batches not yet used)."""
        return self.loader.tokens_served

    def _make(self) -> Batch:
        x, y, doc_ids = self.loader.next_batch(*self.args)
        cu = cu_seqlens_padded(doc_ids, self.cu_bucket) if doc_ids is not None else None
        b = Batch(x, y, doc_ids, cu)
        if self.pin:
            b = Batch(*(t.pin_memory() if t is not None else None for t in (b.x, b.y, b.doc_ids, b.cu_seqlens)))
        return b

    def _to_device(self, b: Batch) -> Batch:
        if b.x.device == self.device:
            return b
        return Batch(*(t.to(self.device, non_blocking=True) if t is not None else None
                       for t in (b.x, b.y, b.doc_ids, b.cu_seqlens)))

    def next_batch(self) -> Batch:
        """The next micro-batch on ``device``."""
        t0 = time.perf_counter()
        if self._pool is None:
            b = self._make()
        else:
            while len(self._queue) < self.depth:
                self._queue.append(self._pool.submit(self._make))
            b = self._queue.popleft().result()
            self._queue.append(self._pool.submit(self._make))
        self.wait_seconds += time.perf_counter() - t0
        self.batches += 1
        return self._to_device(b)

    def close(self) -> None:
        """Stop prefetching (pending batches are dropped)."""
        if self._pool is not None:
            for f in self._queue:
                f.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None
            self._queue.clear()

    def __enter__(self) -> PrefetchLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""``golf bench loader``: how long the training loop waits for its micro-batch, before and after issue 14.

"Before" builds each batch in the loop's own thread when the step asks for it (golflib until issue 14: the loader's
``next_batch``, then the varlen boundaries of packed documents); "after" is :class:`golflib.data.prefetch.
PrefetchLoader`, which builds ``depth`` batches ahead on a background thread while the step computes. The step's
compute is stood in for by ``compute_ms`` of sleep (on a GPU the host is equally idle while kernels run), so the
number is the host time the loop spends waiting per step: the part of the step a loader adds. Shards are synthetic
(BOS-opened documents of 100–1,500 tokens, uint16, the challenge's format) in a temporary folder; the batch is one
rank's share of the records' step (786,432 tokens / 8 ranks, one micro-batch).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from golflib.data.loaders import make_loader
from golflib.data.prefetch import PrefetchLoader
from golflib.data.shards import write_shard
from golflib.data.varlen import cu_seqlens_padded
from golflib.workbook.bench import register


def write_synthetic_shards(root: Path, n_shards: int = 2, tokens: int = 4_000_000, vocab: int = 8192,
                           seed: int = 0) -> str:
    """``n_shards`` shards of ``tokens`` random tokens with a BOS (1) opening documents of 100–1,500 tokens;
    returns the glob pattern."""
    rng = np.random.default_rng(seed)
    for i in range(n_shards):
        toks = rng.integers(2, vocab, tokens).astype(np.uint16)
        starts = np.cumsum(rng.integers(100, 1500, tokens // 100))
        toks[starts[starts < tokens]] = 1
        toks[0] = 1
        write_shard(root / f"bench_train_{i:06d}.bin", toks)
    return str(root / "bench_train_*.bin")


@register("loader")
def bench_loader(run_dir: str | None = None, kinds: tuple[str, ...] = ("sequential", "packed"),
                 tokens_per_rank: int = 98_304, seq_len: int = 2048, steps: int = 40, compute_ms: float = 25.0,
                 depth: int = 2) -> dict[str, Any]:
    """Wait per step (ms) of each loader kind, built in the loop vs prefetched, with ``compute_ms`` of step."""
    out: dict[str, Any] = {"tokens_per_rank": tokens_per_rank, "seq_len": seq_len, "steps": steps,
                           "compute_ms": compute_ms, "depth": depth, "kinds": {}}
    with tempfile.TemporaryDirectory() as d:
        pattern = write_synthetic_shards(Path(d))
        args = (tokens_per_rank, seq_len, 1)
        for kind in kinds:
            loader = make_loader(kind, pattern, 0, 1)
            waited = 0.0
            for _ in range(steps):
                t0 = time.perf_counter()
                x, y, doc = loader.next_batch(*args)
                if doc is not None:
                    cu_seqlens_padded(doc)
                waited += time.perf_counter() - t0
                time.sleep(compute_ms / 1000)
            before = 1000 * waited / steps
            with PrefetchLoader(make_loader(kind, pattern, 0, 1), "cpu", *args, depth=depth) as pf:
                pf.next_batch()  # the first batch is never hidden (nothing ran before it)
                pf.wait_seconds = 0.0
                for _ in range(steps):
                    pf.next_batch()
                    time.sleep(compute_ms / 1000)
                after = 1000 * pf.wait_seconds / steps
            out["kinds"][kind] = {"wait_ms_per_step_before": before, "wait_ms_per_step_after": after,
                                  "hidden_fraction": 1 - after / max(before, 1e-9)}
    return out

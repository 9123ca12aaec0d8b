"""The prefetching loader (issue 14): built ahead on a thread, it must hand out exactly the inner loader's batches —
every record loader's random draws included — with #1855's padded varlen boundaries for packed documents."""

import pytest
import torch

from golflib.data.loaders import make_loader
from golflib.data.prefetch import PrefetchLoader
from golflib.data.varlen import cu_seqlens_padded
from test_loaders import write_loader_shards


@pytest.mark.parametrize("kind", ["sequential", "coprime", "shuffled", "packed"])
@pytest.mark.parametrize("depth", [0, 3])
def test_prefetched_batches_are_the_loaders(tmp_path, kind, depth):
    write_loader_shards(tmp_path)
    pat = str(tmp_path / ("packed" if kind == "packed" else "data") / "fineweb_train_*.bin")
    args = (256, 32, 2)  # 256 tokens per step, seq_len 32, 2 micro-batches: 128 tokens per micro-batch
    direct = make_loader(kind, pat, 0, 1)
    with PrefetchLoader(make_loader(kind, pat, 0, 1), "cpu", *args, depth=depth, cu_bucket=8) as pf:
        for _ in range(12):
            x, y, doc = direct.next_batch(*args)
            b = pf.next_batch()
            assert torch.equal(b.x, x) and torch.equal(b.y, y)
            if kind == "packed":
                assert torch.equal(b.doc_ids, doc)
                assert torch.equal(b.cu_seqlens, cu_seqlens_padded(doc, 8)) and b.cu_seqlens.numel() % 8 == 0
                assert b.model_kwargs(32)["max_seqlen"] == 32
            else:
                assert b.doc_ids is None and b.cu_seqlens is None and b.model_kwargs(32) == {}
        assert pf.batches == 12
    with pytest.raises(ValueError, match="LOADER_PREFETCH"):
        PrefetchLoader(direct, "cpu", *args, depth=-1)

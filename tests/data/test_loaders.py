import math

import numpy as np
import pytest
import torch

from golflib.data.loaders import (CoprimeStrideLoader, DocumentPackingLoader, ShuffledSequenceLoader, _ShardCursor,
                                  make_loader)
from golflib.data.shards import write_shard


def test_coprime_cursor_visits_every_block_once_per_pass():
    rng = np.random.default_rng(0)
    for n in (1000, 4097, 65):
        c = _ShardCursor(n, 64, rng)
        offs = [c.take() for _ in range(c.blocks)]
        assert math.gcd(c.stride, c.blocks) == 1
        assert len(set(offs)) == c.blocks  # each block exactly once
        assert all((o - c.phase) % 64 == 0 and o + 64 < n for o in offs)


def _shards(tmp_path, sizes):
    for i, n in enumerate(sizes):
        write_shard(tmp_path / f"d_train_{i:06d}.bin", (np.arange(n) + 1000 * i) % 60000)
    return str(tmp_path / "*_train_*.bin")


def test_coprime_loader_ranks_share_one_global_list(tmp_path):
    pat = _shards(tmp_path, [5000, 3000, 7000])
    loaders = [CoprimeStrideLoader(pat, r, 2) for r in range(2)]
    single = CoprimeStrideLoader(pat, 0, 1)
    for _ in range(5):
        (x0, y0, d0), (x1, y1, _) = [ld.next_batch(16 * 32, 32, 1) for ld in loaders]
        xs, _, _ = single.next_batch(16 * 32, 32, 1)
        assert d0 is None and x0.shape == (8, 32)
        torch.testing.assert_close(y0[:, :-1], x0[:, 1:])
        # rank r takes windows[r::2] of the same global list the single-process loader builds
        torch.testing.assert_close(torch.stack([x0, x1], 1).reshape(16, 32), xs)
    assert loaders[0].batches == 5


def test_shuffled_loader_covers_each_sequence_once_per_epoch(tmp_path):
    pat = _shards(tmp_path, [33 * 10 + 5])
    ld = ShuffledSequenceLoader(pat, 0, 1, seed=3)
    x, y, _ = ld.next_batch(330, 33, 1)
    assert x.shape == (10, 33)
    starts = sorted(int(r[0]) for r in x)
    phase = starts[0] % 33
    assert starts == [phase + 33 * i for i in range(len(starts))]  # every sequence of the pass, once
    torch.testing.assert_close(y[:, :-1], x[:, 1:])


def test_document_packing_doc_ids_and_spans(tmp_path):
    toks = np.array([5, 6, 1, 7, 8, 9, 1, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20])
    write_shard(tmp_path / "d_train_000000.bin", toks)
    pat = str(tmp_path / "*_train_*.bin")
    r0 = DocumentPackingLoader(pat, 0, 2)
    r1 = DocumentPackingLoader(pat, 1, 2)
    x0, y0, d0 = r0.next_batch(16, 4, 2)  # 4 tokens per rank: one row of 4
    x1, _, d1 = r1.next_batch(16, 4, 2)
    assert x0.tolist() == [[1, 7, 8, 9]] and y0.tolist() == [[7, 8, 9, 1]]  # starts at the shard's first BOS
    assert d0.tolist() == [[1, 1, 1, 1]]
    # rank 1's span follows rank 0's (spans of local+1 tokens); a new document id starts at each BOS
    assert x1.tolist() == [[4, 1, 2, 3]] and d1.tolist() == [[0, 1, 1, 1]]
    assert make_loader("packed", pat, 0, 1).bos == 1
    with pytest.raises(ValueError, match="TRAIN_LOADER='random'"):
        make_loader("random", pat, 0, 1)


def test_packed_training_step_uses_doc_isolation(tmp_path):
    from golflib.settings.model import ModelConfig
    from golflib.model.gpt import GPT

    m = GPT(ModelConfig(num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, vocab_size=64))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.tensor([[5, 6, 7, 1, 8, 9]])
    doc = torch.cumsum((x == 1).long(), 1)
    iso = m(x, doc_ids=doc)
    # the second document's logits equal those of the document alone
    torch.testing.assert_close(iso[:, 3:], m(x[:, 3:]))

"""The record loaders against numbers taken from the records' own loader classes (SPEC §3.D9).

The fixture numbers below were produced by running, in a throwaway script, the loader classes of the records'
``train_gpt.py`` on the shards :func:`write_loader_shards` writes, with the same batch calls as here:

* ``ShuffledSequenceLoader`` of #1394 (``train_gpt_decoded.py``) and of #1855 (its GPTQ calibration loader): equal;
* ``DistributedTokenLoader`` (coprime stride) of #1060 (2026-03-29_Loader_FullGPTQ_XSA11_BigramHash2816), #1218
  (2026-04-01_Vocab4096_MLPMult4_WD085) and #1487: equal, for the glob ``data/fineweb_train_*.bin`` and for
  ``./data/fineweb_train_*.bin`` (the records hash ``str(Path(p))``, so both patterns give the same seed);
* ``DocumentPackingLoader`` of #1855 (its ``cu_seqlens`` as the cut positions, its ``max_seqlen``).

A batch row is ``[sum(x), Σ x_i·(i mod 997 + 1), sum(y[:, -1]), same weighted]`` over the flattened tensors
(:func:`checksum`); packed rows add the segment cut positions and the longest segment; :func:`fold` hashes a list
of rows. World sizes 1 and 2 (both ranks).
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from golflib.data.loaders import (CoprimeStrideLoader, DocumentPackingLoader, ShuffledSequenceLoader, _ShardCursor,
                                  make_loader, packed_doc_ids)
from golflib.data.shards import write_shard
from reference.synth import markov_documents

L = 32
STRIDED_SIZES = (2000, 1500, 33, 50, 20, 3000, 800, 1200, 64, 2500, 700, 1800)  # incl. L+1, ≤ 2L, < L+1 tokens
PACKED_SIZES = (3000, 700, 260, 2000)  # the 260-token shard is shorter than one global span: dropped
RANKS = [(1, 0), (2, 0), (2, 1)]

# (world, rank): (rows of the first 3 batches, fold of all 60 batches); 256 tokens per micro-step, accum 1
SHUFFLED = {
    (1, 0): ([[134612, 16770687, 3143, 17162], [128009, 16747300, 2398, 10747], [136668, 17290541, 4716, 19953]],
             1133791144910577027),
    (2, 0): ([[63969, 4086384, 2146, 6168], [64348, 3881035, 3070, 6980], [68762, 4568251, 1224, 3156]],
             1945542546682535211),
    (2, 1): ([[63906, 4188409, 2487, 6060], [60521, 3997450, 1600, 4266], [64936, 4192149, 1878, 4407]],
             1176077367579026757),
}
# (world, rank): (first 3 rows, rows at batches 899/1799/1800/1999, [rolling hash of the weighted x sums, Σ sums]
# over 2,000 batches); 512 tokens per micro-step (16 global windows), accum 1
COPRIME = {
    (1, 0): ([[257485, 65139140, 10462, 90223], [269186, 71400344, 9177, 74160], [261883, 66130726, 7815, 62659]],
             {899: [272846, 70702899, 7517, 59796], 1799: [262082, 65601485, 7836, 71538],
              1800: [257636, 66772311, 7915, 63811], 1999: [269709, 68902511, 9999, 78241]},
             [1254721136927592222, 529441121]),
    (2, 0): ([[128221, 15817810, 5047, 22502], [129441, 16922030, 5050, 22873], [135468, 17383040, 4159, 17301]],
             {899: [136753, 17788336, 3666, 13598], 1799: [139353, 17669054, 3974, 21078],
              1800: [122557, 16342119, 3543, 14068], 1999: [135000, 16965977, 4757, 18850]},
             [554615302687441753, 264842895]),
    (2, 1): ([[129264, 16843218, 5415, 25133], [139745, 18784010, 4127, 16732], [126415, 15837574, 3656, 16108]],
             {899: [136093, 17667523, 3851, 18133], 1799: [122729, 15307247, 3862, 16678],
              1800: [135079, 17031376, 4372, 19609], 1999: [134709, 17601238, 5242, 22649]},
             [1665001836828167717, 264598226]),
}
# (world, rank): (first 3 rows + [cuts, longest segment], fold of all 40 batches); 512 tokens per step, accum 2
PACKED = {
    (1, 0): ([[126391, 16138183, 399, 399, [32, 64, 96, 128, 138, 170, 202, 234], 32],
              [131886, 16495049, 328, 328, [32, 64, 96, 128, 160, 192, 224], 32],
              [137364, 17684712, 483, 483, [32, 64, 96, 128, 160, 192, 224], 32]], 2078061938861411332),
    (2, 0): ([[63850, 4151085, 877, 877, [32, 64, 96], 32], [71798, 4759898, 492, 492, [32, 64, 96], 32],
              [70201, 4787777, 88, 88, [32, 64, 96], 32]], 2254641077966254144),
    (2, 1): ([[62063, 3970381, 50, 50, [9, 41, 73, 105], 32], [60764, 4013939, 62, 62, [32, 64, 96], 32],
              [67504, 4257233, 895, 895, [32, 64, 96], 32]], 1922282990128565812),
}


def write_loader_shards(root: Path) -> None:
    """``root/data``: 12 shards of Markov documents (:mod:`reference.synth`); ``root/packed``: 4 shards that start
    7 tokens into a document (the packing loader skips to the first BOS)."""
    for i, n in enumerate(STRIDED_SIZES):
        write_shard(root / "data" / f"fineweb_train_{i:06d}.bin", markov_documents(n, 1024, seed=300 + i))
    for i, n in enumerate(PACKED_SIZES):
        write_shard(root / "packed" / f"fineweb_train_{i:06d}.bin", markov_documents(n + 7, 1024, seed=400 + i)[7:])


def checksum(t: torch.Tensor) -> list[int]:
    a = t.reshape(-1).numpy().astype(np.int64)
    return [int(a.sum()), int((a * (np.arange(a.size) % 997 + 1)).sum())]


def fold(rows) -> int:
    h = 0
    for row in rows:
        for v in row:
            for u in (v if isinstance(v, list) else [v]):
                h = (h * 1_000_003 + u) % 2**61
    return h


def _row(x: torch.Tensor, y: torch.Tensor) -> list[int]:
    torch.testing.assert_close(y[:, :-1], x[:, 1:], rtol=0, atol=0)
    return checksum(x) + checksum(y[:, -1])


@pytest.fixture(scope="module")
def shard_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loader_shards")
    write_loader_shards(root)
    return root


@pytest.mark.parametrize("world,rank", RANKS)
def test_shuffled_loader_reproduces_1394_and_1855(shard_root, monkeypatch, world, rank):
    monkeypatch.chdir(shard_root)
    ld = make_loader("shuffled", "data/fineweb_train_*.bin", rank, world)  # seeded by the rank only
    rows = []
    for _ in range(60):  # > one pass over the rank's shards: the reset of every shard is covered
        x, y, doc = ld.next_batch(256, L, 1)
        assert doc is None and x.shape == (256 // (world * L), L) and x.dtype == torch.int64
        rows.append(_row(x, y))
    first, h = SHUFFLED[(world, rank)]
    assert rows[:3] == first
    assert fold(rows) == h


@pytest.mark.parametrize("world,rank,pattern", [(w, r, "data/fineweb_train_*.bin") for w, r in RANKS]
                         + [(2, 1, "./data/fineweb_train_*.bin")])
def test_coprime_loader_reproduces_1060_1218_1487(shard_root, monkeypatch, world, rank, pattern):
    monkeypatch.chdir(shard_root)
    ld = make_loader("coprime", pattern, rank, world)
    first, at, (h_expected, total_expected) = COPRIME[(world, rank)]
    rows, h, total = [], 0, 0
    for b in range(2000):  # past the 1,800-step ramp of shard mixing and α
        x, y, doc = ld.next_batch(512, L, 1)
        assert doc is None and x.shape == (16 // world, L)
        c = _row(x, y)
        h, total = (h * 1_000_003 + c[1]) % 2**61, total + c[0]
        if b < 3:
            rows.append(c)
        elif b in at:
            assert c == at[b], b
    assert rows == first
    assert (h, total) == (h_expected, total_expected)


@pytest.mark.parametrize("world,rank", RANKS)
def test_packed_loader_reproduces_1855(shard_root, monkeypatch, world, rank):
    monkeypatch.chdir(shard_root)
    ld = make_loader("packed", "packed/fineweb_train_*.bin", rank, world)
    rows = []
    local = 512 // (world * 2)
    for _ in range(40):  # several wraps over the shards, each dropping the short 260-token shard
        x, y, doc = ld.next_batch(512, L, 2)
        assert x.shape == y.shape == doc.shape == (1, local) and doc.dtype == torch.int64
        d = doc[0]
        assert int(d[0]) == 0 and bool((d[1:] - d[:-1] >= 0).all()) and bool((d[1:] - d[:-1] <= 1).all())
        cuts = (torch.nonzero(d[1:] != d[:-1]).flatten() + 1).tolist()
        rows.append(_row(x, y) + [cuts, int(torch.bincount(d).max())])
    first, h = PACKED[(world, rank)]
    assert rows[:3] == first
    assert fold(rows) == h


def test_packed_doc_ids_by_hand():
    x = torch.tensor([[5, 6, 1, 7, 8, 9, 10, 11, 1, 2], [1, 3, 3, 3, 3, 1, 1, 4, 4, 4]])
    # row 0: segments [0,2) before the first BOS, [2,5) and [5,8) (3 tokens from the BOS at 2), [8,10)
    # row 1: [0,3), [3,5) (cut 3 from the BOS at 0), [5,6) (BOS), [6,9), [9,10)
    assert packed_doc_ids(x, 1, 3).tolist() == [[0, 0, 1, 1, 1, 2, 2, 2, 3, 3], [0, 0, 0, 1, 1, 2, 3, 3, 3, 4]]
    assert packed_doc_ids(x, 1, 0).tolist() == [[0, 0, 1, 1, 1, 1, 1, 1, 2, 2], [0, 0, 0, 0, 0, 1, 2, 2, 2, 2]]
    assert packed_doc_ids(x[0], 1, 100).tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 2, 2]


def test_document_packing_spans_and_first_bos(tmp_path):
    toks = np.array([5, 6, 1, 7, 8, 9, 1, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20])
    write_shard(tmp_path / "d_train_000000.bin", toks)
    pat = str(tmp_path / "*_train_*.bin")
    r0 = DocumentPackingLoader(pat, 0, 2)
    r1 = DocumentPackingLoader(pat, 1, 2)
    x0, y0, d0 = r0.next_batch(16, 4, 2)  # 4 tokens per rank: spans of 5
    x1, _, d1 = r1.next_batch(16, 4, 2)
    assert x0.tolist() == [[1, 7, 8, 9]] and y0.tolist() == [[7, 8, 9, 1]]  # starts at the shard's first BOS
    assert d0.tolist() == [[0, 0, 0, 0]]
    # rank 1's span follows rank 0's; a new segment starts at each BOS
    assert x1.tolist() == [[4, 1, 2, 3]] and d1.tolist() == [[0, 1, 1, 1]]
    # 7 tokens per rank, not a multiple of seq_len 3: one row; cut 3 tokens after the first BOS and at every BOS
    x2, _, d2 = DocumentPackingLoader(pat, 0, 1).next_batch(14, 3, 2)
    assert x2.tolist() == [[1, 7, 8, 9, 1, 4, 1]] and d2.tolist() == [[0, 0, 0, 1, 2, 2, 3]]
    with pytest.raises(ValueError, match="shorter than one global span"):
        DocumentPackingLoader(pat, 0, 1).next_batch(80, 4, 2)
    assert make_loader("packed", pat, 0, 1).bos == 1
    with pytest.raises(ValueError, match="TRAIN_LOADER='random'"):
        make_loader("random", pat, 0, 1)


def test_coprime_cursor_visits_every_block_once_per_pass():
    rng = np.random.default_rng(0)
    for n in (1000, 4097, 65, 66):
        c = _ShardCursor(n, 64, rng)
        offs = [c.take() for _ in range(c.blocks)]
        assert math.gcd(c.stride, c.blocks) == 1
        assert len(set(offs)) == c.blocks  # each block exactly once
        assert all((o - c.phase) % 64 == 0 and o + 64 < n for o in offs)
    # n = L + 1: one block, no phase/start/stride draw (the records' rule), so the generator is untouched
    state = rng.bit_generator.state
    c = _ShardCursor(65, 64, rng)
    assert (c.phase, c.blocks, c.start, c.stride) == (0, 1, 0, 1) and rng.bit_generator.state == state


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
    with pytest.raises(ValueError, match="first call"):
        single.next_batch(32 * 32, 32, 1)


def test_shuffled_loader_covers_each_sequence_once_per_pass(tmp_path):
    pat = _shards(tmp_path, [33 * 10 + 5])
    ld = ShuffledSequenceLoader(pat, 0, 1)
    x, y, _ = ld.next_batch(33, 33, 1)  # one sequence per call
    n = len(ld.starts[0]) + 1  # sequences in this pass
    rows = [x] + [ld.next_batch(33, 33, 1)[0] for _ in range(n - 1)]
    starts = sorted(int(r[0, 0]) for r in rows)
    phase = starts[0] % 33
    assert starts == [phase + 33 * i for i in range(n)]  # every sequence of the pass, once
    torch.testing.assert_close(y[:, :-1], x[:, 1:])
    with pytest.raises(ValueError, match="seq_len"):
        ld.next_batch(32, 32, 1)


def test_packed_training_step_uses_doc_isolation(tmp_path):
    from golflib.settings.model import ModelConfig
    from golflib.model.gpt import GPT

    m = GPT(ModelConfig(num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, vocab_size=64))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.tensor([[5, 6, 7, 1, 8, 9]])
    doc = packed_doc_ids(x, 1, 0)
    iso = m(x, doc_ids=doc)
    # the second document's logits equal those of the document alone
    torch.testing.assert_close(iso[:, 3:], m(x[:, 3:]))

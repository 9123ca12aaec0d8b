
import numpy as np
import pytest
import torch

from golflib.data.loader import DistributedTokenLoader, load_validation_tokens
from golflib.data.luts import build_sentencepiece_luts
from golflib.data.shards import write_shard


class FakeSP:
    """A 8-piece vocabulary exercising every LUT rule."""

    pieces = ["<pad>", "<s>", "</s>", "<unk>", "<0x41>", "▁the", "cat", "▁é"]

    def vocab_size(self):
        return len(self.pieces)

    def is_control(self, i):
        return i in (0, 1, 2)

    def is_unknown(self, i):
        return i == 3

    def is_unused(self, i):
        return False

    def is_byte(self, i):
        return self.pieces[i].startswith("<0x")

    def id_to_piece(self, i):
        return self.pieces[i]


def test_lut_rules():
    luts = build_sentencepiece_luts(FakeSP(), vocab_size=10)
    assert luts.base_bytes.tolist() == [0, 0, 0, 0, 1, 3, 3, 2, 0, 0]
    assert luts.has_leading_space.tolist() == [False] * 5 + [True, False, True, False, False]
    assert luts.is_boundary.tolist() == [True] * 4 + [False] * 4 + [True, True]  # padding ids beyond SP vocab
    # BOS ▁the cat ▁é : the space after BOS is not charged
    stream = torch.tensor([1, 5, 6, 7])
    b = luts.target_bytes(stream[:-1], stream[1:])
    assert b.tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="VOCAB_SIZE=4"):
        build_sentencepiece_luts(FakeSP(), vocab_size=4)


def test_val_truncation_rule(tmp_path):
    write_shard(tmp_path / "d_val_000000.bin", np.arange(1000) % 7)
    v = load_validation_tokens(str(tmp_path / "*_val_*.bin"), seq_len=64)
    assert v.numel() == (999 // 64) * 64 + 1 == 961 and v.dtype == torch.int64
    with pytest.raises(ValueError, match="too short for seq_len=2048"):
        load_validation_tokens(str(tmp_path / "*_val_*.bin"), seq_len=2048)


def test_sequential_loader_rank_slices_and_wrap(tmp_path):
    write_shard(tmp_path / "d_train_000000.bin", np.arange(100))
    write_shard(tmp_path / "d_train_000001.bin", np.arange(100, 150))
    pat = str(tmp_path / "*_train_*.bin")
    l0 = DistributedTokenLoader(pat, 0, 2)
    l1 = DistributedTokenLoader(pat, 1, 2)
    x0, y0, d0 = l0.next_batch(global_tokens=32, seq_len=8, grad_accum_steps=2)  # 8 tokens per rank per micro-step
    x1, y1, _ = l1.next_batch(32, 8, 2)
    assert d0 is None
    assert x0.tolist() == [list(range(0, 8))] and y0.tolist() == [list(range(1, 9))]
    assert x1.tolist() == [list(range(9, 17))]
    for _ in range(8):
        x0, _, _ = l0.next_batch(32, 8, 2)
    # 9 calls × 18 tokens = 162 > 150: the 9th call reads stream positions 144..161, wrapping to shard 0
    assert l0.stream.epochs == 1
    assert x0.tolist() == [[144, 145, 146, 147, 148, 149, 0, 1]]
    assert l0.tokens_served == 9 * 16

import math

import numpy as np
import pytest
import torch

from golflib.data.luts import ByteLUTs
from golflib.eval.bpb import BPBAccumulator, eval_standard, nats_to_bpb, unigram_bpb
from golflib.eval.sliding import eval_sliding, scored_positions, sliding_windows


class BigramTable(torch.nn.Module):
    """A fixed bigram model: the distribution depends on the previous token only."""

    def __init__(self, vocab=16, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.logit = torch.nn.Parameter(torch.randn(vocab, vocab, generator=g))

    def token_nll(self, x, y):
        logits = self.logit[x]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                                 reduction="none").view_as(y)


def simple_luts(vocab=16):
    base = torch.tensor([0] + [1 + (i % 3) for i in range(1, vocab)], dtype=torch.int16)
    space = torch.tensor([i % 2 == 0 and i > 0 for i in range(vocab)])
    boundary = torch.tensor([i == 0 for i in range(vocab)])
    return ByteLUTs(base, space, boundary)


@pytest.mark.parametrize("n,L,S", [(1000, 64, 16), (1000, 64, 64), (63, 64, 16), (64, 64, 16), (65, 64, 16),
                                   (777, 100, 7), (5, 8, 8)])
def test_sliding_scores_each_target_exactly_once(n, L, S):
    ws = sliding_windows(n, L, S)
    pos = scored_positions(ws)
    assert np.array_equal(np.sort(pos), np.arange(n)) and len(pos) == n
    for w in ws[1:]:
        assert w.score_from == L - S  # at least L - S tokens of context
        assert w.start + w.length <= n
    # window starts are multiples of S and the last window reaches the end
    assert all(w.start % S == 0 for w in ws) and ws[-1].start + ws[-1].length == n
    with pytest.raises(ValueError, match="EVAL_STRIDE"):
        sliding_windows(n, L, L + 1)


def test_standard_eval_matches_direct_formula():
    torch.manual_seed(0)
    model, luts = BigramTable(), simple_luts()
    toks = torch.randint(0, 16, (8 * 32 + 1,))
    res = eval_standard(model, toks, luts, seq_len=32, batch_tokens=64)
    nll = model.token_nll(toks[:-1][None], toks[1:][None])[0].detach().double()
    b = luts.target_bytes(toks[:-1], toks[1:]).double()
    assert res.tokens == 256 and res.bytes == int(b.sum())
    assert res.val_loss == pytest.approx(float(nll.mean()), rel=1e-9)
    assert res.val_bpb == pytest.approx(float(nll.sum() / (math.log(2) * b.sum())), rel=1e-9)
    assert res.val_bpb == pytest.approx(nats_to_bpb(res.val_loss, res.tokens, res.bytes), rel=1e-12)


def test_sliding_equals_standard_for_a_context_free_model():
    """A bigram model sees the same context in every window, so both protocols give the same sums."""
    torch.manual_seed(1)
    model, luts = BigramTable(), simple_luts()
    toks = torch.randint(0, 16, (10 * 32 + 1,))
    std = eval_standard(model, toks, luts, seq_len=32, batch_tokens=96)
    sl = eval_sliding(model, toks, luts, seq_len=32, stride=8, batch_seqs=5)
    assert sl.tokens == std.tokens and sl.bytes == std.bytes
    assert sl.val_bpb == pytest.approx(std.val_bpb, rel=1e-9)


def test_rank_split_sums_to_whole():
    torch.manual_seed(2)
    model, luts = BigramTable(), simple_luts()
    toks = torch.randint(0, 16, (9 * 16 + 1,))
    whole = eval_sliding(model, toks, luts, seq_len=16, stride=4)
    parts = [eval_sliding(model, toks, luts, seq_len=16, stride=4, rank=r, world_size=3) for r in range(3)]
    assert sum(p.tokens for p in parts) == whole.tokens
    assert sum(p.val_loss * p.tokens for p in parts) == pytest.approx(whole.val_loss * whole.tokens, rel=1e-9)


def test_accumulator_rejects_empty_and_unigram_reference():
    with pytest.raises(ValueError, match="nothing was scored"):
        BPBAccumulator().result("standard", 0.0)
    luts = simple_luts()
    train = np.array([1, 2, 2, 3, 3, 3] * 10)
    val = torch.tensor([0, 3, 3, 2, 1])
    counts = np.bincount(train, minlength=16) + 1.0
    p = counts / counts.sum()
    nll = -np.log(p[[3, 3, 2, 1]]).sum()
    nbytes = int(luts.target_bytes(val[:-1], val[1:]).sum())
    assert unigram_bpb(train, val, luts, 16) == pytest.approx(nll / (math.log(2) * nbytes))


def test_score_lines_have_one_field_order():
    from golflib.eval.bpb import EvalResult
    from golflib.eval.scorelog import score_lines

    res = EvalResult(mode="sliding", val_loss=2.123456789, val_bpb=1.0987654321, tokens=10, bytes=30, seconds=1.2345)
    assert score_lines("final_int6_sliding_window", res, {"stride": 64, "eval_seq_len": 2048}) == [
        "final_int6_sliding_window val_loss:2.1235 val_bpb:1.0988 stride:64 eval_seq_len:2048 eval_time:1234ms "
        "eval_mode:sliding",
        "final_int6_sliding_window_exact val_loss:2.12345679 val_bpb:1.09876543 stride:64 eval_seq_len:2048 "
        "eval_time:1234ms eval_mode:sliding"]
    assert score_lines("legal_ttt", res)[1] == ("legal_ttt_exact val_loss:2.12345679 val_bpb:1.09876543 "
                                                "eval_time:1234ms eval_mode:sliding")

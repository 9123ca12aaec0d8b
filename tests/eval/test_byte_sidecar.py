"""Every scoring protocol counts a CaseOps byte sidecar by target position (issue 12, part 3; SPEC §1.4).

Two independent checks per protocol, on the tiny model and stream of test_ttt.py:
- a sidecar that holds, at slot ``i + 1``, the LUT bytes of target ``i`` must give the LUT result bit for bit (the
  positions a protocol passes are the positions it scored, in the same order);
- a random sidecar must give ``bytes`` = Σ ``sidecar[p + 1]`` over the positions the protocol scores (computed here
  from the window sets, not from the protocol), the same NLL as with the LUTs, and val_bpb = ΣNLL / (ln 2 · bytes).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from golflib.data.bytecount import ByteSidecar
from golflib.eval.bpb import eval_standard
from golflib.eval.doc_eval import eval_doc_isolated
from golflib.eval.ngram import NgramMixer
from golflib.eval.sliding import eval_sliding, scored_positions, sliding_windows
from golflib.workbook.ngram940 import eval_sliding_940

from test_ttt import BOS, CHUNK, LORA, VOCAB, luts, periodic_stream, tiny_model
from ttt_calls import run_chunked, run_lora, run_phased

TOKS = periodic_stream(n_docs=16)
STD = TOKS[:(TOKS.numel() - 1) // 32 * 32 + 1]  # truncated to whole sequences, as load_validation_tokens does


def lut_sidecar(toks: torch.Tensor) -> ByteSidecar:
    per = torch.zeros(toks.numel(), dtype=torch.int32)
    per[1:] = luts().target_bytes(toks[:-1], toks[1:]).to(torch.int32)
    return ByteSidecar(per, "lut-derived")


def random_sidecar(toks: torch.Tensor, seed: int = 0) -> ByteSidecar:
    per = torch.from_numpy(np.random.default_rng(seed).integers(0, 9, toks.numel())).to(torch.int32)
    per[toks == BOS] = 0
    return ByteSidecar(per, "random")


PROTOCOLS = {
    "standard": (STD, lambda m, t, c: eval_standard(m, t, c, seq_len=32, batch_tokens=128)),
    "standard_doc": (STD, lambda m, t, c: eval_doc_isolated(m, t, c, seq_len=32, batch_tokens=128)),
    "sliding": (TOKS, lambda m, t, c: eval_sliding(m, t, c, seq_len=32, stride=16, batch_seqs=4)),
    "sliding_legacy": (TOKS, lambda m, t, c: eval_sliding(m, t, c, seq_len=32, stride=16, batch_seqs=4,
                                                          window_set="legacy")),
    "sliding_ngram": (TOKS, lambda m, t, c: eval_sliding(m, t, c, seq_len=32, stride=16, batch_seqs=4,
                                                         mixer=NgramMixer(t, VOCAB, bos_id=BOS))),
    "chunked": (TOKS, lambda m, t, c: run_chunked(m, t, c, epochs=1, lr=0.05, **CHUNK)),
    "lora": (TOKS, lambda m, t, c: run_lora(m, t, c, lr=0.03, **LORA)),
    "phased": (TOKS, lambda m, t, c: run_phased(m, t, c, lr=0.03, prefix_docs=8, num_phases=2, global_lr=0.05,
                                                     global_chunk_tokens=128, global_batch_seqs=4, **LORA)),
}


def expected_positions(name: str, toks: torch.Tensor, res) -> np.ndarray:
    """The target positions a protocol scores, from its window set (each once unless the set repeats)."""
    n = toks.numel() - 1
    if name == "sliding_legacy":
        return scored_positions(sliding_windows(n, 32, 16, "legacy"))
    if name == "standard_doc":  # whole batches of 4 sequences; the tail batch is dropped (details)
        return np.arange(n - res.details["dropped_targets"])
    return np.arange(n)


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_protocol_counts_the_sidecar_by_position(name):
    toks, run = PROTOCOLS[name]
    model = tiny_model()
    ref = run(copy.deepcopy(model), toks, luts())
    same = run(copy.deepcopy(model), toks, lut_sidecar(toks))
    assert (same.bytes, same.tokens, same.val_bpb) == (ref.bytes, ref.tokens, ref.val_bpb), name
    side = random_sidecar(toks)
    res = run(copy.deepcopy(model), toks, side)
    pos = expected_positions(name, toks, res)
    assert res.tokens == ref.tokens == pos.size
    assert res.bytes == int(side.per_token[torch.from_numpy(pos) + 1].sum()) != ref.bytes
    assert res.val_loss == ref.val_loss  # the bytes never touch the NLL
    assert res.val_bpb == pytest.approx(res.val_loss * res.tokens / (math.log(2) * res.bytes), rel=1e-12)


def test_ngram940_counts_the_sidecar_by_position():
    model = tiny_model()
    kw = dict(seq_len=32, stride=16, batch_seqs=4, buckets=1 << 12)
    ref = eval_sliding_940(copy.deepcopy(model), TOKS, luts(), **kw)
    assert eval_sliding_940(copy.deepcopy(model), TOKS, lut_sidecar(TOKS), **kw)["val_bpb"] == ref["val_bpb"]
    side = random_sidecar(TOKS, seed=1)
    res = eval_sliding_940(copy.deepcopy(model), TOKS, side, **kw)
    assert res["bytes"] == int(side.per_token[1:].sum()) and res["val_loss"] == ref["val_loss"]


def test_a_rank_split_counts_each_ranks_own_positions():
    """Without a process group, rank r of 2 scores its own windows: the two partial byte sums add up to the whole
    (the all-reduce of a torchrun run adds the same sums; test_ttt_ddp runs it under gloo)."""
    side = random_sidecar(TOKS, seed=2)
    model = tiny_model()
    parts = [eval_sliding(copy.deepcopy(model), TOKS, side, seq_len=32, stride=16, batch_seqs=4, rank=r,
                          world_size=2) for r in range(2)]
    assert sum(p.bytes for p in parts) == int(side.per_token[1:].sum())
    assert parts[0].bytes == int(side.per_token[torch.from_numpy(scored_positions(
        sliding_windows(TOKS.numel() - 1, 32, 16)[:len(sliding_windows(TOKS.numel() - 1, 32, 16)) // 2])) + 1].sum())


def test_sidecar_refuses_positions_it_does_not_cover():
    side = ByteSidecar(torch.zeros(10, dtype=torch.int32), "short")
    with pytest.raises(ValueError, match="short: target position 9 is past its 10 entries"):
        side.target_bytes(None, torch.zeros(1), np.array([9]))
    with pytest.raises(ValueError, match="counts bytes by target position; the protocol passed none"):
        side.target_bytes(None, torch.zeros(1))
    with pytest.raises(ValueError, match="10 entries for a val stream of 11 tokens"):
        side.stream_bytes(np.zeros(11))

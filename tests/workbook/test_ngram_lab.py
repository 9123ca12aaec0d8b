"""The n-gram lab: a recorded protocol replayed through a mixer equals the live protocol with that mixer (sliding
and chunked TTT), bucket contributions add up to the total Δbpb, the implied-mass comparison, and the bench's
throughput part."""

import copy

import numpy as np
import pytest
import torch

from golflib.config import Config
from golflib.data.luts import ByteLUTs
from golflib.eval.context import ScoringContext
from golflib.eval.ngram_eval import eval_with_mixer
from golflib.model.gpt import GPT
from golflib.workbook import ngram_lab

VOCAB, BOS = 48, 1


@pytest.fixture(scope="module")
def source():
    cfg = Config().replace({"VOCAB_SIZE": VOCAB, "NUM_LAYERS": 2, "MODEL_DIM": 32, "NUM_HEADS": 2, "NUM_KV_HEADS": 1,
                            "TIED_EMBED_INIT_STD": 0.05, "EVAL_SEQ_LEN": 32, "EVAL_STRIDE": 16, "EVAL_BATCH_SEQS": 8,
                            "TTT_CHUNK_TOKENS": 160, "TTT_EPOCHS": 1, "TTT_LR": 0.02, "TTT_BATCH_SEQS": 4,
                            "BOS_ID": BOS})
    torch.manual_seed(0)
    model = GPT(cfg.model)
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "_zero_init", False):
                m.weight.normal_(0.0, 0.1)
    rng = np.random.default_rng(0)
    docs = [[BOS] + rng.integers(2, VOCAB, 70).tolist() for _ in range(4)]
    toks = torch.tensor([t for d in docs * 3 for t in d] + [BOS], dtype=torch.int64)
    base = torch.tensor([0, 0] + [1 + i % 3 for i in range(VOCAB - 2)], dtype=torch.int16)
    luts = ByteLUTs(base, torch.tensor([i % 4 == 0 and i > 1 for i in range(VOCAB)]), torch.arange(VOCAB) < 2)
    return ngram_lab.Source(None, cfg, model, luts, toks)


@pytest.mark.parametrize("protocol", ["sliding", "chunked"])
def test_replay_equals_the_live_protocol(source, protocol):
    settings = dict(orders=(2, 3, 4), schedule="entropy_order", tilt_beta=2.0, tilt_min_count=1)
    rec = ngram_lab.record(source, protocol)
    replayed = ngram_lab.replay(rec, source, ngram_lab.make_mixer(source, **settings))
    live = eval_with_mixer(protocol, copy.deepcopy(source.model), source.tokens, source.luts, source.cfg,
                           ScoringContext(mixer=ngram_lab.make_mixer(source, **settings)))
    assert replayed["val_bpb"] == pytest.approx(live.val_bpb, rel=1e-9) and replayed["legal"]
    assert rec.result["val_bpb"] == pytest.approx(ngram_lab.replay(rec, source)["val_bpb"], rel=1e-9)
    assert replayed["val_bpb"] < rec.result["val_bpb"] - 0.3  # 2 of 3 documents repeat


def test_sweep_buckets_and_implied_mass(source):
    rec = ngram_lab.record(source, "sliding")
    rows = ngram_lab.sweep(rec, source, ngram_lab.grid_points([2, 4], ["entropy", "fixed"]))
    assert len(rows) == 5 and rows[0]["schedule"] == "model" and all(r["legal"] for r in rows)
    best = ngram_lab.best_point(rows)
    assert best["val_bpb"] == min(r["val_bpb"] for r in rows[1:])
    buckets = ngram_lab.bucket_gains(rec, source, orders=(2, 3, 4), schedule="entropy")
    per = [b for b in buckets if b["hit_order"] >= 0 and not b["bucket"].startswith("repeated")]
    total = next(r for r in rows if r["schedule"] == "entropy" and r["max_order"] == 4)["delta_bpb"]
    assert sum(b["delta_bpb_contribution"] for b in per) == pytest.approx(total, abs=1e-6)  # fp32 NLLs in the sum
    assert sum(b["share_bytes"] for b in per) == pytest.approx(1.0)
    rep = next(b for b in buckets if b["bucket"].startswith("repeated"))
    assert rep["bpb_mix"] < rep["bpb_model"] - 1.0  # a repeated 3-token context: the cache knows what follows
    im = ngram_lab.implied_mass_rows(rec, source, [16, 1 << 22], mass_rows=3)
    small, large = im["940"]
    assert small["mass_mean"] > 5 and small["c2_violations"] > 0 and small["mass_mean"] > large["mass_mean"]
    assert abs(im["golflib"]["mass_min"] - 1) < 1e-12 and abs(im["golflib"]["mass_max"] - 1) < 1e-12
    assert im["golflib"]["c2_violations"] == 0
    assert ngram_lab.challenge_buckets(62_021_632) == 4_194_304


def test_bench_throughput_part():
    from golflib.workbook.bench_ngram import bench_ngram

    out = bench_ngram(n_tokens=1024, vocab_sizes=(64,))
    assert out["run"] is None and [r["update_every"] for r in out["mixer"]] == [64, 0]
    assert all(r["tokens_per_second"] > 0 and r["tokens"] == 1024 for r in out["mixer"])

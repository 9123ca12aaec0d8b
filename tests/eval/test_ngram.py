"""Eval-time n-gram mixing (golflib.eval.ngram): exact Witten-Bell counts against a brute-force count, every mixed
row a distribution, counts at t built only from targets before t, the perturbation test with and without TTT (and a
peeking mixer that fails it), C2 failures in the ledger, the #940 hashed blend flagged by check_distribution, and the
gain on long exact repeats vs the cost on i.i.d. tokens."""

import copy
import math
from collections import Counter

import numpy as np
import pytest
import torch

from golflib.config import Config, env_names
from golflib.settings.base import ConfigError
from golflib.eval.implied import implied_mass, implied_rows
from golflib.eval.ledger import Ledger, LegalityError, check_distribution, perturbation_test
from golflib.eval.ngram import NgramMixer
from golflib.eval.ngram_counts import NgramCounts
from golflib.eval.sliding import eval_sliding
from golflib.eval.ttt_common import doc_segments
from golflib.eval.ttt_lora import lora_order, lora_schedule
from golflib.workbook.ngram940 import PRIMES_940, HashedBlend940, eval_sliding_940
from ttt_calls import run_chunked, run_lora
from test_ttt import BOS, VOCAB, luts, tiny_model  # the same tiny GPT, vocabulary and byte LUTs as the TTT tests

SLIDE = dict(seq_len=32, stride=16, batch_seqs=8)
CHUNK = dict(seq_len=32, stride=16, chunk_tokens=128, batch_seqs=4, grad_clip=1.0, eval_batch_seqs=8)


def repeat_stream(n_docs=5, doc_len=100, copies=4, seed=0) -> torch.Tensor:
    """``n_docs`` random BOS-opened documents, the set repeated ``copies`` times in shuffled order: long exact
    repeats a fixed model cannot know."""
    rng = np.random.default_rng(seed)
    docs = [[BOS] + rng.integers(2, VOCAB, doc_len).tolist() for _ in range(n_docs)]
    order = [d for _ in range(copies) for d in rng.permutation(n_docs)]
    return torch.tensor([t for d in order for t in docs[d]] + [BOS], dtype=torch.int64)


def iid_stream(n=2000, seed=1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    toks = rng.integers(2, VOCAB, n + 1)
    toks[::100] = BOS
    return torch.from_numpy(toks.astype(np.int64))


# ---- exact counts ------------------------------------------------------------------------------------------------
def brute_force_wb(toks: np.ndarray, added: list[int], t: int, levels, V: int, bos: int):
    """Interpolated Witten-Bell at position t from scratch: dict counts over the added positions."""
    def ctx(s, k):
        if s - k + 1 < 0 or any(toks[j] == bos for j in range(s - k + 2, s + 1)):
            return None
        return tuple(toks[s - k + 1:s + 1])

    uni = np.bincount([toks[s + 1] for s in added], minlength=V).astype(float)
    n, types = uni.sum(), (uni > 0).sum()
    p = (uni + types / V) / (n + types) if n else np.full(V, 1.0 / V)
    hit, hint = 0, -1
    for k in sorted(levels):
        h = ctx(t, k)
        follow = Counter(toks[s + 1] for s in added if h is not None and ctx(s, k) == h)
        if follow:
            c = np.zeros(V)
            for v, m in follow.items():
                c[v] = m
            p = (c + len(follow) * p) / (c.sum() + len(follow))
            hit, hint = k + 1, int(np.argmax(c))
    return p, hit, hint


def test_witten_bell_counts_match_a_brute_force_count():
    rng = np.random.default_rng(3)
    V = 9
    toks = rng.integers(2, V, 700)
    toks[rng.random(700) < 0.05] = BOS
    counts = NgramCounts(toks, V, orders=(2, 3, 5), bos_id=BOS)
    added = list(range(0, 450))
    counts.add(np.array(added[:200]))
    counts.add(np.array(added[200:]))
    pos = np.arange(450, 520)
    probs, hit, hint, _, _ = counts.distribution(pos, with_hint=True)
    for i, t in enumerate(pos):
        p, h, top = brute_force_wb(toks, added, int(t), (1, 2, 4), V, BOS)
        np.testing.assert_allclose(probs[i].numpy(), p, rtol=0, atol=1e-12)
        assert (hit[i], hint[i]) == (h, top)
    assert probs.min() > 0 and torch.allclose(probs.sum(1), torch.ones(len(pos), dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError, match="added twice"):
        counts.add(np.array([7]))
    with pytest.raises(ValueError, match="orders"):
        NgramCounts(toks, V, orders=(1, 2))


def test_contexts_are_collision_free_at_vocab_8192():
    """Order-7 contexts (6 tokens, 78 bits of token ids at V = 8192) that differ only in their oldest token get
    different ids: the second document hits at order 6, not 7."""
    V = 8192
    a = [BOS, 8000, 17, 4242, 9, 77, 8191, 3]
    b = [BOS, 8001, 17, 4242, 9, 77, 8191, 4]
    toks = np.array(a + b + a)
    counts = NgramCounts(toks, V, orders=(2, 3, 4, 5, 6, 7), bos_id=BOS)
    counts.add(np.arange(0, 8))  # document a; position 6 has context a[1..6] and target a[7]
    _, hit, hint, _, _ = counts.distribution(np.array([14, 22]), with_hint=True)
    assert hit.tolist() == [6, 7] and hint.tolist() == [3, 3]
    ids = counts.context_ids(np.array([6, 14, 22]))
    assert ids[6][0] == ids[6][2] >= 0 and ids[6][1] == -1 and ids[5][1] == ids[5][0] >= 0


# ---- every mixed row is a distribution, scored at its target -------------------------------------------------------
@pytest.mark.parametrize("schedule,beta", [("entropy", 0.0), ("entropy_order", 2.0), ("fixed", 1.0), ("none", 2.0)])
def test_mixed_rows_sum_to_one_are_nonnegative_and_score_their_target(schedule, beta):
    toks = repeat_stream(n_docs=3, doc_len=60, copies=3)
    n = toks.numel() - 1
    mixer = NgramMixer(toks, VOCAB, schedule=schedule, alpha=0.3, tilt_beta=beta, tilt_min_count=1, bos_id=BOS)
    rows = torch.full((n, VOCAB), float("nan"))
    res = run_chunked(tiny_model(), toks, luts(), epochs=1, lr=0.01, scores_out=rows, mixer=mixer, **CHUNK)
    p = rows.double().exp()
    assert torch.isfinite(rows).all() and (p >= 0).all()
    assert (p.sum(1) - 1).abs().max() < 1e-5
    y = toks[1:]
    nll = -rows[torch.arange(n), y].double()
    nbytes = luts().target_bytes(toks[:-1], y).double().sum()
    assert float(nll.sum() / (math.log(2) * nbytes)) == pytest.approx(res.val_bpb, rel=1e-5)
    rep = res.ledger
    assert rep["legal"] and rep["c2_rows_checked"] > 0 and 2 in rep["conditions_checked"]
    s = mixer.summary()
    assert s["c2_max_abs_sum_error"] < 1e-6 and s["positions"] == n  # the check casts rows to fp32
    assert (s["tilt_rate"] > 0) == (beta > 0)
    d = mixer.distribution(np.arange(50, 60), torch.randn(10, VOCAB))  # float64 rows: exact to rounding
    assert (d["probs"].sum(1) - 1).abs().max() < 1e-12 and (d["probs"] > 0).all()


def test_the_tilt_is_the_closed_form_of_1514():
    toks = repeat_stream(n_docs=2, doc_len=40, copies=3)
    mixer = NgramMixer(toks, VOCAB, schedule="none", tilt_beta=2.0, tilt_tau=0.0, tilt_min_count=1, bos_id=BOS)
    mixer.counts.add(np.arange(0, 120))
    pos = np.arange(120, 160)
    logits = torch.randn(pos.size, VOCAB, dtype=torch.float64)
    d = mixer.distribution(pos, logits)
    p = torch.softmax(logits, -1)
    for i in np.flatnonzero(d["hint"] >= 0):
        h = int(d["hint"][i])
        z = 1 + p[i, h] * (math.e ** 2 - 1)
        expect = p[i] / z
        expect[h] = p[i, h] * math.e ** 2 / z
        torch.testing.assert_close(d["probs"][i], expect, rtol=0, atol=1e-12)
        assert float(d["log_z"][i]) == pytest.approx(math.log(z))
    assert (d["hint"] >= 0).sum() > 10


# ---- causality -----------------------------------------------------------------------------------------------------
def spy_on_counts(mixer):
    """Record, at every distribution lookup, the queried positions and the positions already in the counts."""
    calls = []
    original = mixer.counts.distribution

    def spy(positions, **kw):
        calls.append((np.asarray(positions).copy(), np.flatnonzero(mixer.counts.added_mask)))
        return original(positions, **kw)

    mixer.counts.distribution = spy
    return calls


@pytest.mark.parametrize("protocol", ["sliding", "chunked"])
def test_counts_used_at_t_contain_exactly_the_targets_before_the_batch(protocol):
    toks = repeat_stream(n_docs=3, doc_len=60, copies=2)
    mixer = NgramMixer(toks, VOCAB, schedule="entropy_order", bos_id=BOS)
    calls = spy_on_counts(mixer)
    if protocol == "sliding":
        eval_sliding(tiny_model(), toks, luts(), mixer=mixer, **{**SLIDE, "batch_seqs": 2})
    else:
        run_chunked(tiny_model(), toks, luts(), epochs=1, lr=0.01, mixer=mixer,
                         **{**CHUNK, "eval_batch_seqs": 2})
    assert len(calls) > 10
    for queried, added in calls:
        # stream order: every target at or after the first queried position is absent, everything before present
        np.testing.assert_array_equal(added, np.arange(queried.min()))


def test_lora_counts_hold_only_positions_earlier_in_its_declared_order():
    toks = repeat_stream(n_docs=6, doc_len=50, copies=2)
    n = toks.numel() - 1
    segs = doc_segments(toks, BOS)
    order = lora_order(segs, lora_schedule(segs, 4), 16, n)
    mixer = NgramMixer(toks, VOCAB, bos_id=BOS)
    calls = spy_on_counts(mixer)
    res = run_lora(tiny_model(), toks, luts(), window=32, chunk_size=16, batch_docs=4, lora_rank=2, lr=0.003,
                        bos_id=BOS, mixer=mixer)
    assert res.ledger["legal"] and not res.ledger["stream_order"]
    for queried, added in calls:
        assert added.size == 0 or order[added].max() < order[queried].min()
    assert mixer.counts.added_mask.all()


class PeekingMixer(NgramMixer):
    """The bug the perturbation test must catch: the batch's targets enter the counts before it is scored."""

    def __call__(self, positions, logits, targets, ledger=None, rows=False):
        pos = np.asarray(positions, dtype=np.int64)
        ledger.score(pos)  # the ledger sees score, then update: it cannot know the cache peeked in between
        self.counts.add(pos)
        ledger.update(pos, persistent=True)
        p = self.distribution(pos, logits)["probs"]
        nll = -torch.log(p[torch.arange(pos.size), targets.cpu()])
        return nll.float(), (torch.log(p).float() if rows else None)


def test_perturbation_passes_the_mixer_with_and_without_ttt_and_catches_a_peeking_cache():
    toks = repeat_stream(n_docs=4, doc_len=60, copies=2)
    n = toks.numel() - 1
    model = tiny_model()

    def sliding(t, cls=NgramMixer):
        out = torch.zeros(t.numel() - 1)
        mixer = cls(t, VOCAB, schedule="entropy_order", tilt_beta=2.0, tilt_min_count=1, bos_id=BOS)
        eval_sliding(model, t, luts(), nll_out=out, mixer=mixer, **SLIDE)
        return out

    def chunked(t):
        out = torch.zeros(t.numel() - 1, VOCAB)
        mixer = NgramMixer(t, VOCAB, schedule="entropy", tilt_beta=2.0, tilt_min_count=1, bos_id=BOS)
        run_chunked(copy.deepcopy(model), t, luts(), epochs=1, lr=0.02, scores_out=out, mixer=mixer, **CHUNK)
        return out

    for cut in (n // 2, CHUNK["chunk_tokens"] + 1):
        for fn in (sliding, chunked):
            r = perturbation_test(fn, toks, cut, seed=cut)
            assert r["causal"] and r["max_abs_diff"] == 0.0, (fn.__name__, r)
    bad = perturbation_test(lambda t: sliding(t, PeekingMixer), toks, n // 2)
    assert not bad["causal"] and bad["first_bad_position"] is not None


# ---- C2 in the ledger ----------------------------------------------------------------------------------------------
def test_an_unnormalised_mixture_is_a_c2_violation_in_the_ledger():
    toks = repeat_stream(n_docs=2, doc_len=40, copies=2)
    mixer = NgramMixer(toks, VOCAB, schedule="fixed", alpha=0.5, bos_id=BOS)
    original = mixer.counts.distribution
    mixer.counts.distribution = lambda pos, **kw: (original(pos, **kw)[0] * 2.0, *original(pos, **kw)[1:])
    with pytest.raises(LegalityError) as err:
        eval_sliding(tiny_model(), toks, luts(), mixer=mixer, **SLIDE)
    assert err.value.condition == 2
    mixer = NgramMixer(toks, VOCAB, schedule="fixed", alpha=0.5, bos_id=BOS)
    original = mixer.counts.distribution
    mixer.counts.distribution = lambda pos, **kw: (original(pos, **kw)[0] * 2.0, *original(pos, **kw)[1:])
    res = eval_sliding(tiny_model(), toks, luts(), mixer=mixer, ledger=Ledger(toks.numel() - 1, strict=False),
                       **SLIDE)
    assert not res.ledger["legal"] and res.ledger["c2_rows_checked"] > 0
    # every check failed: one violation per checked block (>= one per batch), rows counted by both sides
    assert res.ledger["violation_counts"]["C2"] >= mixer.summary()["calls"]
    assert res.ledger["c2_rows_checked"] == mixer.summary()["c2_rows"]


# ---- the #940 blend ------------------------------------------------------------------------------------------------
def test_940_hash_keys_follow_the_record_arithmetic():
    toks = iid_stream(300, seed=5).numpy()
    cache = HashedBlend940(toks, buckets=1 << 12)
    j = np.array([10, 57, 299])
    for w in (1, 3, 6):
        h = cache._hash(j, w)
        for jj, hh in zip(j, h):
            ref = 0
            for k in range(w):
                ref ^= (int(toks[jj - (w - k)]) * int(PRIMES_940[k % 7])) % 2**64
            assert int(hh) == ref
            full = (ref ^ (int(toks[jj]) * int(PRIMES_940[w % 7]))) & (4095)
            assert cache._full_key(np.array([hh], np.uint64), toks[jj:jj + 1].reshape(1, 1), w)[0, 0] == full


def test_940_blend_is_flagged_by_check_distribution_and_golflib_is_not():
    toks = iid_stream(6000, seed=2)
    cache = HashedBlend940(toks, buckets=1 << 9)  # ~12 targets per bucket: the challenge's load factor (62M/4M)
    cache.update(np.arange(5000))
    pos = np.arange(5000, 5100)
    p_model = np.full((pos.size, VOCAB), 1.0 / VOCAB)
    alpha = np.full(pos.size, 0.5)
    blend = lambda q, c: cache.blend(q, c, p_model, alpha)  # noqa: E731
    c2 = check_distribution(implied_rows(blend, pos, VOCAB))
    mass = implied_mass(blend, pos, VOCAB)
    assert not c2["normalized"] and mass.mean() > 5.0 and c2["max_abs_sum_error"] > 4.0
    one = HashedBlend940(toks, buckets=1)  # #886's 1-bucket proof: every lookup is 1.0
    one.update(np.arange(100))
    np.testing.assert_allclose(implied_mass(lambda q, c: one.blend(q, c, p_model[:5], alpha[:5]), pos[:5], VOCAB),
                               0.5 + 0.5 * VOCAB)
    mixer = NgramMixer(toks, VOCAB, bos_id=BOS)
    mixer.counts.add(np.arange(5000))
    ours = mixer.distribution(pos, torch.zeros(pos.size, VOCAB))["probs"]
    assert check_distribution(ours)["normalized"] and (ours.sum(1) - 1).abs().max() < 1e-12


def test_940_reported_bpb_measures_collisions():
    """On i.i.d. tokens nothing is predictable, yet the hashed blend "improves" as buckets shrink (and its ledger
    records C2); golflib's normalised mixer cannot go below the data's entropy."""
    toks = iid_stream(1500, seed=4)
    model = tiny_model()
    base = eval_sliding(model, toks, luts(), **SLIDE).val_bpb
    small = eval_sliding_940(model, toks, luts(), buckets=1 << 4, **SLIDE)
    large = eval_sliding_940(model, toks, luts(), buckets=1 << 22, **SLIDE)
    assert small["val_bpb"] < base - 0.5 and small["ledger"]["violation_counts"]["C2"] > 0
    assert small["masses"].mean() > 10 and large["masses"].mean() < small["masses"].mean()
    ours = eval_sliding(model, toks, luts(), mixer=NgramMixer(toks, VOCAB, bos_id=BOS), **SLIDE)
    assert ours.val_bpb > base - 0.05


# ---- what it is worth ----------------------------------------------------------------------------------------------
def test_long_exact_repeats_gain_substantially_iid_tokens_cost_little():
    model = tiny_model()
    out = {}
    for name, toks in (("repeats", repeat_stream(n_docs=5, doc_len=100, copies=4)), ("iid", iid_stream(2000))):
        base = eval_sliding(model, toks, luts(), **SLIDE).val_bpb
        for schedule in ("entropy", "entropy_order"):
            mixer = NgramMixer(toks, VOCAB, schedule=schedule, bos_id=BOS)
            out[(name, schedule)] = eval_sliding(model, toks, luts(), mixer=mixer, **SLIDE).val_bpb - base
        out[(name, "model")] = base
    print("n-gram Δbpb:", {f"{k[0]}/{k[1]}": round(v, 4) for k, v in out.items()})
    # 3 of every 4 documents are exact repeats: the cache should remove a large part of their cost
    assert out[("repeats", "entropy")] < -0.3 * out[("repeats", "model")]
    assert out[("repeats", "entropy_order")] < -0.4 * out[("repeats", "model")]
    assert out[("iid", "entropy")] < 0.1 and out[("iid", "entropy_order")] < 0.1


# ---- config --------------------------------------------------------------------------------------------------------
def test_ngram_config_group():
    names = env_names()
    for n in ("NGRAM_ENABLED", "NGRAM_ORDERS", "NGRAM_ALPHA_SCHEDULE", "NGRAM_TILT_BETA", "NGRAM_PROTOCOLS"):
        assert n in names
    cfg = Config().replace({"NGRAM_ORDERS": "2,3,4", "NGRAM_PROTOCOLS": "sliding,lora", "NGRAM_TILT_BETA": "2"})
    assert cfg.ngram.ngram_orders == (2, 3, 4) and cfg.ngram.ngram_protocols == ("sliding", "lora")
    assert not Config().ngram.ngram_enabled
    for bad in ({"NGRAM_ORDERS": "1,2"}, {"NGRAM_ALPHA_SCHEDULE": "cosine"}, {"NGRAM_PROTOCOLS": "standard"},
                {"NGRAM_ENT_SPAN": 0.99}, {"NGRAM_ALPHA": 1.5}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            Config().replace(bad)
    with pytest.raises(ConfigError, match="NGRAM_ORDER"):
        Config().with_env({"NGRAM_ORDER": "7"})  # a typo of a NGRAM_ field is refused, not ignored


def test_sorted_runs_merge_sum_and_stay_few():
    """The count tables' log-structured runs: values of a key add up across runs and merges, ranges return every
    entry, and 500 blocks of 64 keys leave ≈ log_8(32,000 / 64) runs, not 500."""
    from golflib.eval.ngram_counts import MERGE_FACTOR, SortedRuns

    runs = SortedRuns(torch.device("cpu"))
    rng = np.random.default_rng(0)
    truth: Counter = Counter()
    for _ in range(500):
        keys = np.unique(rng.integers(0, 20_000, 64))
        vals = rng.integers(1, 5, keys.size)
        runs.add(torch.from_numpy(keys), torch.from_numpy(vals))
        truth.update(dict(zip(keys.tolist(), vals.tolist())))
    assert len(runs.keys) <= 1 + math.ceil(math.log(32_000 / 64, MERGE_FACTOR)) + 1, [k.numel() for k in runs.keys]
    sizes = [k.numel() for k in runs.keys]
    assert all(a > MERGE_FACTOR * b for a, b in zip(sizes, sizes[1:]))  # the merge invariant
    q = torch.arange(0, 20_000)
    found, total = runs.lookup(q)
    assert total.tolist() == [truth.get(i, 0) for i in range(20_000)] and found.tolist() == [i in truth
                                                                                           for i in range(20_000)]
    rows, keys, vals = runs.ranges(torch.tensor([100, 5000]), torch.tensor([200, 5003]))
    got = Counter()
    for r, k, v in zip(rows.tolist(), keys.tolist(), vals.tolist()):
        got[(r, k)] += v
    assert got == Counter({(0 if k < 200 else 1, k): v for k, v in truth.items() if 100 <= k < 200 or 5000 <= k < 5003})

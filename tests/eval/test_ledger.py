"""The legality ledger: API semantics, the illegal protocols of SPEC §4.7 as scripted protocols, the perturbation
and normalisation audits.

The scripted protocols run a real adaptive predictor — an add-one bigram count model whose counts are the
adaptive state — over a token stream, so each protocol's score and update calls carry the positions a real
implementation would touch, and the perturbation test can be run on the same protocols.
"""

import math

import numpy as np
import pytest
import torch

from golflib.eval.ledger import (Ledger, LegalityError, check_distribution, checked_report, perturbation_test)
from golflib.eval.sliding import scored_positions, sliding_windows
from golflib.eval.ttt_chunked import chunk_windows, train_sequences
from golflib.eval.ttt_common import consumed_positions

V = 12


class BigramCounts:
    """Adaptive bigram model: p(y | x) = (c[x, y] + 1) / (c[x].sum() + V). ``learn`` consumes target positions."""

    def __init__(self, tokens: np.ndarray):
        self.tokens = np.asarray(tokens)
        self.c = np.zeros((V, V))

    def rows(self, positions) -> np.ndarray:
        x = self.tokens[np.asarray(positions)]
        return np.log((self.c[x] + 1) / (self.c[x].sum(1, keepdims=True) + V))

    def learn(self, positions) -> None:
        p = np.asarray(positions)
        np.add.at(self.c, (self.tokens[p], self.tokens[p + 1]), 1)


class Protocol:
    """Glue: every score goes to the ledger and to the per-position output rows; every learn to the ledger."""

    def __init__(self, tokens, ledger=None):
        self.m = BigramCounts(tokens)
        self.n = len(tokens) - 1
        self.ledger = ledger if ledger is not None else Ledger(self.n, strict=False)
        self.out = np.full((self.n, V), np.nan)

    def score(self, positions):
        positions = np.asarray(positions)
        self.ledger.score(positions)
        self.out[positions] = self.m.rows(positions)

    def learn(self, positions, persistent=False):
        self.ledger.update(positions, persistent)
        self.m.learn(positions)


def stream(n=400, seed=0):
    return np.random.default_rng(seed).integers(0, V, n + 1)


# ---- the protocols ---------------------------------------------------------------------------------------------
def legal_chunked(p: Protocol, chunk=64, epochs=3, L=32, S=16):
    """Score-first chunked TTT with several epochs per chunk, using golflib's own window/chunk arithmetic."""
    groups = chunk_windows(p.n, L, S, chunk)
    for c, cw in enumerate(groups):
        if cw:
            p.score(scored_positions(cw))
        cs, n_seqs = train_sequences(c, p.n, L, chunk)
        if c < len(groups) - 1:
            for _ in range(epochs):
                for i in range(n_seqs):
                    p.learn(consumed_positions(cs + i * L, cs + (i + 1) * L))


def pre_quant_ttt(p: Protocol, epochs=2):
    """#1376/#1487: fine-tune on the whole val stream, then score it."""
    for _ in range(epochs):
        p.learn(np.arange(p.n), persistent=True)
    p.score(np.arange(p.n))


def adapt_then_rescore(p: Protocol):
    """#757/#152: a score-first TTT pass, then the adapted model re-scores everything with a sliding window."""
    legal_chunked(p)
    p.score(scored_positions(sliding_windows(p.n, 32, 16)))


def last_epoch_only(p: Protocol, epochs=3, chunk=64):
    """#568/#713: several score-then-adapt epochs over the stream; only the last epoch's scores are reported."""
    for _ in range(epochs):
        for c0 in range(0, p.n, chunk):
            pos = np.arange(c0, min(c0 + chunk, p.n))
            p.score(pos)
            p.learn(pos)


def later_chunk_first(p: Protocol, chunk=64):
    """Score chunk 1, adapt on it, then score chunk 0 (and the rest)."""
    c1 = np.arange(chunk, 2 * chunk)
    p.score(c1)
    p.learn(c1)
    p.score(np.arange(0, chunk))
    p.score(np.arange(2 * chunk, p.n))


def one_past_the_edge(p: Protocol, chunk=64, L=32, S=16):
    """Chunked TTT whose training sequences start one token late: the last one reaches target ``chunk`` (the first
    target of the next chunk), which no window of this chunk scored."""
    groups = chunk_windows(p.n, L, S, chunk)
    for c, cw in enumerate(groups):
        p.score(scored_positions(cw))
        cs, n_seqs = train_sequences(c, p.n, L, chunk)
        if c < len(groups) - 1:
            for i in range(n_seqs):
                p.learn(consumed_positions(cs + 1 + i * L, cs + 1 + (i + 1) * L))


def adapt_on_everything_first(tokens):
    """Score function for the perturbation test: learn all bigrams, then score every position (rows)."""
    p = Protocol(tokens)
    pre_quant_ttt(p, epochs=1)
    return p.out


# ---- tests -----------------------------------------------------------------------------------------------------
def conditions(report):
    return {v["condition"] for v in report["violations"]}


@pytest.mark.parametrize("protocol,condition,position", [
    (pre_quant_ttt, 3, 0),
    (adapt_then_rescore, 4, 0),
    (last_epoch_only, 4, 0),
    (later_chunk_first, 1, 0),
    (one_past_the_edge, 3, 64),
])
def test_illegal_protocols_are_flagged_with_the_right_condition(protocol, condition, position):
    tokens = stream()
    p = Protocol(tokens)
    protocol(p)
    rep = p.ledger.report()
    assert not rep["legal"]
    first = rep["violations"][0]
    assert (first["condition"], first["position"]) == (condition, position), rep["violations"][:3]
    # strict mode stops at exactly that violation, before the state changes
    with pytest.raises(LegalityError) as e:
        protocol(Protocol(tokens, Ledger(len(tokens) - 1, strict=True)))
    assert (e.value.condition, e.value.position) == (condition, position)
    assert f"C{condition}" in str(e.value) and "call #" in str(e.value)


def test_illegal_protocols_collect_every_condition_they_break():
    tokens = stream()
    for protocol, expected in ((pre_quant_ttt, {1, 3}), (adapt_then_rescore, {1, 4}), (last_epoch_only, {1, 4}),
                               (later_chunk_first, {1}), (one_past_the_edge, {1, 3})):
        p = Protocol(tokens)
        protocol(p)
        assert conditions(p.ledger.report()) == expected, protocol.__name__


def test_legal_chunked_protocol_is_clean_and_counts_calls():
    tokens = stream()
    p = Protocol(tokens, Ledger(400, strict=True))
    legal_chunked(p, chunk=64, epochs=3, L=32, S=16)
    rep = checked_report(p.ledger)
    assert rep["legal"] and rep["violations"] == []
    assert rep["n_targets"] == rep["n_scored"] == 400
    n_chunks = math.ceil(400 / 64)
    assert rep["n_score_calls"] == n_chunks
    assert rep["n_updates"] == 3 * sum(train_sequences(c, 400, 32, 64)[1] for c in range(n_chunks - 1))
    assert rep["order"] == "stream" and rep["stream_order"] and rep["conditions_checked"] == [1, 3, 4]


def test_reset_and_persistent_updates():
    led = Ledger(10, strict=True)
    led.score([0, 2])
    led.update([2])  # the transient state has seen position 2 ...
    with pytest.raises(LegalityError) as e:
        led.score([1])  # ... so position 1 can no longer be scored by it
    assert (e.value.condition, e.value.position, e.value.call) == (1, 1, "score call #2")
    led.reset()  # after the reset it can
    led.score([1])
    led.score([3])
    led.update([3], persistent=True)
    led.reset()  # a persistent update survives the reset
    with pytest.raises(LegalityError) as e:
        led.score([3, 4])
    assert e.value.condition == 4  # 3 was scored already: C4 is checked first
    led2 = Ledger(10, strict=False)
    led2.score([0, 1])
    led2.update([1], persistent=True)
    led2.reset()
    led2.score([1])
    assert conditions(led2.report()) == {1, 4}


def test_declared_order_changes_c1_and_is_reported():
    order = np.array([5, 6, 7, 0, 1, 2, 3, 4, 8, 9])  # positions 3..7 are evaluated first
    led = Ledger(10, strict=True, order=order)
    led.score([3, 4, 5, 6, 7])
    led.update([3, 4, 5, 6, 7])
    led.score([0, 1, 2])  # legal in the declared order, a C1 violation in stream order
    led.update([0, 1, 2])
    led.score([8, 9])
    rep = checked_report(led)
    assert rep["legal"] and rep["order"] == "declared" and rep["stream_order"] is False
    stream_led = Ledger(10, strict=False)
    stream_led.score([3, 4, 5, 6, 7])
    stream_led.update([3, 4, 5, 6, 7])
    stream_led.score([0, 1, 2])
    assert conditions(stream_led.report()) == {1, 4}  # C1 + never-scored 8, 9


def test_never_scored_duplicates_in_one_call_and_bad_input():
    led = Ledger(6, strict=False)
    led.score(torch.tensor([0, 1, 1]))
    rep = led.report()
    assert conditions(rep) == {4} and rep["n_scored"] == 2
    assert rep["violation_counts"]["C4"] == 1 + 4  # one duplicate + positions 2..5 never scored
    with pytest.raises(LegalityError, match="never scored"):
        checked_report(Ledger(3, strict=True))
    with pytest.raises(ValueError, match="outside"):
        Ledger(4).score([4])
    with pytest.raises(ValueError, match="integers"):
        Ledger(4).score(np.array([0.5]))
    with pytest.raises(ValueError, match="order"):
        Ledger(4, order=[0, 1])
    with pytest.raises(ValueError, match="n_targets"):
        Ledger(0)


def test_perturbation_test_flags_adapt_on_everything_first_and_passes_score_first():
    tokens = stream(300)
    bad = perturbation_test(adapt_on_everything_first, tokens, cut=150, seed=1)
    assert not bad["causal"] and bad["first_bad_position"] is not None and bad["mode"] == "rows"

    def score_first(toks):
        p = Protocol(toks)
        legal_chunked(p)
        return p.out

    good = perturbation_test(score_first, tokens, cut=150, seed=1)
    assert good["causal"] and good["max_abs_diff"] == 0.0 and good["n_compared"] == 150


def test_rows_catch_an_update_one_token_past_the_chunk_edge_where_nlls_cannot():
    """The edge leak: the distribution of target 64 was formed after learning token 65 (its own target)."""
    tokens = stream(300)

    def leaky(toks, nll=False):
        p = Protocol(toks)
        one_past_the_edge(p)
        if nll:
            return -p.out[np.arange(p.n), np.asarray(toks)[1:]]
        return p.out

    rows = perturbation_test(leaky, tokens, cut=65)
    assert not rows["causal"] and rows["first_bad_position"] == 64
    nlls = perturbation_test(lambda t: leaky(t, nll=True), tokens, cut=65)
    assert nlls["causal"] and nlls["n_compared"] == 64  # target 64's own token changed: not comparable


def test_perturbation_test_validates_its_inputs():
    with pytest.raises(ValueError, match="cut"):
        perturbation_test(lambda t: np.zeros(len(t) - 1), np.arange(10), cut=0)
    with pytest.raises(ValueError, match="score_fn must return"):
        perturbation_test(lambda t: np.zeros(3), np.arange(10), cut=5)


def test_check_distribution_and_c2_in_the_ledger():
    logits = torch.randn(5, 7)
    ok = check_distribution(torch.log_softmax(logits, -1), log_probs=True)
    assert ok["normalized"] and ok["max_abs_sum_error"] < 1e-6 and ok["min_prob"] > 0
    # a hashed-cache blend computed for every candidate: (1-a) p + a * full/ctx, ratios near 1 (#886)
    p = torch.softmax(logits, -1)
    blend = 0.8 * p + 0.2 * torch.full_like(p, 0.97)
    bad = check_distribution(blend)
    assert not bad["normalized"] and bad["max_abs_sum_error"] == pytest.approx(0.2 * 0.97 * 7 - 0.2, rel=1e-5)
    assert not check_distribution(torch.tensor([[1.2, -0.2]]))["normalized"]  # negative mass
    led = Ledger(5, strict=False)
    led.score(range(5))
    lp = torch.log_softmax(logits, -1)
    y = torch.tensor([0, 1, 2, 3, 4])
    led.check_normalized(lp, range(5), log_probs=True, nll=-lp[torch.arange(5), y], targets=y)
    led.check_normalized(blend, [2, 3, 4, 0, 1])
    rep = led.report()
    assert conditions(rep) == {2} and rep["violations"][0]["position"] == 2 and rep["c2_rows_checked"] == 10
    assert 2 in rep["conditions_checked"] and rep["c2_rows_tied"] == 5
    with pytest.raises(LegalityError, match="C2"):
        Ledger(5).check_normalized(blend)


def test_c2_is_claimed_only_for_rows_tied_to_the_scored_nll():
    lp = torch.log_softmax(torch.randn(4, 9), -1)
    y = torch.tensor([3, 0, 8, 1])
    scored = -lp[torch.arange(4), y]
    untied = Ledger(4, strict=False)
    untied.check_normalized(lp, range(4), log_probs=True)  # normalized rows, but nothing says they were scored
    assert untied.report()["conditions_checked"] == [1, 3, 4] and untied.report()["c2_rows_checked"] == 4
    topk = torch.where(lp >= lp.topk(3, -1).values[:, -1:], lp, torch.tensor(-float("inf")))
    topk = torch.log_softmax(topk, -1)  # scored: the top-3 renormalised mixture; shown for C2: the full rows
    led = Ledger(4, strict=False)
    led.score(range(4))
    led.check_normalized(lp, range(4), log_probs=True, nll=-topk[torch.arange(4), y], targets=y)
    rep = led.report()
    assert rep["violation_counts"]["C2"] == 1 and "not -log p[target]" in rep["violations"][0]["detail"]
    assert 2 not in rep["conditions_checked"]
    good = Ledger(4)
    good.score(range(4))
    assert good.check_normalized(lp, range(4), log_probs=True, nll=scored, targets=y)["tied"]
    assert 2 in good.report()["conditions_checked"]

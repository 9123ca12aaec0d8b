"""Score-first TTT on a tiny GPT: each kind against an independent no-adaptation computation, real adaptation
gains, the ledger's proof at the exact chunk-boundary arithmetic, and the perturbation test on golflib's own TTT."""

import copy

import numpy as np
import pytest
import torch

import golflib.eval.ttt_chunked as ttt_chunked
from golflib.settings.model import ModelConfig
from golflib.data.luts import ByteLUTs
from golflib.eval.ledger import Ledger, LegalityError, perturbation_test
from golflib.eval.sliding import eval_sliding
from golflib.eval.ttt_common import doc_segments
from golflib.eval.ttt_lora import BatchedLoRA, adapter_shapes, lora_order, lora_schedule
from golflib.eval.ttt_phased import phase_boundaries
from golflib.model.gpt import GPT
from ttt_calls import run_chunked, run_lora, run_phased

VOCAB, BOS = 48, 1


def tiny_model(layers=2, seed=0) -> GPT:
    """A random tiny GPT whose output projections are *not* zero (a fresh GPT ignores its context)."""
    torch.manual_seed(seed)
    return randomize_projections(GPT(ModelConfig(vocab_size=VOCAB, num_layers=layers, model_dim=32, num_heads=2,
                                                 num_kv_heads=1, mlp_mult=2.0, tied_embed_init_std=0.05)))


def randomize_projections(model: GPT) -> GPT:
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "_zero_init", False):
                m.weight.normal_(0.0, 0.1)
    return model


def luts() -> ByteLUTs:
    base = torch.tensor([0, 0] + [1 + i % 3 for i in range(VOCAB - 2)], dtype=torch.int16)
    space = torch.tensor([i % 4 == 0 and i > 1 for i in range(VOCAB)])
    boundary = torch.tensor([i < 2 for i in range(VOCAB)])
    return ByteLUTs(base, space, boundary)


def periodic_stream(n_docs=12, seed=0) -> torch.Tensor:
    """Documents (BOS-opened, lengths 20..90) that cycle through one random pattern: learnable at test time."""
    rng = np.random.default_rng(seed)
    pattern = rng.integers(2, VOCAB, 23)
    out = []
    for _ in range(n_docs):
        k = int(rng.integers(20, 90))
        out += [BOS] + [int(pattern[(int(rng.integers(0, 23)) + j) % 23]) for j in range(k)]
    return torch.tensor(out, dtype=torch.int64)


CHUNK = dict(seq_len=32, stride=16, chunk_tokens=64, batch_seqs=4, grad_clip=1.0, eval_batch_seqs=8)
LORA = dict(window=32, chunk_size=16, batch_docs=4, lora_rank=4, beta1=0.0, beta2=0.999, weight_decay=0.0)


def test_chunked_without_adaptation_is_exactly_sliding_window_eval():
    model, toks = tiny_model(), periodic_stream()
    ref = eval_sliding(model, toks, luts(), seq_len=32, stride=16, batch_seqs=8)
    res = run_chunked(copy.deepcopy(model), toks, luts(), epochs=0, lr=0.01, **CHUNK)
    assert (res.tokens, res.bytes) == (ref.tokens, ref.bytes)
    assert res.val_loss == pytest.approx(ref.val_loss, rel=1e-6) and res.ledger["n_updates"] == 0


def test_chunked_ttt_learns_freezes_and_its_ledger_counts_every_step():
    model, toks = tiny_model(layers=3), periodic_stream()
    n = toks.numel() - 1
    base = run_chunked(copy.deepcopy(model), toks, luts(), epochs=0, lr=0.0, **CHUNK)
    adapted = copy.deepcopy(model)
    res = run_chunked(adapted, toks, luts(), epochs=2, lr=0.05, optimizer="sgd", momentum=0.9,
                           freeze_blocks=1, **CHUNK)
    assert res.val_bpb < base.val_bpb - 0.05, (res.val_bpb, base.val_bpb)
    rep = res.ledger
    assert rep["legal"] and rep["n_scored"] == n and rep["stream_order"]
    n_chunks = -(-n // 64)
    steps = sum(-(-ttt_chunked.train_sequences(c, n, 32, 64)[1] // 4) for c in range(n_chunks - 1))
    assert rep["n_updates"] == res.details["optimizer_steps"] == 2 * steps
    assert len(res.details["curve"]) == n_chunks
    assert res.details["curve"][-1]["running_val_bpb"] == pytest.approx(res.val_bpb, rel=1e-9)
    assert res.details["curve"][-1]["lr"] == 0.0  # cosine reaches 0 on the last chunk
    for a, b in zip(model.blocks[0].parameters(), adapted.blocks[0].parameters()):
        assert torch.equal(a, b)  # frozen
    assert not torch.equal(model.blocks[2].mlp.fc.weight, adapted.blocks[2].mlp.fc.weight)
    adamw = run_chunked(copy.deepcopy(model), toks, luts(), epochs=1, lr=0.003, optimizer="adamw", **CHUNK)
    assert adamw.ledger["legal"] and adamw.val_bpb < base.val_bpb


def test_the_ledger_proves_the_chunk_edge_and_catches_an_off_by_one(monkeypatch):
    """With L=32, S=16 and 64-token chunks the last window of chunk 0 scores targets 48..63, so target 64 is
    unscored while chunk 0 trains: sequences shifted by one token reach it, and the strict ledger stops there."""
    toks = periodic_stream()
    real = ttt_chunked.train_sequences
    monkeypatch.setattr(ttt_chunked, "train_sequences", lambda c, n, L, ch: (real(c, n, L, ch)[0] + 1,
                                                                             real(c, n, L, ch)[1]))
    with pytest.raises(LegalityError) as e:
        run_chunked(tiny_model(), toks, luts(), epochs=1, lr=0.05, **CHUNK)
    assert (e.value.condition, e.value.position) == (3, 64) and e.value.call == "update call #1"


def _chunked_rows(model, **kw):
    def score_fn(tokens):
        out = torch.zeros(tokens.numel() - 1, VOCAB)
        run_chunked(copy.deepcopy(model), tokens, luts(), scores_out=out, **kw)
        return out
    return score_fn


def test_perturbation_passes_golflibs_chunked_ttt_and_flags_the_off_by_one(monkeypatch):
    model, toks = tiny_model(), periodic_stream(n_docs=6)
    kw = dict(epochs=2, lr=0.05, **CHUNK)
    for cut in (65, 129, 200):
        res = perturbation_test(_chunked_rows(model, **kw), toks, cut=cut, seed=cut)
        assert res["causal"] and res["mode"] == "rows", (cut, res)
    real = ttt_chunked.train_sequences
    monkeypatch.setattr(ttt_chunked, "train_sequences", lambda c, n, L, ch: (real(c, n, L, ch)[0] + 1,
                                                                             real(c, n, L, ch)[1]))
    leaky = _chunked_rows(model, ledger=None, **kw)

    def non_strict(tokens):
        out = torch.zeros(tokens.numel() - 1, VOCAB)
        run_chunked(copy.deepcopy(model), tokens, luts(), scores_out=out,
                         ledger=Ledger(tokens.numel() - 1, strict=False), **kw)
        return out

    res = perturbation_test(non_strict, toks, cut=65)
    assert not res["causal"] and res["first_bad_position"] == 64
    with pytest.raises(LegalityError):
        leaky(toks)


def doc_isolated_reference(model, toks, window, chunk):
    """Independent no-adaptation reference for doc-LoRA: every position scored from its own document only, with the
    window start rule max(0, (c+1)*chunk - window)."""
    nll = torch.zeros(toks.numel() - 1)
    for s, e in doc_segments(toks, BOS):
        for c0 in range(0, e - s, chunk):
            end = min(c0 + chunk, e - s)
            ws = max(0, c0 + chunk - window)
            x, y = toks[s + ws:s + end][None], toks[s + ws + 1:s + end + 1][None]
            with torch.no_grad():
                nll[s + c0:s + end] = model.token_nll(x, y)[0, c0 - ws:]
    return nll


def test_doc_lora_without_learning_is_doc_isolated_eval_and_with_learning_gains():
    model, toks = tiny_model(), periodic_stream()
    n = toks.numel() - 1
    out = torch.zeros(n)
    res0 = run_lora(copy.deepcopy(model), toks, luts(), lr=0.0, scores_out=out, **LORA)
    ref = doc_isolated_reference(model, toks, 32, 16)
    assert torch.allclose(out, ref, atol=1e-5)
    assert res0.val_loss == pytest.approx(float(ref.double().mean()), rel=1e-6) and res0.tokens == n
    res = run_lora(copy.deepcopy(model), toks, luts(), lr=0.03, **LORA)
    assert res.val_bpb < res0.val_bpb - 0.02, (res.val_bpb, res0.val_bpb)
    rep = res.ledger
    assert rep["legal"] and rep["order"] == "declared" and not rep["stream_order"]
    assert rep["n_resets"] == res.details["n_batches"] == 3 and rep["n_updates"] == res.details["lora_steps"] > 0
    # the declared order is batch-major, chunk-major, and a permutation-like unique ranking
    segs = doc_segments(toks, BOS)
    order = lora_order(segs, lora_schedule(segs, 4), 16, n)
    assert len(np.unique(order)) == n


def test_doc_lora_is_causal_in_stream_order_but_warm_a_is_not_required_to_be():
    """Cold adapters depend only on their own document, so the stream-order perturbation test passes even though
    documents are processed length-sorted (the declared order is still what the ledger checks)."""
    model, toks = tiny_model(), periodic_stream(n_docs=8)

    def score_fn(tokens, warm=False):
        out = torch.zeros(tokens.numel() - 1)
        run_lora(copy.deepcopy(model), tokens, luts(), lr=0.03, scores_out=out, warm_start_a=warm, **LORA)
        return out

    cut = int(doc_segments(toks, BOS)[4, 0]) + 7
    res = perturbation_test(score_fn, toks, cut=cut, atol=1e-5)
    assert res["causal"], res
    warm = run_lora(copy.deepcopy(model), toks, luts(), lr=0.03, warm_start_a=True, **LORA)
    assert warm.ledger["legal"]  # legal under the declared order (A carries across batches: persistent)


def test_lora_adapters_are_sized_from_virtual_layers_and_start_as_identity():
    """Depth recurrence (NUM_LOOPS, #1394): 3 physical blocks, block 1 looped twice more → 5 virtual layers, each
    with its own adapters; a fresh adapter set is the identity."""
    import dataclasses

    torch.manual_seed(0)
    looped = randomize_projections(GPT(dataclasses.replace(tiny_model(layers=3).cfg, num_loops=2, loop_start=1,
                                                           loop_end=1)))
    assert looped.virtual_layers() == [0, 1, 1, 1, 2]
    shapes = adapter_shapes(looped)
    assert {layer for _, layer in shapes if layer >= 0} == {0, 1, 2, 3, 4}
    assert shapes[("k", 3)] == (32, 16) and shapes[("head", -1)] == (32, VOCAB) and shapes[("mlp", 0)] == (32, 32)
    lora = BatchedLoRA(shapes, n_slots=3, rank=4)
    assert len(lora.A) == 5 * 5 + 1
    x = torch.randint(0, VOCAB, (3, 10))
    lora.select(torch.arange(3))
    with torch.no_grad():
        assert torch.equal(looped.logits(x, lora), looped.logits(x))
        lora.B["k_3"].normal_()  # the third pass over block 1 has its own adapter
        assert not torch.allclose(looped.logits(x, lora), looped.logits(x))
    lora.reset()
    assert float(lora.B["k_3"].detach().abs().sum()) == 0.0
    looped.set_active_loops(0)  # a model evaluated unlooped reports fewer virtual layers
    assert {layer for _, layer in adapter_shapes(looped) if layer >= 0} == {0, 1, 2}
    res = run_lora(looped, periodic_stream(n_docs=4), luts(), lr=0.03, **LORA)
    assert res.ledger["legal"]


def test_phased_ttt_trains_the_base_model_on_scored_documents_only():
    model, toks = tiny_model(), periodic_stream(n_docs=16)
    assert phase_boundaries(2000, 3, 16) == [5, 10, 16] and phase_boundaries(6, 3, 16) == [2, 4, 6]
    adapted = copy.deepcopy(model)
    res = run_phased(adapted, toks, luts(), lr=0.03, prefix_docs=8, num_phases=2, global_lr=0.05,
                          global_chunk_tokens=128, global_batch_seqs=4, **LORA)
    rep, d = res.ledger, res.details
    assert rep["legal"] and not rep["stream_order"]
    assert [p["boundary_docs"] for p in d["phases"]] == [4, 8] and all(p["steps"] > 0 for p in d["phases"])
    assert not torch.equal(model.tok_emb.weight, adapted.tok_emb.weight)  # the base model learned
    lora_only = run_lora(copy.deepcopy(model), toks, luts(), lr=0.03, **LORA)
    assert rep["n_updates"] == lora_only.ledger["n_updates"] + sum(p["steps"] for p in d["phases"])
    # a phase that trains one document too many (not scored yet) is caught
    import golflib.eval.ttt_phased as ph
    orig = ph.global_sgd

    def greedy(model, val_tokens, segments, settings, ctx=None):
        return orig(model, val_tokens, doc_segments(val_tokens, BOS), settings, ctx)  # every document

    ph.global_sgd = greedy
    try:
        with pytest.raises(LegalityError) as e:
            run_phased(copy.deepcopy(model), toks, luts(), lr=0.03, prefix_docs=8, num_phases=2,
                            global_lr=0.05, global_chunk_tokens=128, global_batch_seqs=4, **LORA)
        assert e.value.condition == 3
    finally:
        ph.global_sgd = orig


def test_lora_sites_config_reaches_the_adapters(monkeypatch):
    """TTT_LORA_SITES (E1 used q, v and lm_head; #1530+ every projection): parsed and checked by the config,
    passed by run_ttt_kind, and only those projections get adapters."""
    from golflib.config import Config
    from golflib.settings.base import ConfigError
    import golflib.eval.ttt as ttt_mod

    cfg = Config().replace({"TTT_LORA_SITES": "q,v,head"})
    assert cfg.ttt.ttt_lora_sites == ("q", "v", "head")
    assert Config().ttt.ttt_lora_sites == ("q", "k", "v", "o", "mlp", "head")
    with pytest.raises(ConfigError, match="TTT_LORA_SITES=.*must be distinct names from q, k, v, o, mlp, head"):
        Config().replace({"TTT_LORA_SITES": "q,attn"})
    seen = {}
    real = ttt_mod.protocol
    monkeypatch.setattr(ttt_mod, "protocol", lambda k: (real(k)[0], lambda m, t, l, settings, ctx=None:
                                                                    seen.update(s=settings)))
    ttt_mod.run_ttt_kind("lora", None, periodic_stream(n_docs=2), luts(), cfg)
    assert seen["s"].sites == ("q", "v", "head") == ttt_mod.ttt_settings("lora", cfg, 100).sites
    model, toks = tiny_model(), periodic_stream(n_docs=6)
    lora = BatchedLoRA(adapter_shapes(model), n_slots=2, rank=4, sites=("q", "v", "head"))
    assert sorted(lora.A) == ["head_h", "q_0", "q_1", "v_0", "v_1"]
    some = run_lora(copy.deepcopy(model), toks, luts(), lr=0.03, sites=("q", "v", "head"), **LORA)
    every = run_lora(copy.deepcopy(model), toks, luts(), lr=0.03, **LORA)
    frozen = run_lora(copy.deepcopy(model), toks, luts(), lr=0.0, **LORA)
    assert some.details["sites"] == ["q", "v", "head"] and some.ledger["legal"]
    assert some.val_bpb < frozen.val_bpb and some.val_bpb != every.val_bpb

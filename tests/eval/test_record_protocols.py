"""The records' own scoring protocols, reproduced exactly (issue 11).

Every number pinned here was produced by running the record's own function (its ``train_gpt.py`` imported in a
throwaway script with the CPU stubs of tests/reference/harness.py, never copied) on the same tiny golflib GPT and the
same stream as the test: #287/#414/#549/#1019 ``eval_val_sliding`` (legacy window set), #461 ``eval_val_sliding``
and #461/#549 ``eval_val_sliding_ttt`` (legacy_stride set, chunked TTT), #1855 ``eval_val`` (doc-isolated flat
batches) and ``eval_val_ttt_phased`` (phased TTT: per-slot LoRA draws after ``torch.manual_seed(7)``, warm A,
fresh adapters, one phase per batch, the shortest scored documents, global SGD on their concatenation). golflib's
protocols gave the same val_loss and val_bpb to the last bit on the machine the numbers were taken on; on another
CPU the same arithmetic differs by up to 2e-8 relative (another ISA's kernels: docs/LOG.md, 2026-12-07), so the
tests allow 1e-7 relative — a protocol that scored one target differently would move them by ~1e-4.

The model's weights are drawn per parameter name (not golflib's init), so only a change of the forward pass itself
moves these numbers.
"""

import copy
import math
import zlib

import numpy as np
import pytest
import torch

from golflib.config import Config
from golflib.settings.base import ConfigError
from golflib.eval.doc_eval import bos_segment_ids, eval_doc_isolated
from golflib.eval.ledger import Ledger
from golflib.eval.sliding import LEGACY_REPEAT, eval_sliding, scored_positions, sliding_windows
from golflib.eval.ttt_chunked import chunk_windows
from golflib.eval.ttt_common import doc_segments, rank_steps
from golflib.eval.ttt_lora import BatchedLoRA, adapter_shapes
from golflib.eval.ttt_phased import concat_documents, phase_boundaries, phase_documents
from golflib.model.gpt import GPT
from golflib.settings.model import ModelConfig

from test_ttt import BOS, VOCAB, luts, periodic_stream
from ttt_calls import run_chunked, run_phased

REL = 1e-7


def fixture_model(layers: int = 2, **kw) -> GPT:
    """Tiny GPT (NTK RoPE above 16 tokens, so padding to the window length matters) with weights drawn from a
    generator seeded by each parameter's name: matrices N(0, 1/fan_in), vectors 1 + 0.25·N(0, 1)."""
    cfg = dict(vocab_size=VOCAB, num_layers=layers, model_dim=32, num_heads=2, num_kv_heads=1, mlp_mult=2.0,
               rope_train_seq_len=16, **kw)
    model = GPT(ModelConfig(**cfg))
    with torch.no_grad():
        for name, t in model.state_dict().items():
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t.shape[-1]) if t.dim() >= 2
                    else 1 + 0.25 * torch.randn(t.shape, generator=g))
    return model


def weight_sum(model) -> float:
    return sum(float(p.detach().double().sum()) for p in model.parameters())


def close(res, loss, bpb):
    assert res.val_loss == pytest.approx(loss, rel=REL) and res.val_bpb == pytest.approx(bpb, rel=REL), \
        (repr(res.val_loss), repr(res.val_bpb))


# ---- window sets ---------------------------------------------------------------------------------------------
def test_legacy_window_sets_by_hand():
    """N = 100, L = 32, S = 16. legacy keeps every start < N: 0 .. 96 (7 windows); the full window at 64 scores
    80..95, the clipped one at 80 (wlen 20, offset 4) 84..99 and the one at 96 (wlen 4 < S, offset 0) 96..99, so
    84..99 are scored twice. legacy_stride drops 96 (4 < S targets): 84..95 twice. The fixed set ends at 80 and
    scores 96..99 from it (offset L − S)."""
    fixed = sliding_windows(100, 32, 16)
    legacy = sliding_windows(100, 32, 16, "legacy")
    stride = sliding_windows(100, 32, 16, "legacy_stride")
    assert [w.start for w in legacy] == [0, 16, 32, 48, 64, 80, 96]
    assert [(w.length, w.score_from) for w in legacy[-3:]] == [(32, 16), (20, 4), (4, 0)]
    assert [w.start for w in stride] == [0, 16, 32, 48, 64, 80]
    assert [w.start for w in fixed][-1] == 80 and np.array_equal(np.sort(scored_positions(fixed)), np.arange(100))
    counts = np.bincount(scored_positions(legacy), minlength=100)
    assert counts[:84].tolist() == [1] * 84 and counts[84:].tolist() == [2] * 16
    counts = np.bincount(scored_positions(stride), minlength=100)
    assert counts[:84].max() == 1 and counts[84:96].tolist() == [2] * 12 and counts[96:].tolist() == [1] * 4
    with pytest.raises(ValueError, match="EVAL_WINDOWS='sliding'"):
        sliding_windows(100, 32, 16, "sliding")


def test_full_size_legacy_tail_is_scored_l_over_s_times():
    """N a multiple of L (the val stream is truncated to a multiple of the eval length): the last S targets are
    scored L/S times — 32 at L = 2048, S = 64 (1,984 extra scores, SPEC §3.A1 ⚠; #414's report)."""
    n, L, S = 8 * 2048, 2048, 64
    for ws in ("legacy", "legacy_stride"):
        counts = np.bincount(scored_positions(sliding_windows(n, L, S, ws)), minlength=n)
        assert counts[:n - S].max() == 1 and counts[n - S:].tolist() == [L // S] * S
        assert counts.sum() - n == S * (L // S - 1) == 1984


@pytest.mark.parametrize("record,window_set,n_docs,loss,bpb,scores", [
    ("#287/#414/#549/#1019", "legacy", 12, 4.298216681710495, 2.922988667226148, 601),
    ("#287/#414/#549/#1019", "legacy", 7, 4.280228856784194, 2.8651617129640607, 335),
    ("#461", "legacy_stride", 12, 4.29872011574539, 2.925443329361003, 592),
    ("#461", "legacy_stride", 7, 4.27855338677764, 2.8420824187776828, 320),
])
def test_legacy_sliding_is_the_records_eval_val_sliding(record, window_set, n_docs, loss, bpb, scores):
    model, toks = fixture_model(), periodic_stream(n_docs)
    n = toks.numel() - 1
    res = eval_sliding(model, toks, luts(), seq_len=32, stride=16, batch_seqs=8, window_set=window_set)
    close(res, loss, bpb)
    assert res.tokens == scores > n and res.details["window_set"] == window_set
    rep = res.ledger
    assert not rep["legal"] and rep["legal_except_declared"] and not rep["single_pass"] and rep["complete"]
    assert rep["declared"] == [{"condition": 4, "kind": "repeat", "reason": LEGACY_REPEAT,
                                "positions": scores - n, "scores": scores - n}]
    assert rep["violations"] == [] and rep["n_scored"] == n
    fixed = eval_sliding(model, toks, luts(), seq_len=32, stride=16, batch_seqs=8)
    assert fixed.tokens == n and fixed.ledger["legal"] and abs(fixed.val_loss - loss) > 1e-4
    with pytest.raises(ValueError, match="mixer needs the fixed window set"):
        eval_sliding(model, toks, luts(), seq_len=32, stride=16, window_set=window_set, mixer=lambda *a: None)


def test_a_strict_ledger_still_refuses_an_undeclared_repeat():
    led = Ledger(10)
    led.score(np.arange(10))
    led.score([8, 9], repeat="known")
    with pytest.raises(Exception, match="C4"):
        led.score([9])
    rep = Ledger(4, strict=False)
    rep.score([0, 1, 2, 3, 3])
    r = rep.report()
    assert not r["legal"] and not r["legal_except_declared"] and not r["single_pass"] and r["declared"] == []


# ---- chunked TTT ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_docs,freeze,chunk,loss,bpb,wsum", [
    (12, 0, 96, 3.656998420285212, 2.4887271899654784, 158.9201902767809),
    (12, 1, 128, 3.7534924294497514, 2.554395051057373, 156.62512272938977),
    (7, 0, 64, 4.035702869296074, 2.6807659354404865, 156.06806372028586),
])
def test_chunked_ttt_is_461_and_549s_eval_val_sliding_ttt(n_docs, freeze, chunk, loss, bpb, wsum):
    """L 32, S 16, lr 0.05 cosine over chunks, 2 epochs, SGD momentum 0.9, 2 sequences per step, clip 1.0, 8
    windows per zero-padded scoring batch; #461 and #549 give the same numbers (and the same weights)."""
    model, toks = fixture_model(layers=3), periodic_stream(n_docs)
    res = run_chunked(model, toks, luts(), seq_len=32, stride=16, chunk_tokens=chunk, epochs=2, lr=0.05,
                           momentum=0.9, freeze_blocks=freeze, batch_seqs=2, grad_clip=1.0, eval_batch_seqs=8,
                           window_set="legacy_stride")
    close(res, loss, bpb)
    assert weight_sum(model) == pytest.approx(wsum, rel=REL)
    rep = res.ledger
    assert rep["legal_except_declared"] and rep["declared"][0]["reason"] == LEGACY_REPEAT and rep["complete"]
    n = toks.numel() - 1
    groups = chunk_windows(n, 32, 16, chunk, "legacy_stride")
    n_chunks = len(groups)
    seqs = [(min((c + 1) * chunk, n) - c * chunk) // 32 for c in range(n_chunks - 1)]  # the last chunk never trains
    assert res.details["optimizer_steps"] == 2 * sum(-(-k // 2) for k in seqs) == rep["n_updates"]


def test_rank_steps_split_each_chunk_contiguously_like_the_records():
    """#461/#549: rank r owns sequences [n r / W, n (r+1) / W) and steps through them batch by batch."""
    assert rank_steps(10, 3, 2) == [[(0, 3), (5, 8)], [(3, 5), (8, 10)]]
    assert rank_steps(5, 4, 1) == [[(0, 4)], [(4, 5)]]
    assert rank_steps(3, 2, 4) == [[(0, 0), (0, 1), (1, 2), (2, 3)]]
    assert rank_steps(0, 2, 2) == []


# ---- #1855 doc-isolated standard eval ---------------------------------------------------------------------------
def test_bos_segments_are_1855s_cu_seqlens():
    """Cuts at position 0, at every BOS input and every max_len tokens from the start of each piece."""
    x = torch.tensor([5, 1, 7, 7, 7, 7, 7, 1, 1, 7, 7])
    assert bos_segment_ids(x, 1, 3).tolist() == [0, 1, 1, 1, 2, 2, 2, 3, 4, 4, 4]
    assert bos_segment_ids(x, 1, 0).tolist() == [0, 1, 1, 1, 1, 1, 1, 2, 3, 3, 3]
    assert bos_segment_ids(torch.tensor([1, 2, 3, 4, 5]), 1, 2).tolist() == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("n_docs,L,batch,accum,loss,bpb,dropped", [
    (12, 32, 256, 1, 4.382406582124531, 2.948185643454817, 64),
    (20, 64, 1024, 8, 4.404807301238179, 3.020634010616852, 64),
    (9, 32, 96, 1, 4.365384366363287, 2.9292643613611737, 0),
])
def test_doc_isolated_eval_is_1855s_eval_val(n_docs, L, batch, accum, loss, bpb, dropped):
    """VAL_BATCH_SIZE / (world · accumulation) tokens per flat batch, segments at BOS and every L from each
    document start, the rank's sequences truncated to whole batches (the dropped tail declared in the ledger)."""
    model = fixture_model(smear_gate=3)
    toks = periodic_stream(n_docs)
    toks = toks[:(toks.numel() - 1) // L * L + 1]
    n = toks.numel() - 1
    res = eval_doc_isolated(model, toks, luts(), seq_len=L, batch_tokens=batch, grad_accum_steps=accum)
    close(res, loss, bpb)
    rep = res.ledger
    assert res.tokens == n - dropped == rep["n_scored"] and res.details["dropped_targets"] == dropped
    assert rep["legal_except_declared"] and rep["legal"] == (dropped == 0) and rep["complete"] == (dropped == 0)
    if dropped:
        assert rep["declared"][0]["kind"] == "unscored" and rep["declared"][0]["positions"] == dropped
    # without isolation the same batches score differently (documents see their predecessors)
    std = eval_doc_isolated(model, toks, luts(), seq_len=L, batch_tokens=batch, grad_accum_steps=accum,
                            bos_id=VOCAB - 1)
    assert abs(std.val_loss - loss) > 1e-4


def test_doc_isolated_eval_rank_split_and_errors():
    model, toks = fixture_model(), periodic_stream(12)
    toks = toks[:(toks.numel() - 1) // 32 * 32 + 1]
    whole = eval_doc_isolated(model, toks, luts(), seq_len=32, batch_tokens=128)
    parts = [eval_doc_isolated(model, toks, luts(), seq_len=32, batch_tokens=128, rank=r, world_size=2)
             for r in range(2)]
    # 18 sequences: 9 per rank, 2 per batch (128 / 2 ranks / 32) -> 8 kept per rank; one process keeps 16 of 18
    assert [p.tokens for p in parts] == [256, 256] and whole.tokens == 512
    with pytest.raises(ValueError, match="less than one sequence"):
        eval_doc_isolated(model, toks, luts(), seq_len=32, batch_tokens=64, grad_accum_steps=4)
    # 18 sequences per rank, 32 per batch: the record would score nothing; refused, naming the field
    with pytest.raises(ValueError, match=r"VAL_BATCH_SIZE=1024: each rank's batch holds 32 sequences .* only 18"):
        eval_doc_isolated(model, toks, luts(), seq_len=32, batch_tokens=1024)


# ---- #1855 phased TTT ----------------------------------------------------------------------------------------
PHASED = dict(window=32, chunk_size=16, batch_docs=4, lora_rank=4, lr=0.003, global_lr=0.01, global_momentum=0.9,
              global_epochs=1, global_chunk_tokens=128, global_batch_seqs=2, global_grad_clip=1.0, lora_alpha=144.0,
              beta1=0.0, beta2=0.99, weight_decay=0.5, adapters="per_slot", last_window="doc_end", seed=7,
              global_seq_len=32)


@pytest.mark.parametrize("case,over,loss,bpb,wsum,phases", [
    ("3 phases", dict(prefix_docs=8, num_phases=3), 3.96924332950809, 2.7053579839079527, 104.96245593185449,
     [(2, 2), (5, 6), (8, 10)]),
    # boundaries 2/4/6/8: two are reached in one batch, the second waits for the next batch (one phase per batch)
    ("4 phases", dict(prefix_docs=8, num_phases=4), 3.974052158645196, 2.708635587022532, 105.01846674963963,
     [(2, 2), (4, 6), (6, 10), (8, 14)]),
    ("LoRA only", dict(prefix_docs=0, num_phases=1), 3.991928426694659, 2.720819698823026, 104.57361668988779, []),
    ("cold A, 3 docs per batch, global seq 16",
     dict(prefix_docs=10, num_phases=3, warm_start_a=False, batch_docs=3, global_seq_len=16),
     3.99895935158962, 2.725611838588667, 105.65165479235111, [(3, 5), (6, 8), (10, 11)]),
])
def test_phased_ttt_is_1855s_eval_val_ttt_phased(case, over, loss, bpb, wsum, phases):
    """14 documents, LoRA batches of 4 (the short batch of the 2 longest first, on a fresh adapter set), rank 4,
    alpha 144, warm A, chunk 16 in windows of 32 (a last chunk in the window ending at the document's end), AdamW
    (0, 0.99) wd 0.5, phases on 128-token chunks of 2 sequences."""
    kw = {**PHASED, "warm_start_a": True, **over}
    model = fixture_model()
    res = run_phased(model, periodic_stream(14), luts(), **kw)
    close(res, loss, bpb)
    assert weight_sum(model) == pytest.approx(wsum, rel=REL)
    assert [(p["boundary_docs"], p["docs_scored"]) for p in res.details["phases"]] == phases
    rep = res.ledger
    assert rep["legal"] and rep["complete"] and not rep["stream_order"]
    n_short = 1 if 14 % kw["batch_docs"] else 0
    assert res.details["fresh_adapter_sets"] == n_short + len(phases)


def test_phased_options_each_change_the_score():
    """golflib's own choices (shared A draw, chunk-end windows) differ from #1855's: the pins above need both."""
    toks, base = periodic_stream(14), {**PHASED, "prefix_docs": 8, "num_phases": 3, "warm_start_a": True}
    ref = run_phased(fixture_model(), toks, luts(), **base).val_loss
    for over in (dict(last_window="chunk"), dict(adapters="shared"), dict(seed=8)):
        assert abs(run_phased(fixture_model(), toks, luts(), **{**base, **over}).val_loss - ref) > 1e-5, over


def test_phase_documents_are_the_shortest_scored_in_length_order():
    toks = periodic_stream(14)
    segs = doc_segments(toks, BOS)
    lengths = segs[:, 1] - segs[:, 0]
    scored = np.array([3, 9, 0, 12, 5])
    docs = phase_documents(scored, segs, 3)
    assert list(lengths[docs]) == sorted(lengths[scored])[:3]
    assert phase_boundaries(8, 4, 14) == [2, 4, 6, 8] and phase_boundaries(2, 3, 14) == [0, 1, 2]
    assert phase_boundaries(0, 3, 14) == [] and phase_boundaries(2500, 3, 50000) == [833, 1666, 2500]
    with pytest.raises(ValueError, match="PHASED_TTT_NUM_PHASES=0"):
        phase_boundaries(8, 0, 14)
    cat, reveal = concat_documents(toks, segs[docs])
    # each document with its trailing BOS: "BOS ... BOS BOS ..." at every junction; markers reveal nothing
    assert int(cat[0]) == BOS and cat.numel() == int((lengths[docs] + 1).sum())
    first = int(lengths[docs[0]]) + 1
    assert int(cat[first - 1]) == BOS and int(cat[first]) == BOS and reveal[first] == -1 and reveal[0] == -1
    s, e = segs[docs[0]]
    assert reveal[1:first].tolist() == list(range(s, e))


def test_per_slot_adapters_draw_like_1855():
    """BatchedTTTLoRA: torch.empty(slots, r, in).uniform_(±1/sqrt(in)) per module in the order head, q, v, k, mlp,
    o (each over the layers) from one generator; reset redraws A unless warm; B starts at zero."""
    model = fixture_model()
    shapes = adapter_shapes(model)
    gen = torch.Generator().manual_seed(7)
    lora = BatchedLoRA(shapes, 3, 4, 144.0, init="per_slot", generator=gen)
    assert list(lora.keys.values()) == ["head_h", "q_0", "q_1", "v_0", "v_1", "k_0", "k_1", "mlp_0", "mlp_1",
                                        "o_0", "o_1"]
    g = torch.Generator().manual_seed(7)
    head = torch.empty(3, 4, 32).uniform_(-1 / math.sqrt(32), 1 / math.sqrt(32), generator=g)
    assert torch.equal(lora.A["head_h"].detach(), head) and not torch.equal(head[0], head[1])
    assert float(lora.B["o_1"].detach().abs().sum()) == 0.0 and lora.scale == 36.0
    a = lora.A["q_0"].detach().clone()
    lora.reset(warm_start_a=True)
    assert torch.equal(lora.A["q_0"].detach(), a)
    lora.reset()
    assert not torch.equal(lora.A["q_0"].detach(), a)
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        BatchedLoRA(shapes, 3, 4, init="per_slot")


def test_config_fields():
    cfg = Config().replace({"EVAL_WINDOWS": "legacy", "EVAL_DOC_ISOLATED": "1", "TTT_WINDOWS": "legacy_stride",
                            "TTT_LORA_ADAPTERS": "per_slot", "TTT_LORA_LAST_WINDOW": "doc_end"})
    assert (cfg.eval.eval_windows, cfg.eval.eval_doc_isolated, cfg.ttt.ttt_windows) == ("legacy", True,
                                                                                        "legacy_stride")
    assert (cfg.ttt.ttt_lora_adapters, cfg.ttt.ttt_lora_last_window) == ("per_slot", "doc_end")
    d = Config()
    assert (d.eval.eval_windows, d.eval.eval_doc_isolated, d.ttt.ttt_windows, d.ttt.ttt_lora_adapters,
            d.ttt.ttt_lora_last_window) == ("fixed", False, "", "shared", "chunk")
    for key, bad, msg in [("EVAL_WINDOWS", "tail", "EVAL_WINDOWS='tail': must be one of fixed, legacy, "
                                                   "legacy_stride"),
                          ("TTT_WINDOWS", "x", "TTT_WINDOWS='x': must be empty"),
                          ("TTT_LORA_ADAPTERS", "random", "TTT_LORA_ADAPTERS='random': must be one of shared, "
                                                          "per_slot"),
                          ("TTT_LORA_LAST_WINDOW", "doc", "TTT_LORA_LAST_WINDOW='doc': must be one of chunk, "
                                                          "doc_end")]:
        with pytest.raises(ConfigError, match=msg):
            Config().replace({key: bad})


def test_run_ttt_kind_passes_the_record_switches(monkeypatch):
    import golflib.eval.ttt as ttt_mod

    cfg = Config().replace({"EVAL_WINDOWS": "legacy", "TTT_LORA_ADAPTERS": "per_slot", "SEED": 42,
                            "TTT_LORA_LAST_WINDOW": "doc_end", "EVAL_SEQ_LEN": 64, "TTT_EVAL_SEQ_LEN": 32,
                            "TTT_CHUNK_SIZE": 16})
    seen = {}
    real = ttt_mod.protocol
    monkeypatch.setattr(ttt_mod, "protocol", lambda k: (real(k)[0], lambda m, t, l, settings, ctx=None:
                                                                    seen.update({k: settings})))
    for kind in ("chunked", "lora", "phased"):
        ttt_mod.run_ttt_kind(kind, None, periodic_stream(2), luts(), cfg)
    assert seen["chunked"].window_set == "legacy"  # TTT_WINDOWS empty: EVAL_WINDOWS
    assert (seen["chunked"].seq_len, seen["chunked"].stride) == (64, 64)  # EVAL_STRIDE 0: non-overlapping
    assert (seen["lora"].adapters, seen["lora"].seed) == ("per_slot", 42)
    assert seen["phased"].lora.last_window == "doc_end" and seen["phased"].lora.window == 32
    assert seen["phased"].global_sgd.seq_len == 64 and seen["phased"].global_sgd.bos_id == cfg.model.bos_id
    ttt_mod.run_ttt_kind("chunked", None, periodic_stream(2), luts(), cfg.replace({"TTT_WINDOWS": "fixed"}))
    assert seen["chunked"].window_set == "fixed"
    shared = cfg.replace({"TTT_LORA_ADAPTERS": "shared"})
    ttt_mod.run_ttt_kind("lora", None, periodic_stream(2), luts(), shared)
    assert seen["lora"].seed == 0  # golflib's shared draw keeps its seed


def test_legacy_ttt_with_copy_is_reproducible():
    """Two runs on copies give the same numbers (nothing depends on the global RNG)."""
    model, toks = fixture_model(), periodic_stream(7)
    kw = dict(seq_len=32, stride=16, chunk_tokens=64, epochs=1, lr=0.05, batch_seqs=2, eval_batch_seqs=8,
              window_set="legacy")
    a = run_chunked(copy.deepcopy(model), toks, luts(), **kw)
    torch.manual_seed(123)
    b = run_chunked(copy.deepcopy(model), toks, luts(), **kw)
    assert a.val_loss == b.val_loss and a.tokens == b.tokens


def test_o_adapter_maps_the_normalised_attention_input():
    """#1530 onward (#1855 L1559/L1619): the O adapter reads the block's normalised attention input — the same
    tensor as the q/k/v adapters — not W_O's input; its in-features are model_dim."""
    model = fixture_model(layers=3)
    seen = {}

    def spy(site, layer, x, out):
        seen[(site, layer)] = x.detach().clone()
        return out

    with torch.no_grad():
        model.logits(periodic_stream(2)[None, :40], spy)
    for layer in range(3):
        assert torch.equal(seen[("o", layer)], seen[("q", layer)]) and torch.equal(seen[("o", layer)],
                                                                                   seen[("v", layer)])
    assert adapter_shapes(model)[("o", 0)] == (32, 32)

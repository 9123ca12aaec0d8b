"""Compiled scoring forwards (issue 14): with compilation on, every protocol — standard, sliding window,
doc-isolated, chunked, LoRA and phased TTT — runs its forwards as inductor-compiled graphs (fullgraph: a graph
break fails) and gives the eager protocol's scores."""

import copy

import pytest
import torch

from golflib.eval import compiled
from golflib.eval.bpb import eval_standard
from golflib.eval.doc_eval import eval_doc_isolated
from golflib.eval.sliding import eval_sliding
from test_ttt import CHUNK, LORA, luts, periodic_stream, tiny_model
from ttt_calls import run_chunked, run_lora, run_phased

pytestmark = pytest.mark.slow

PROTOCOLS = {
    "standard": lambda m, t: eval_standard(m, t, luts(), seq_len=32, batch_tokens=96),  # 3 windows + a tail batch
    "sliding": lambda m, t: eval_sliding(m, t, luts(), seq_len=32, stride=16, batch_seqs=8),
    "doc_isolated": lambda m, t: eval_doc_isolated(m, t, luts(), seq_len=32, batch_tokens=128, grad_accum_steps=1,
                                                   bos_id=1),
    "chunked": lambda m, t: run_chunked(m, t, luts(), epochs=1, lr=0.05, **CHUNK),
    "lora": lambda m, t: run_lora(m, t, luts(), lr=0.03, **LORA),
    "phased": lambda m, t: run_phased(m, t, luts(), lr=0.03, prefix_docs=4, num_phases=2, global_lr=0.05,
                                      global_chunk_tokens=128, global_batch_seqs=2, **LORA),
}


@pytest.fixture
def compiling():
    torch._dynamo.reset()
    compiled.enable_compile(True)
    yield
    compiled.enable_compile(False)
    torch._dynamo.reset()


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_compiled_protocol_scores_like_eager(name, compiling, monkeypatch):
    toks = periodic_stream(n_docs=8)
    toks = toks[:(toks.numel() - 1) // 32 * 32 + 1]  # the records' truncation to whole windows (SPEC §1.2)
    model = tiny_model(layers=1)  # compile time grows with the graph; one block exercises every path
    calls = []
    real = compiled.forward_of

    def counting(m, method):
        calls.append(method)
        return real(m, method)

    monkeypatch.setattr(compiled, "forward_of", counting)
    for mod in ("bpb", "doc_eval", "sliding", "ttt_chunked", "ttt_lora", "ttt_phased"):
        monkeypatch.setattr(f"golflib.eval.{mod}.forward_of", counting)
    got = PROTOCOLS[name](copy.deepcopy(model), toks)
    assert calls, "the protocol never asked for a compiled forward"
    assert any(isinstance(v, dict) and v for v in [compiled._CACHE.get(m) for m in list(compiled._CACHE.keys())])
    compiled.enable_compile(False)
    want = PROTOCOLS[name](copy.deepcopy(model), toks)
    assert (got.tokens, got.bytes) == (want.tokens, want.bytes)
    assert got.val_loss == pytest.approx(want.val_loss, rel=2e-5, abs=2e-5), (got.val_loss, want.val_loss)
    assert got.ledger["legal"] == want.ledger["legal"]


def test_compiled_forward_of_is_cached_per_model_and_checks_the_method(compiling):
    a, b = tiny_model(), tiny_model(seed=1)
    assert compiled.forward_of(a, "token_nll") is compiled.forward_of(a, "token_nll")
    assert compiled.forward_of(a, "token_nll") is not compiled.forward_of(b, "token_nll")
    with pytest.raises(ValueError, match="method must be one of"):
        compiled.forward_of(a, "hidden")
    compiled.enable_compile(False)
    assert compiled.forward_of(a, "forward") is a and compiled.forward_of(a, "logits") == a.logits

"""FlashAttention inside a compiled graph (issue 14), with injected fake FlashAttention 3 / 2 modules: no GPU here,
so the fakes run causal SDPA per segment on CPU, but they check what a real kernel requires — [B, T, H, D] (dense)
or packed [N, H, D] (varlen) layouts, a half dtype, GQA head counts, int32 cu_seqlens from 0 to N with every
segment within max_seqlen — and count the calls they receive at run time.

A fake whose functions dynamo cannot trace (``torch._dynamo.disable``, like a pybind extension of an older build)
breaks a ``fullgraph`` compile: golflib's probe sees it and routes the calls through its own custom ops, and the
compiled model (CPU bf16 autocast, the CUDA dtype layout) then calls the kernel inside the graph, for dense and
varlen attention, with the loss and gradients of the eager model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from golflib.data.loaders import packed_doc_ids
from golflib.model import attention as att
from golflib.model.flash_op import choose_flash_op
from golflib.model.gpt import GPT
from golflib.runtime import cast_model_for_device
from golflib.model.layers import CONTROL_PATTERNS
from golflib.settings.model import ModelConfig

HALF = (torch.bfloat16, torch.float16)


_ACTIVE: list = []  # the FakeFlash behind the registered test ops


@torch.library.custom_op("golflib_test::fa_dense", mutates_args=())
def _fa_dense_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _ACTIVE[-1]._dense(q, k, v)[0]


@_fa_dense_op.register_fake
def _(q, k, v):
    return torch.empty_like(q)


@torch.library.custom_op("golflib_test::fa_varlen", mutates_args=())
def _fa_varlen_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, m: int) -> torch.Tensor:
    return _ACTIVE[-1]._varlen(q, k, v, cu, cu, m, m)


@_fa_varlen_op.register_fake
def _(q, k, v, cu, m):
    return torch.empty_like(q)


class FakeFlash:
    """A fake FlashAttention module (``flash_attn_func``, ``flash_attn_varlen_func``) that validates its inputs and
    counts calls. ``traceable=True``: its kernels are registered torch custom ops, as FlashAttention 3 (and 2 from
    2.7) registers them; ``False``: hidden from dynamo, as a pybind extension of an older build is."""

    def __init__(self, traceable: bool):
        self.calls = {"dense": 0, "varlen": 0}
        _ACTIVE.append(self)
        if traceable:
            self.flash_attn_func = lambda q, k, v, causal=True: _fa_dense_op(q, k, v)
            self.flash_attn_varlen_func = lambda q, k, v, cu, cu_k, m, m_k, causal=True: _fa_varlen_op(q, k, v, cu, m)
        else:
            self.flash_attn_func = torch._dynamo.disable(self._dense)
            self.flash_attn_varlen_func = torch._dynamo.disable(self._varlen)

    def _dense(self, q, k, v, causal=True, softmax_scale=None):
        assert causal and q.dim() == 4 and k.shape == v.shape and q.shape[:2] == k.shape[:2], (q.shape, k.shape)
        assert q.dtype in HALF and q.dtype == k.dtype == v.dtype, (q.dtype, k.dtype, v.dtype)
        assert q.size(2) % k.size(2) == 0 and q.size(-1) == k.size(-1)
        self.calls["dense"] += 1
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                                           enable_gqa=k.size(2) != q.size(2))
        return y.transpose(1, 2).contiguous(), None  # FA3 returns (out, softmax_lse)

    def _varlen(self, q, k, v, cu_q, cu_k, max_q, max_k, causal=True, softmax_scale=None):
        assert causal and q.dim() == 3 and k.shape == v.shape and q.size(0) == k.size(0)
        assert q.dtype in HALF and q.dtype == k.dtype == v.dtype
        assert cu_q.dtype == torch.int32 and torch.equal(cu_q, cu_k) and max_q == max_k
        bounds = cu_q.tolist()
        assert bounds[0] == 0 and bounds[-1] == q.size(0) and bounds == sorted(bounds), bounds
        self.calls["varlen"] += 1
        out = torch.zeros_like(q)
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                assert b - a <= max_q, (a, b, max_q)
                out[a:b] = self._dense(q[None, a:b], k[None, a:b], v[None, a:b])[0][0]
        self.calls["dense"] -= sum(1 for a, b in zip(bounds[:-1], bounds[1:]) if b > a)
        return out


@pytest.fixture
def flash(monkeypatch):
    """Install a fake module as golflib's FlashAttention 3 (chosen for every call) and restore the op mode."""

    def install(traceable: bool) -> FakeFlash:
        fake = FakeFlash(traceable)
        monkeypatch.setattr(att, "attention_backend", lambda q: "fa3")
        monkeypatch.setattr(att, "FLASH_NAME", "fa3")
        monkeypatch.setattr(att, "FLASH_FN", fake.flash_attn_func)
        monkeypatch.setattr(att, "FLASH_VARLEN_FN", fake.flash_attn_varlen_func)
        monkeypatch.setattr(att, "FLASH_OP", "native")
        return fake

    yield install
    torch._dynamo.reset()


def _model(cfg: ModelConfig) -> GPT:
    torch.manual_seed(0)
    model = GPT(cfg)
    for p in model.parameters():  # non-zero projections, so attention matters
        p.data.add_(0.05 * torch.randn_like(p))
    return model


def _batch(cfg: ModelConfig, docs: bool):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(2, cfg.vocab_size, (1, 96), generator=g)
    if docs:
        x[0, [20, 21, 70]] = cfg.bos_id
    y = torch.roll(x, -1, dims=1)
    if not docs:
        return (x.view(2, 48), y.view(2, 48)), {}
    ids = packed_doc_ids(x, cfg.bos_id, 32)
    return (x, y), dict(doc_ids=ids, cu_seqlens=att.cu_seqlens_padded(ids, 8), max_seqlen=32)


def _loss_and_grads(model, args, kw):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(*args, **kw)
    loss.backward()
    return loss.detach().float(), {n.removeprefix("_orig_mod."): p.grad.float().clone()
                                   for n, p in model.named_parameters() if p.grad is not None}


def test_an_untraceable_build_breaks_fullgraph_natively(flash):
    """The crash of the issue: an extension dynamo cannot trace makes a fullgraph compile fail."""
    flash(traceable=False)
    cfg = ModelConfig(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, vocab_size=64)
    model = _model(cfg)
    (x, y), _ = _batch(cfg, docs=False)
    compiled = torch.compile(model, dynamic=False, fullgraph=True)
    with pytest.raises(Exception, match="(?i)disable|graph break|skip"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            compiled(x, y)


@pytest.mark.parametrize("docs", [False, True], ids=["dense", "varlen"])
def test_probe_wraps_an_untraceable_build_and_the_compiled_model_calls_it(flash, docs):
    fake = flash(traceable=False)
    line = choose_flash_op("auto", torch.device("cpu"))
    assert line.startswith("flash_attention_op:custom_op (probe: dense breaks the graph, varlen breaks the graph; "), line
    cfg = ModelConfig(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, vocab_size=64, bos_id=1)
    model = _model(cfg)
    cast_model_for_device(model, torch.device("cuda"), CONTROL_PATTERNS)  # the CUDA layout: bf16 with fp32 linears
    assert model.tok_emb.weight.dtype == torch.bfloat16 and model.blocks[0].attn.c_q.weight.dtype == torch.float32
    args, kw = _batch(cfg, docs)
    eager_loss, eager_grads = _loss_and_grads(model, args, kw)
    kind = "varlen" if docs else "dense"
    assert fake.calls[kind] == 2 * cfg.num_layers  # forward, and the backward's recomputed forward
    torch._dynamo.reset()
    assert torch._dynamo.explain(lambda *a: model(*a, **kw))(*args).graph_break_count == 0
    torch._dynamo.reset()
    before = dict(fake.calls)
    compiled = torch.compile(model, dynamic=False, fullgraph=True)
    loss, grads = _loss_and_grads(compiled, args, kw)
    assert fake.calls[kind] - before[kind] == 2 * cfg.num_layers  # the kernel ran inside the compiled graph
    assert fake.calls["varlen" if not docs else "dense"] == before["varlen" if not docs else "dense"]
    torch.testing.assert_close(loss, eager_loss, rtol=2e-2, atol=2e-2)
    assert grads.keys() == eager_grads.keys()
    for n, g in grads.items():
        cos = F.cosine_similarity(g.flatten(), eager_grads[n].flatten(), dim=0)
        assert cos > 0.99 or eager_grads[n].norm() < 1e-6, (n, float(cos))


def test_probe_keeps_a_traceable_build_native(flash):
    fake = flash(traceable=True)
    assert choose_flash_op("auto", torch.device("cpu")) == \
        "flash_attention_op:native (probe: dense traces, varlen traces)"
    assert att.FLASH_OP == "native"
    cfg = ModelConfig(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, vocab_size=64, bos_id=1)
    model = _model(cfg)
    compiled = torch.compile(model, dynamic=False, fullgraph=True)
    for docs, kind in ((False, "dense"), (True, "varlen")):
        args, kw = _batch(cfg, docs)
        before = fake.calls[kind]
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            compiled(*args, **kw)
        assert fake.calls[kind] - before == cfg.num_layers  # the registered kernel, called from the graph
    assert choose_flash_op("custom_op", torch.device("cpu")).startswith("flash_attention_op:custom_op (forced")
    with pytest.raises(ValueError, match="FLASH_ATTN_OP"):
        choose_flash_op("wrapped", torch.device("cpu"))


def test_custom_op_gradients_are_the_kernels(flash):
    """The wrapped op's backward (the forward recomputed and differentiated) equals autograd through the kernel."""
    fake = flash(traceable=False)
    att.FLASH_OP = "custom_op"
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 16, h, 8, generator=g, dtype=torch.bfloat16).requires_grad_(True) for h in (4, 2, 2))
    out = att.causal_attention(q, k, v)
    w = torch.randn(out.shape, generator=g, dtype=torch.bfloat16)
    grads = torch.autograd.grad((out.float() * w.float()).sum(), (q, k, v))
    q2, k2, v2 = (t.detach().requires_grad_(True) for t in (q, k, v))
    ref = fake._dense(q2, k2, v2)[0]
    torch.testing.assert_close(out, ref)
    ref_grads = torch.autograd.grad((ref.float() * w.float()).sum(), (q2, k2, v2))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_a_requested_backend_that_cannot_run_is_an_error(monkeypatch):
    """ATTENTION_BACKEND=fa3 on a machine without it (here: no CUDA, no module) stops before training, naming why;
    sdpa is always honoured, even where FlashAttention would be chosen."""
    monkeypatch.setattr(att, "REQUESTED_BACKEND", "auto")
    with pytest.raises(RuntimeError, match="ATTENTION_BACKEND=fa3 cannot run here: the FlashAttention module found is"):
        att.require_backend("fa3", torch.device("cpu"))
    monkeypatch.setattr(att, "FLASH_NAME", "fa3")
    monkeypatch.setattr(att, "FLASH_FN", lambda *a, **k: None)
    with pytest.raises(RuntimeError, match="the device is cpu, FlashAttention runs on CUDA only"):
        att.require_backend("fa3", torch.device("cpu"))
    monkeypatch.setattr(att, "FLASH_IMPORT_ERRORS", {"flash_attn": "ImportError: undefined symbol"})
    monkeypatch.setattr(att, "FLASH_NAME", None)
    with pytest.raises(RuntimeError, match=r"fa2 is installed but unusable \(ImportError: undefined symbol\)"):
        att.require_backend("fa2", torch.device("cuda"))
    assert att.require_backend("sdpa", torch.device("cuda")) == "sdpa" and att.REQUESTED_BACKEND == "sdpa"
    q = torch.zeros(1, 2, 1, 8)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    assert att.attention_backend(q.bfloat16()) == "sdpa"  # requested sdpa: FlashAttention is never chosen

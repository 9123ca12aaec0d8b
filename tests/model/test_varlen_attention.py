"""Document-isolated attention on the FlashAttention path, with an injected fake FlashAttention module (no GPU
here): #1855's padded ``cu_seqlens`` computed outside the graph, the varlen kernel called inside a compiled graph
(inductor on CPU), and the dense-mask fallback refused where it would be huge."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
import torch.nn.functional as F

from golflib.data.loaders import packed_doc_ids
from golflib.model import attention as att
from golflib.model.attention import Segments, _segment_sdpa, causal_attention, cu_seqlens_padded
from golflib.model.gpt import GPT
from golflib.settings.model import ModelConfig


def _record_cu_seqlens(bos_pos: list[int], total: int, max_doc_len: int, bucket: int) -> list[int]:
    """#1855's ``_build_cu_seqlens`` rule, written out independently: segments open at 0, at every BOS and every
    ``max_doc_len`` tokens from a document's start; boundaries padded with ``total`` to a multiple of ``bucket``."""
    opens = sorted(set([0] + bos_pos))
    starts = []
    for a, b in zip(opens, opens[1:] + [total]):
        starts.extend(range(a, b, max_doc_len) if max_doc_len else [a])
    bounds = starts + [total]
    return bounds + [total] * (-len(bounds) % bucket)


def _fake_varlen_op():
    """A fake varlen kernel registered as a custom op (as FlashAttention 3 registers its kernels), so a compiled
    graph can call it: per-segment causal SDPA on ``[total, H, D]``, empty trailing segments skipped."""
    name = "golflib_test::fake_varlen"
    try:
        return torch.ops.golflib_test.fake_varlen.default
    except (AttributeError, RuntimeError):
        pass

    @torch.library.custom_op(name, mutates_args=())
    def fake_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int) -> torch.Tensor:
        out = torch.zeros_like(q)
        bounds = [int(c) for c in cu.tolist()]
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                assert b - a <= max_len, (a, b, max_len)
                y = F.scaled_dot_product_attention(q[a:b].transpose(0, 1)[None], k[a:b].transpose(0, 1)[None],
                                                   v[a:b].transpose(0, 1)[None], is_causal=True,
                                                   enable_gqa=k.size(1) != q.size(1))
                out[a:b] = y[0].transpose(0, 1)
        return out

    @fake_varlen.register_fake
    def _(q, k, v, cu, max_len):
        return torch.empty_like(q)

    return fake_varlen


@pytest.fixture
def fake_flash(monkeypatch):
    """golflib's attention sees a FlashAttention 3 module: every call goes to the fake kernels."""
    op = _fake_varlen_op()
    calls = {"varlen": 0}

    def varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal=True):
        assert causal and cu_q is cu_k and max_q == max_k
        calls["varlen"] += 1
        return op(q, k, v, cu_q, max_q)

    def dense(q, k, v, causal=True):
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                                           enable_gqa=k.size(2) != q.size(2))
        return y.transpose(1, 2)

    monkeypatch.setattr(att, "attention_backend", lambda q: "fa3")
    monkeypatch.setattr(att, "FLASH_FN", dense)
    monkeypatch.setattr(att, "FLASH_VARLEN_FN", varlen)
    return calls


def test_padded_cu_seqlens_are_1855s():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(2, 50, (1, 300), generator=g)
    bos = [17, 18, 90, 211]  # two adjacent BOS: a one-token document
    x[0, bos] = 1
    for max_len, bucket in ((64, 64), (0, 64), (32, 8)):
        ids = packed_doc_ids(x, 1, max_len)
        cu = cu_seqlens_padded(ids, bucket)
        assert cu.dtype == torch.int32
        assert cu.tolist() == _record_cu_seqlens(bos, 300, max_len, bucket)
    # two rows: offsets are flat (row r starts at r·T)
    ids = torch.tensor([[0, 0, 1, 1, 1, 2], [3, 3, 3, 4, 4, 4]])
    assert cu_seqlens_padded(ids, 8).tolist() == [0, 2, 5, 6, 9, 12, 12, 12]
    with pytest.raises(ValueError, match="expected doc_ids"):
        cu_seqlens_padded(ids[0])


def test_varlen_path_matches_segment_sdpa(fake_flash):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(2, 50, (1, 200), generator=g)
    x[0, [40, 41, 150]] = 1
    ids = packed_doc_ids(x, 1, 48)
    q = torch.randn(1, 200, 4, 8, generator=g)
    k, v = torch.randn(1, 200, 2, 8, generator=g), torch.randn(1, 200, 2, 8, generator=g)
    want = _segment_sdpa(q, k, v, Segments(ids))
    eager = causal_attention(q, k, v, ids)  # boundaries derived eagerly, exact longest segment
    pre = causal_attention(q, k, v, Segments(ids, cu_seqlens_padded(ids), 48))  # the training step's form
    assert fake_flash["varlen"] == 2
    torch.testing.assert_close(eager, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pre, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="max_len > 0"):
        Segments(ids, cu_seqlens_padded(ids), 0)


def test_compiled_model_calls_varlen_with_precomputed_boundaries(fake_flash, monkeypatch):
    """A compiled GPT (fullgraph, inductor on CPU) with #1855's padded boundaries runs the varlen kernel inside the
    graph — no dense mask (its limit set to 0 would raise) — and matches the eager per-segment forward."""
    cfg = ModelConfig(num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, vocab_size=64)
    torch.manual_seed(0)
    model = GPT(cfg)
    for p in model.parameters():  # non-zero projections so attention matters
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.randint(2, 64, (1, 128))
    x[0, [30, 31, 100]] = 1
    y = torch.roll(x, -1, dims=1)
    ids = packed_doc_ids(x, 1, 32)
    with torch.no_grad():
        want = model(x, y, doc_ids=ids)  # eager varlen with derived boundaries
        monkeypatch.setattr(att, "DENSE_MASK_MAX_ELEMENTS", 0)
        compiled = torch.compile(model, dynamic=False, fullgraph=True)
        got = compiled(x, y, doc_ids=ids, cu_seqlens=cu_seqlens_padded(ids), max_seqlen=32)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # and it differs from attention across documents (the isolation is real)
    with torch.no_grad():
        assert abs(float(model(x, y)) - float(want)) > 1e-4


def test_dense_mask_refused_when_huge(monkeypatch):
    ids = torch.zeros(1, 64, dtype=torch.int64)
    monkeypatch.setattr(att, "DENSE_MASK_MAX_ELEMENTS", 64 * 64 - 1)
    with pytest.raises(ValueError, match=r"dense \[1, 1, 64, 64\] mask .*USE_COMPILE=0"):
        Segments(ids).mask
    monkeypatch.setattr(att, "DENSE_MASK_MAX_ELEMENTS", 64 * 64)
    assert Segments(ids).mask.shape == (1, 1, 64, 64)


def test_flash_dtype_follows_autocast_and_fp32_qk_reach_flash_in_bf16(monkeypatch):
    """From torch 2.12 autocast runs rms_norm in fp32, so QK-normed q/k are fp32 inside a bf16 region: the backend
    choice reads the autocast dtype, and the FlashAttention call gets half tensors (CPU autocast stands in for
    CUDA's here)."""
    q32 = torch.randn(1, 8, 2, 8)
    assert att.flash_dtype(q32) is None and att.flash_dtype(q32.bfloat16()) is torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert att.flash_dtype(q32) is torch.bfloat16
    seen = []

    def dense(q, k, v, causal=True):
        seen.append((q.dtype, k.dtype, v.dtype))
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              is_causal=True).transpose(1, 2)

    monkeypatch.setattr(att, "attention_backend", lambda q: "fa3")
    monkeypatch.setattr(att, "FLASH_FN", dense)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        att.causal_attention(q32, torch.randn(1, 8, 2, 8), torch.randn(1, 8, 2, 8).bfloat16())
    assert seen == [(torch.bfloat16,) * 3]


def test_a_broken_flash_install_is_reported_not_swallowed(monkeypatch, tmp_path):
    """An installed FlashAttention that fails to import (a wheel built for another CUDA or torch) is recorded
    and logged; one that is simply not installed is not an error; a working module is found."""
    errors: dict[str, str] = {}
    monkeypatch.setattr(att, "FLASH_IMPORT_ERRORS", errors)
    monkeypatch.syspath_prepend(str(tmp_path))
    for m in ("flash_attn_interface", "flash_attn"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    (tmp_path / "flash_attn_interface.py").write_text(
        "raise ImportError('libcudart.so.13: cannot open shared object file')\n")
    assert att._load_flash()[0] in (None, "fa2")
    assert "libcudart.so.13" in errors["flash_attn_interface"] and "flash_attn" not in errors
    monkeypatch.setattr(att, "FLASH_NAME", None)
    assert "flash_attention:none [flash_attn_interface unusable: ImportError: libcudart.so.13" in \
        att.describe_backends()
    sys.modules.pop("flash_attn_interface", None)
    (tmp_path / "flash_attn_interface.py").write_text("def flash_attn_func(*a, **k):\n    return 1\n"
                                                      "def flash_attn_varlen_func(*a, **k):\n    return 2\n")
    importlib.invalidate_caches()
    name, fn, varlen = att._load_flash()
    assert name == "fa3" and fn() == 1 and varlen() == 2
    sys.modules.pop("flash_attn_interface", None)

"""Clip rules against their formulas, and the STE fake-quant against the export path."""

import numpy as np
import pytest
import torch

from golflib.settings.quant import QuantConfig
from golflib.quant.clip import ClipRule, parse_clip_rule, row_importance, row_scales
from golflib.quant.fake_quant import fake_quant, quantize_dequantize
from golflib.quant.int8 import dequantize
from golflib.quant.intn import check_bits, dequantize_rows, qmax, quantize_rows
from golflib.quant.mixed import quantize_mixed


def heavy_rows(rows=48, cols=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * torch.linspace(0.002, 0.2, rows)[:, None]
    w[3, 7] = 1.5  # an outlier
    return w


@pytest.mark.parametrize("bits", [2, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("k", [3.0, 12.85, 20.0])
def test_sdclip_scale_is_k_sigma_over_qmax(bits, k):
    w = heavy_rows()
    s = row_scales(w, bits, f"sdclip:{k}")
    sigma = np.std(w.numpy().astype(np.float64), axis=1, ddof=1)
    expect = (k * sigma / (2 ** (bits - 1) - 1)).astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(s.numpy(), expect, rtol=1e-3)  # fp16 storage; rtol covers fp32 vs fp64 std
    q = quantize_rows(w, s, bits)
    assert int(q.abs().max()) <= qmax(bits) == 2 ** (bits - 1) - 1


def test_hessian_sdclip_formula():
    w = heavy_rows()
    h_diag = torch.linspace(0.5, 3.0, w.shape[1])
    lam, k, bits = 0.175, 12.85, 6
    s = row_scales(w, bits, f"hsdclip:{k}:{lam}", h_diag=h_diag)
    wn, d = w.numpy().astype(np.float64), h_diag.numpy().astype(np.float64)
    d = d / d.mean()
    r = (np.abs(wn) * d[None, :]).mean(axis=1)
    r = r / r.mean()
    expect = k * np.std(wn, axis=1, ddof=1) * (1 + lam * (r - 1)) / 31
    np.testing.assert_allclose(s.numpy(), expect.astype(np.float16).astype(np.float32), rtol=1e-3)
    np.testing.assert_allclose(row_importance(w, h_diag).numpy(), r, rtol=1e-5)
    with pytest.raises(ValueError, match="needs the Hessian"):
        row_scales(w, bits, "hsdclip:12.85:0.175")


def test_percentile_absmax_search_and_floor():
    w = heavy_rows()
    s_abs = row_scales(w, 8, "absmax")
    np.testing.assert_allclose(s_abs.numpy(), (w.abs().amax(1) / 127).half().float().numpy())
    s_p = row_scales(w, 8, "percentile:99.9")
    assert (s_p <= s_abs).all() and s_p[3] < s_abs[3]  # the outlier row is clipped
    s_row = row_scales(w, 4, "search_row")
    s_tensor = row_scales(w, 4, "search")
    mse = lambda s: ((dequantize_rows(quantize_rows(w, s, 4), s) - w) ** 2).sum(1)  # noqa: E731
    for p in (0.999, 0.9999, 1.0):  # the row search is never worse than any of its candidates, row by row
        cand = row_scales(w, 4, "absmax") if p == 1.0 else _finish_quantile(w, p, 4)
        assert (mse(s_row) <= mse(cand) + 1e-9).all()
        assert mse(s_tensor).sum() <= mse(cand).sum() + 1e-9  # the tensor search over the whole matrix
    assert (mse(s_row) <= mse(s_tensor) + 1e-9).all()
    tiny = torch.randn(4, 50) * 1e-3
    assert torch.allclose(row_scales(tiny, 6, "sdclip:12.85", legacy_floor=True), torch.full((4,), 1 / 31), rtol=1e-3)
    assert (row_scales(tiny, 6, "sdclip:12.85") < 1e-3).all()
    zero = row_scales(torch.zeros(2, 8), 6, "sdclip:12.85")
    assert (zero > 0).all() and (quantize_rows(torch.zeros(2, 8), zero, 6) == 0).all()


def _finish_quantile(w, p, bits):
    return (torch.quantile(w.abs(), p, dim=1) / qmax(bits)).half().float()


def test_parse_clip_rule_and_bits_errors():
    assert parse_clip_rule("sdclip:12.85") == ClipRule("sdclip", k=12.85)
    assert parse_clip_rule("hsdclip:13:0.3").spec == "hsdclip:13:0.3"
    assert parse_clip_rule("percentile:99.99984").spec == "percentile:99.99984"
    for bad in ("sdclip", "sdclip:-1", "hsdclip:12:2", "percentile:0", "median", "absmax:3"):
        with pytest.raises(ValueError, match="clip rule"):
            parse_clip_rule(bad)
    for bad in (1, 9, 6.0, True):
        with pytest.raises(ValueError, match="bits"):
            check_bits(bad)


@pytest.mark.parametrize("bits,clip", [(6, "sdclip:12.85"), (4, "sdclip:5"), (8, "percentile:99.99984"),
                                       (5, "search")])
def test_fake_quant_equals_export_round_trip_and_is_straight_through(bits, clip):
    w = heavy_rows().requires_grad_(True)
    out = fake_quant(w, bits, clip)
    # the export path: quantize_mixed (round-to-nearest, no GPTQ) then dequantize, as loaded from an artifact
    cfg = QuantConfig(matrix_bits=bits, quant_clip_rule=clip.split(":")[0], gptq_enabled=False,
                      matrix_clip_sigmas=float(clip.split(":")[1]) if clip.startswith("sdclip") else 12.85,
                      int8_clip_percentile=99.99984, keep_float_max_numel=0)
    exported = dequantize(quantize_mixed({"blocks.0.extra.weight": w.detach()}, cfg))["blocks.0.extra.weight"]
    assert torch.equal(out.detach(), exported)
    assert torch.equal(out.detach(), quantize_dequantize(w, bits, clip))
    (out * torch.arange(w.numel()).reshape(w.shape)).sum().backward()
    assert torch.equal(w.grad, torch.arange(w.numel(), dtype=torch.float32).reshape(w.shape))  # identity gradient


def test_fake_quant_compiles_and_rejects_bad_input():
    w = heavy_rows(8, 32)
    compiled = torch.compile(lambda x: fake_quant(x, 6, "sdclip:12.85"), backend="eager", fullgraph=True)
    assert torch.equal(compiled(w), fake_quant(w, 6))
    with pytest.raises(ValueError, match="2-D"):
        fake_quant(torch.randn(3), 6)
    with pytest.raises(ValueError, match="needs a Hessian"):
        fake_quant(w, 6, "hsdclip:12:0.1")


def test_mixed_classes_bits_and_per_tensor_vectors():
    torch.manual_seed(0)
    sd = {"tok_emb.weight": torch.randn(64, 32), "blocks.0.attn.c_q.weight": torch.randn(32, 32),
          "blocks.0.mlp.fc.weight": torch.randn(64, 32), "blocks.0.attn_scale": torch.randn(32),
          "blocks.0.attn_gate_w": torch.randn(4, 32), "big_vector": torch.randn(70_000), "small_vector": torch.randn(8)}
    cfg = QuantConfig(gptq_enabled=False, attn_bits=5, mlp_bits=4, embed_bits=7, mlp_clip_sigmas=9.0,
                      gated_attn_quant_gate=True, keep_float_max_numel=100)
    qs = quantize_mixed(sd, cfg)
    meta = qs.meta["tensors"]
    got = {n: (e["kind"], e.get("bits"), e.get("clip"), e["class"]) for n, e in meta.items()}
    assert got == {"tok_emb.weight": ("per_row", 7, "sdclip:20", "embedding"),
                   "blocks.0.attn.c_q.weight": ("per_row", 5, "sdclip:12.85", "attention"),
                   "blocks.0.mlp.fc.weight": ("per_row", 4, "sdclip:9", "mlp"),
                   "blocks.0.attn_scale": ("passthrough", 16, None, "control"),
                   "blocks.0.attn_gate_w": ("per_row", 8, "absmax", "gate"),
                   "big_vector": ("per_tensor", 8, "percentile:99.99984", "vector"),
                   "small_vector": ("passthrough", 16, None, "vector")}
    deq = dequantize(qs)
    s = float(qs.tensors["big_vector.scale"].float())
    inside = sd["big_vector"].abs() <= 127 * s
    assert ((deq["big_vector"] - sd["big_vector"]).abs()[inside] <= s / 2 + 1e-6).all()
    assert torch.equal(deq["blocks.0.attn_scale"], sd["blocks.0.attn_scale"].half().float())
    g = sd["blocks.0.attn_gate_w"]
    assert torch.allclose(qs.tensors["blocks.0.attn_gate_w.scale"].float(), (g.abs().amax(1) / 127).half().float())


def test_gptq_reserve_applies_only_to_train_data_calibration():
    from golflib.config import Config
    from golflib.quant.reserve import reserve_ms

    base = Config().replace({"MAX_WALLCLOCK_SECONDS": 600, "GPTQ_RESERVE_SECONDS": 4})
    assert reserve_ms(base) == 0.0  # no mixed export
    assert reserve_ms(base.replace({"MIXED_EXPORT": 1})) == 4000.0
    assert reserve_ms(base.replace({"MIXED_EXPORT": 1, "GPTQ_CALIBRATION": "ar"})) == 0.0
    assert reserve_ms(base.replace({"MIXED_EXPORT": 1, "GPTQ_ENABLED": 0})) == 0.0
    with pytest.raises(ValueError, match="leaves no training time"):
        reserve_ms(base.replace({"MIXED_EXPORT": 1, "MAX_WALLCLOCK_SECONDS": 3}))

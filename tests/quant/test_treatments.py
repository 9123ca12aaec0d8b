"""Treatments of the mixed export (size rule, gates, overrides, rounding, floors), the records' codecs, the late-QAT
quantizer, calibration inputs and the new config fields — against hand computations and formulas."""

import lzma

import numpy as np
import pytest
import torch

from golflib.config import Config
from golflib.quant.calib import HessianCollector, add_damping, ar_calibration_inputs, collect_hessians, train_batches
from golflib.quant.classes import parse_override, treatment_for
from golflib.quant.clip import search_candidates, search_tensor
from golflib.quant.codecs import bshf_shuffle, bshf_unshuffle, compress, decompress, parse_codec
from golflib.quant.fake_quant import fake_quant, rowmax_floor_quantize, set_late_qat
from golflib.quant.gptq import gptq_quantize, gptq_quantize_grid
from golflib.quant.int8 import dequantize
from golflib.quant.mixed import config_from_meta, quantize_mixed
from golflib.quant.rowquant import fp32_scale_rows, quantize_matrix
from golflib.settings.base import ConfigError
from golflib.settings.quant import QuantConfig


def kinds(sd, cfg):
    return {n: (p.kind, p.bits, p.store) for n, t in sd.items() for _, p in [treatment_for(n, t, cfg)]}


def test_small_tensors_pass_through_whatever_their_class():
    sd = {"bigram.proj.weight": torch.randn(512, 128), "big.proj.weight": torch.randn(65_537, 1),
          "blocks.0.attn.c_q.weight": torch.randn(256, 256), "tok_emb.weight": torch.randn(1024, 64),
          "blocks.0.resid_mix": torch.randn(2, 512), "blocks.0.big_ctrl.resid_mix": torch.randn(70_000),
          "ids": torch.arange(5)}
    got = kinds(sd, QuantConfig())
    assert got["bigram.proj.weight"] == ("passthrough", 0, "float16")  # exactly 65,536 (#287, #414: fp16)
    assert got["big.proj.weight"][0] == "per_row" and got["blocks.0.attn.c_q.weight"] == ("passthrough", 0, "float16")
    assert got["tok_emb.weight"] == ("passthrough", 0, "float16")  # 65,536 at width 64: scale the threshold
    assert got["blocks.0.resid_mix"] == ("passthrough", 0, "float16")
    assert got["blocks.0.big_ctrl.resid_mix"] == ("passthrough", 0, "float32")  # large control: the records' fp32
    assert got["ids"] == ("passthrough", 0, "keep")
    assert kinds(sd, QuantConfig(keep_float_max_numel=4096))["tok_emb.weight"] == ("per_row", 8, "keep")


def test_gate_int8_only_between_32_and_8192_elements():
    cfg = QuantConfig(gated_attn_quant_gate=True, keep_float_max_numel=65_536)
    sd = {"blocks.0.attn.gate.attn_gate_w": torch.randn(8, 12), "blocks.1.attn.gate.attn_gate_w": torch.randn(8, 512),
          "blocks.2.attn.gate.attn_gate_w": torch.randn(2, 12), "blocks.3.attn.gate.attn_gate_w": torch.randn(8, 2048),
          "blocks.0.attn.gate.attn_gate_b": torch.randn(8)}
    got = kinds(sd, cfg)
    assert got["blocks.0.attn.gate.attn_gate_w"] == got["blocks.1.attn.gate.attn_gate_w"] == ("per_row", 8, "keep")
    assert got["blocks.2.attn.gate.attn_gate_w"] == ("passthrough", 0, "float16")  # 24 < 32
    assert got["blocks.3.attn.gate.attn_gate_w"] == ("passthrough", 0, "float16")  # 16,384 > 8,192: size rule
    assert got["blocks.0.attn.gate.attn_gate_b"] == ("passthrough", 0, "float16")
    assert kinds(sd, QuantConfig())["blocks.0.attn.gate.attn_gate_w"] == ("passthrough", 0, "float16")


def test_overrides_apply_after_the_size_rule_first_match_wins():
    cfg = QuantConfig(keep_float_max_numel=100, quant_overrides=("blocks.2.attn.c_k=fp16", ".attn.=int5:absmax+floor",
                                                                 "tok_emb=int6:percentile:99.9+fp32", "q_gain=int4"))
    sd = {"blocks.2.attn.c_k.weight": torch.randn(32, 64), "blocks.1.attn.c_k.weight": torch.randn(32, 64),
          "tok_emb.weight": torch.randn(64, 32), "blocks.0.attn.q_gain": torch.randn(8),
          "blocks.0.mlp.fc.weight": torch.randn(64, 32)}
    pols = {n: treatment_for(n, t, cfg)[1] for n, t in sd.items()}
    assert pols["blocks.2.attn.c_k.weight"].kind == "passthrough"
    p = pols["blocks.1.attn.c_k.weight"]
    assert (p.bits, p.clip, p.floor, p.rounding) == (5, "absmax", 1 / 15, "fp16")
    p = pols["tok_emb.weight"]
    assert (p.bits, p.clip, p.rounding, p.gptq) == (6, "percentile:99.9", "fp32", False)
    assert pols["blocks.0.attn.q_gain"].kind == "passthrough"  # 8 elements: the size rule comes first
    p = pols["blocks.0.mlp.fc.weight"]
    assert (p.bits, p.clip, p.floor) == (6, "sdclip:12.85", 2.0 ** -24)  # no match: the class policy
    assert parse_override("x=int8+floor=6.1e-05+nogptq") == ("x", {"kind": "per_row", "bits": 8, "floor": 6.1e-05,
                                                                   "gptq": False})
    for bad in ("x", "x=int9", "x=int6:median", "x=int6+round"):
        with pytest.raises(ValueError, match="QUANT_OVERRIDES"):
            parse_override(bad)


def test_fp32_rounding_clips_values_and_rounds_on_the_fp32_scale():
    # one row whose clip c = 0.5 is under the 1/127 floor: values clipped at 0.5, codes round(w·127) from 1/127
    w = torch.tensor([[0.9, 0.5, 0.2, -0.7, 0.003], [2.0, -1.0, 0.5, 0.25, -2.54]])
    q, s = fp32_scale_rows(w, torch.tensor([0.5, 2.54]), 8, 1 / 127)
    assert q[0].tolist() == [64, 64, 25, -64, 0]  # 0.5·127 = 63.5 -> 64 (half to even), 0.2·127 = 25.4
    assert q[1].tolist() == [100, -50, 25, 12, -127]  # 2.54/127 = 0.02: 2.0/0.02 = 100, 0.25/0.02 = 12.5 -> 12
    assert s.tolist() == [float(np.float16(1 / 127)), float(np.float16(np.float32(2.54) / np.float32(127)))]
    q16, s16, _ = quantize_matrix(w, 8, "percentile:100", floor=1 / 127, rounding="fp16")
    assert q16[0].tolist() == [114, 64, 25, -89, 0]  # fp16 rounding, no value clip: 0.9·127 = 114.3 at the floor
    with pytest.raises(ValueError, match="fp32 rounding"):
        quantize_matrix(w, 8, "search", floor=1 / 127, rounding="fp32")


def test_tensor_search_ties_keep_the_first_candidate():
    w = torch.full((3, 10), 0.1)  # every candidate clip is 0.1: equal MSE, the first (0.999) wins
    idx, s = search_tensor(w, 6)
    assert idx == 0 and torch.equal(s, search_candidates(w, 6)[0])
    w = torch.randn(16, 200, generator=torch.Generator().manual_seed(0))
    w[0, 0] = 40.0  # one huge outlier: clipping it (a low quantile) is best for the whole tensor
    idx, _ = search_tensor(w, 4)
    assert idx < 4


def test_gptq_grid_with_row_scales_equals_gptq():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 48, generator=g)
    h, w = x.T @ x, torch.randn(16, 48, generator=g) * 0.1
    s = (w.abs().amax(1) / 7).half().float()
    assert torch.equal(gptq_quantize_grid(w, h, s[:, None].expand_as(w), (-7, 7)), gptq_quantize(w, h, s, 4))
    q = gptq_quantize_grid(w, h, s[:, None].expand_as(w), (-8, 7))
    assert int(q.min()) >= -8 and int(q.max()) <= 7


def test_bshf_is_the_records_framing():
    data = bytes(range(7))
    assert bshf_shuffle(data, 2) == b"BSHF\x02" + bytes([0, 2, 4, 6, 1, 3, 5])  # the tail byte stays in its class
    assert bshf_shuffle(b"a", 2) == b"a" and bshf_unshuffle(b"a") == b"a"
    for n in (0, 1, 2, 7, 1000, 1001):
        raw = bytes(np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8))
        for codec in ("brotli+bshf2", "lzma6+bshf3", "zstd+bshf8", "lzma9", "brotli24", "lzma9e"):
            assert decompress(compress(raw, codec), codec) == raw
    raw = b"golf" * 999
    assert compress(raw, "lzma9") == lzma.compress(raw, preset=9)
    assert compress(raw, "lzma6") == lzma.compress(raw, preset=6)
    assert compress(raw, "lzma") == compress(raw, "lzma9e") == lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)
    assert parse_codec("brotli+bshf2") == ("brotli", -2) and parse_codec("zstd+shuffle4") == ("zstd", 4)


def test_rowmax_floor_fake_quant_is_the_records_late_qat():
    w = torch.tensor([[0.5, -0.02, 0.01, 0.3], [3.1, -1.0, 0.05, 0.0]], requires_grad=True)
    out = fake_quant(w, 6, "rowmax_floor")
    # row 0: max 0.5 < 1 -> scale 1/31 (floor); row 1: 3.1/31 = 0.1
    exp0 = torch.clamp(torch.round(torch.tensor([0.5, -0.02, 0.01, 0.3]) * 31), -32, 31) / 31
    assert torch.allclose(out[0].detach(), exp0, atol=0) or torch.equal(out[0].detach(), exp0)
    s1 = torch.tensor(3.1) / 31
    assert torch.equal(out[1].detach(), torch.clamp(torch.round(w[1].detach() / s1), -32, 31) * s1)
    assert torch.equal(rowmax_floor_quantize(w, 6), out.detach())
    out.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight through

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            from golflib.model.layers import CastedLinear
            self.a = CastedLinear(4, 3, bias=False)

    m = M()
    assert set_late_qat(m, 6, "rowmax_floor") == 1
    assert torch.equal(m.a.qat_fn(m.a.weight), rowmax_floor_quantize(m.a.weight, 6))


def test_hessians_divide_by_batches_and_ar_inputs_drop_the_last_token():
    lin = torch.nn.Linear(4, 4, bias=False)
    x = torch.randn(10, 4)
    with HessianCollector(torch.nn.Sequential(lin)) as col, torch.no_grad():
        lin(x[:6])
        lin(x[6:])
    assert torch.allclose(col.hessians(divisor=2)["0.weight"], x.T @ x / 2)
    assert torch.allclose(col.hessians()["0.weight"], x.T @ x / 10)
    h = torch.diag(torch.tensor([2.0, 0.0, 4.0]))
    assert torch.equal(add_damping(h, 0.01), h + 0.02 * torch.eye(3)) and add_damping(h, 0.0) is h
    assert torch.equal(add_damping(torch.zeros(2, 2), 0.01), 1e-8 * torch.eye(2))


def test_ar_calibration_inputs_are_generated_before_the_hooks(tiny_cfg):
    from golflib.model.gpt import GPT

    model = GPT(tiny_cfg.model)
    seqs = ar_calibration_inputs(model, 3, 9, batch_seqs=2, seed=1)
    assert [tuple(s.shape) for s in seqs] == [(1, 8)] * 3
    hs, stats = collect_hessians(model, seqs)
    assert stats["batches"] == 3 and stats["tokens"] == 24
    hs2, _ = collect_hessians(model, [s.clone() for s in seqs])  # the same inputs, materialized: the same H
    assert all(torch.equal(hs[k], hs2[k]) for k in hs)
    hs3, _ = collect_hessians(model, seqs, head=False)
    assert "tok_emb.weight" in hs and "tok_emb.weight" not in hs3


def test_train_batches_can_drop_document_ids():
    class Packed:
        def next_batch(self, tokens, seq_len, accum):
            x = torch.arange(8).reshape(1, 8)
            return x, x, torch.zeros_like(x)

    assert isinstance(next(train_batches(Packed(), 1, 8, 8)), tuple)
    assert isinstance(next(train_batches(Packed(), 1, 8, 8, doc_ids=False)), torch.Tensor)


def test_new_fields_validate_and_round_trip_through_the_artifact_metadata():
    for bad, match in ((dict(embed_clip_rule="median"), "EMBED_CLIP_RULE"),
                       (dict(embed_scale_rounding="bf16"), "EMBED_SCALE_ROUNDING"),
                       (dict(embed_scale_rounding="fp32", embed_clip_rule="search"), "EMBED_SCALE_ROUNDING"),
                       (dict(quant_overrides=("tok_emb",)), "QUANT_OVERRIDES"),
                       (dict(prune_rule="all"), "PRUNE_RULE"), (dict(prune_magnitude_frac=1.0), "PRUNE_MAGNITUDE_FRAC"),
                       (dict(gptq_calib_loader="val"), "GPTQ_CALIB_LOADER"), (dict(lqer_factors="svd"), "LQER_FACTORS"),
                       (dict(gptq_hessian_damp=-0.1), "GPTQ_HESSIAN_DAMP"), (dict(mixed_codec="lzma7"), "MIXED_CODEC"),
                       (dict(quant_clip_rule="search_col"), "QUANT_CLIP_RULE")):
        with pytest.raises(ConfigError, match=match):
            QuantConfig(**bad)
    cfg = Config().replace({"QUANT_OVERRIDES": "tok_emb=fp16,ve_shared.embed=int8:percentile:99.99984+floor+fp32",
                            "MIXED_CODEC": "brotli+bshf2", "KEEP_FLOAT_MAX_NUMEL": 16})
    q = cfg.quant
    assert q.quant_overrides == ("tok_emb=fp16", "ve_shared.embed=int8:percentile:99.99984+floor+fp32")
    qs = quantize_mixed({"tok_emb.weight": torch.randn(8, 8), "ve_shared.embed.weight": torch.randn(8, 4)}, q)
    assert config_from_meta(qs.meta, QuantConfig(mixed_codec="brotli+bshf2")) == q  # the codec is stored apart
    assert qs.meta["tensors"]["tok_emb.weight"]["kind"] == "passthrough"
    deq = dequantize(qs)["ve_shared.embed.weight"]
    assert deq.shape == (8, 4) and qs.meta["tensors"]["ve_shared.embed.weight"]["rounding"] == "fp32"


def test_calibration_loader_dense_and_rank_local_options(tiny_cfg):
    from golflib.data.loaders import make_loader
    from golflib.model.gpt import GPT
    from golflib.quant.posttrain import calibrate

    torch.manual_seed(0)
    model = GPT(tiny_cfg.model)
    base = {"MIXED_EXPORT": 1, "GPTQ_CALIBRATION_BATCHES": 2, "TRAIN_LOADER": "packed"}
    tc = tiny_cfg.train

    def run(**kw):
        cfg = tiny_cfg.replace({**base, **kw})
        new = lambda: make_loader(cfg.train.train_loader, cfg.data.train_glob, 0, 1, "cpu",  # noqa: E731
                                  cfg.model.vocab_size, bos_id=cfg.model.bos_id)
        return calibrate(cfg, model, new_loader=new, accum=1, device=torch.device("cpu"), distributed=False,
                         train_ms=0.0, log=lambda s: None)

    packed, st = run()
    dense, _ = run(GPTQ_CALIB_DENSE=1)
    shuffled, _ = run(GPTQ_CALIB_LOADER="shuffled", GPTQ_HESSIAN_ALLREDUCE=0, EMBED_GPTQ=0, GPTQ_HESSIAN_DAMP=0.01)
    assert st["hessians"] == "rank-local" and st["batches"] == 2
    name = "blocks.1.attn.proj.weight"  # attention output: depends on the document mask
    assert not torch.equal(packed[name], dense[name])
    ref, _ = collect_hessians(model, train_batches(make_loader("shuffled", tiny_cfg.data.train_glob, 0, 1, "cpu",
                                                               tiny_cfg.model.vocab_size), 2,
                                                   tc.train_batch_tokens, tc.train_seq_len), head=False)
    assert set(shuffled) == set(ref) and "tok_emb.weight" not in shuffled
    assert all(torch.equal(shuffled[k], add_damping(ref[k], 0.01)) for k in ref)

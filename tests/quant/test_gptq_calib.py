"""GPTQ, calibration hooks and LQER on a briefly trained tiny model and real activations of the embedded corpus."""

import pytest
import torch
from safetensors.torch import load_file

from golflib.workbook.resultfile import load_run_result
from golflib.config import Config
from golflib.data.loader import DistributedTokenLoader
from golflib.model.gpt import GPT
from golflib.model.layers import CastedLinear
from golflib.quant.calib import HessianCollector, ar_batches, collect_hessians, train_batches
from golflib.quant.clip import row_scales
from golflib.quant.gptq import gptq_quantize, output_error
from golflib.quant.intn import dequantize_rows, quantize_rows
from golflib.quant.lqer import pack_factors, unpack_factors

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(quant_run):
    cfg = Config.from_json_file(quant_run / "config.json")
    model = GPT(cfg.model)
    model.load_state_dict(load_file(str(quant_run / "final_model.safetensors")))
    loader = DistributedTokenLoader(cfg.data.train_glob, 0, 1, "cpu", cfg.model.vocab_size)
    hs, stats = collect_hessians(model, train_batches(loader, 8, 1024, cfg.train.train_seq_len))
    return model, cfg, hs, stats


def test_hessians_cover_every_linear_and_the_tied_head(trained):
    model, cfg, hs, stats = trained
    linears = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, CastedLinear)}
    assert linears <= set(hs) and "tok_emb.weight" in hs
    assert stats["batches"] == 8 and stats["tokens"] == 8 * 1024
    for name, h in hs.items():
        d = model.state_dict()[name].shape[1]
        assert h.shape == (d, d) and torch.allclose(h, h.T, atol=1e-4)
        assert torch.linalg.eigvalsh(h.double()).min() > -1e-4  # PSD


@pytest.mark.parametrize("bits", [4, 6])
def test_gptq_lowers_layer_output_error_vs_round_to_nearest(trained, bits):
    model, cfg, hs, _ = trained
    sd = model.state_dict()
    total_gptq = total_rtn = 0.0
    for name, h in hs.items():
        w = sd[name].float()
        s = row_scales(w, bits, "sdclip:12.85")
        e_rtn = output_error(w, dequantize_rows(quantize_rows(w, s, bits), s), h)
        e_gptq = output_error(w, dequantize_rows(gptq_quantize(w, h, s, bits), s), h)
        assert e_gptq < e_rtn, (name, e_gptq, e_rtn)
        total_gptq, total_rtn = total_gptq + e_gptq, total_rtn + e_rtn
    assert total_gptq < 0.9 * total_rtn


def test_gptq_error_measured_on_the_activations_themselves(trained):
    """Independent check: capture the inputs of one projection and compare ‖X(W−Ŵ)ᵀ‖² directly."""
    model, cfg, hs, _ = trained
    name = "blocks.1.mlp.proj.weight"
    captured = []
    handle = model.blocks[1].mlp.proj.register_forward_hook(
        lambda m, a, o: captured.append(a[0].reshape(-1, a[0].shape[-1])))
    loader = DistributedTokenLoader(cfg.data.train_glob, 0, 1, "cpu", cfg.model.vocab_size)
    with torch.no_grad():
        for x in train_batches(loader, 8, 1024, cfg.train.train_seq_len):
            model.hidden(x)
    handle.remove()
    X = torch.cat(captured).double()
    w = model.state_dict()[name].float()
    s = row_scales(w, 4, "sdclip:12.85")
    err = lambda wq: float(((X @ (w.double() - wq.double()).T) ** 2).sum())  # noqa: E731
    e_rtn = err(dequantize_rows(quantize_rows(w, s, 4), s))
    e_gptq = err(dequantize_rows(gptq_quantize(w, hs[name], s, 4), s))
    assert e_gptq < e_rtn
    # H = Σ XᵀX / n_batches (the records' normalization): output_error is the squared output error per batch
    assert e_gptq / 8 == pytest.approx(output_error(w, dequantize_rows(gptq_quantize(w, hs[name], s, 4), s),
                                                    hs[name]), rel=1e-3)


def test_gptq_on_tied_embedding_uses_final_norm_output(trained):
    model, _, hs, _ = trained
    w = model.tok_emb.weight.detach().float()
    h = hs["tok_emb.weight"]
    assert h.shape == (w.shape[1], w.shape[1])
    s = row_scales(w, 6, "sdclip:20")
    assert output_error(w, dequantize_rows(gptq_quantize(w, h, s, 6), s), h) < \
        output_error(w, dequantize_rows(quantize_rows(w, s, 6), s), h)


def test_gptq_dead_columns_and_options():
    torch.manual_seed(0)
    x = torch.randn(500, 16)
    x[:, 3] = 0  # a dead input
    h = x.T @ x / 500
    w = torch.randn(8, 16)
    s = row_scales(w, 4, "sdclip:6")
    for act_order in (True, False):
        for block in (1, 5, 128):
            q = gptq_quantize(w, h, s, 4, block_size=block, act_order=act_order)
            assert q.dtype == torch.int8 and int(q.abs().max()) <= 7
            assert (q[:, 3] == 0).all()
            assert output_error(w, dequantize_rows(q, s), h) <= output_error(w, dequantize_rows(
                quantize_rows(w, s, 4), s), h) + 1e-9
    with pytest.raises(ValueError, match="GPTQ shapes"):
        gptq_quantize(w, h[:5, :5], s, 4)


def test_hooks_accumulate_every_call_of_a_reused_module():
    """Depth recurrence: one physical module called twice per forward contributes both inputs."""
    lin = CastedLinear(4, 4, bias=False)

    class Looped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = lin

        def forward(self, x):
            return self.block(self.block(x))

    m = Looped()
    x = torch.randn(10, 4)
    with HessianCollector(m) as col, torch.no_grad():
        m(x)
    y = lin(x).detach()
    assert col.counts["block.weight"] == 20
    torch.testing.assert_close(col.hessians()["block.weight"], (x.T @ x + y.T @ y) / 20)


def test_ar_self_generated_calibration_is_seeded(trained):
    model = trained[0]
    a = list(ar_batches(model, 3, 12, batch_seqs=2, seed=5))
    b = list(ar_batches(model, 3, 12, batch_seqs=2, seed=5))
    assert [t.shape for t in a] == [(2, 12), (1, 12)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert int(torch.cat(a).max()) < model.cfg.vocab_size
    hs, stats = collect_hessians(model, iter(a))
    assert stats["tokens"] == 36 and "tok_emb.weight" in hs


@pytest.mark.parametrize("asym", [True, False])
def test_lqer_reconstruction_error_below_plain_gptq(trained, asym):
    model, _, hs, _ = trained
    sd = model.state_dict()
    err_lqer = err_gptq = 0.0
    for name in ("blocks.0.mlp.fc.weight", "blocks.1.attn.c_q.weight", "tok_emb.weight"):
        w = sd[name].float()
        s = row_scales(w, 4, "sdclip:12.85")
        w_gptq = dequantize_rows(gptq_quantize(w, hs[name], s, 4), s)
        e = w - w_gptq
        t = pack_factors(e, 4, asym=asym, group=64, bits=4)
        if asym:
            assert t["a.q"].min() >= -2 and t["a.q"].max() <= 1 and t["a.scale"].numel() == 1
            assert t["b.q"].min() >= -8 and t["b.q"].max() <= 7
            assert t["b.scale"].numel() == -(-t["b.q"].numel() // 64)
        w_lqer = w_gptq + unpack_factors(t, asym=asym, group=64)
        e_lqer, e_gptq = float(torch.linalg.matrix_norm(w - w_lqer)), float(torch.linalg.matrix_norm(w - w_gptq))
        # with asymmetric int2 A (one scale) the rank-4 correction of a matrix can be worth ~nothing (seen:
        # blocks.1.attn.c_q 13.0319 both ways in one clean-clone run): never worse, better in total
        assert e_lqer <= e_gptq * (1 + 1e-4), (name, e_lqer, e_gptq)
        err_lqer, err_gptq = err_lqer + e_lqer, err_gptq + e_gptq
        # activation-aware variant (L²QER): lower layer-output error than GPTQ alone
        t2 = pack_factors(e, 4, asym=asym, group=64, bits=4, hessian=hs[name])
        w_l2 = w_gptq + unpack_factors(t2, asym=asym, group=64)
        assert output_error(w, w_l2, hs[name]) < output_error(w, w_gptq, hs[name]), name
    assert err_lqer < err_gptq * 0.999, (err_lqer, err_gptq)


def test_run_logged_calibration_inside_training_budget(quant_run):
    log = (quant_run / "train.log").read_text()
    assert "gptq:reserving 1000ms for train-data calibration, effective cap 299000ms" in log
    line = next(ln for ln in log.splitlines() if ln.startswith("gptq:calibration source:train"))
    assert "batches:8" in line and "within_budget:True" in line
    res = load_run_result(quant_run)
    cal = res.extras["calibration"]
    assert cal["train_data_last_read_ms"] <= 300_000 and cal["within_budget"] is True
    assert cal["train_data_last_read_ms"] >= res.timings.train_time_ms

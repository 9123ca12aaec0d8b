"""Late QAT provably changes the training forward pass once enabled — eager and under torch.compile (SPEC B3, trap
2) — and, as in the records (#414 → #1019 check ``self.training``), never the evaluation forward."""

import pytest
import torch

from golflib.settings.model import ModelConfig
from golflib.model.gpt import GPT
from golflib.model.layers import CastedLinear


def round_to_grid(w):
    """A coarse STE quantizer standing in for any fake-quant function."""
    q = torch.round(w * 4) / 4
    return w + (q - w).detach()


def set_qat(model, fn):
    for m in model.modules():
        if isinstance(m, CastedLinear):
            m.qat_fn = fn


def tiny():
    torch.manual_seed(0)
    m = GPT(ModelConfig(num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, vocab_size=64))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return m


def test_qat_changes_eager_forward_and_keeps_gradients():
    m = tiny()
    ids = torch.randint(0, 64, (2, 8))
    before = m(ids, ids)
    set_qat(m, round_to_grid)
    after = m(ids, ids)
    assert not torch.allclose(before, after)
    after.backward()
    assert m.blocks[0].attn.c_q.weight.grad.abs().sum() > 0  # straight-through: gradients still flow
    set_qat(m, None)
    torch.testing.assert_close(m(ids, ids), before)


def test_qat_acts_in_training_mode_only():
    m = tiny()
    ids = torch.randint(0, 64, (2, 8))
    m.eval()
    before = m(ids, ids)
    set_qat(m, round_to_grid)
    torch.testing.assert_close(m(ids, ids), before, rtol=0, atol=0)  # evaluation sees the float weights
    assert not torch.allclose(m.train()(ids, ids), before)


@pytest.mark.slow
def test_qat_toggle_is_seen_by_torch_compile():
    m = tiny().train()
    ids = torch.randint(0, 64, (1, 8))
    compiled = torch.compile(m, dynamic=False)
    with torch.no_grad():
        off = compiled(ids)
        set_qat(m, round_to_grid)
        on = compiled(ids)  # an instance attribute guard forces a recompile: the flag is not constant-folded
        eager_on = m(ids)
    assert not torch.allclose(off, on)
    torch.testing.assert_close(on, eager_on, atol=1e-5, rtol=1e-5)


def test_late_qat_uses_the_export_quantizer(tmp_path):
    """set_late_qat installs the export path's fake quantizer: the forward weights are exactly the per-row int-k
    grid the artifact would hold (round-to-nearest, absmax clip)."""
    from golflib.quant.clip import row_scales
    from golflib.quant.fake_quant import set_late_qat
    from golflib.quant.intn import dequantize_rows, quantize_rows

    m = tiny()
    ids = torch.randint(0, 64, (2, 8))
    before = m(ids, ids)
    assert set_late_qat(m, 6, "absmax") == 12  # 6 CastedLinear per block × 2 blocks
    assert set_late_qat(tiny(), 6, "absmax", modules=("mlp.fc",)) == 2  # LATE_QAT_MODULES: a subset by name
    lin = m.blocks[0].mlp.fc
    w = lin.weight.detach()
    s = row_scales(w, 6, "absmax")
    torch.testing.assert_close(lin.qat_fn(lin.weight), dequantize_rows(quantize_rows(w, s, 6), s))
    assert not torch.allclose(m(ids, ids), before)
    set_late_qat(m, 0)
    torch.testing.assert_close(m(ids, ids), before)

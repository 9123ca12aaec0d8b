import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from golflib.settings.model import ModelConfig
from golflib.model.attention import attention_backend, causal_attention
from golflib.model.gpt import GPT, count_params
from golflib.model.layers import Rotary, apply_rotary


def test_baseline_parameter_count():
    m = GPT(ModelConfig())
    assert count_params(m) == 17_059_912
    # SPEC §2.1: embedding 524,288 + 9 × 1,837,064 + skip weights 2,048
    assert m.tok_emb.weight.numel() == 524_288
    assert sum(p.numel() for p in m.blocks[0].parameters()) == 1_837_064
    assert m.skip_weights.numel() == 2_048


def test_model_info_cli_reports_baseline_params():
    out = subprocess.run([sys.executable, "-m", "golflib.cli", "model", "info", "--preset", "baseline"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["params"] == 17_059_912


def test_zero_init_blocks_start_as_identity():
    cfg = ModelConfig(num_layers=3, model_dim=32, num_heads=2, num_kv_heads=1, vocab_size=64)
    m = GPT(cfg)
    for b in m.blocks:
        assert not b.attn.proj.weight.any() and not b.mlp.proj.weight.any()
    ids = torch.randint(0, 64, (2, 10))
    h = m.hidden(ids)
    # every block is the identity at init, skips add the same x back: hidden = rms_norm(rms_norm(e) * (1 + ...))
    x = F.rms_norm(m.tok_emb(ids), (32,))
    skip = m.skip_weights[0] * x
    expected = F.rms_norm(x + skip, (32,))
    torch.testing.assert_close(h, expected)


def test_token_nll_matches_logits_and_softcap():
    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, vocab_size=50, logit_softcap=2.0)
    m = GPT(cfg)
    with torch.no_grad():
        m.tok_emb.weight.normal_(0, 1.0)
    x = torch.randint(0, 50, (3, 7))
    y = torch.randint(0, 50, (3, 7))
    logits = m(x)
    assert logits.dtype == torch.float32 and logits.abs().max() <= 2.0
    nll = m.token_nll(x, y)
    ref = -torch.log_softmax(logits, -1).gather(-1, y[..., None])[..., 0]
    torch.testing.assert_close(nll, ref)
    torch.testing.assert_close(m(x, y), ref.mean())


def test_causality():
    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, vocab_size=50)
    m = GPT(cfg)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randint(0, 50, (1, 12))
    x2 = x.clone()
    x2[0, 8:] = (x2[0, 8:] + 1) % 50
    a, b = m(x), m(x2)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_sdpa_gqa_matches_repeated_heads_reference():
    torch.manual_seed(0)
    q = torch.randn(2, 9, 4, 8)
    k, v = torch.randn(2, 9, 2, 8), torch.randn(2, 9, 2, 8)
    assert attention_backend(q) == "sdpa"
    out = causal_attention(q, k, v)
    kk, vv = k.repeat_interleave(2, dim=2), v.repeat_interleave(2, dim=2)
    att = torch.einsum("bthd,bshd->bhts", q, kk) / 8 ** 0.5
    att = att.masked_fill(torch.triu(torch.ones(9, 9, dtype=torch.bool), 1), float("-inf")).softmax(-1)
    ref = torch.einsum("bhts,bshd->bthd", att, vv)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_rotary_half_split_and_relative():
    rot = Rotary(8, base=10000.0)
    cos, sin = rot(5, torch.device("cpu"), torch.float32)
    x = torch.randn(1, 5, 1, 8)
    y = apply_rotary(x, cos, sin)
    # pair (i, i+4) rotated by angle t * base^(-2i/8); norms preserved
    t, i = 3, 1
    ang = t * 10000.0 ** (-2 * i / 8)
    x1, x2 = x[0, t, 0, i], x[0, t, 0, i + 4]
    assert y[0, t, 0, i].item() == pytest.approx((x1 * torch.cos(torch.tensor(ang)) + x2 * torch.sin(torch.tensor(ang))).item(), abs=1e-5)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    # dot products depend on relative position only
    q, k = torch.randn(8), torch.randn(8)
    def rot_at(v, pos):
        return apply_rotary(v.view(1, 1, 1, 8).expand(1, 5, 1, 8), cos, sin)[0, pos, 0]
    assert torch.dot(rot_at(q, 3), rot_at(k, 1)).item() == pytest.approx(torch.dot(rot_at(q, 4), rot_at(k, 2)).item(), abs=1e-5)


def test_adapter_sees_every_projection_of_every_layer():
    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=3, model_dim=32, num_heads=2, num_kv_heads=1, vocab_size=50)
    m = GPT(cfg)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randint(0, 50, (2, 6))
    seen = []

    def identity(site, layer, inp, out):
        seen.append((site, layer, tuple(inp.shape), tuple(out.shape)))
        return out

    torch.testing.assert_close(m(x, adapter=identity), m(x))
    sites = [(s, l) for s, l, _, _ in seen]
    assert sites == [(s, l) for l in range(3) for s in ("q", "k", "v", "o", "mlp")] + [("head", -1)]
    assert seen[1][3] == (2, 6, 16) and seen[-1][3] == (2, 6, 50)

    def bump_head(site, layer, inp, out):
        return out + 1.0 if site == "head" else out

    # a constant shift of the logits (before the soft-cap) changes them, through the same forward path
    assert not torch.allclose(m(x, adapter=bump_head), m(x))


def test_disable_layer0_attn_drops_its_weights_and_its_context_mixing():
    """DISABLE_LAYER0_ATTN (#1204): layer 0 is MLP-only with no attention weights allocated — the baseline loses
    c_q + c_k + c_v + proj + q_gain + attn_scale = 786,952 parameters — and a one-layer model then sees no context."""
    from golflib.settings.base import ConfigError

    base = ModelConfig()
    assert count_params(GPT(ModelConfig(disable_layer0_attn=True))) == 17_059_912 - (
        2 * 512 * 512 + 2 * 512 * 256 + 8 + 512) == 16_272_960
    torch.manual_seed(0)
    one = GPT(ModelConfig(vocab_size=64, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1,
                          disable_layer0_attn=True))
    for p in one.parameters():  # make every projection non-zero so a context effect would show
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randint(0, 64, (1, 12))
    y = x.clone()
    y[0, :6] = torch.randint(0, 64, (6,))
    with torch.no_grad():
        assert torch.allclose(one.logits(x)[0, 6:], one.logits(y)[0, 6:], atol=1e-6)
    assert "blocks.0.attn.c_q.weight" not in one.state_dict() and "blocks.0.attn_scale" not in one.state_dict()
    # value residual: v0 comes from the first layer that has attention; the model trains end to end
    vr = GPT(ModelConfig(vocab_size=64, num_layers=3, model_dim=32, num_heads=2, num_kv_heads=1,
                         disable_layer0_attn=True, value_residual=True))
    loss = F.cross_entropy(vr.logits(x[:, :-1]).reshape(-1, 64), x[:, 1:].reshape(-1))
    loss.backward()
    assert vr.blocks[2].attn.vr_lambda.grad is not None and vr.blocks[1].mlp.fc.weight.grad is not None
    with pytest.raises(ConfigError, match="VE_LAYERS.*layer 0"):
        ModelConfig(disable_layer0_attn=True, ve_enabled=True, ve_layers=(0, 8))
    with pytest.raises(ConfigError, match="UNIQUE_LAYERS.*share cores"):
        ModelConfig(disable_layer0_attn=True, unique_layers=3)
    assert base.disable_layer0_attn is False

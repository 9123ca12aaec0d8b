"""The mathematics of each record technique (SPEC §3.C), checked against direct computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from golflib.config import Config
from golflib.settings.model import ModelConfig
from golflib.model.attention import causal_attention, exclusive_self_attention
from golflib.model.embed import BigramHash, SmearGate
from golflib.model.gpt import GPT, count_params
from golflib.model.layers import Rotary, apply_rotary
from golflib.model.recurrence import encoder_decoder, num_skip_weights, virtual_layers
from golflib.optim.schedule import loop_phase


def cfg(**kw) -> ModelConfig:
    base = dict(num_layers=4, model_dim=32, num_heads=4, num_kv_heads=2, vocab_size=64)
    base.update(kw)
    return Config().replace(base).model


def randomize(m: torch.nn.Module, std: float = 0.2, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if p.ndim == 1 and p.numel() == 32 else 0.0))
    return m


def test_leaky_relu_sq_mlp():
    m = randomize(GPT(cfg(mlp_activation="leaky_relu_sq", leaky_relu_slope=0.5)))
    mlp = m.blocks[0].mlp
    x = torch.randn(2, 5, 32)
    z = x @ mlp.fc.weight.T
    ref = (torch.where(z > 0, z, 0.5 * z) ** 2) @ mlp.proj.weight.T
    torch.testing.assert_close(mlp(x), ref)
    relu = GPT(cfg()).blocks[0].mlp
    assert relu.slope == 0.0


@pytest.mark.parametrize("version", [1, 2, 3])
def test_smeargate_formula_and_bos_isolation(version):
    torch.manual_seed(version)
    sg = SmearGate(version, dim=16, window=4, bos_id=1)
    with torch.no_grad():
        for p in sg.parameters():
            p.normal_(0, 1.0)
    ids = torch.tensor([[5, 6, 1, 7, 8]])
    e = torch.randn(1, 5, 16)
    out = sg(e, ids)
    prev = torch.cat([torch.zeros(1, 1, 16), e[:, :-1]], 1)
    if version == 3:
        g = sg.lam * torch.sigmoid(e[..., :4] @ sg.gate_w.T)
        ref = e + g * prev
    else:
        gate = torch.sigmoid(sg.gate)
        ref = gate * e + (1 - gate) * prev if version == 1 else (1 - gate) * e + gate * prev
    ref[:, 2] = e[:, 2]  # BOS position: no smear
    torch.testing.assert_close(out, ref)
    # the output at BOS does not depend on the previous document, in the full model's embedding too
    m = randomize(GPT(cfg(smear_gate=version, gate_window=4)))
    a = torch.tensor([[3, 4, 9, 1, 10, 11]])
    b = torch.tensor([[7, 2, 5, 1, 10, 11]])
    torch.testing.assert_close(m.embed(a)[:, 3:], m.embed(b)[:, 3:])
    assert not torch.allclose(m.embed(a)[:, :3], m.embed(b)[:, :3])


def test_smeargate_v3_is_identity_at_init():
    sg = SmearGate(3, 16, 12)
    e = torch.randn(2, 7, 16)
    torch.testing.assert_close(sg(e, torch.randint(2, 50, (2, 7))), e)


def test_bigram_hash_buckets_and_inputs_only():
    bh = BigramHash(100, 8, 16, "xor")
    ids = torch.tensor([[3, 7, 9]])
    b = bh.bucket(ids)
    assert b[0, 0] == 99  # reserved bucket at position 0
    assert b[0, 1] == (36313 * 7 ^ 27191 * 3) % 99 and b[0, 2] == (36313 * 9 ^ 27191 * 7) % 99
    mul = BigramHash(100, 8, 16, "mul92821")
    assert mul.bucket(ids).tolist() == [[3 % 100, (92821 * 3 + 7) % 100, (92821 * 7 + 9) % 100]]
    assert bh.scale.item() == pytest.approx(0.05) and not bh.embed.weight.any()
    with torch.no_grad():
        bh.embed.weight.normal_()
        bh.proj.weight.normal_()
    torch.testing.assert_close(bh(ids), 0.05 * bh.proj(bh.embed(b)))


def test_ortho_init_and_zero_projections():
    m = GPT(cfg(model_dim=64, num_heads=4, num_kv_heads=2, ortho_init=True))
    w = m.blocks[1].attn.c_q.weight
    torch.testing.assert_close(w @ w.T, torch.eye(64), atol=1e-5, rtol=0)
    fc = m.blocks[1].mlp.fc.weight  # [128, 64]: orthonormal columns
    torch.testing.assert_close(fc.T @ fc, torch.eye(64), atol=1e-5, rtol=0)
    assert not m.blocks[1].attn.proj.weight.any() and not m.blocks[1].mlp.proj.weight.any()
    s = GPT(cfg(model_dim=64, num_heads=4, num_kv_heads=2, proj_init="scaled")).blocks[0].attn.proj.weight
    torch.testing.assert_close(s @ s.T, torch.eye(64) / (2 * 4), atol=1e-5, rtol=0)


def test_xsa_output_orthogonal_to_own_value_gqa():
    torch.manual_seed(0)
    y = torch.randn(2, 5, 8, 16)
    v = torch.randn(2, 5, 2, 16)
    out = exclusive_self_attention(y, v)
    vn = F.normalize(v, dim=-1).repeat_interleave(4, dim=2)  # head h uses KV head h // 4
    assert (out * vn).sum(-1).abs().max() < 1e-5
    ref = y - (y * vn).sum(-1, keepdim=True) * vn  # naive form
    torch.testing.assert_close(out, ref)
    m = GPT(cfg(xsa_last_n=2))
    assert [b.attn.xsa for b in m.blocks] == [False, False, True, True]


def test_partial_rope_leaves_high_dims_and_ntk_base():
    rot = Rotary(4, base=10000.0)
    cos, sin = rot(6, torch.device("cpu"), torch.float32)
    x = torch.randn(1, 6, 2, 16)
    y = apply_rotary(x, cos, sin)
    torch.testing.assert_close(y[..., 4:], x[..., 4:])
    assert not torch.allclose(y[:, 1:, :, :4], x[:, 1:, :, :4])
    # pairs inside the rotated dims are (0, 2) and (1, 3): half-split
    ang = 3 * 10000.0 ** (-2 / 4)
    assert y[0, 3, 0, 1].item() == pytest.approx((x[0, 3, 0, 1] * math.cos(ang) + x[0, 3, 0, 3] * math.sin(ang)).item(),
                                                  abs=1e-5)
    ntk = Rotary(16, base=10000.0, train_len=1024)
    assert ntk.effective_base(1024) == 10000.0
    assert ntk.effective_base(2048) == pytest.approx(10000.0 * 2 ** (16 / 14))  # ≈ 22,082 (#414 at seq 2048)


def test_ln_scale_factor():
    m = GPT(cfg(ln_scale=True))
    x = torch.randn(2, 3, 32)
    for i, b in enumerate(m.blocks):
        torch.testing.assert_close(b.norm(x), F.rms_norm(x, (32,)) / math.sqrt(i + 1))


def _attn_values(m, ids, layer):
    """Raw values seen by layer `layer` (hooked) during a forward."""
    seen = {}

    def adapter(site, l, inp, out):
        if site == "v" and l == layer:
            seen["v"] = out
        return out

    m(ids, adapter=adapter)
    return seen["v"]


def test_value_embeddings_on_chosen_layers():
    m = randomize(GPT(cfg(ve_enabled=True, ve_dim=8, ve_layers=(1, 3))))
    ids = torch.randint(0, 64, (1, 6))
    ve = m.ve_shared.scale * m.ve_shared.proj(m.ve_shared.embed(ids))
    got = []

    def grab(module, args, out):
        got.append(out[1])

    hooks = [b.attn.register_forward_hook(grab) for b in m.blocks]
    m(ids)
    for h in hooks:
        h.remove()
    for layer, v_raw in enumerate(got):
        plain = _attn_values(m, ids, layer)
        extra = m.ve_layer_scales[(1, 3).index(layer)] * ve if layer in (1, 3) else 0 * ve
        torch.testing.assert_close(v_raw, plain + extra)


def test_value_residual_mixes_first_layer_values():
    m = randomize(GPT(cfg(value_residual=True)))
    attn = m.blocks[2].attn
    h = torch.randn(1, 4, 32)
    v0 = torch.randn(1, 4, 16)
    with torch.no_grad():
        attn.vr_lambda.copy_(torch.tensor([0.3, 0.9]))
    seen = {}
    orig = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen["v"] = v
        return orig(q, k, v, **kw)

    F.scaled_dot_product_attention = spy
    try:
        attn(h, v0=v0)
    finally:
        F.scaled_dot_product_attention = orig
    expect = (0.3 * v0 + 0.9 * attn.c_v(h)).view(1, 4, 2, 8).transpose(1, 2)
    torch.testing.assert_close(seen["v"], expect)


@pytest.mark.parametrize("kind,init", [("headwise", 1 / (1 + math.exp(-4))), ("output", 1.0), ("sparse", 0.5)])
def test_attention_gate_init_values(kind, init):
    m = GPT(cfg(attn_gate=kind, gate_window=8))
    g = m.blocks[0].attn.gate(torch.randn(2, 3, 32))
    assert g.shape == (2, 3, 4, 1)
    torch.testing.assert_close(g, torch.full_like(g, init))
    assert sum(p.numel() for p in m.blocks[0].attn.gate.parameters()) == (4 * 32 + 4 if kind == "headwise" else 4 * 8)


def test_output_gate_at_init_equals_ungated_model():
    a = randomize(GPT(cfg()))
    b = GPT(cfg(attn_gate="output", gate_window=8))
    b.load_state_dict(a.state_dict(), strict=False)
    ids = torch.randint(0, 64, (1, 7))
    torch.testing.assert_close(a(ids), b(ids))


def test_sparse_gate_formula():
    m = GPT(cfg(attn_gate="sparse", gate_window=8, sparse_attn_gate_scale=0.5))
    gate = m.blocks[0].attn.gate
    with torch.no_grad():
        gate.attn_gate_w.normal_()
    x = torch.randn(1, 3, 32)
    torch.testing.assert_close(gate(x)[..., 0], torch.sigmoid(0.5 * x[..., :8] @ gate.attn_gate_w.T))


def test_skip_gates_lerp():
    m = GPT(cfg(skip_gates_enabled=True))
    x, s = torch.randn(1, 2, 32), torch.randn(1, 2, 32)
    with torch.no_grad():
        m.skip_weights[0].fill_(2.0)
    torch.testing.assert_close(m._skip(x, s, 0), 0.5 * x + 0.5 * (2.0 * s))  # γ = 0 → σ = 0.5
    assert m.skip_gates.shape == m.skip_weights.shape


def test_qk_gain_init():
    m = GPT(cfg(qk_gain_init=5.25))
    assert torch.equal(m.blocks[0].attn.q_gain, torch.full((4,), 5.25))


def test_recurrence_virtual_lists_match_spec():
    c1855 = cfg(num_layers=11, num_loops=2, loop_start=3, loop_end=5)
    enc, dec = encoder_decoder(virtual_layers(c1855))
    assert enc == [0, 1, 2, 3, 4, 5, 3, 4] and dec == [5, 3, 4, 5, 6, 7, 8, 9, 10]
    c1394 = cfg(num_layers=11, num_loops=2, loop_start=4, loop_end=5)
    enc, dec = encoder_decoder(virtual_layers(c1394))
    assert enc == [0, 1, 2, 3, 4, 5, 4] and dec == [5, 4, 5, 6, 7, 8, 9, 10]
    assert num_skip_weights(c1394) == 7 and num_skip_weights(c1855) == 8
    assert virtual_layers(c1855, active_loops=1) == [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10]
    c1487 = cfg(num_layers=11, recur_layers=(3, 4, 5), skip_sizing="physical")
    assert virtual_layers(c1487) == [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10] and num_skip_weights(c1487) == 5
    assert virtual_layers(c1487, active_loops=0) == list(range(11))


def test_recurrence_shares_parameters_and_gradients():
    c = cfg(num_layers=4, num_loops=1, loop_start=1, loop_end=2)
    m = randomize(GPT(c))
    assert m.virtual_layers() == [0, 1, 2, 1, 2, 3]
    plain = GPT(cfg(num_layers=4))
    assert count_params(m) == count_params(plain) - plain.skip_weights.numel() + m.skip_weights.numel()
    calls = []
    hook = m.blocks[1].attn.register_forward_hook(lambda *a: calls.append(1))
    ids = torch.randint(0, 64, (1, 5))
    m(ids, ids).backward()
    hook.remove()
    assert len(calls) == 2  # one physical module, two virtual passes
    assert m.blocks[1].attn.c_q.weight.grad is not None
    m.set_active_loops(0)
    assert m.virtual_layers() == [0, 1, 2, 3]


def test_progressive_and_step_loop_schedules():
    assert loop_phase(0.2, 0, max_loops=2, enable_at=(0.35,)) == 0
    assert loop_phase(0.4, 0, max_loops=2, enable_at=(0.35,)) == 2
    assert [loop_phase(f, 0, max_loops=2, enable_at=(0.5, 0.65)) for f in (0.4, 0.55, 0.7)] == [0, 1, 2]
    assert loop_phase(0.9, 2999, max_loops=1, start_step=3000) == 0
    assert loop_phase(0.0, 3000, max_loops=1, start_step=3000) == 1
    assert loop_phase(0.0, 0, max_loops=2) == 2 and loop_phase(0.5, 9, max_loops=0) == 0


def test_untied_repeat_mlp_copied_at_activation():
    m = randomize(GPT(cfg(num_layers=4, num_loops=1, loop_start=1, loop_end=2, repeat_untie_mlp=True)))
    assert sorted(m.repeat_mlps.keys()) == ["1_1", "2_1"]
    m.set_active_loops(0)
    with torch.no_grad():
        m.repeat_mlps["1_1"].fc.weight.zero_()
    m.set_active_loops(1)
    torch.testing.assert_close(m.repeat_mlps["1_1"].fc.weight, m.blocks[1].mlp.fc.weight)
    assert m.repeat_mlps["1_1"].fc.weight.data_ptr() != m.blocks[1].mlp.fc.weight.data_ptr()


def test_shared_cores_461():
    m = GPT(cfg(num_layers=5, unique_layers=4, xsa_last_n=2))
    assert not hasattr(m.blocks[4], "attn") and m.core_of == [0, 1, 2, 3, 0]
    assert [m.blocks[i].attn.xsa for i in range(4)] == [False, False, True, True]  # XSA on the last cores
    assert count_params(m) == count_params(GPT(cfg(num_layers=5))) - sum(
        p.numel() for n, p in m.blocks[0].named_parameters() if n.startswith(("attn.", "mlp.")))
    randomize(m)
    ids = torch.randint(0, 64, (1, 6))
    m(ids, ids).backward()
    g_scaled = m.blocks[0].attn.c_q.weight.grad.clone()
    g_other = m.blocks[1].attn.c_q.weight.grad.clone()
    for h in m._shared_core_hooks:
        h.remove()
    m.zero_grad()
    m(ids, ids).backward()
    # core 0 serves two layers: its gradient is scaled by 1/2; other cores are untouched
    torch.testing.assert_close(g_scaled, m.blocks[0].attn.c_q.weight.grad / 2)
    torch.testing.assert_close(g_other, m.blocks[1].attn.c_q.weight.grad)


def _manual_block(b, x, x0, attn, mlp):
    xm = b.mix(x, x0)
    a, _ = b.attn_branch(xm, attn, None, 0, None, None, None)
    return xm, a


def test_parallel_gptj_and_routed_match_formulas():
    torch.manual_seed(0)
    ids = torch.randint(0, 64, (1, 6))
    # GPT-J style on the last layer: x_out = mix + a(mix) + m(mix)
    m = randomize(GPT(cfg(num_layers=2, parallel_residual="gptj", parallel_start_layer=1)))
    x0 = m.embed(ids)
    b0, b1 = m.blocks
    x1, _ = b0.sequential(x0, x0, b0.attn, b0.mlp, None, 0, None, None, None)
    x1 = m._skip(x1, x1, 0)
    xm, a = _manual_block(b1, x1, x0, b1.attn, b1.mlp)
    ref = xm + a + b1.mlp_branch(xm, b1.mlp, None, 1)
    torch.testing.assert_close(m.hidden(ids), F.rms_norm(ref, (32,)))
    # routed lanes on the last layer: the lanes split *before* the U-Net skip, which goes into lane 0 only (#1855,
    # also at the first parallel layer); both sublayers read the pre-update lanes; output = mean of lanes
    r = randomize(GPT(cfg(num_layers=2, parallel_residual="routed", parallel_start_layer=1)), seed=1)
    with torch.no_grad():
        r.parallel_resid_lambdas.copy_(torch.tensor([[1.0, 1.0], [1.1, 0.9]]))
        r.parallel_post_lambdas.copy_(torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[0.7, 0.2], [0.3, 1.5]]]))
    x0 = r.embed(ids)
    b0, b1 = r.blocks
    x1, _ = b0.sequential(x0, x0, b0.attn, b0.mlp, None, 0, None, None, None)
    lane0, lane1 = r._skip(x1, x1, 0), x1
    a, _ = b1.attn_branch(b1.mix(lane0, x0), b1.attn, None, 1, None, None, None)
    mm = b1.mlp_branch(lane1, b1.mlp, None, 1)
    l0 = 1.1 * lane0 + 0.7 * a + 0.3 * mm
    l1 = 0.9 * lane1 + 0.2 * a + 1.5 * mm
    torch.testing.assert_close(r.hidden(ids), F.rms_norm(0.5 * (l0 + l1), (32,)))


def test_parallel_merge_and_two_lane_params():
    merge = GPT(cfg(num_layers=4, parallel_residual="merge", parallel_start_layer=2))
    assert merge.lane_merge.item() == 0.5
    two = GPT(cfg(num_layers=4, parallel_residual="two_lane", parallel_start_layer=2))
    torch.testing.assert_close(two.parallel_resid_lambdas, torch.full((4, 2), math.sqrt(1.1)))
    routed = GPT(cfg(num_layers=4, parallel_residual="routed", parallel_start_layer=2))
    assert routed.parallel_resid_lambdas.shape == (4, 2) and routed.parallel_post_lambdas.shape == (4, 2, 2)
    ids = torch.randint(0, 64, (2, 5))
    for m in (merge, two, routed):
        randomize(m)
        out = m(ids, ids)
        out.backward()
        assert torch.isfinite(out)


def test_document_isolation_mask():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 6, 4, 8), torch.randn(1, 6, 2, 8), torch.randn(1, 6, 2, 8)
    doc = torch.tensor([[0, 0, 0, 1, 1, 1]])
    out = causal_attention(q, k, v, doc)
    # the second document's outputs equal attention over that document alone
    alone = causal_attention(q[:, 3:], k[:, 3:], v[:, 3:])
    torch.testing.assert_close(out[:, 3:], alone)
    torch.testing.assert_close(out[:, :3], causal_attention(q[:, :3], k[:, :3], v[:, :3]))

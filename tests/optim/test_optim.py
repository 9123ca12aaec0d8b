import pytest
import torch

from golflib.settings.model import ModelConfig
from golflib.settings.training import OptimConfig
from golflib.model.gpt import GPT
from golflib.optim.build import build_optimizers, split_params
from golflib.optim.muon import Muon, zeropower_via_newtonschulz5
from golflib.optim.schedule import lr_multiplier, muon_momentum


@pytest.mark.parametrize("shape", [(64, 64), (128, 32), (32, 96)])
def test_ns5_singular_values_near_one(shape):
    """Input singular values spread over two decades (like real gradients) all map into ~[0.7, 1.2]."""
    torch.manual_seed(0)
    k = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], k))
    v, _ = torch.linalg.qr(torch.randn(shape[1], k))
    g = 3.0 * u @ torch.diag(torch.logspace(-2, 0, k)) @ v.T
    for dtype in (torch.float32, torch.bfloat16):
        o = zeropower_via_newtonschulz5(g, steps=5, dtype=dtype).float()
        s = torch.linalg.svdvals(o)
        assert o.shape == g.shape
        assert s.min() > 0.65 and s.max() < 1.25, (dtype, s.min(), s.max())
        # same singular vectors as the exact polar factor U V^T
        u, _, vh = torch.linalg.svd(g, full_matrices=False)
        cos = (o * (u @ vh)).sum() / (o.norm() * (u @ vh).norm())
        assert cos > 0.98


def test_muon_step_matches_formula():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(16, 8))
    g = torch.randn(16, 8)
    w0 = w.detach().clone()
    opt = Muon([w], lr=0.1, momentum=0.9, backend_steps=5, ns_dtype=torch.float32)
    w.grad = g.clone()
    opt.step()
    # first step: buf = g, nesterov u = g + 0.9 g
    u = g + 0.9 * g
    o = zeropower_via_newtonschulz5(u, 5, dtype=torch.float32) * (16 / 8) ** 0.5
    torch.testing.assert_close(w.detach(), w0 - 0.1 * o)
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(3))], lr=0.1, momentum=0.9)


def test_param_split_matches_baseline():
    m = GPT(ModelConfig())
    groups = split_params(m)
    assert len(groups["matrix"]) == 9 * 6
    assert sum(p.numel() for p in groups["matrix"]) == 9 * (512 * 512 * 2 + 512 * 256 * 2 + 512 * 1024 * 2)
    assert sum(p.numel() for p in groups["scalar"]) == 9 * (512 * 4 + 8) + 2048
    opts = build_optimizers(m, OptimConfig(), tie_embeddings=True)
    assert [type(o).__name__ for o in opts] == ["AdamW", "Muon", "AdamW"]
    assert all(g["weight_decay"] == 0.0 for o in opts for g in o.param_groups)  # baseline: plain Adam and Muon
    assert [o.param_groups[0]["base_lr"] for o in opts] == [0.05, 0.04, 0.04]


def test_wallclock_warmdown_values():
    # 600 s cap, 100 ms/step so far, warmdown 1200 iters = 120 s
    kw = dict(warmdown_iters=1200, iterations=20000, max_wallclock_ms=600_000.0)
    assert lr_multiplier(1000, 100_000.0, **kw) == 1.0
    assert lr_multiplier(4800, 480_000.0, **kw) == pytest.approx(1.0)  # remaining 120 s == warmdown 120 s
    assert lr_multiplier(5400, 540_000.0, **kw) == pytest.approx(0.5)
    assert lr_multiplier(5940, 594_000.0, **kw) == pytest.approx(0.05)
    assert lr_multiplier(6000, 600_000.0, **kw) == 0.0
    assert lr_multiplier(6100, 610_000.0, **kw) == 0.0


def test_iteration_warmdown_values():
    kw = dict(warmdown_iters=100, iterations=1000, max_wallclock_ms=None)
    assert lr_multiplier(0, 0.0, **kw) == 1.0
    assert lr_multiplier(899, 0.0, **kw) == 1.0
    assert lr_multiplier(900, 0.0, **kw) == 1.0
    assert lr_multiplier(950, 0.0, **kw) == pytest.approx(0.5)
    assert lr_multiplier(999, 0.0, **kw) == pytest.approx(0.01)
    assert lr_multiplier(10, 0.0, warmdown_iters=0, iterations=1000, max_wallclock_ms=None) == 1.0


def test_momentum_warmup():
    kw = dict(start=0.85, end=0.95, warmup_steps=500)
    assert muon_momentum(0, **kw) == pytest.approx(0.85)
    assert muon_momentum(250, **kw) == pytest.approx(0.90)
    assert muon_momentum(500, **kw) == pytest.approx(0.95)
    assert muon_momentum(5000, **kw) == pytest.approx(0.95)


def test_fractional_warmdown_with_min_lr():
    from golflib.optim.schedule import training_fraction

    kw = dict(warmdown_iters=0, iterations=1000, max_wallclock_ms=600_000.0, warmdown_frac=0.85, min_lr=0.1)
    assert lr_multiplier(0, 60_000.0, **kw) == 1.0  # 10% < 15% start
    assert lr_multiplier(0, 90_000.0, **kw) == pytest.approx(1.0)  # exactly at 1 - 0.85
    assert lr_multiplier(0, 300_000.0, **kw) == pytest.approx(0.5 / 0.85)
    assert lr_multiplier(0, 570_000.0, **kw) == pytest.approx(0.1)  # (1-0.95)/0.85 = 0.059 floored at MIN_LR
    no_cap = dict(kw, max_wallclock_ms=None)
    assert lr_multiplier(575, 0.0, **no_cap) == pytest.approx(0.425 / 0.85)
    assert training_fraction(250, 0.0, iterations=1000, max_wallclock_ms=None) == 0.25


def test_wd_taper():
    from golflib.optim.schedule import wd_multiplier

    kw = dict(start_frac=0.7, final_mult=0.5)
    assert wd_multiplier(0.5, **kw) == 1.0 and wd_multiplier(0.7, **kw) == 1.0
    assert wd_multiplier(0.85, **kw) == pytest.approx(0.75) and wd_multiplier(1.0, **kw) == pytest.approx(0.5)


def test_muon_decoupled_wd_row_norm_and_polar_express():
    from golflib.optim.muon import POLAR_EXPRESS_COEFFS, ns_coefficients

    torch.manual_seed(0)
    g = torch.randn(12, 6)
    w0 = torch.randn(12, 6)
    w = torch.nn.Parameter(w0.clone())
    opt = Muon([w], lr=0.1, momentum=0.0, nesterov=False, ns_dtype=torch.float32, weight_decay=0.5, row_norm=True,
               coeffs="polar_express")
    w.grad = g.clone()
    opt.step()
    u = g / g.norm(dim=1, keepdim=True)
    o = zeropower_via_newtonschulz5(u, 5, dtype=torch.float32, coeffs="polar_express") * (12 / 6) ** 0.5
    torch.testing.assert_close(w.detach(), w0 * (1 - 0.1 * 0.5) - 0.1 * o)
    assert ns_coefficients("polar_express", 7)[6] == POLAR_EXPRESS_COEFFS[-1]
    # Polar Express lands closer to the polar factor than the classic quintic on a well-conditioned matrix
    uu, _, vh = torch.linalg.svd(g, full_matrices=False)
    exact = uu @ vh
    err = {k: (zeropower_via_newtonschulz5(g, 5, dtype=torch.float32, coeffs=k) - exact).norm()
           for k in ("ns5", "polar_express")}
    assert err["polar_express"] < err["ns5"]
    with pytest.raises(ValueError, match="MUON_NS_COEFFS"):
        ns_coefficients("cubic", 5)


def test_banked_muon_arithmetic_is_the_bank_records():
    """MUON_BANKED (#399 banks: #549, #1019, #1855): bf16 gradient, momentum buffer and Nesterov sum; Newton-Schulz
    normalised after the transpose with b·A + c·(A·A); the shape scale in the step size — written out by hand."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(12, 6))
    g = torch.randn(12, 6)
    w0 = w.detach().clone()
    opt = Muon([w], lr=0.1, momentum=0.9, banked=True, row_norm=True)
    w.grad = g.clone()
    opt.step()
    assert opt.momentum_of(w).dtype == torch.bfloat16
    gb = g.bfloat16()
    buf = torch.zeros_like(gb).mul_(0.9).add_(gb)
    u = gb.add(buf, alpha=0.9)
    u = u / u.float().norm(dim=1, keepdim=True).clamp_min(1e-7).to(u.dtype)
    x = u[None].mT  # as one slice of a bank [B, M, N]
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    a, b, c = 3.4445, -4.7750, 2.0315
    for _ in range(5):
        A = x @ x.mT
        x = a * x + (b * A + c * (A @ A)) @ x
    expected = w0.clone().add_(x.mT[0].float(), alpha=-0.1 * (12 / 6) ** 0.5)
    assert torch.equal(w.detach(), expected)

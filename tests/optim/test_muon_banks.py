"""Muon over banks of same-shape matrices (batched Newton–Schulz, one foreach update) and Parallel Muon's sharded
form (reduce-scatter of local gradients, each rank orthogonalising its slice, all-gather): both against the
per-matrix formula, written out here with the single-matrix Newton–Schulz."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from golflib.optim.muon import Muon, newton_schulz_batched, ns_coefficients, zeropower_via_newtonschulz5

# three banks: 5 square matrices, 3 tall ones (the shape scale and the transpose), 1 wide one
SHAPES = [(8, 8)] * 3 + [(12, 6)] * 2 + [(8, 8)] * 2 + [(12, 6), (6, 10)]


def start_params() -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in SHAPES]


def local_grads(step: int, rank: int) -> list[torch.Tensor]:
    """Rank ``rank``'s local gradients at ``step`` (their mean over ranks is what a single process sees)."""
    g = torch.Generator().manual_seed(1000 * step + rank)
    return [torch.randn(*s, generator=g) for s in SHAPES]


def reference_muon(params, grads_per_step, lr, mu, wd, row_norm, clip=None, dtype=torch.float32):
    """The per-matrix Muon of SPEC §2.4 (+ D3 WD, D4 row norm, global-norm clipping), one matrix at a time."""
    ws = [p.detach().clone() for p in params]
    bufs = [torch.zeros_like(w) for w in ws]
    coefs = []
    for grads in grads_per_step:
        if clip is not None:
            norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
            c = min(1.0, clip / (float(norm) + 1e-6))
            coefs.append(c)
            grads = [g * c for g in grads]
        for i, (w, g) in enumerate(zip(ws, grads)):
            bufs[i].mul_(mu).add_(g)
            u = g + mu * bufs[i]
            if row_norm:
                u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-7)
            o = zeropower_via_newtonschulz5(u, 5, dtype=dtype) * max(1, w.size(0) / w.size(1)) ** 0.5
            w.mul_(1 - lr * wd).add_(o.to(w.dtype), alpha=-lr)
    return ws, coefs


def test_banks_group_by_shape_and_match_the_per_matrix_formula():
    params = start_params()
    opt = Muon(params, lr=0.05, momentum=0.9, ns_dtype=torch.float32, weight_decay=0.1, row_norm=True)
    steps = [local_grads(s, 0) for s in range(3)]
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    assert [(b.shape, b.n) for b in opt.banks()[0]] == [((8, 8), 5), ((12, 6), 3), ((6, 10), 1)]
    want, _ = reference_muon(start_params(), steps, 0.05, 0.9, 0.1, True)
    for p, w in zip(params, want):
        torch.testing.assert_close(p.detach(), w, rtol=1e-5, atol=1e-6)
    assert opt.momentum_of(params[3]).shape == (12, 6)


def test_bf16_bank_newton_schulz_matches_each_matrix_alone():
    """bf16 (the records' dtype): each slice of the batched iteration against the same matrix on its own."""
    g = torch.randn(6, 16, 24, generator=torch.Generator().manual_seed(2))
    coeffs = tuple(ns_coefficients("polar_express", 5))
    batched = newton_schulz_batched(g, coeffs, dtype=torch.bfloat16)
    for i in range(6):
        alone = zeropower_via_newtonschulz5(g[i], 5, dtype=torch.bfloat16, coeffs="polar_express")
        torch.testing.assert_close(batched[i].float(), alone.float(), rtol=0, atol=2e-2)


def test_compiled_newton_schulz_equals_eager():
    """The CUDA path compiles the batched Newton–Schulz (one graph per bank shape); inductor on CPU here."""
    torch._dynamo.reset()
    g = torch.randn(4, 24, 16, generator=torch.Generator().manual_seed(3))
    coeffs = tuple(ns_coefficients("ns5", 5))
    compiled = torch.compile(newton_schulz_batched, dynamic=False, fullgraph=True)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        torch.testing.assert_close(compiled(g, coeffs, 1e-7, dtype, False).float(),
                                   newton_schulz_batched(g, coeffs, 1e-7, dtype, False).float(), rtol=tol, atol=tol)
    params = start_params()
    ref = start_params()
    opt_c = Muon(params, lr=0.05, momentum=0.9, ns_dtype=torch.float32, compile_ns=True)
    opt_e = Muon(ref, lr=0.05, momentum=0.9, ns_dtype=torch.float32)
    for p, q, gr in zip(params, ref, local_grads(0, 0)):
        p.grad, q.grad = gr.clone(), gr.clone()
    opt_c.step()
    opt_e.step()
    for p, q in zip(params, ref):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 3])
def test_sharded_muon_reduce_scatters_clips_and_all_gathers(tmp_path, nproc):
    """Each rank has its own local gradients; Parallel Muon must give exactly the single-process update of their
    mean, with the gradient norm clipped globally. 3 ranks pad the banks (5 → 6, 3 → 3, 1 → 3 slots)."""
    out = tmp_path / "out.json"
    worker = Path(__file__).with_name("muon_dist_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(worker),
           str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    mean_grads = [[torch.stack(gs).mean(0) for gs in zip(*(local_grads(s, r) for r in range(nproc)))]
                  for s in range(3)]
    want, coefs = reference_muon(start_params(), mean_grads, 0.05, 0.9, 0.1, True, clip=1.0)
    assert got["coefs"] == pytest.approx(coefs, rel=1e-5)
    assert all(c < 1 for c in coefs)  # the clip is active
    for p, w in zip(got["params"], want):
        torch.testing.assert_close(torch.tensor(p), w, rtol=1e-5, atol=1e-5)
    assert sum(got["owned"]) == len(SHAPES)  # every matrix's momentum lives on exactly one rank


def test_merged_orthogonalisation_pads_without_changing_the_polar_factors():
    """The multi-rank form orthogonalises every bank's slice in one zero-padded call (tall ones transposed): each
    matrix's result equals its own Newton–Schulz (fp32; only the order of float sums differs)."""
    params = start_params()
    opt = Muon(params, lr=0.05, momentum=0.9, ns_dtype=torch.float32)
    banks = opt.banks()[0]
    g = torch.Generator().manual_seed(4)
    us = [torch.randn(2, *b.shape, generator=g) for b in banks]
    coeffs = tuple(ns_coefficients("ns5", 5))
    merged = opt._orthogonalise(us, banks, coeffs, merged=True)
    for u, o in zip(us, merged):
        assert o.shape == u.shape
        for i in range(u.size(0)):
            torch.testing.assert_close(o[i], zeropower_via_newtonschulz5(u[i], 5, dtype=torch.float32),
                                       rtol=1e-4, atol=1e-5)

"""Muon: momentum + Newton-Schulz orthogonalised updates for 2-D matrices (SPEC §2.4, §3.D2-D5).

Per matrix: ``buf = mu*buf + g``; Nesterov ``u = g + mu*buf``; optional MuonEq-R row normalisation
``u_i /= max(‖u_i‖, 1e-7)`` (D4, arXiv 2603.28254, #1217/#1260); ``O = NS(u)`` with the classic quintic or the
Polar Express per-iteration coefficients (D5, #1344/#1787); ``O *= sqrt(max(1, rows/cols))``; decoupled weight
decay ``W *= 1 - lr*wd`` (D3, #65 onward); ``W -= lr * O``. Source: Keller Jordan's Muon (modded-nanogpt), as in the
challenge's baseline ``train_gpt.py``.

Distributed form (baseline): parameter ``i`` is orthogonalised by rank ``i % world``; each rank writes its share
into a flat bf16 buffer and one all-reduce SUM gives every rank all updates.

``banked=True`` reproduces the arithmetic of the parameter-bank records (#399 Parallel Muon: #549, #1019, #1855)
on per-matrix parameters: the gradient is cast to bf16 before the momentum, the momentum buffer and the Nesterov
sum stay bf16, MuonEq-R divides by the fp32 row norm cast to bf16, Newton–Schulz normalises after the transpose and
computes ``b·A + c·(A·A)``, and the shape scale enters the step size instead of the bf16 update. (Their sharded
reduce-scatter/all-gather is a systems change; the per-matrix math is the same.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

NS5_COEFFS = (3.4445, -4.7750, 2.0315)
# Polar Express (#1344 → #1787): one minimax-optimal (a, b, c) per iteration; later iterations reuse the last.
POLAR_EXPRESS_COEFFS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)


def ns_coefficients(kind: str, steps: int) -> list[tuple[float, float, float]]:
    """Per-iteration ``(a, b, c)``: ``ns5`` repeats the classic quintic; ``polar_express`` uses the five tuned
    tuples (the last one repeated beyond five steps). Raises ``ValueError`` for another ``kind``."""
    if kind == "ns5":
        return [NS5_COEFFS] * steps
    if kind == "polar_express":
        return [POLAR_EXPRESS_COEFFS[min(i, len(POLAR_EXPRESS_COEFFS) - 1)] for i in range(steps)]
    raise ValueError(f"MUON_NS_COEFFS={kind!r}: expected ns5 or polar_express")


def zeropower_via_newtonschulz5(g: Tensor, steps: int = 5, eps: float = 1e-7,
                                dtype: torch.dtype = torch.bfloat16, coeffs: str = "ns5",
                                banked: bool = False) -> Tensor:
    """Approximate the orthogonal polar factor ``U Vᵀ`` of a 2-D matrix ``g`` ([rows, cols]).

    ``X = g/(‖g‖_F + eps)`` in ``dtype`` (bf16 like the records; pass fp32 for exact tests), transposed so that
    rows <= cols, then ``steps`` iterations of ``A = X Xᵀ; X = a X + (b A + c A²) X`` with the coefficients of
    :func:`ns_coefficients` (classic ``(3.4445, -4.7750, 2.0315)`` by default). Returns a tensor of ``g``'s shape in
    ``dtype`` whose singular values lie roughly in [0.7, 1.2] (the classic quintic is tuned for speed, not exact
    convergence; Polar Express lands closer to 1). ``banked``: the bank records' rounding order (module docstring).
    """
    if g.ndim != 2:
        raise ValueError(f"Newton-Schulz expects a 2-D matrix, got shape {tuple(g.shape)}")
    transposed = g.size(0) > g.size(1)
    if banked:  # a one-slice bank [1, M, N]: the records' batched kernels and per-slice norm
        x = g.to(dtype)[None]
        x = x.mT if transposed else x
        x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
        for a, b, c in ns_coefficients(coeffs, steps):
            A = x @ x.mT
            x = a * x + (b * A + c * (A @ A)) @ x
        return (x.mT if transposed else x)[0]
    x = g.to(dtype)
    x = x / (x.norm() + eps)
    x = x.T if transposed else x
    for a, b, c in ns_coefficients(coeffs, steps):
        A = x @ x.T
        B = b * A + c * A @ A
        x = a * x + B @ x
    return x.T if transposed else x


def _shape_scale(p: Tensor) -> float:
    """``sqrt(max(1, rows/cols))``: Muon's step size for a tall matrix."""
    return max(1.0, p.size(0) / p.size(1)) ** 0.5


class Muon(torch.optim.Optimizer):
    """Muon optimizer for 2-D parameters with the baseline's round-robin distributed update.

    Args: ``params`` (2-D tensors), ``lr``, ``momentum`` (mu), ``backend_steps`` (NS iterations), ``nesterov``,
    ``weight_decay`` (decoupled, applied as ``W *= 1 - lr*wd`` before the update), ``row_norm`` (MuonEq-R),
    ``coeffs`` (``ns5`` | ``polar_express``), ``banked`` (the parameter-bank records' arithmetic, module docstring;
    ``MUON_BANKED``). ``ns_dtype`` is the Newton-Schulz compute dtype (bf16 by default, as in the records). Raises
    ``ValueError`` for a parameter that is not 2-D.
    """

    def __init__(self, params, lr: float, momentum: float, backend_steps: int = 5, nesterov: bool = True,
                 ns_dtype: torch.dtype = torch.bfloat16, weight_decay: float = 0.0, row_norm: bool = False,
                 coeffs: str = "ns5", banked: bool = False):
        ns_coefficients(coeffs, 1)
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov,
                                      weight_decay=weight_decay, row_norm=row_norm, coeffs=coeffs))
        self.ns_dtype = ns_dtype
        self.banked = banked
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon only handles 2-D parameters, got shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        distributed = dist.is_available() and dist.is_initialized()
        world = dist.get_world_size() if distributed else 1
        rank = dist.get_rank() if distributed else 0
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            lr, mu = group["lr"], group["momentum"]
            total = sum(p.numel() for p in params)
            flat = torch.zeros(total, device=params[0].device, dtype=self.ns_dtype)
            offset = 0
            for i, p in enumerate(params):
                if i % world == rank and p.grad is not None:
                    g = p.grad.bfloat16() if self.banked else p.grad
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(g)
                    buf = state["momentum_buffer"]
                    buf.mul_(mu).add_(g)
                    u = g.add(buf, alpha=mu) if group["nesterov"] else buf
                    if group["row_norm"] and self.banked:
                        u = u / u.float().norm(dim=1, keepdim=True).clamp_min(1e-7).to(u.dtype)
                    elif group["row_norm"]:
                        u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-7)
                    o = zeropower_via_newtonschulz5(u, steps=group["backend_steps"], dtype=self.ns_dtype,
                                                    coeffs=group["coeffs"], banked=self.banked)
                    if not self.banked:
                        o = o * _shape_scale(p)
                    flat[offset:offset + p.numel()] = o.reshape(-1)
                offset += p.numel()
            if distributed and world > 1:
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            wd = group["weight_decay"]
            offset = 0
            for p in params:
                if wd:
                    p.mul_(1.0 - lr * wd)
                step = -lr * _shape_scale(p) if self.banked else -lr
                p.add_(flat[offset:offset + p.numel()].view_as(p).to(p.dtype), alpha=step)
                offset += p.numel()
        return loss

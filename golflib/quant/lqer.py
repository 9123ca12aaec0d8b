"""LQER: low-rank quantization-error reconstruction (Zhang et al. 2024, "LQER"; in the challenge #1797,
SPEC §3.B10).

After GPTQ, the error ``E = W − Ŵ`` of the matrices with the largest ``‖E‖_F`` is approximated by a rank-r product
``E ≈ A B`` (truncated SVD: ``A = U_r S_r`` ``[rows, r]``, ``B = V_rᵀ`` ``[r, cols]``) whose factors are themselves
quantized and stored; the model uses ``Ŵ + Â B̂``.

Packing (#1797): *asymmetric* — ``A`` as INT2 codes in ``[-2, 1]`` with one scale per matrix ``max|A| / 1.5``,
``B`` as INT4 codes in ``[-8, 7]`` with one scale per group of ``group`` consecutive elements of flattened ``B``,
``max|B_g| / 7.5``; *symmetric fallback* — per-row ``bits``-bit codes for both factors (``max|row| / qmax``).
After ``A`` is quantized, ``B`` is refit by least squares to ``Â⁺E`` (``B = argmin ‖E − Â B‖``) before its own
quantization, so the coarse INT2 grid of ``A`` does not waste the rank budget. :func:`pack_factors` optionally
takes the layer's input Hessian and then minimizes the layer-output error instead (L²QER of the LQER paper).
"""

from __future__ import annotations

import torch
from torch import Tensor

from golflib.quant.intn import fp16_exact, qmax

A_LEVELS = (-2, 1)  # INT2 codes of the asymmetric A
B_LEVELS = (-8, 7)  # INT4 codes of the asymmetric B


def svd_factors(e: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Truncated SVD ``E ≈ A B``: ``A = U_r S_r`` ``[rows, r]``, ``B = V_rᵀ`` ``[r, cols]`` (float32)."""
    U, S, Vh = torch.linalg.svd(e.double(), full_matrices=False)
    r = min(rank, S.numel())
    return (U[:, :r] * S[:r]).float(), Vh[:r].float()


def _sym_rows(x: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    m = qmax(bits)
    s = fp16_exact((x.abs().amax(dim=1) / m).clamp_min(2.0 ** -24))
    return torch.clamp(torch.round(x / s[:, None]), -m, m).to(torch.int8), s


def _group_scales(b: Tensor, group: int) -> Tensor:
    flat = b.reshape(-1)
    n_groups = -(-flat.numel() // group)
    pad = torch.zeros(n_groups * group - flat.numel())
    g = torch.cat([flat, pad]).reshape(n_groups, group)
    return fp16_exact((g.abs().amax(dim=1) / 7.5).clamp_min(2.0 ** -24))


def _expand_groups(scales: Tensor, numel: int, group: int) -> Tensor:
    return scales.repeat_interleave(group)[:numel]


def pack_factors(e: Tensor, rank: int, *, asym: bool = True, group: int = 64, bits: int = 4,
                 hessian: Tensor | None = None) -> dict[str, Tensor]:
    """Quantized rank-``rank`` factors of the error ``e`` ``[rows, cols]``.

    With ``hessian`` (the layer's input Hessian ``H`` ``[cols, cols]``) the factors minimize the layer-output
    error ``tr((E − AB) H (E − AB)ᵀ) = ‖(E − AB)L‖²`` (``H = L Lᵀ``), the activation-aware variant of the LQER
    paper (L²QER), instead of the plain ``‖E − AB‖`` of #1797.

    Returns storage tensors ``{"a.q", "a.scale", "b.q", "b.scale"}`` (int8 codes, fp16-exact float32 scales):
    asymmetric: ``a.scale`` shape ``[1]``, ``b.scale`` ``[ceil(r·cols/group)]``; symmetric: per-row scales.
    """
    e = e.double()
    L = None
    if hessian is not None:
        h = hessian.double()
        h = h + 1e-6 * float(torch.diagonal(h).mean().clamp_min(1e-12)) * torch.eye(h.shape[0], dtype=h.dtype)
        L = torch.linalg.cholesky(h)
    target = e if L is None else e @ L
    A, _ = svd_factors(target, rank)
    if asym:
        sa = fp16_exact((A.abs().max() / 1.5).clamp_min(2.0 ** -24)).reshape(1)
        qa = torch.clamp(torch.round(A / sa), *A_LEVELS).to(torch.int8)
    else:
        qa, sa = _sym_rows(A, bits)
    A_hat = qa.float() * (sa if asym else sa[:, None])
    B = torch.linalg.lstsq(A_hat.double(), target).solution  # refit B to the quantized A
    if L is not None:  # B' = B L  →  B = B' L⁻¹
        B = torch.linalg.solve_triangular(L, B, upper=False, left=False)
    B = B.float()
    if asym:
        sb = _group_scales(B, group)
        full = _expand_groups(sb, B.numel(), group).reshape(B.shape)
        qb = torch.clamp(torch.round(B / full), *B_LEVELS).to(torch.int8)
    else:
        qb, sb = _sym_rows(B, bits)
    return {"a.q": qa, "a.scale": sa, "b.q": qb, "b.scale": sb}


def unpack_factors(t: dict[str, Tensor], *, asym: bool, group: int = 64) -> Tensor:
    """``Â B̂`` (float32 ``[rows, cols]``) from the storage tensors of :func:`pack_factors`."""
    qa, sa, qb, sb = t["a.q"].float(), t["a.scale"].float(), t["b.q"].float(), t["b.scale"].float()
    if asym:
        A = qa * sa.reshape(-1)[0]
        B = qb * _expand_groups(sb, qb.numel(), group).reshape(qb.shape)
    else:
        A, B = qa * sa[:, None], qb * sb[:, None]
    return A @ B


def select_top_k(errors: dict[str, Tensor], k: int) -> list[str]:
    """Names of the ``k`` matrices with the largest Frobenius error norm (ties by name)."""
    norms = sorted(((float(torch.linalg.matrix_norm(e.float())), n) for n, e in errors.items()),
                   key=lambda x: (-x[0], x[1]))
    return [n for _, n in norms[:k]]

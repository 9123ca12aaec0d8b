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
:func:`plain_factors` is #1855's own packing (``LQER_FACTORS=plain``): the SVD factors as they are (float32 SVD,
no refit), asymmetric only when ``numel(B)`` is a multiple of the group, else symmetric per-row INT``bits``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golflib.quant.gptq import gptq_quantize_grid
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
    paper (L²QER), instead of the plain ``‖E − AB‖`` of #1797, and ``B``'s codes are chosen by GPTQ against ``H``
    on the same grid (round-to-nearest codes of ``B L⁻¹`` can cost more output error than they remove: on a tiny
    trained model's ``c_q`` at 4 bits the output error went 3,688 → 4,165 with them, → 2,021 with GPTQ).

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
        levels = B_LEVELS
    else:
        m = qmax(bits)
        sb = fp16_exact((B.abs().amax(dim=1) / m).clamp_min(2.0 ** -24))
        full, levels = sb[:, None].expand_as(B), (-m, m)
    if hessian is None:
        qb = torch.clamp(torch.round(B / full), *levels).to(torch.int8)
    else:  # B's rows are weights with input Hessian H: GPTQ keeps their rounding error out of the layer output
        qb = gptq_quantize_grid(B, hessian, full, levels)
    return {"a.q": qa, "a.scale": sa, "b.q": qb, "b.scale": sb}


def plain_factors(e: Tensor, rank: int, *, asym: bool = True, group: int = 64, bits: int = 4) -> \
        tuple[dict[str, Tensor], bool]:
    """#1855's LQER factors of the error ``e`` ``[rows, cols]``: float32 SVD, ``A = U_r S_r``, ``B = V_rᵀ`` quantized
    as they are. Asymmetric (``asym`` and ``r·cols`` divisible by ``group``): ``A`` INT2 ``[-2, 1]`` with one scale
    ``fp16(max|A| / 1.5)``, ``B`` INT4 ``[-8, 7]`` with one scale ``fp16(max|B_g| / 7.5)`` per group of ``group``
    consecutive elements of flattened ``B``; otherwise both per-row symmetric ``bits``-bit, ``fp16(max|row|/qmax)``.
    (Maxima are clamped at 1e-10 as the record does; a scale that underflows fp16 is raised to ``2^-24``.)

    Returns ``(storage tensors {"a.q", "a.scale", "b.q", "b.scale"}, asymmetric?)`` — the flag the artifact must
    record, since the fallback depends on the shape."""
    U, S, Vh = torch.linalg.svd(e.float(), full_matrices=False)
    r = min(rank, S.numel())
    A, B = (U[:, :r] * S[:r]).contiguous(), Vh[:r, :].contiguous()
    tiny = 2.0 ** -24
    if asym and B.numel() % group == 0:
        sa = fp16_exact(A.abs().amax().clamp_min(1e-10) / 1.5).clamp_min(tiny).reshape(1)
        qa = torch.clamp(torch.round(A / sa), *A_LEVELS).to(torch.int8)
        bg = B.reshape(-1, group)
        sb = fp16_exact(bg.abs().amax(dim=-1).clamp_min(1e-10) / 7.5).clamp_min(tiny)
        qb = torch.clamp(torch.round(bg / sb[:, None]), *B_LEVELS).to(torch.int8).reshape(B.shape)
        return {"a.q": qa, "a.scale": sa, "b.q": qb, "b.scale": sb}, True
    m = qmax(bits)
    sa = fp16_exact(A.abs().amax(dim=1).clamp_min(1e-10) / m).clamp_min(tiny)
    sb = fp16_exact(B.abs().amax(dim=1).clamp_min(1e-10) / m).clamp_min(tiny)
    qa = torch.clamp(torch.round(A / sa[:, None]), -m, m).to(torch.int8)
    qb = torch.clamp(torch.round(B / sb[:, None]), -m, m).to(torch.int8)
    return {"a.q": qa, "a.scale": sa, "b.q": qb, "b.scale": sb}, False


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
    """Names of the ``k`` matrices with the largest Frobenius error norm ``float(E.norm())``; ties keep the order
    of ``errors`` (state-dict order, a stable sort like #1855's)."""
    norms = [(float(e.float().norm()), n) for n, e in errors.items()]
    return [n for _, n in sorted(norms, key=lambda x: -x[0])[:k]]

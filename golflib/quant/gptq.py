"""Full-Hessian GPTQ with fixed per-row scales (Frantar et al. 2022, "GPTQ"; in the challenge #535/#634 → #1019,
SPEC §3.B5).

For a linear layer ``y = x Wᵀ`` with calibration inputs ``X`` and ``H = XᵀX / n``, GPTQ quantizes the columns of
``W`` one at a time and pushes each column's rounding error onto the columns not yet quantized, weighted by the
inverse Hessian, so the layer *output* error ``‖X(W − Ŵ)ᵀ‖²`` is what gets minimized rather than ``‖W − Ŵ‖²``.

Steps (all in this module): dead columns (``H_jj = 0``: the input never fires) get ``H_jj = 1`` and zero weights;
damping ``H += damp·mean(diag H)·I``; optional act-order (columns by descending ``diag H``); ``U = chol(H⁻¹)``
upper-triangular; columns in blocks of ``block_size`` with the in-block update ``W[:, j:] -= e ⊗ U[j, j:]`` where
``e = (w_j − q_j s)/U_jj``, then the lazy block update ``W[:, i2:] -= E · U[i1:i2, i2:]``; un-permute. The
per-row scales ``s`` are fixed before the sweep (from the clip rule, :mod:`golflib.quant.clip`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from golflib.quant.intn import qmax


def _inverse_cholesky_upper(h: Tensor, damp: float) -> Tensor:
    """``chol(H⁻¹)`` upper-triangular (float64 math), retrying with 10× damping if H is not positive definite."""
    h = h.double()
    n = h.shape[0]
    mean_diag = float(torch.diagonal(h).mean())
    eye = torch.eye(n, dtype=h.dtype, device=h.device)
    for attempt in range(6):
        lam = damp * (10 ** attempt) * (mean_diag if mean_diag > 0 else 1.0)
        L, info = torch.linalg.cholesky_ex(h + lam * eye)
        if int(info) == 0:
            hinv = torch.cholesky_inverse(L)
            U, info2 = torch.linalg.cholesky_ex(hinv, upper=True)
            if int(info2) == 0:
                return U
    raise RuntimeError(f"GPTQ: Hessian of size {n} is not positive definite even with damping "
                       f"{damp * 1e5:g}·mean(diag H)")


def gptq_quantize(w: Tensor, h: Tensor, scale: Tensor, bits: int, *, block_size: int = 128, damp: float = 0.01,
                  act_order: bool = True) -> Tensor:
    """GPTQ codes for one weight matrix.

    Args:
        w: weight ``[rows, cols]`` (rows = output features).
        h: input Hessian ``[cols, cols]`` (``XᵀX/n``, float32/64, symmetric PSD).
        scale: fixed per-row scales ``[rows]`` (> 0).
        bits: code width in [2, 8]; codes are clamped to ``[-qmax, qmax]``.
        block_size: columns per lazy-update block (128 in the records).
        damp: relative damping, ``H += damp·mean(diag H)·I`` (0.01 in the records).
        act_order: process columns by descending ``diag(H)``.

    Returns:
        int8 codes ``[rows, cols]`` (dequantize as ``q * scale[:, None]``).

    Raises:
        ValueError: shape mismatch; RuntimeError: Hessian not positive definite even after heavy damping.
    """
    if w.ndim != 2 or h.shape != (w.shape[1], w.shape[1]) or scale.shape != (w.shape[0],):
        raise ValueError(f"GPTQ shapes: w {tuple(w.shape)}, H {tuple(h.shape)}, scale {tuple(scale.shape)}; "
                         f"expected H [cols, cols] and scale [rows]")
    if block_size < 1:
        raise ValueError(f"GPTQ block_size={block_size}: must be >= 1")
    m = qmax(bits)
    W = w.detach().float().clone()
    H = h.detach().double().clone()
    rows, cols = W.shape
    dead = torch.diagonal(H) <= 0
    if bool(dead.any()):
        H[dead, dead] = 1.0
        W[:, dead] = 0.0
    perm = torch.argsort(torch.diagonal(H), descending=True) if act_order else None
    if perm is not None:
        W, H = W[:, perm], H[perm][:, perm]
    U = _inverse_cholesky_upper(H, damp).float()
    s = scale.detach().float()
    Q = torch.zeros(rows, cols, dtype=torch.int8, device=W.device)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        E = torch.zeros(rows, i2 - i1, dtype=W.dtype, device=W.device)
        for j in range(i2 - i1):
            col = W1[:, j]
            q = torch.clamp(torch.round(col / s), -m, m)
            Q[:, i1 + j] = q.to(torch.int8)
            e = (col - q * s) / U1[j, j]
            W1[:, j:] -= e[:, None] * U1[j, j:][None, :]
            E[:, j] = e
        if i2 < cols:
            W[:, i2:] -= E @ U[i1:i2, i2:]
    if perm is not None:
        Q = Q[:, torch.argsort(perm)]
    return Q


def output_error(w: Tensor, w_hat: Tensor, h: Tensor) -> float:
    """Layer-output reconstruction error ``tr((W−Ŵ) H (W−Ŵ)ᵀ)`` = mean over calibration rows of
    ``‖x(W−Ŵ)ᵀ‖²`` when ``H = XᵀX/n`` (float64 result)."""
    d = (w.double() - w_hat.double())
    return float(torch.einsum("ij,jk,ik->", d, h.double(), d))

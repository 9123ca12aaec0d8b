"""Full-Hessian GPTQ with fixed per-row scales (Frantar et al. 2022, "GPTQ"; in the challenge #535/#634 → #1019,
SPEC §3.B5).

For a linear layer ``y = x Wᵀ`` with calibration inputs ``X`` and ``H = XᵀX / n``, GPTQ quantizes the columns of
``W`` one at a time and pushes each column's rounding error onto the columns not yet quantized, weighted by the
inverse Hessian, so the layer *output* error ``‖X(W − Ŵ)ᵀ‖²`` is what gets minimized rather than ``‖W − Ŵ‖²``.

Steps (all in this module): dead columns (``H_jj = 0``: the input never fires) get ``H_jj = 1`` and zero weights;
damping ``H += damp·mean(diag H)·I``; optional act-order (columns by descending ``diag H``); ``U = chol(H⁻¹)``
upper-triangular; columns in blocks of ``block_size`` with the in-block update ``W[:, j:] -= e ⊗ U[j, j:]`` where
``e = (w_j − q_j s)/U_jj``, then the lazy block update ``W[:, i2:] -= E · U[i1:i2, i2:]``; un-permute. The
scales ``s`` are fixed before the sweep: per row from the clip rule (:mod:`golflib.quant.clip`) in
:func:`gptq_quantize`, per element on a given grid in :func:`gptq_quantize_grid` (LQER's grouped ``B``);
:func:`gptq_search` runs the sweep for several clip candidates and keeps the best (#1019).
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


def _prepare(w: Tensor, h: Tensor, act_order: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(W, H, perm)``: float32 weights and float64 Hessian with dead columns handled (``H_jj = 1``, ``W_:j = 0``)
    and, with ``act_order``, both permuted by descending ``diag(H)`` (``perm`` None otherwise)."""
    W = w.detach().float().clone()
    H = h.detach().double().clone()
    dead = torch.diagonal(H) <= 0
    if bool(dead.any()):
        H[dead, dead] = 1.0
        W[:, dead] = 0.0
    perm = torch.argsort(torch.diagonal(H), descending=True) if act_order else None
    if perm is not None:
        W, H = W[:, perm], H[perm][:, perm]
    return W, H, perm


def _sweep(W: Tensor, U: Tensor, s: Tensor, m: int, block_size: int, lo: int | None = None) -> Tensor:
    """The GPTQ column sweep over ``W`` ``[rows, cols]`` (modified in place) with ``U = chol(H⁻¹)`` upper and fixed
    scales ``s`` — per row ``[rows]``, or per element ``[rows, cols]`` in ``W``'s column order; codes in
    ``[lo, m]`` (``lo`` = ``-m`` when None), int8 in ``W``'s column order."""
    rows, cols = W.shape
    lo = -m if lo is None else lo
    Q = torch.zeros(rows, cols, dtype=torch.int8, device=W.device)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        E = torch.zeros(rows, i2 - i1, dtype=W.dtype, device=W.device)
        for j in range(i2 - i1):
            col = W1[:, j]
            sj = s if s.ndim == 1 else s[:, i1 + j]
            q = torch.clamp(torch.round(col / sj), lo, m)
            Q[:, i1 + j] = q.to(torch.int8)
            e = (col - q * sj) / U1[j, j]
            W1[:, j:] -= e[:, None] * U1[j, j:][None, :]
            E[:, j] = e
        if i2 < cols:
            W[:, i2:] -= E @ U[i1:i2, i2:]
    return Q


def _check(w: Tensor, h: Tensor, block_size: int) -> None:
    if w.ndim != 2 or h.shape != (w.shape[1], w.shape[1]):
        raise ValueError(f"GPTQ shapes: w {tuple(w.shape)}, H {tuple(h.shape)}; expected H [cols, cols]")
    if block_size < 1:
        raise ValueError(f"GPTQ block_size={block_size}: must be >= 1")


def gptq_quantize(w: Tensor, h: Tensor, scale: Tensor, bits: int, *, block_size: int = 128, damp: float = 0.01,
                  act_order: bool = True) -> Tensor:
    """GPTQ codes for one weight matrix.

    Args:
        w: weight ``[rows, cols]`` (rows = output features).
        h: input Hessian ``[cols, cols]`` (``XᵀX/n``, float32/64, symmetric PSD).
        scale: fixed per-row scales ``[rows]`` (> 0).
        bits: code width in [2, 8]; codes are clamped to ``[-qmax, qmax]``.
        block_size: columns per lazy-update block (128 in the records).
        damp: relative damping, ``H += damp·mean(diag H)·I`` (0.01 in the records; #1019 damps twice, 0.0201).
        act_order: process columns by descending ``diag(H)``.

    Returns:
        int8 codes ``[rows, cols]`` (dequantize as ``q * scale[:, None]``).

    Raises:
        ValueError: shape mismatch; RuntimeError: Hessian not positive definite even after heavy damping.
    """
    _check(w, h, block_size)
    if scale.shape != (w.shape[0],):
        raise ValueError(f"GPTQ shapes: w {tuple(w.shape)}, scale {tuple(scale.shape)}; expected scale [rows]")
    W, H, perm = _prepare(w, h, act_order)
    U = _inverse_cholesky_upper(H, damp).float()
    Q = _sweep(W, U, scale.detach().float(), qmax(bits), block_size)
    return Q if perm is None else Q[:, torch.argsort(perm)]


def gptq_quantize_grid(w: Tensor, h: Tensor, scales: Tensor, levels: tuple[int, int], *, block_size: int = 128,
                       damp: float = 0.01, act_order: bool = True) -> Tensor:
    """GPTQ codes of ``w`` ``[rows, cols]`` on a grid with one fixed scale per element (``scales``
    ``[rows, cols]``, e.g. group scales expanded) and codes in ``levels = (lo, hi)`` (e.g. INT4 ``(-8, 7)``): the
    quantizer of L²QER's ``B`` factor (:mod:`golflib.quant.lqer`). Raises ``ValueError`` on shape mismatch."""
    _check(w, h, block_size)
    if scales.shape != w.shape:
        raise ValueError(f"GPTQ grid: scales {tuple(scales.shape)} must match w {tuple(w.shape)}")
    W, H, perm = _prepare(w, h, act_order)
    S = scales.detach().float() if perm is None else scales.detach().float()[:, perm]
    U = _inverse_cholesky_upper(H, damp).float()
    Q = _sweep(W, U, S, levels[1], block_size, lo=levels[0])
    return Q if perm is None else Q[:, torch.argsort(perm)]


def gptq_search(w: Tensor, h: Tensor, candidates: list[Tensor], bits: int, *, block_size: int = 128,
                damp: float = 0.01, act_order: bool = True) -> tuple[Tensor, Tensor, int]:
    """GPTQ wrapped in the per-tensor clip search of #1019: one full GPTQ pass per candidate scale vector, keeping
    the pass with the smallest weight MSE ``mean((W − Q·s)²)`` (over the act-ordered weights with dead columns
    zeroed, as the record computes it; strict ``<``, ties keep the earlier candidate).

    Args:
        w, h, bits, block_size, damp, act_order: as :func:`gptq_quantize`.
        candidates: per-row scale vectors ``[rows]`` to try in order
            (:func:`golflib.quant.clip.search_candidates`).

    Returns:
        ``(codes int8 [rows, cols], scales [rows], index of the chosen candidate)``.

    Raises:
        ValueError: shape mismatch or no candidate.
    """
    _check(w, h, block_size)
    if not candidates or any(c.shape != (w.shape[0],) for c in candidates):
        raise ValueError(f"GPTQ search: {len(candidates)} candidates, each must have shape [{w.shape[0]}]")
    W, H, perm = _prepare(w, h, act_order)
    U = _inverse_cholesky_upper(H, damp).float()
    best, best_q, best_err = 0, None, float("inf")
    for i, s in enumerate(candidates):
        sf = s.detach().float()
        Q = _sweep(W.clone(), U, sf, qmax(bits), block_size)
        err = float((W - Q.float() * sf[:, None]).pow(2).mean())
        if err < best_err:
            best, best_q, best_err = i, Q, err
        elif best_q is None and i == len(candidates) - 1:  # every error NaN (a degenerate tensor): the first
            best, best_q = 0, _sweep(W.clone(), U, candidates[0].detach().float(), qmax(bits), block_size)
    return (best_q if perm is None else best_q[:, torch.argsort(perm)]), candidates[best].float(), best


def output_error(w: Tensor, w_hat: Tensor, h: Tensor) -> float:
    """Layer-output reconstruction error ``tr((W−Ŵ) H (W−Ŵ)ᵀ)``: ``‖X(W−Ŵ)ᵀ‖² / n`` when ``H = XᵀX/n`` (per
    calibration batch for :func:`golflib.quant.calib.collect_hessians`' Hessians; float64 result)."""
    d = (w.double() - w_hat.double())
    return float(torch.einsum("ij,jk,ik->", d, h.double(), d))

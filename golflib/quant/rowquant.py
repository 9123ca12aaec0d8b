"""One matrix → per-row codes and fp16 scales under a treatment of :mod:`golflib.quant.classes` (SPEC §3.B).

The four ways the records quantize a matrix, all reproduced bit for bit on the same weights (and Hessian):

* round-to-nearest with the fp16 scale (``rounding="fp16"``): ``s = fp16(max(clip/qmax, floor))``,
  ``q = clamp(round(w/s), ±qmax)`` — the int6 matrices of #287 → #1487, GPTQ-era scales;
* round-to-nearest with the fp32 scale (``rounding="fp32"``): the records' int8 tables (``quantize_float_tensor``
  of #287 → #1019 with the percentile clip, #1487 with SDClip): values clipped at ``±clip`` first,
  ``s = max(clip/qmax, floor)`` in fp32, ``q = clamp(round(clip(w)/s), ±qmax)``, ``s`` stored as fp16 (so the codes
  are rounded against a scale a little different from the stored one, as the records do);
* GPTQ with scales fixed by the clip rule (#1394 → #1855);
* GPTQ inside the per-tensor clip search (#1019): one GPTQ pass per candidate, smallest weight MSE kept.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golflib.quant.clip import FP16_TINY, ClipRule, num, parse_clip_rule, row_clip, row_scales, search_candidates, \
    search_tensor, SEARCH_FRACTIONS
from golflib.quant.gptq import gptq_quantize, gptq_search
from golflib.quant.intn import fp16_exact, qmax, quantize_rows

ROUNDINGS = ("fp16", "fp32")


def fp32_scale_rows(w: Tensor, clip: Tensor, bits: int, floor: float) -> tuple[Tensor, Tensor]:
    """The records' int8 rounding (module docstring): ``w`` ``[rows, cols]`` clipped at ``±clip`` (``[rows]``),
    codes from the fp32 scale ``max(clip/qmax, floor, 2^-24)``. Returns ``(codes, scale)``: codes int8
    ``[rows, cols]``, the stored scale float32 ``[rows]`` holding fp16-exact values."""
    m = qmax(bits)
    w = w.float()
    c = clip.float()[:, None]
    clipped = torch.maximum(torch.minimum(w, c), -c)
    s32 = (clip.float() / m).clamp_min(max(floor, FP16_TINY))  # a stored fp16 scale is never 0
    q = torch.clamp(torch.round(clipped / s32[:, None]), -m, m).to(torch.int8)
    return q, fp16_exact(s32)


def quantize_matrix(w: Tensor, bits: int, rule: ClipRule | str, *, floor: float, rounding: str = "fp16",
                    hessian: Tensor | None = None, block_size: int = 128, damp: float = 0.01,
                    act_order: bool = True) -> tuple[Tensor, Tensor, dict]:
    """Per-row codes of ``w`` ``[rows, cols]`` (float) under one treatment (module docstring).

    Args:
        bits: code width in [2, 8].
        rule: clip rule (``search`` chooses one candidate per tensor; ``hsdclip`` needs ``hessian``).
        floor: the smallest scale (:func:`golflib.quant.clip.scale_floor`).
        rounding: ``fp16`` or ``fp32`` (round-to-nearest only; not with GPTQ or a search rule).
        hessian: the layer's input Hessian ``[cols, cols]``: GPTQ when given, else round-to-nearest.
        block_size, damp, act_order: GPTQ settings (:func:`golflib.quant.gptq.gptq_quantize`).

    Returns:
        ``(codes int8 [rows, cols], scales float32 [rows] (fp16-exact), info)`` where ``info`` is
        ``{"method": "gptq"|"rtn"}`` plus ``"search": <chosen quantile>`` for the search rule.

    Raises:
        ValueError: an unknown rounding, ``fp32`` rounding with GPTQ or a search rule, ``hsdclip`` without a
        Hessian, or GPTQ shape errors.
    """
    rule = parse_clip_rule(rule)
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding {rounding!r}: expected one of {ROUNDINGS}")
    if rounding == "fp32" and (hessian is not None or rule.kind in ("search", "search_row")):
        raise ValueError(f"fp32 rounding is round-to-nearest with a closed-form clip; got rule {rule.spec}"
                         + (" with GPTQ" if hessian is not None else ""))
    w = w.float()
    h_diag = None if hessian is None else torch.diagonal(hessian)
    if hessian is not None and rule.kind == "search":
        q, s, idx = gptq_search(w, hessian, search_candidates(w, bits, floor=floor), bits, block_size=block_size,
                                damp=damp, act_order=act_order)
        return q, s, {"method": "gptq", "search": num(SEARCH_FRACTIONS[idx])}
    if hessian is not None:
        s = row_scales(w, bits, rule, h_diag=h_diag, floor=floor)
        return gptq_quantize(w, hessian, s, bits, block_size=block_size, damp=damp, act_order=act_order), s, \
            {"method": "gptq"}
    if rule.kind == "search":
        idx, s = search_tensor(w, bits, floor=floor)
        return quantize_rows(w, s, bits), s, {"method": "rtn", "search": num(SEARCH_FRACTIONS[idx])}
    if rounding == "fp32":
        q, s = fp32_scale_rows(w, row_clip(w, rule, bits, h_diag), bits, floor)
        return q, s, {"method": "rtn"}
    s = row_scales(w, bits, rule, h_diag=h_diag, floor=floor)
    return quantize_rows(w, s, bits), s, {"method": "rtn"}

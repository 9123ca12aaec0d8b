"""Straight-through fake quantization for QAT (SPEC §3.B3): one function shared by (late) QAT and the export.

``fake_quant(w, bits, clip)`` returns ``w + (Q(w) - w).detach()`` where ``Q`` is the per-row symmetric quantizer of
the export path (:func:`golflib.quant.clip.row_scales` + :func:`golflib.quant.intn.quantize_rows`, scales rounded
to fp16): the forward pass sees exactly the weights the artifact will hold after round-to-nearest, the backward
pass is the identity (straight-through estimator). Pure tensor code without Python branches on tensor values, so
it traces under ``torch.compile``; toggle it with a graph input or a recompile, never a class attribute that
``torch.compile`` may constant-fold (SPEC §7.2 trap 2).

``clip="rowmax_floor"`` is the records' own late-QAT quantizer (#287/#414/#461/#549/#1019 ``CastedLinear``):
``s = max(rowmax/qmax, 1/qmax)`` in float32 (no fp16 rounding), codes ``clamp(round(w/s), −qmax−1, qmax)``
(int6: −32..31), then the same straight-through estimator. It is not an export rule (the export's int6 scales are
fp16): late QAT of those records fake-quantizes with it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from golflib.quant.clip import ClipRule, parse_clip_rule, row_scales
from golflib.quant.intn import dequantize_rows, qmax, quantize_rows


ROWMAX_FLOOR = "rowmax_floor"


def rowmax_floor_quantize(w: Tensor, bits: int) -> Tensor:
    """The records' late-QAT ``Q(w)`` (module docstring) of ``w`` ``[rows, cols]``: float32, no gradient path."""
    m = qmax(bits)
    w32 = w.detach().float()
    scale = (w32.abs().amax(dim=1) / m).clamp_min(1.0 / m)
    return torch.clamp(torch.round(w32 / scale[:, None]), -(m + 1), m) * scale[:, None]


def quantize_dequantize(w: Tensor, bits: int, clip: ClipRule | str = "sdclip:12.85", *,
                        legacy_floor: bool = False) -> Tensor:
    """``Q(w)``: per-row quantize then dequantize ``w`` ``[rows, cols]`` (float32 result, no gradient path)."""
    w32 = w.detach().float()
    scale = row_scales(w32, bits, clip, legacy_floor=legacy_floor)
    return dequantize_rows(quantize_rows(w32, scale, bits), scale)


def fake_quant(w: Tensor, bits: int, clip: ClipRule | str = "sdclip:12.85", *, legacy_floor: bool = False) -> Tensor:
    """STE fake quantization of a weight matrix.

    Args:
        w: weight ``[rows, cols]`` (any float dtype; rows = output features, one scale per row).
        bits: code width in [2, 8] (int6 → codes in [-31, 31]).
        clip: clip rule string or :class:`~golflib.quant.clip.ClipRule` (``sdclip:K``, ``percentile:P``,
            ``absmax``, ``search``; ``hsdclip`` is export-only since it needs a Hessian), or ``"rowmax_floor"``
            for the records' late-QAT quantizer (module docstring; ``legacy_floor`` does not apply).
        legacy_floor: floor the scale at ``1/qmax`` like the pre-GPTQ exporters.

    Returns:
        ``w + (Q(w) - w).detach()`` in ``w.dtype``: forward value ``Q(w)``, gradient identity w.r.t. ``w``.

    Raises:
        ValueError: bad ``bits`` or clip rule, or ``w`` not 2-D.
    """
    if w.ndim != 2:
        raise ValueError(f"fake_quant expects a 2-D weight [rows, cols], got shape {tuple(w.shape)}")
    if clip == ROWMAX_FLOOR:
        return w + (rowmax_floor_quantize(w, bits).to(w.dtype) - w).detach()
    rule = parse_clip_rule(clip)
    if rule.needs_hessian:
        raise ValueError(f"clip rule {rule.spec} needs a Hessian and cannot be used for fake quantization")
    q = quantize_dequantize(w, bits, rule, legacy_floor=legacy_floor).to(w.dtype)
    return w + (q - w).detach()


@functools.lru_cache(maxsize=None)
def qat_function(bits: int, clip: str) -> Callable:
    """The STE fake quantizer of ``bits`` and ``clip`` (a config string), one object per setting: a compiled graph
    guards on the identity of each module's ``qat_fn``, so the warm-up's QAT graph is only reused by the timed loop
    if both install the same object (issue 14: switching late QAT on recompiled inside the 600 s)."""
    return functools.partial(fake_quant, bits=bits, clip=clip if clip == ROWMAX_FLOOR else parse_clip_rule(clip))


def set_late_qat(model, bits: int, clip: ClipRule | str = "absmax", modules: tuple[str, ...] = ()) -> int:
    """Enable (``bits > 0``) or disable (``bits = 0``) STE fake quantization on the ``CastedLinear`` modules of
    ``model`` whose names contain one of ``modules`` (empty: every one except an untied ``lm_head``, quantized with
    the embedding's bits at export). Late QAT (#286/#315/#414) calls this once when the LR multiplier falls below
    ``LATE_QAT_THRESHOLD``; ``LATE_QAT_MODULES`` restricts it as the banked records (#549/#1019), whose block
    matrices are bank slices outside their QAT layer class, fake-quantize only ``bigram.proj`` / ``ve_shared.proj``.
    The transform acts in training-mode forwards only (``CastedLinear.forward``). It is stored as each module's
    ``qat_fn`` instance attribute, which ``torch.compile`` guards on (recompiles), unlike the records' class flag.
    With a string ``clip`` the function is :func:`qat_function`'s (the same object for the same setting).
    Returns the number of modules changed."""
    from golflib.model.layers import CastedLinear

    if not bits:
        fn = None
    elif isinstance(clip, str):
        fn = qat_function(bits, clip)
    else:
        fn = functools.partial(fake_quant, bits=bits, clip=parse_clip_rule(clip))
    n = 0
    for name, m in model.named_modules():
        if not isinstance(m, CastedLinear):
            continue
        if (any(p in name for p in modules) if modules else not name.startswith("lm_head")):
            if fn is None:  # back to the class default: the module is then what a compiled graph first saw
                m.__dict__.pop("qat_fn", None)
            else:
                m.qat_fn = fn
            n += 1
    return n

"""The records' export: per-class int-k with SDClip scales, GPTQ and optional LQER (SPEC §3.B1–B11).

``quantize_mixed(state_dict, cfg, hessians)`` applies the class policies of :mod:`golflib.quant.classes` to every
tensor: matrices get per-row ``bits``-bit codes with scales from the clip rule (fp16), through GPTQ when a Hessian
is available for the weight (else round-to-nearest); vectors larger than ``KEEP_FLOAT_MAX_NUMEL`` get one
per-tensor int8 scale (percentile clip, as the baseline); smaller vectors and control tensors pass through. With
``LQER_ENABLED`` the ``LQER_TOP_K`` matrices with the largest error get quantized low-rank corrections. The result
is a :class:`~golflib.quant.int8.QuantizedState` whose metadata records, per tensor, its class, bits, clip rule,
method (gptq/rtn) and LQER packing, and globally the scheme settings — so the artifact is self-describing.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import torch
from torch import Tensor

from golflib.settings.quant import QuantConfig
from golflib.quant.classes import MATRIX_CLASSES, class_policies, policy_for
from golflib.quant.clip import FP16_TINY, num, parse_clip_rule, row_scales
from golflib.quant.gptq import gptq_quantize
from golflib.quant.int8 import QuantizedState, _dtype_name
from golflib.quant.intn import dequantize_rows, fp16_exact, qmax, quantize_rows, quantize_tensor
from golflib.quant.lqer import pack_factors, select_top_k

SCHEME = "golflib_mixed_v1"
SCHEME_FIELDS = ("matrix_bits", "attn_bits", "mlp_bits", "embed_bits", "quant_clip_rule", "matrix_clip_sigmas",
                 "attn_clip_sigmas", "mlp_clip_sigmas", "embed_clip_sigmas", "hessian_clip_lambda",
                 "gated_attn_quant_gate", "gptq_enabled", "gptq_calibration", "gptq_block_size", "gptq_damp",
                 "gptq_act_order", "lqer_enabled", "lqer_rank", "lqer_top_k", "lqer_asym_enabled",
                 "lqer_asym_group", "lqer_factor_bits", "legacy_scale_floor")


def scheme_tag(cfg: QuantConfig) -> str:
    """Short file-name tag of a mixed scheme, e.g. ``int6e8`` (matrices int6, embedding int8)."""
    bits = {cfg.attn_bits or cfg.matrix_bits, cfg.mlp_bits or cfg.matrix_bits}
    mat = "-".join(str(b) for b in sorted(bits))
    return f"int{mat}e{cfg.embed_bits}"


def quantize_mixed(state_dict: dict[str, Tensor], cfg: QuantConfig, hessians: dict[str, Tensor] | None = None,
                   *, log: Callable[[str], None] | None = None) -> QuantizedState:
    """Quantize ``state_dict`` with the mixed scheme of ``cfg`` (module docstring).

    Args:
        state_dict: float/int tensors (any device); moved to CPU.
        cfg: the quantization settings (bits and clip per class, GPTQ, LQER).
        hessians: ``{weight name: H [cols, cols]}`` from :func:`golflib.quant.calib.collect_hessians`; weights
            without one (or with ``GPTQ_ENABLED=0``) use round-to-nearest.
        log: optional line logger (one summary line).

    Returns:
        QuantizedState with storage ``<name>.q`` (int8 ``[rows, cols]``), ``<name>.scale`` (fp16 ``[rows]``),
        passthrough tensors, and LQER factors ``<name>.lqer.{a.q,a.scale,b.q,b.scale}``.

    Raises:
        ValueError: a Hessian of the wrong shape.
    """
    t0 = time.perf_counter()
    hessians = hessians or {}
    policies = class_policies(cfg)
    out = QuantizedState()
    out.meta["scheme"] = SCHEME
    out.meta["quant"] = {k: getattr(cfg, k) for k in SCHEME_FIELDS}
    errors: dict[str, Tensor] = {}
    n_gptq = 0
    for name, t in state_dict.items():
        t = t.detach().to("cpu").contiguous()
        cls, pol = policy_for(name, t, policies)
        entry: dict = {"dtype": _dtype_name(t.dtype), "shape": list(t.shape), "class": cls}
        if cls == "vector" and t.numel() > cfg.keep_float_max_numel:  # large non-matrix: per-tensor int8
            clip = float(torch.quantile(t.float().abs().flatten()[:1 << 24], cfg.int8_clip_percentile / 100.0))
            scale = fp16_exact(torch.tensor(max(clip / qmax(8), FP16_TINY)))
            out.tensors[name + ".q"] = quantize_tensor(t, float(scale), 8).contiguous()
            out.tensors[name + ".scale"] = scale.reshape(1).to(torch.float16)
            entry.update(kind="per_tensor", bits=8, clip=f"percentile:{num(cfg.int8_clip_percentile)}", method="rtn")
            out.meta["tensors"][name] = entry
            continue
        if pol.kind == "passthrough":
            stored = t if pol.store == "keep" else t.to(getattr(torch, pol.store))
            out.tensors[name] = stored.contiguous()
            entry.update(kind="passthrough", bits=stored.element_size() * 8, store=_dtype_name(stored.dtype))
            out.meta["tensors"][name] = entry
            continue
        w = t.float().reshape(-1, t.shape[-1])
        h = hessians.get(name) if (pol.gptq and cfg.gptq_enabled) else None
        if h is not None and tuple(h.shape) != (w.shape[1], w.shape[1]):
            raise ValueError(f"{name}: Hessian shape {tuple(h.shape)} does not match weight columns {w.shape[1]}")
        rule = parse_clip_rule(pol.clip)
        if rule.needs_hessian and h is None:  # no calibration for this tensor: plain SDClip with the same k
            rule = parse_clip_rule(f"sdclip:{num(rule.k)}")
        scale = row_scales(w, pol.bits, rule, h_diag=None if h is None else torch.diagonal(h),
                           legacy_floor=cfg.legacy_scale_floor)
        if h is not None:
            q = gptq_quantize(w, h, scale, pol.bits, block_size=cfg.gptq_block_size, damp=cfg.gptq_damp,
                              act_order=cfg.gptq_act_order)
            method = "gptq"
            n_gptq += 1
        else:
            q = quantize_rows(w, scale, pol.bits)
            method = "rtn"
        out.tensors[name + ".q"] = q.contiguous()
        out.tensors[name + ".scale"] = scale.to(torch.float16).contiguous()
        entry.update(kind="per_row", bits=pol.bits, clip=rule.spec, method=method)
        out.meta["tensors"][name] = entry
        if cls in MATRIX_CLASSES:
            errors[name] = w - dequantize_rows(q, scale)
    if cfg.lqer_enabled and errors:
        for name in select_top_k(errors, cfg.lqer_top_k):
            factors = pack_factors(errors[name], cfg.lqer_rank, asym=cfg.lqer_asym_enabled,
                                   group=cfg.lqer_asym_group, bits=cfg.lqer_factor_bits)
            for k, v in factors.items():
                out.tensors[f"{name}.lqer.{k}"] = (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
            out.meta["tensors"][name]["lqer"] = {"rank": int(factors["a.q"].shape[1]),
                                                 "asym": cfg.lqer_asym_enabled, "group": cfg.lqer_asym_group,
                                                 "bits": 2 if cfg.lqer_asym_enabled else cfg.lqer_factor_bits}
    if log is not None:
        log(f"quant:mixed scheme:{scheme_tag(cfg)} tensors:{len(out.meta['tensors'])} gptq:{n_gptq} "
            f"lqer:{sum('lqer' in e for e in out.meta['tensors'].values())} "
            f"seconds:{time.perf_counter() - t0:.1f}")
    return out


def config_from_meta(meta: dict, base: QuantConfig | None = None) -> QuantConfig:
    """The QuantConfig a mixed artifact was made with (its ``meta["quant"]`` over ``base``)."""
    base = base or QuantConfig()
    known = {f.name for f in dataclasses.fields(QuantConfig)}
    return dataclasses.replace(base, **{k: v for k, v in meta.get("quant", {}).items() if k in known})

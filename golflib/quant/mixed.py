"""The records' export: per-class int-k with SDClip scales, GPTQ and optional LQER (SPEC §3.B1–B11).

``quantize_mixed(state_dict, cfg, hessians)`` gives every tensor its treatment (:func:`golflib.quant.classes.
treatment_for`: overrides, int8 gates, fp16 passthrough of every tensor with ``<= KEEP_FLOAT_MAX_NUMEL`` elements,
class policies) after the optional magnitude pruning of #461 (``PRUNE_MAGNITUDE_FRAC``). Matrices get per-row
``bits``-bit codes (:func:`golflib.quant.rowquant.quantize_matrix`: round-to-nearest with the fp16 or the records'
fp32 scale rounding, GPTQ when a Hessian is available, the per-tensor percentile search, GPTQ inside that search);
large vectors get one per-tensor int8 scale (percentile clip, as the baseline). With ``LQER_ENABLED`` the
``LQER_TOP_K`` matrices with the largest error get quantized low-rank corrections (refit, or #1855's plain
factors). The result is a :class:`~golflib.quant.int8.QuantizedState` whose metadata records, per tensor, its
class, bits, clip rule, floor, rounding, method (gptq/rtn), search choice and LQER packing, and globally the scheme
settings (``SCHEME_FIELDS``) — so the artifact decodes on its own. How the Hessians were collected (loader, damping,
all-reduce) and the pruning rule are in the run's ``config.json``, not in the artifact.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import torch
from torch import Tensor

from golflib.progress import Progress, rank0
from golflib.settings.quant import QuantConfig
from golflib.quant.classes import MATRIX_CLASSES, class_policies, parse_override, treatment_for
from golflib.quant.clip import FP16_TINY, num, parse_clip_rule
from golflib.quant.int8 import QuantizedState, _dtype_name
from golflib.quant.intn import dequantize_rows, fp16_exact, qmax, quantize_tensor
from golflib.quant.prune import magnitude_prune
from golflib.quant.rowquant import quantize_matrix

SCHEME = "golflib_mixed_v1"
SCHEME_FIELDS = ("matrix_bits", "attn_bits", "mlp_bits", "embed_bits", "quant_clip_rule", "matrix_clip_sigmas",
                 "attn_clip_sigmas", "mlp_clip_sigmas", "embed_clip_sigmas", "hessian_clip_lambda",
                 "embed_clip_rule", "embed_scale_rounding", "embed_gptq", "quant_overrides", "keep_float_max_numel",
                 "int8_clip_percentile", "gated_attn_quant_gate", "gptq_enabled", "gptq_calibration",
                 "gptq_block_size", "gptq_damp", "gptq_act_order", "lqer_enabled", "lqer_rank", "lqer_top_k",
                 "lqer_asym_enabled", "lqer_asym_group", "lqer_factor_bits", "lqer_factors", "legacy_scale_floor",
                 "prune_magnitude_frac", "prune_magnitude_min_numel")


def scheme_tag(cfg: QuantConfig) -> str:
    """Short file-name tag of a mixed scheme, e.g. ``int6e8`` (matrices int6, embedding int8)."""
    bits = {cfg.attn_bits or cfg.matrix_bits, cfg.mlp_bits or cfg.matrix_bits}
    mat = "-".join(str(b) for b in sorted(bits))
    return f"int{mat}e{cfg.embed_bits}"


def quantize_mixed(state_dict: dict[str, Tensor], cfg: QuantConfig, hessians: dict[str, Tensor] | None = None,
                   *, log: Callable[[str], None] | None = None) -> QuantizedState:
    """Quantize ``state_dict`` with the mixed scheme of ``cfg`` (module docstring).

    Args:
        state_dict: float/int tensors (any device); moved to CPU (and not modified: pruning works on copies).
        cfg: the quantization settings (treatments, GPTQ, LQER, magnitude pruning).
        hessians: ``{weight name: H [cols, cols]}`` from :func:`golflib.quant.calib.collect_hessians`; weights
            without one (or with GPTQ off for their treatment) use round-to-nearest.
        log: optional line logger (one summary line).

    Returns:
        QuantizedState with storage ``<name>.q`` (int8 ``[rows, cols]``), ``<name>.scale`` (fp16 ``[rows]``),
        passthrough tensors, and LQER factors ``<name>.lqer.{a.q,a.scale,b.q,b.scale}``.

    Raises:
        ValueError: a Hessian of the wrong shape, or a bad QUANT_OVERRIDES entry.
    """
    t0 = time.perf_counter()
    hessians = hessians or {}
    policies = class_policies(cfg)
    overrides = [parse_override(e) for e in cfg.quant_overrides]
    if cfg.prune_magnitude_frac > 0:
        state_dict, n_pruned = magnitude_prune(state_dict, cfg.prune_magnitude_frac, cfg.prune_magnitude_min_numel)
        if log is not None:
            log(f"quant:magnitude_prune frac:{cfg.prune_magnitude_frac} min_numel:>{cfg.prune_magnitude_min_numel} "
                f"zeroed:{n_pruned}")
    out = QuantizedState()
    out.meta["scheme"] = SCHEME
    out.meta["quant"] = {k: (list(v) if isinstance(v, tuple) else v) for k in SCHEME_FIELDS
                         for v in [getattr(cfg, k)]}
    errors: dict[str, Tensor] = {}
    n_gptq = 0
    prog = Progress(len(state_dict), "export", "tensors", enabled=rank0())
    for name, t in prog.wrap(state_dict.items()):
        t = t.detach().to("cpu").contiguous()
        cls, pol = treatment_for(name, t, cfg, policies, overrides)
        entry: dict = {"dtype": _dtype_name(t.dtype), "shape": list(t.shape), "class": cls}
        if pol.kind == "per_tensor":  # large non-matrix: one int8 scale
            clip = float(torch.quantile(t.float().abs().flatten()[:1 << 24], cfg.int8_clip_percentile / 100.0))
            scale = fp16_exact(torch.tensor(max(clip / qmax(8), FP16_TINY)))
            out.tensors[name + ".q"] = quantize_tensor(t, float(scale), 8).contiguous()
            out.tensors[name + ".scale"] = scale.reshape(1).to(torch.float16)
            entry.update(kind="per_tensor", bits=8, clip=pol.clip, method="rtn")
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
        q, scale, info = quantize_matrix(w, pol.bits, rule, floor=pol.floor, rounding=pol.rounding, hessian=h,
                                         block_size=cfg.gptq_block_size, damp=cfg.gptq_damp,
                                         act_order=cfg.gptq_act_order)
        n_gptq += info["method"] == "gptq"
        out.tensors[name + ".q"] = q.contiguous()
        out.tensors[name + ".scale"] = scale.to(torch.float16).contiguous()
        entry.update(kind="per_row", bits=pol.bits, clip=rule.spec, **info)
        if pol.floor != FP16_TINY:
            entry["floor"] = pol.floor
        if pol.rounding != "fp16":
            entry["rounding"] = pol.rounding
        out.meta["tensors"][name] = entry
        if cls in MATRIX_CLASSES:
            errors[name] = w - dequantize_rows(q, scale)
    if cfg.lqer_enabled and errors:
        from golflib.quant.lqer import pack_factors, plain_factors, select_top_k  # optional (golflib.seams)

        for name in select_top_k(errors, cfg.lqer_top_k):
            if cfg.lqer_factors == "plain":
                factors, asym = plain_factors(errors[name], cfg.lqer_rank, asym=cfg.lqer_asym_enabled,
                                              group=cfg.lqer_asym_group, bits=cfg.lqer_factor_bits)
            else:
                asym = cfg.lqer_asym_enabled
                factors = pack_factors(errors[name], cfg.lqer_rank, asym=asym, group=cfg.lqer_asym_group,
                                       bits=cfg.lqer_factor_bits)
            for k, v in factors.items():
                out.tensors[f"{name}.lqer.{k}"] = (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
            out.meta["tensors"][name]["lqer"] = {"rank": int(factors["a.q"].shape[1]), "asym": asym,
                                                 "group": cfg.lqer_asym_group,
                                                 "bits": 2 if asym else cfg.lqer_factor_bits}
    if log is not None:
        log(f"quant:mixed scheme:{scheme_tag(cfg)} tensors:{len(out.meta['tensors'])} gptq:{n_gptq} "
            f"lqer:{sum('lqer' in e for e in out.meta['tensors'].values())} "
            f"seconds:{time.perf_counter() - t0:.1f}")
    return out


def config_from_meta(meta: dict, base: QuantConfig | None = None) -> QuantConfig:
    """The QuantConfig a mixed artifact was made with (its ``meta["quant"]`` over ``base``)."""
    base = base or QuantConfig()
    known = {f.name for f in dataclasses.fields(QuantConfig)}
    return dataclasses.replace(base, **{k: (tuple(v) if isinstance(v, list) else v)
                                        for k, v in meta.get("quant", {}).items() if k in known})

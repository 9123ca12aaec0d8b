"""Pre-flight byte budget: will this config's artifact fit in 16,000,000 bytes, before any training (issue 11)?

:func:`preflight_budget` builds the full model of a config, exports its weights with the config's own recipe (the
artifact a run scores: the mixed one with ``MIXED_EXPORT=1``, else int8 with ``ARTIFACT_CODEC``) and adds the
counted code bytes. The weights are either

* a trained checkpoint (``weights="checkpoint"``) — the number is exact for the recipe, given the same GPTQ
  Hessians (without calibration data GPTQ cannot run and round-to-nearest codes are used; the result says so); or
* an estimate (``weights="gaussian"``): every tensor the recipe quantizes per row is replaced by rows of
  ``N(0, σ_t²)`` draws, every other float tensor by its init plus noise (:func:`gaussian_rows`). Init weights
  themselves are no estimate — projections start at zero and compress to almost nothing (the top stack's init
  weights come to 9.66 MB against its record's 15.90 MB). SDClip (``c = k·σ(row)``) is scale-invariant per row,
  so any σ gives the codes of a Gaussian-like trained row. The older rules are not: with the records' 1/31 scale
  floor (``LEGACY_SCALE_FLOOR``) a row whose clip is below 1 is quantized with a step of 1/31 whatever its range,
  so the codes depend on the weights' absolute size. ``σ_t`` = :data:`TRAINED_ROW_STD` is that size for the 600-second records, read off a
  record's own log: #1019 reports 4,207,533 of its 25,952,256 int6 codes at ±1 before pruning, which a Gaussian
  quantized with the binding 1/31 step gives at σ = 0.155. docs/LOG.md compares the estimate with every record's
  published artifact and with trained checkpoints.

With ``PRUNE_TARGET_BYTES`` set, ±1 pruning runs as in the export, so the estimate is after pruning (when even
pruning every ±1 code cannot reach the target, the unpruned bytes are reported, with the reason under ``prune``).
All byte counts are decimal; the limit is strict (``<``).
"""

from __future__ import annotations

import dataclasses
import time

import torch

from golflib.config import Config
from golflib.model.gpt import GPT
from golflib.quant.artifact import encode_artifact
from golflib.quant.budget import artifact_budget
from golflib.quant.classes import class_policies, parse_override, treatment_for
from golflib.quant.export import mixed_state
from golflib.quant.int8 import quantize_int8
from golflib.quant.prune import SIZE_LIMIT, PruneTargetError

WEIGHT_SOURCES = ("gaussian", "checkpoint")
TRAINED_ROW_STD = 0.155  # entry std of the records' trained block matrices (module docstring)
# Relative error band of the Gaussian-rows estimate (docs/LOG.md, against the records' published artifacts and a
# trained run's own): a config whose estimate is over the limit by more than its band cannot fit; one over by less
# may. Scale-invariant recipes (SDClip rows, no scale at a floor) came within +0.0% (#1394), +0.6% (#1855), -5.0%
# (#1487) of their records and +6.6% of a trained cpu-tiny artifact (its short-trained embedding); recipes whose
# codes depend on the weights' absolute size or tail shape (a 1/31 or 1/127 floor that binds, percentile / absmax /
# search clips) within -12.9% (the baseline: no weight decay, its trained weights are larger than the records'
# 0.155) to +3.5% (#461).
ESTIMATE_BAND = 0.07
ESTIMATE_BAND_SCALE_DEPENDENT = 0.15
# Float tensors the recipe keeps as floats (or quantizes per tensor) start as constants (ones, zeros) that compress
# to nothing; trained, their mantissas are noise: a trained cpu-tiny run stores its control tensors at 16.6 bits per
# parameter, their init 2.9 (docs/LOG.md). Init + this noise restores the trained size (15.4 bits).
FLOAT_NOISE_REL, FLOAT_NOISE_ABS = 0.1, 0.01


def gaussian_rows(state: dict[str, torch.Tensor], cfg: Config, seed: int = 0) -> dict[str, torch.Tensor]:
    """``state`` with every tensor the recipe quantizes per row replaced by ``N(0, TRAINED_ROW_STD²)`` rows
    (float32, a fixed seed; for the int8 export, every 2-D float tensor above ``KEEP_FLOAT_MAX_NUMEL``) and every
    other float tensor by its init plus noise of std ``FLOAT_NOISE_REL·|init| + FLOAT_NOISE_ABS`` (control
    tensors, gates, vectors, small matrices: after training they are no longer the constants they start as);
    integer tensors are kept."""
    g = torch.Generator().manual_seed(seed)
    policies = class_policies(cfg.quant)
    overrides = [parse_override(e) for e in cfg.quant.quant_overrides]
    out = {}
    for name, t in state.items():
        if cfg.quant.mixed_export:
            _, pol = treatment_for(name, t, cfg.quant, policies, overrides)
            per_row = pol.kind == "per_row"
        else:
            per_row = t.is_floating_point() and t.ndim == 2 and t.numel() > cfg.quant.keep_float_max_numel
        if per_row:
            out[name] = torch.randn(t.shape, generator=g) * TRAINED_ROW_STD
        elif t.is_floating_point():  # trained values are no longer constant: incompressible fp16/fp32 mantissas
            noise = torch.randn(t.shape, generator=g)
            out[name] = t + noise * (FLOAT_NOISE_REL * t.abs() + FLOAT_NOISE_ABS)
        else:
            out[name] = t
    return out


def matching_state(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (trained weights) in the order of ``own`` (the configured model's state dict); raises
    ``ValueError`` naming missing, unexpected and mis-shaped tensors when it is not that model's."""
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise ValueError(f"checkpoint does not match the configured model: missing {missing[:6]}, "
                         f"unexpected {unexpected[:6]}, shape mismatches {bad[:6]}")
    return {k: state[k] for k in own}


def scored_codec(cfg: Config) -> str:
    """The codec of the artifact a run scores (``MIXED_CODEC`` with ``MIXED_EXPORT=1``, else ``ARTIFACT_CODEC``)."""
    return cfg.quant.mixed_codec if cfg.quant.mixed_export else cfg.quant.artifact_codec


def preflight_budget(cfg: Config, *, code_bytes: int, code_source: str, state: dict[str, torch.Tensor] | None = None,
                     hessians: dict[str, torch.Tensor] | None = None, limit: int = SIZE_LIMIT, seed: int = 0) -> dict:
    """Bytes of ``cfg``'s scored artifact plus ``code_bytes``, against ``limit``.

    Args:
        cfg: the resolved config (its model is built at the configured size, on CPU).
        code_bytes: counted code bytes (the bundled ``train_gpt.py`` for this config, or this core's own file).
        code_source: where ``code_bytes`` came from (printed).
        state: trained weights (``{name: tensor}``, e.g. a ``final_model.safetensors``); None = Gaussian rows.
        hessians: GPTQ Hessians for ``state`` (:func:`golflib.quant.calib.collect_hessians`); None = RTN.
        limit: decimal bytes; ``fits`` means ``bytes_total < limit``.
        seed: seed of the Gaussian rows and the float-tensor noise (:func:`gaussian_rows`).

    Returns:
        ``{"weights", "band", "gptq", "scheme", "codec", "artifact_bytes", "code_bytes", "code_source",
        "bytes_total", "limit", "fits", "headroom", "classes", "header_bytes", "params", "prune", "seconds"}``
        (``classes`` as :func:`golflib.quant.budget.artifact_budget`; ``band`` the estimate's relative error band,
        0 for a checkpoint).

    Raises:
        ValueError: ``state`` does not match the model's parameters.
    """
    t0 = time.perf_counter()
    model = GPT(cfg.model)
    own = model.state_dict()
    n_params = sum(p.numel() for p in model.parameters())
    if state is not None:
        weights, source = matching_state(own, state), "checkpoint"
    else:
        weights, source = gaussian_rows(own, cfg, seed), "gaussian"
    del model
    codec = scored_codec(cfg)
    extras: dict = {}
    if cfg.quant.mixed_export:
        try:
            qs, extras = mixed_state(weights, cfg.quant, cfg.model, hessians, code_bytes=code_bytes)
        except PruneTargetError as e:  # pruning cannot reach PRUNE_TARGET_BYTES: report the unpruned (over) bytes
            quant = dataclasses.replace(cfg.quant, prune_target_bytes=0)
            qs, extras = mixed_state(weights, quant, cfg.model, hessians, code_bytes=code_bytes)
            extras["prune"] = {"error": str(e)}
    else:
        qs = quantize_int8(weights, cfg.quant)
    blob = encode_artifact(qs, codec)
    rep = artifact_budget(blob, f"<{source} weights>")
    total = len(blob) + int(code_bytes)
    gptq = bool(cfg.quant.mixed_export and cfg.quant.gptq_enabled and hessians)
    band = 0.0 if source == "checkpoint" else ESTIMATE_BAND if scale_invariant(qs) else ESTIMATE_BAND_SCALE_DEPENDENT
    return {"weights": source, "band": band, "gptq": gptq, "scheme": rep["scheme"], "codec": codec,
            "artifact_bytes": len(blob), "code_bytes": int(code_bytes), "code_source": code_source,
            "bytes_total": total, "limit": int(limit), "fits": total < limit, "headroom": int(limit) - total,
            "classes": rep["classes"], "header_bytes": rep["header_bytes"], "params": n_params,
            "prune": extras.get("prune"), "seconds": time.perf_counter() - t0}


def scale_invariant(qs, tolerance: float = 0.01) -> bool:
    """True when at most ``tolerance`` of the per-row parameters of a quantized state are in tensors that are not
    SDClip-clipped (``c = k·σ(row)``) or have a row whose scale sits at a floor — then the codes of Gaussian rows do
    not depend on the rows' size, and the estimate's band is :data:`ESTIMATE_BAND` (a few small tensors, like
    #1855's absmax attention gates, 88 rows of 12, do not move the total)."""
    total = dependent = 0
    for name, e in qs.meta["tensors"].items():
        if e.get("kind") != "per_row":
            continue
        n = int(qs.tensors[name + ".q"].numel()) if name + ".q" in qs.tensors else 0
        total += n
        floor = e.get("floor")
        if not str(e.get("clip", "")).startswith(("sdclip", "hsdclip")) or (
                floor and bool((qs.tensors[name + ".scale"].float() <= float(floor) * (1 + 1e-3)).any())):
            dependent += n
    return dependent <= tolerance * max(total, 1)


def preflight_line(rep: dict) -> str:
    """One log line: ``preflight:budget weights:gaussian artifact:... code:... total:... limit:... fits:...``."""
    how = {"gaussian": f"estimate from N(0, {TRAINED_ROW_STD}^2) rows", "checkpoint": "checkpoint"}[rep["weights"]]
    how += ", GPTQ" if rep["gptq"] else ", round-to-nearest"
    if rep["band"]:
        how += f", ±{rep['band']:.0%}"
    return (f"preflight:budget weights:{rep['weights']} ({how}) scheme:{rep['scheme']} codec:{rep['codec']} "
            f"artifact:{rep['artifact_bytes']} code:{rep['code_bytes']} ({rep['code_source']}) "
            f"total:{rep['bytes_total']} limit:{rep['limit']} fits:{rep['fits']} headroom:{rep['headroom']:+d}")


def format_preflight(rep: dict) -> str:
    """The per-class table of :func:`preflight_budget` (decimal bytes, bits per parameter), then the total."""
    lines = [preflight_line(rep), f"  {'class':<12}{'bytes':>14}{'params':>14}{'bits/param':>12}"]
    for cls, c in rep["classes"].items():
        bpp = "" if c["bits_per_param"] is None else f"{c['bits_per_param']:.3f}"
        lines.append(f"  {cls:<12}{c['bytes']:>14,}{c['params']:>14,}{bpp:>12}")
    lines.append(f"  {'header':<12}{rep['header_bytes']:>14,}")
    lines.append(f"  {'artifact':<12}{rep['artifact_bytes']:>14,}")
    lines.append(f"  {'code':<12}{rep['code_bytes']:>14,}  ({rep['code_source']})")
    status = "UNDER" if rep["fits"] else "OVER"
    lines.append(f"  {'total':<12}{rep['bytes_total']:>14,}  vs limit {rep['limit']:,}: {status} "
                 f"(headroom {rep['headroom']:+,})")
    return "\n".join(lines)

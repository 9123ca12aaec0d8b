"""Tensor classes and the per-tensor treatment of the mixed export (SPEC §3.B1, §3.B2, §3.B7, §3.B11).

Every state-dict entry falls in one class, decided from its name (the official parameter names) and shape, so new
model parts (recurrence, gates, value embeddings, banks) land in a sensible class without code changes:

========== ============================================================== =======================================
class      names                                                          default treatment (mixed scheme)
========== ============================================================== =======================================
gate       contains ``attn_gate`` (checked first), or ``gate`` and no      int8 per-row absmax if 2-D and
           CONTROL_PATTERNS entry                                         GATED_ATTN_QUANT_GATE, else fp16
control    contains a CONTROL_PATTERNS entry (attn_scale, resid_mix, ...) fp16 passthrough (fp32 if large)
embedding  ``tok_emb`` or contains ``embed``                              EMBED_BITS, EMBED_CLIP_RULE, SDClip
                                                                          EMBED_CLIP_SIGMAS, EMBED_SCALE_ROUNDING
head       contains ``lm_head``                                           as embedding
attention  contains ``.attn.``                                            ATTN_BITS, ATTN_CLIP_SIGMAS
mlp        contains ``.mlp.``                                             MLP_BITS, MLP_CLIP_SIGMAS
matrix     any other float tensor with ≥ 2 dims                           MATRIX_BITS, MATRIX_CLIP_SIGMAS
vector     any other float tensor                                         fp16 (per-tensor int8 if large)
other      non-float tensors                                              passthrough
========== ============================================================== =======================================

(ATTN_/MLP_ values of 0 mean "use the MATRIX_ value".) Tensors with more than 2 dims are quantized per row of
their ``[prod(leading dims), last dim]`` view. (The #287 → #1019 records call every ``.proj.`` name "attention";
golflib's ``matrix`` class — ``bigram.proj``, ``ve_shared.proj`` — gets the same treatment in those records,
whose attention and matrix settings agree.)

:func:`treatment_for` decides a tensor's treatment in the records' order:

1. non-float tensors pass through;
2. with ``GATED_ATTN_QUANT_GATE``, 2-D gate matrices of 32..8,192 elements: int8 per-row absmax (#1736/#1855,
   checked before the size rule as #1855 does);
3. every float tensor with ``<= KEEP_FLOAT_MAX_NUMEL`` elements: fp16 passthrough, whatever its class (every
   record: 65,536, #461 8,192; until issue 11 golflib size-tested vectors only);
4. large control tensors: fp32 passthrough (the records' ``passthrough_ctrl``);
5. the first ``QUANT_OVERRIDES`` entry whose pattern is a substring of the name (#461's ``FP16_KEEP_NAME_PATTERNS``
   and per-name classes, after the size and control rules as there);
6. large vectors: per-tensor int8; everything else: its class policy.

An override's treatment is ``fp16`` | ``fp32`` | ``keep`` (passthrough) or ``int<bits>[:<clip rule>]`` with
optional flags ``+floor`` (scale floor ``1/qmax``), ``+floor=<x>``, ``+fp32`` (the records' fp32-scale rounding,
round-to-nearest) and ``+nogptq``; what it leaves out comes from the tensor's class policy. Example (#461):
``ve_shared.embed=int8:percentile:99.99984+floor+fp32``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor

from golflib.settings.quant import QuantConfig
from golflib.quant.clip import num, parse_clip_rule, scale_floor
from golflib.model.layers import CONTROL_PATTERNS

CLASSES = ("embedding", "head", "attention", "mlp", "matrix", "gate", "control", "vector", "other")
MATRIX_CLASSES = ("embedding", "head", "attention", "mlp", "matrix")
GATE_QUANT_NUMEL = (32, 8192)  # #1855: attn_gate_w of (8, 12) sparse to (8, 512) dense go int8 per row


def tensor_class(name: str, t: Tensor) -> str:
    """The class of state-dict entry ``name`` (see module table)."""
    if not t.is_floating_point():
        return "other"
    if "attn_gate" in name:  # attention gates are control tensors for the optimizer, but quantizable (#1736)
        return "gate"
    if any(p in name for p in CONTROL_PATTERNS):
        return "control"
    if "gate" in name:
        return "gate"
    if t.ndim < 2:
        return "vector"
    if name.startswith("tok_emb") or "embed" in name:
        return "embedding"
    if "lm_head" in name:
        return "head"
    if ".attn." in name:
        return "attention"
    if ".mlp." in name:
        return "mlp"
    return "matrix"


@dataclass(frozen=True)
class ClassPolicy:
    """How one tensor is stored: ``kind`` per_row | per_tensor | passthrough; for per_row/per_tensor ``bits``,
    ``clip`` (rule spec), ``floor`` (smallest scale) and ``rounding`` (``fp16`` or ``fp32``, see
    :mod:`golflib.quant.rowquant`); ``store`` dtype name for passthrough (``"float16"``, ``"float32"`` or
    ``"keep"``); ``gptq`` whether GPTQ may be used (when a Hessian exists)."""

    kind: str
    bits: int = 0
    clip: str = ""
    store: str = "keep"
    gptq: bool = False
    floor: float = 2.0 ** -24
    rounding: str = "fp16"


FP16 = ClassPolicy("passthrough", store="float16")


def _rule(cfg: QuantConfig, kind: str, k: float) -> str:
    if kind == "sdclip":
        return f"sdclip:{num(k)}"
    if kind == "hsdclip":
        return f"hsdclip:{num(k)}:{num(cfg.hessian_clip_lambda)}"
    if kind == "percentile":
        return f"percentile:{num(cfg.int8_clip_percentile)}"
    return kind  # search, search_row, absmax


def _per_row(cfg: QuantConfig, bits: int, clip: str, gptq: bool, rounding: str = "fp16") -> ClassPolicy:
    return ClassPolicy("per_row", bits, clip, gptq=gptq and rounding == "fp16",
                       floor=scale_floor(bits, cfg.legacy_scale_floor), rounding=rounding)


def class_policies(cfg: QuantConfig) -> dict[str, ClassPolicy]:
    """Policy per class from the QuantConfig fields (module table)."""
    mb, mk, kind = cfg.matrix_bits, cfg.matrix_clip_sigmas, cfg.quant_clip_rule
    gptq = cfg.gptq_enabled
    emb = _per_row(cfg, cfg.embed_bits, _rule(cfg, cfg.embed_clip_rule or kind, cfg.embed_clip_sigmas),
                   gptq and cfg.embed_gptq, cfg.embed_scale_rounding)
    return {
        "embedding": emb,
        "head": emb,
        "attention": _per_row(cfg, cfg.attn_bits or mb, _rule(cfg, kind, cfg.attn_clip_sigmas or mk), gptq),
        "mlp": _per_row(cfg, cfg.mlp_bits or mb, _rule(cfg, kind, cfg.mlp_clip_sigmas or mk), gptq),
        "matrix": _per_row(cfg, mb, _rule(cfg, kind, mk), gptq),
        "gate": _per_row(cfg, 8, "absmax", False) if cfg.gated_attn_quant_gate else FP16,
        "control": FP16,  # #1394 on (the int8 export keeps fp32)
        "vector": FP16,
        "other": ClassPolicy("passthrough", store="keep"),
    }


def parse_override(entry: str) -> tuple[str, dict]:
    """``"pattern=treatment"`` (module docstring) → ``(pattern, changes)`` where ``changes`` are the
    :class:`ClassPolicy` fields the treatment sets (``floor`` as ``"qmax"`` for the bare ``+floor``). Raises
    ``ValueError`` naming the entry."""
    pattern, sep, spec = entry.partition("=")
    if not sep or not pattern or not spec:
        raise ValueError(f"QUANT_OVERRIDES entry {entry!r}: expected PATTERN=TREATMENT")
    if spec in ("fp16", "fp32", "keep"):
        return pattern, {"kind": "passthrough", "store": {"fp16": "float16", "fp32": "float32"}.get(spec, "keep")}
    head, *flags = spec.split("+")
    bits_s, _, rule = head.partition(":")
    if not bits_s.startswith("int") or not bits_s[3:].isdigit() or not 2 <= int(bits_s[3:]) <= 8:
        raise ValueError(f"QUANT_OVERRIDES entry {entry!r}: treatment must be fp16, fp32, keep or int2..int8")
    out: dict = {"kind": "per_row", "bits": int(bits_s[3:])}
    if rule:
        try:
            out["clip"] = parse_clip_rule(rule).spec
        except ValueError as e:
            raise ValueError(f"QUANT_OVERRIDES entry {entry!r}: {e}") from None
    for f in flags:
        if f == "floor":
            out["floor"] = "qmax"
        elif f.startswith("floor="):
            try:
                out["floor"] = float(f[6:])
            except ValueError:
                raise ValueError(f"QUANT_OVERRIDES entry {entry!r}: floor={f[6:]!r} is not a number") from None
            if not out["floor"] > 0:  # also refuses nan
                raise ValueError(f"QUANT_OVERRIDES entry {entry!r}: floor={f[6:]} must be a positive scale")
        elif f == "fp32":
            out["rounding"], out["gptq"] = "fp32", False
        elif f == "nogptq":
            out["gptq"] = False
        else:
            raise ValueError(f"QUANT_OVERRIDES entry {entry!r}: unknown flag +{f} (floor, floor=X, fp32, nogptq)")
    return pattern, out


def override_policy(base: ClassPolicy, changes: dict, cfg: QuantConfig) -> ClassPolicy:
    """``base`` (the tensor's class policy) with an override's ``changes`` applied; a per-row override of a
    passthrough class takes the matrix class's clip rule unless it names one."""
    if changes["kind"] == "passthrough":
        return ClassPolicy("passthrough", store=changes["store"])
    if base.kind != "per_row":
        base = class_policies(cfg)["matrix"]
    ch = dict(changes)
    bits = ch["bits"]
    if "floor" not in ch:
        ch["floor"] = scale_floor(bits, cfg.legacy_scale_floor)
    elif ch["floor"] == "qmax":
        ch["floor"] = scale_floor(bits, True)
    return dataclasses.replace(base, **ch)


def treatment_for(name: str, t: Tensor, cfg: QuantConfig, policies: dict[str, ClassPolicy] | None = None,
                  overrides: list[tuple[str, dict]] | None = None) -> tuple[str, ClassPolicy]:
    """``(class, policy)`` of state-dict entry ``name`` under ``cfg`` in the records' order (module docstring).
    ``policies``/``overrides`` may be passed precomputed (:func:`class_policies`, :func:`parse_override`)."""
    cls = tensor_class(name, t)
    policies = policies if policies is not None else class_policies(cfg)
    if cls == "other":
        return cls, policies["other"]
    lo, hi = GATE_QUANT_NUMEL
    if cls == "gate" and cfg.gated_attn_quant_gate and t.ndim == 2 and lo <= t.numel() <= hi:
        return cls, policies["gate"]
    if t.numel() <= cfg.keep_float_max_numel:
        return cls, FP16
    if cls == "control":
        return cls, ClassPolicy("passthrough", store="float32")
    if overrides is None:
        overrides = [parse_override(e) for e in cfg.quant_overrides]
    for pattern, changes in overrides:
        if pattern in name:
            pol = override_policy(policies[cls], changes, cfg)
            return cls, FP16 if pol.kind == "per_row" and t.ndim < 2 else pol
    if cls == "vector":
        return cls, ClassPolicy("per_tensor", 8, f"percentile:{num(cfg.int8_clip_percentile)}")
    pol = policies[cls]
    if pol.kind == "per_row" and t.ndim < 2:
        pol = FP16
    return cls, pol


def entry_class(name: str, entry: dict) -> str:
    """Class of a tensor described by artifact metadata ``entry`` (``class`` if recorded, else derived from the
    name, ``dtype`` and ``shape`` like :func:`tensor_class`)."""
    if "class" in entry:
        return entry["class"]
    import torch

    dtype = getattr(torch, entry.get("dtype", "float32"), torch.float32)
    return tensor_class(name, torch.empty([0] * max(len(entry.get("shape", [])), 1), dtype=dtype)
                        if len(entry.get("shape", [])) else torch.empty((), dtype=dtype))

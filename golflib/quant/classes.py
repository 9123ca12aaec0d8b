"""Tensor classes and the per-class quantization policy (SPEC §3.B1, §3.B2, §3.B7, §3.B11).

Every state-dict entry falls in one class, decided from its name (the official parameter names) and shape, so new
model parts (recurrence, gates, value embeddings, banks) land in a sensible class without code changes:

========== ============================================================== =======================================
class      names                                                          default treatment (mixed scheme)
========== ============================================================== =======================================
gate       contains ``attn_gate`` (checked first), or ``gate`` and no      int8 per-row absmax if 2-D and
           CONTROL_PATTERNS entry                                         GATED_ATTN_QUANT_GATE, else fp16
control    contains a CONTROL_PATTERNS entry (attn_scale, resid_mix, ...) fp16 passthrough (as #1394)
embedding  ``tok_emb`` or contains ``embed``                              EMBED_BITS, SDClip EMBED_CLIP_SIGMAS
head       contains ``lm_head``                                           as embedding
attention  contains ``.attn.``                                            ATTN_BITS, ATTN_CLIP_SIGMAS
mlp        contains ``.mlp.``                                             MLP_BITS, MLP_CLIP_SIGMAS
matrix     any other float tensor with ≥ 2 dims                           MATRIX_BITS, MATRIX_CLIP_SIGMAS
vector     any other float tensor                                         fp16 passthrough
other      non-float tensors                                              passthrough
========== ============================================================== =======================================

(ATTN_/MLP_ values of 0 mean "use the MATRIX_ value".) Tensors with more than 2 dims are quantized per row of
their ``[prod(leading dims), last dim]`` view.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from golflib.settings.quant import QuantConfig
from golflib.quant.clip import num
from golflib.model.layers import CONTROL_PATTERNS

CLASSES = ("embedding", "head", "attention", "mlp", "matrix", "gate", "control", "vector", "other")
MATRIX_CLASSES = ("embedding", "head", "attention", "mlp", "matrix")


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
    """How one class is stored: ``kind`` per_row|passthrough; ``bits`` and ``clip`` (rule spec) for per_row;
    ``store`` dtype name for passthrough (``"float16"``, ``"float32"`` or ``"keep"``); ``gptq`` whether GPTQ may
    be used (when a Hessian exists)."""

    kind: str
    bits: int = 0
    clip: str = ""
    store: str = "keep"
    gptq: bool = False


def _rule(cfg: QuantConfig, k: float) -> str:
    kind = cfg.quant_clip_rule
    if kind == "sdclip":
        return f"sdclip:{num(k)}"
    if kind == "hsdclip":
        return f"hsdclip:{num(k)}:{num(cfg.hessian_clip_lambda)}"
    if kind == "percentile":
        return f"percentile:{num(cfg.int8_clip_percentile)}"
    return kind  # search, absmax


def class_policies(cfg: QuantConfig) -> dict[str, ClassPolicy]:
    """Policy per class from the QuantConfig fields (module table)."""
    mb, mk = cfg.matrix_bits, cfg.matrix_clip_sigmas
    gptq = cfg.gptq_enabled
    return {
        "embedding": ClassPolicy("per_row", cfg.embed_bits, _rule(cfg, cfg.embed_clip_sigmas), gptq=gptq),
        "head": ClassPolicy("per_row", cfg.embed_bits, _rule(cfg, cfg.embed_clip_sigmas), gptq=gptq),
        "attention": ClassPolicy("per_row", cfg.attn_bits or mb, _rule(cfg, cfg.attn_clip_sigmas or mk), gptq=gptq),
        "mlp": ClassPolicy("per_row", cfg.mlp_bits or mb, _rule(cfg, cfg.mlp_clip_sigmas or mk), gptq=gptq),
        "matrix": ClassPolicy("per_row", mb, _rule(cfg, mk), gptq=gptq),
        "gate": (ClassPolicy("per_row", 8, "absmax") if cfg.gated_attn_quant_gate
                 else ClassPolicy("passthrough", store="float16")),
        "control": ClassPolicy("passthrough", store="float16"),  # #1394 on (the int8 export keeps fp32)
        "vector": ClassPolicy("passthrough", store="float16"),
        "other": ClassPolicy("passthrough", store="keep"),
    }


def policy_for(name: str, t: Tensor, policies: dict[str, ClassPolicy]) -> tuple[str, ClassPolicy]:
    """``(class, policy)`` of one tensor; 1-D gates fall back to fp16 passthrough."""
    cls = tensor_class(name, t)
    pol = policies[cls]
    if pol.kind == "per_row" and t.ndim < 2:
        pol = ClassPolicy("passthrough", store="float16")
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

"""The baseline export: per-row symmetric int8 with a percentile clip (SPEC §2.8, format ``int8_clean_per_row_v1``).

* non-float tensors pass through;
* float tensors with ``<= KEEP_FLOAT_MAX_NUMEL`` (65,536) elements pass through — fp32 if the name is a control
  tensor, else fp16 with the original dtype remembered;
* 2-D float tensors: per row ``clip = quantile(|w|, 99.99984%)``, ``scale = clip/127`` (stored fp16),
  ``q = round(clamp(w, ±clip)/scale) ∈ [-127, 127]``; other float tensors use one per-tensor scale.
* ``LEGACY_SCALE_FLOOR=1`` reproduces the old exporters' ``scale.clamp_min(1/127)`` (SPEC §2.8 ⚠, trap 1): rows whose
  max |w| is below 1 then get a step of 1/127 whatever their range. Off by default (floor 1e-10).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from golflib.settings.quant import QuantConfig
from golflib.model.layers import CONTROL_PATTERNS

FORMAT = "golflib-quant-1"


@dataclass
class QuantizedState:
    """Storage tensors (safetensors-ready) plus per-tensor metadata.

    ``tensors``: ``{"<name>.q": int8, "<name>.scale": fp16|fp32, "<name>": passthrough}`` (plus
    ``"<name>.lqer.*"`` low-rank factors in mixed exports);
    ``meta["tensors"][name]``: ``{"kind": per_row|per_tensor|passthrough, "bits", "dtype", "shape", "clip"}``
    (mixed exports add ``class``, ``method`` and optionally ``lqer``, see :mod:`golflib.quant.mixed`).
    """

    tensors: dict[str, Tensor] = field(default_factory=dict)
    meta: dict = field(default_factory=lambda: {"format": FORMAT, "tensors": {}})


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


def quantize_int8(state_dict: dict[str, Tensor], cfg: QuantConfig | None = None) -> QuantizedState:
    """Quantize a state dict with the baseline int8 rules (module docstring). Tensors are moved to CPU."""
    cfg = cfg or QuantConfig()
    q_clip = cfg.int8_clip_percentile / 100.0
    floor = 1.0 / 127.0 if cfg.legacy_scale_floor else 1e-10
    out = QuantizedState()
    out.meta["scheme"] = "int8_clean_per_row_v1"
    clip_rule = f"percentile:{cfg.int8_clip_percentile}" + (":floor1/127" if cfg.legacy_scale_floor else "")
    for name, t in state_dict.items():
        t = t.detach().to("cpu").contiguous()
        entry = {"dtype": _dtype_name(t.dtype), "shape": list(t.shape)}
        if not t.is_floating_point() or t.numel() <= cfg.keep_float_max_numel:
            if t.is_floating_point():
                keep32 = any(p in name for p in CONTROL_PATTERNS)
                stored = t.float() if keep32 else t.to(torch.float16)
            else:
                stored = t
            out.tensors[name] = stored.contiguous()
            entry.update(kind="passthrough", bits=stored.element_size() * 8, store=_dtype_name(stored.dtype))
        elif t.ndim == 2:
            t32 = t.float()
            clip = torch.quantile(t32.abs(), q_clip, dim=1)
            clipped = torch.maximum(torch.minimum(t32, clip[:, None]), -clip[:, None])
            scale = (clip / 127.0).clamp_min(floor)
            q = torch.clamp(torch.round(clipped / scale[:, None]), -127, 127).to(torch.int8)
            out.tensors[name + ".q"] = q.contiguous()
            out.tensors[name + ".scale"] = scale.to(torch.float16).contiguous()
            entry.update(kind="per_row", bits=8, clip=clip_rule)
        else:
            t32 = t.float()
            clip = float(torch.quantile(t32.abs().flatten(), q_clip)) if t32.numel() else 0.0
            scale = torch.tensor(clip / 127.0 if clip > 0 else 1.0, dtype=torch.float32)
            q = torch.clamp(torch.round(torch.clamp(t32, -clip, clip) / scale), -127, 127).to(torch.int8)
            out.tensors[name + ".q"] = q.contiguous()
            out.tensors[name + ".scale"] = scale.reshape(1)
            entry.update(kind="per_tensor", bits=8, clip=clip_rule)
        out.meta["tensors"][name] = entry
    return out


def dequantize(qs: QuantizedState) -> dict[str, Tensor]:
    """Rebuild a float state dict (original dtypes and shapes) from a :class:`QuantizedState`.

    Raises ``KeyError`` naming the tensor when a storage tensor is missing, ``ValueError`` for an unknown kind or
    dtype name (an artifact read from disk was checked already: :func:`golflib.quant.limits.check_storage`).
    """
    from golflib.quant.limits import DTYPES

    sd: dict[str, Tensor] = {}
    for name, e in qs.meta["tensors"].items():
        dtype = DTYPES.get(e["dtype"])
        if dtype is None:
            raise ValueError(f"tensor {name}: unknown dtype {e['dtype']!r}; expected one of {sorted(DTYPES)}")
        kind = e["kind"]
        try:
            if kind == "passthrough":
                sd[name] = qs.tensors[name].to(dtype).reshape(e["shape"]).contiguous()
            elif kind == "per_row":
                q, s = qs.tensors[name + ".q"], qs.tensors[name + ".scale"].float()
                w = q.float() * s.view(q.shape[0], *([1] * (q.ndim - 1)))
                if "lqer" in e:  # low-rank error correction (golflib.quant.lqer)
                    from golflib.quant.lqer import unpack_factors

                    parts = {k: qs.tensors[f"{name}.lqer.{k}"] for k in ("a.q", "a.scale", "b.q", "b.scale")}
                    w = w + unpack_factors(parts, asym=bool(e["lqer"]["asym"]), group=int(e["lqer"]["group"]))
                sd[name] = w.reshape(e["shape"]).to(dtype).contiguous()
            elif kind == "per_tensor":
                q, s = qs.tensors[name + ".q"], qs.tensors[name + ".scale"].float()
                sd[name] = (q.float() * float(s.reshape(-1)[0])).to(dtype).reshape(e["shape"]).contiguous()
            else:
                raise ValueError(f"tensor {name}: unknown quantization kind {kind!r}")
        except KeyError as err:
            raise KeyError(f"tensor {name}: storage tensor {err} missing from artifact") from None
    return sd


def payload_bytes(qs: QuantizedState) -> int:
    """Raw bytes of the storage tensors (before the codec)."""
    return sum(t.numel() * t.element_size() for t in qs.tensors.values())

"""Clip rules: how the per-row scale of a symmetric int-k quantizer is chosen (SPEC §3.B4, §3.B7, §2.8).

A rule is written as a short string, stored per tensor in the artifact metadata:

* ``sdclip:K`` — SDClip (#1394): clip ``c = K·σ(row)`` (σ = unbiased std of the row), ``scale = c / qmax``.
  With Gaussian rows the code entropy depends only on (bits, K), so K is a clean size knob.
* ``hsdclip:K:LAMBDA`` — Hessian-aware SDClip (#1412): ``c_i = K·σ_i·[1 + λ(r_i − 1)]`` with row importance
  ``r_i = mean_j |W_ij|·d_j`` (``d = diag(H)/mean(diag(H))``), normalized to mean 1 over rows. Needs ``diag(H)``.
* ``percentile:P`` — clip at the P-th percentile of ``|w|`` in the row (baseline int8 export: P = 99.99984).
* ``absmax`` — clip at the row's max ``|w|`` (the int8 gate rule of #1736: ``scale = rowmax/127``).
* ``search`` — GPTQ-lite (#414, #549, #1019): **one** candidate for the whole tensor — the row clips at the
  quantiles {0.999, 0.9995, 0.9999, 0.99999} of ``|w|`` per row, or the row max — keeping the one with the smallest
  whole-tensor round-to-nearest MSE (strict ``<``: ties keep the earlier candidate). (Until issue 11 golflib chose
  per row; the records' code chooses per tensor, README claims notwithstanding.)
* ``search_row`` — the same candidates chosen per row (golflib's earlier ``search``).

Scales are rounded to float16 (what the artifact stores) and floored: at ``2^-24`` (the smallest positive fp16;
the SDClip-era code used 1e-10, which underflows to 0 in fp16), or, with ``legacy_floor``, at ``1/qmax`` like the
records #287 → #1019 and #1487 (SPEC §2.8 ⚠, trap 1: rows whose range is below 1 then get a step of 1/qmax), or
at an explicit ``floor``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from golflib.quant.intn import fp16_exact, qmax, quantize_rows

FP16_TINY = 2.0 ** -24  # smallest positive float16 (subnormal)
FP16_MAX = 65504.0
SEARCH_FRACTIONS = (0.999, 0.9995, 0.9999, 0.99999, 1.0)  # the records' literals; 1.0 is the row max
KINDS = ("sdclip", "hsdclip", "percentile", "absmax", "search", "search_row")


def num(x: float) -> str:
    """Shortest exact-enough text of a float for a rule spec (12 significant digits: ``99.99984`` stays)."""
    return f"{float(x):.12g}"


@dataclass(frozen=True)
class ClipRule:
    """A parsed clip rule (see module docstring). ``k``: SDClip multiplier; ``lam``: Hessian weight λ;
    ``percentile``: in (0, 100]."""

    kind: str
    k: float = 0.0
    lam: float = 0.0
    percentile: float = 100.0

    @property
    def spec(self) -> str:
        """The canonical string form (inverse of :func:`parse_clip_rule`)."""
        if self.kind == "sdclip":
            return f"sdclip:{num(self.k)}"
        if self.kind == "hsdclip":
            return f"hsdclip:{num(self.k)}:{num(self.lam)}"
        if self.kind == "percentile":
            return f"percentile:{num(self.percentile)}"
        return self.kind

    @property
    def needs_hessian(self) -> bool:
        return self.kind == "hsdclip"


def parse_clip_rule(spec: str | ClipRule) -> ClipRule:
    """``"sdclip:12.85"`` → ``ClipRule("sdclip", k=12.85)`` etc.; raises ``ValueError`` naming the spec and the
    accepted forms."""
    if isinstance(spec, ClipRule):
        return spec
    parts = str(spec).strip().split(":")
    kind, args = parts[0].lower(), parts[1:]
    usage = "expected sdclip:K, hsdclip:K:LAMBDA, percentile:P, absmax, search or search_row"
    try:
        if kind == "sdclip" and len(args) == 1:
            rule = ClipRule("sdclip", k=float(args[0]))
        elif kind == "hsdclip" and len(args) == 2:
            rule = ClipRule("hsdclip", k=float(args[0]), lam=float(args[1]))
        elif kind == "percentile" and len(args) == 1:
            rule = ClipRule("percentile", percentile=float(args[0]))
        elif kind in ("absmax", "search", "search_row") and not args:
            rule = ClipRule(kind)
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"clip rule {spec!r}: {usage}") from None
    if rule.kind in ("sdclip", "hsdclip") and not rule.k > 0:
        raise ValueError(f"clip rule {spec!r}: K must be > 0")
    if rule.kind == "hsdclip" and not 0 <= rule.lam <= 1:
        raise ValueError(f"clip rule {spec!r}: LAMBDA must be in [0, 1]")
    if rule.kind == "percentile" and not 0 < rule.percentile <= 100:
        raise ValueError(f"clip rule {spec!r}: P must be in (0, 100]")
    return rule


def scale_floor(bits: int, legacy_floor: bool = False, floor: float | None = None) -> float:
    """The smallest scale of a ``bits``-bit quantizer: ``floor`` if given, else ``1/qmax`` with ``legacy_floor``,
    else ``2^-24``."""
    if floor is not None:
        return float(floor)
    return 1.0 / qmax(bits) if legacy_floor else FP16_TINY


def _finish(scale: Tensor, floor: float) -> Tensor:
    scale = torch.nan_to_num(scale.float(), nan=0.0).clamp(min=floor, max=FP16_MAX)
    return fp16_exact(scale).clamp_min(FP16_TINY)


def row_importance(w: Tensor, h_diag: Tensor) -> Tensor:
    """#1412 row importance ``r_i = mean_j |W_ij| d_j`` with ``d = diag(H)/mean(diag(H))``, normalized to mean 1.
    ``w`` ``[rows, cols]``, ``h_diag`` ``[cols]`` → float32 ``[rows]``."""
    d = h_diag.float().clamp_min(1e-8)
    d = d / d.mean()
    r = (w.float().abs() * d[None, :]).mean(dim=1)
    return r / r.mean().clamp_min(1e-30)


def row_clip(w: Tensor, rule: ClipRule | str, bits: int, h_diag: Tensor | None = None) -> Tensor:
    """Clip threshold per row (float32 ``[rows]``) for ``w`` ``[rows, cols]`` under ``rule``; the searches are
    resolved by :func:`row_scales`. Raises ``ValueError`` when ``hsdclip`` gets no ``h_diag``."""
    rule = parse_clip_rule(rule)
    w = w.float()
    if rule.kind == "sdclip":
        return rule.k * w.std(dim=1)
    if rule.kind == "hsdclip":
        if h_diag is None:
            raise ValueError(f"clip rule {rule.spec} needs the Hessian diagonal (run calibration first)")
        return rule.k * w.std(dim=1) * (1.0 + rule.lam * (row_importance(w, h_diag) - 1.0))
    if rule.kind == "percentile":
        return torch.quantile(w.abs(), rule.percentile / 100.0, dim=1)
    if rule.kind == "absmax":
        return w.abs().amax(dim=1)
    raise ValueError(f"clip rule {rule.spec}: no closed-form clip")


def search_candidates(w: Tensor, bits: int, *, legacy_floor: bool = False, floor: float | None = None) -> \
        list[Tensor]:
    """The per-row scales (float32 ``[rows]``, fp16-exact) of the five GPTQ-lite candidates of ``w``
    ``[rows, cols]``, in :data:`SEARCH_FRACTIONS` order: row quantiles of ``|w|`` (``torch.quantile``), then the row
    max (#414)."""
    w = w.float()
    fl = scale_floor(bits, legacy_floor, floor)
    out = []
    for p in SEARCH_FRACTIONS:
        clip = torch.quantile(w.abs(), p, dim=1) if p < 1.0 else w.abs().amax(dim=1)
        out.append(_finish(clip / qmax(bits), fl))
    return out


def tensor_mse(w: Tensor, q: Tensor, scale: Tensor) -> float:
    """Mean squared error ``mean((w − q·scale)²)`` over the whole tensor, in float32 like the records' search."""
    return float((w.float() - q.float() * scale.float()[:, None]).pow(2).mean())


def search_tensor(w: Tensor, bits: int, *, legacy_floor: bool = False, floor: float | None = None) -> \
        tuple[int, Tensor]:
    """GPTQ-lite of #414 (also #549, and #1019 without a Hessian): the index into :data:`SEARCH_FRACTIONS` and the
    scales ``[rows]`` of the candidate with the smallest whole-tensor round-to-nearest MSE (strict ``<``: ties keep
    the earlier candidate)."""
    best, best_err = 0, float("inf")
    cands = search_candidates(w, bits, legacy_floor=legacy_floor, floor=floor)
    for i, s in enumerate(cands):
        err = tensor_mse(w, quantize_rows(w, s, bits), s)
        if err < best_err:
            best, best_err = i, err
    return best, cands[best]


def row_scales(w: Tensor, bits: int, rule: ClipRule | str, *, h_diag: Tensor | None = None,
               legacy_floor: bool = False, floor: float | None = None) -> Tensor:
    """Per-row scales (float32 ``[rows]``, exactly representable in fp16) of ``w`` ``[rows, cols]`` for a
    symmetric ``bits``-bit quantizer under ``rule`` (module docstring), floored per :func:`scale_floor`."""
    rule = parse_clip_rule(rule)
    fl = scale_floor(bits, legacy_floor, floor)
    if rule.kind == "search":
        return search_tensor(w, bits, floor=fl)[1]
    if rule.kind != "search_row":
        return _finish(row_clip(w, rule, bits, h_diag) / qmax(bits), fl)
    w = w.float()
    best_scale, best_err = None, None
    for s in search_candidates(w, bits, floor=fl):
        err = (quantize_rows(w, s, bits).float() * s[:, None] - w).square().sum(dim=1)
        if best_scale is None:
            best_scale, best_err = s, err
        else:
            better = err < best_err
            best_scale = torch.where(better, s, best_scale)
            best_err = torch.where(better, err, best_err)
    return best_scale

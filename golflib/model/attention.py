"""Causal attention backends and exclusive self-attention.

``causal_attention(q, k, v, doc_ids=None)`` takes ``q`` ``[B, T, H, D]`` and ``k, v`` ``[B, T, H_kv, D]`` (GQA when
``H_kv < H``) and returns ``[B, T, H, D]``. With ``doc_ids`` (int ``[B, T]``, non-decreasing along T) attention is
also restricted to keys of the same document (VarLen-style isolation, SPEC §3.D6). The backend is automatic:
FlashAttention 3 (``flash_attn_interface``) or 2 (``flash_attn``) for CUDA tensors in fp16/bf16 (varlen kernel when
``doc_ids`` is given; inside a compiled graph with the boundaries precomputed by :func:`cu_seqlens_padded`, as
#1855); PyTorch SDPA everywhere else — the tested fallback — which with ``doc_ids`` runs each document segment as
one row of a padded batch (a dense block-diagonal mask only inside a compiled graph, refused when it is huge).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from golflib.data.varlen import CU_BUCKET, cu_seqlens_padded, segment_starts  # noqa: F401 (re-exported)


FLASH_IMPORT_ERRORS: dict[str, str] = {}  # module -> why it is installed but unusable (a broken build, an ABI clash)


# (backend, module, distribution): FlashAttention 3 (Hopper), then 2
FLASH_MODULES = (("fa3", "flash_attn_interface", "flash_attn_3"), ("fa2", "flash_attn", "flash_attn"))


def _load_flash():
    for name, module, _ in FLASH_MODULES:
        try:
            mod = __import__(module)
            return name, mod.flash_attn_func, mod.flash_attn_varlen_func
        except ModuleNotFoundError as e:
            if e.name != module:  # installed, but something it needs is missing
                FLASH_IMPORT_ERRORS[module] = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - an installed but broken build: kept and logged, never silent
            FLASH_IMPORT_ERRORS[module] = f"{type(e).__name__}: {e}"
    return None, None, None


# Resolved once at import: the lookup must not happen inside a torch.compile'd graph.
FLASH_NAME, FLASH_FN, FLASH_VARLEN_FN = _load_flash()
# How a call reaches FlashAttention: "native" calls the module's functions; "custom_op" goes through golflib's
# opaque custom ops (golflib.model.flash_op), for builds whose calls break a compiled graph. Set by
# golflib.model.flash_op.choose_flash_op (FLASH_ATTN_OP).
FLASH_OP = "native"
# ATTENTION_BACKEND: "auto" uses FlashAttention where it can run (CUDA, half dtype), "sdpa" never;
# require_backend() checks a requested fa3 / fa2 before training and refuses what cannot run.
REQUESTED_BACKEND = "auto"
_HALF = (torch.float16, torch.bfloat16)


def flash_dtype(q: Tensor) -> torch.dtype | None:
    """The half dtype FlashAttention would run ``q`` in: ``q.dtype`` when it is fp16/bf16, else the autocast dtype
    of ``q``'s device when autocast is on there (from torch 2.12, CUDA autocast runs ``rms_norm`` in fp32, so the
    QK-normed q and k arrive in fp32 inside a bf16 autocast region); None when neither is a half type."""
    if q.dtype in _HALF:
        return q.dtype
    dev = q.device.type
    if torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev) in _HALF:
        return torch.get_autocast_dtype(dev)
    return None


def attention_backend(q: Tensor) -> str:
    """Name of the backend :func:`causal_attention` will use for ``q``: ``fa3``, ``fa2`` or ``sdpa``
    (FlashAttention for a CUDA ``q`` whose :func:`flash_dtype` is a half type)."""
    if REQUESTED_BACKEND != "sdpa" and FLASH_FN is not None and q.is_cuda and flash_dtype(q) is not None:
        return FLASH_NAME
    return "sdpa"


def require_backend(requested: str, device: torch.device) -> str:
    """Set ``ATTENTION_BACKEND`` for this process and check it can run on ``device``: ``fa3``/``fa2`` need that
    FlashAttention module importable and a CUDA device (the training forward runs under bf16 autocast there),
    ``sdpa`` and ``auto`` always run. Returns the backend the training forward will use. Raises ``RuntimeError``
    naming what is missing — a requested backend is never silently replaced by another."""
    global REQUESTED_BACKEND
    if requested in ("fa3", "fa2"):
        broken = FLASH_IMPORT_ERRORS.get(next(m for n, m, _ in FLASH_MODULES if n == requested))
        if FLASH_NAME != requested or device.type != "cuda":
            why = (f"{requested} is installed but unusable ({broken})" if broken else
                   f"the FlashAttention module found is {FLASH_NAME or 'none'}" if FLASH_NAME != requested else
                   f"the device is {device}, FlashAttention runs on CUDA only")
            raise RuntimeError(f"ATTENTION_BACKEND={requested} cannot run here: {why}; install the wheel built for "
                               f"this torch/CUDA (README, 'FineWeb and the baseline on 8xH100') or set "
                               f"ATTENTION_BACKEND=auto")
    REQUESTED_BACKEND = requested
    if requested == "sdpa" or FLASH_FN is None or device.type != "cuda":
        return "sdpa"
    return FLASH_NAME


def describe_backends() -> str:
    """One log line: which FlashAttention module was found (and its version), and why an installed one is
    unusable; :func:`attention_backend` then picks per call (SDPA on CPU and for fp32 without autocast)."""
    found, dist = next(((m, d) for n, m, d in FLASH_MODULES if n == FLASH_NAME), ("", ""))
    version = ""
    if found:
        try:
            import importlib.metadata as md

            version = md.version(dist)
        except Exception:  # noqa: BLE001 - a wheel without metadata
            version = "unknown"
    broken = "; ".join(f"{m} unusable: {why}" for m, why in FLASH_IMPORT_ERRORS.items())
    return (f"flash_attention:{FLASH_NAME or 'none'}" + (f" ({found} {version})" if found else "")
            + (f" [{broken}]" if broken else ""))


DENSE_MASK_MAX_ELEMENTS = 1 << 27  # a compiled graph without varlen attention: refuse a mask above 128 M entries


class Segments:
    """Document ids ``[B, T]`` of a packed batch with the derived attention structures, computed once per forward
    and shared by every layer: the segments (maximal runs of one id inside a row) as flat start/length arrays, a
    gather index that packs them into a right-padded ``[S, L_max]`` batch for SDPA, ``cu_seqlens`` for the
    FlashAttention varlen kernel, and (for a compiled graph without varlen attention, where shapes must not depend
    on the data) a boolean ``[B, 1, T, T]`` mask (key s visible from query t iff ``s <= t`` and same document).

    ``cu_seqlens`` (int32, :func:`cu_seqlens_padded`) and ``max_len`` (the longest segment, an upper bound is
    enough) may be given precomputed, as a compiled training step must: the varlen kernel then runs inside the
    graph, as #1855's. Without them they are derived eagerly (the exact longest segment)."""

    def __init__(self, doc_ids: Tensor, cu_seqlens: Tensor | None = None, max_len: int = 0):
        self.doc_ids = doc_ids
        self._mask: Tensor | None = None
        self._cu: tuple[Tensor, int] | None = None
        if cu_seqlens is not None:
            if max_len <= 0:
                raise ValueError(f"Segments: precomputed cu_seqlens need max_len > 0 (the segment length cap), "
                                 f"got {max_len}")
            self._cu = (cu_seqlens, int(max_len))
        self._packing: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def precomputed(self) -> bool:
        """True when ``cu_seqlens`` came with the batch (usable inside a compiled graph)."""
        return self._cu is not None

    @property
    def mask(self) -> Tensor:
        """Boolean ``[B, 1, T, T]`` block-diagonal causal mask. Raises ``ValueError`` above
        :data:`DENSE_MASK_MAX_ELEMENTS` entries (a flat packed row of 98,304 tokens would need 9.7 GB)."""
        if self._mask is None:
            b, t = self.doc_ids.shape
            if b * t * t > DENSE_MASK_MAX_ELEMENTS:
                raise ValueError(f"document-isolated attention inside a compiled graph without the FlashAttention "
                                 f"varlen kernel needs a dense [{b}, 1, {t}, {t}] mask ({b * t * t:,} entries, over "
                                 f"{DENSE_MASK_MAX_ELEMENTS:,}): install flash_attn (3 on Hopper), or set "
                                 f"USE_COMPILE=0 (eager attention packs the segments), or use shorter rows")
            causal = torch.ones(t, t, dtype=torch.bool, device=self.doc_ids.device).tril()
            self._mask = (causal[None] & (self.doc_ids[:, :, None] == self.doc_ids[:, None, :]))[:, None]
        return self._mask

    def _starts(self) -> Tensor:
        return segment_starts(self.doc_ids)

    @property
    def cu_seqlens(self) -> tuple[Tensor, int]:
        """``(cu_seqlens int32 [S + 1 or padded], max_len)`` for the varlen kernel (eager: the exact longest
        segment; precomputed: as given)."""
        if self._cu is None:
            b, t = self.doc_ids.shape
            flat = self._starts().to(torch.int32)
            cu = torch.cat([flat, torch.tensor([b * t], dtype=torch.int32, device=flat.device)])
            self._cu = (cu, int((cu[1:] - cu[:-1]).max()))
        return self._cu

    @property
    def packing(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(gather [S, L_max], segment_of [B·T], offset_of [B·T])``: flat position of every (segment, offset)
        slot (padding slots repeat the segment's last position) and the inverse map."""
        if self._packing is None:
            n = self.doc_ids.numel()
            starts = self._starts()
            ends = torch.cat([starts[1:], torch.tensor([n], device=starts.device)])
            lengths = ends - starts
            width = int(lengths.max())
            offs = torch.arange(width, device=starts.device)
            gather = starts[:, None] + torch.minimum(offs[None, :], lengths[:, None] - 1)
            seg_of = torch.repeat_interleave(torch.arange(starts.numel(), device=starts.device), lengths)
            off_of = torch.arange(n, device=starts.device) - starts[seg_of]
            self._packing = (gather, seg_of, off_of)
        return self._packing


def _segment_sdpa(q: Tensor, k: Tensor, v: Tensor, seg: Segments) -> Tensor:
    """Document-isolated causal attention by packing the segments into a padded batch: each segment attends only to
    itself, exactly as the varlen kernel; padding sits after a segment's real tokens, so causality keeps it out of
    every real query. Memory ``O(S·L_max²)`` instead of ``O(T²)`` per row."""
    b, t = seg.doc_ids.shape
    gather, seg_of, off_of = seg.packing
    flat = [z.reshape(b * t, *z.shape[2:]) for z in (q, k, v)]
    qp, kp, vp = (z[gather].transpose(1, 2) for z in flat)  # [S, H, L_max, D]
    y = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True, enable_gqa=kp.size(1) != qp.size(1))
    return y.transpose(1, 2)[seg_of, off_of].view(b, t, *q.shape[2:])


def _varlen(q: Tensor, k: Tensor, v: Tensor, seg: Segments) -> Tensor:
    b, t = seg.doc_ids.shape
    cu, max_len = seg.cu_seqlens
    qf, kf, vf = (z.reshape(b * t, *z.shape[2:]) for z in (q, k, v))
    if FLASH_OP == "custom_op":
        out = torch.ops.golflib.flash_attn_varlen(qf, kf, vf, cu, max_len)
    else:
        out = FLASH_VARLEN_FN(qf, kf, vf, cu, cu, max_len, max_len, causal=True)
    out = out[0] if isinstance(out, tuple) else out
    return out.view(b, t, *q.shape[2:])


def _dense(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    if FLASH_OP == "custom_op":
        return torch.ops.golflib.flash_attn(q, k, v)
    out = FLASH_FN(q, k, v, causal=True)
    return out[0] if isinstance(out, tuple) else out


def causal_attention(q: Tensor, k: Tensor, v: Tensor, doc_ids: Tensor | Segments | None = None) -> Tensor:
    """Causal (GQA) attention, optionally document-isolated (``doc_ids`` or a shared :class:`Segments`); see the
    module docstring for shapes."""
    if doc_ids is not None and not isinstance(doc_ids, Segments):
        doc_ids = Segments(doc_ids)
    backend = attention_backend(q)
    if backend != "sdpa":
        half = flash_dtype(q)
        q, k, v = q.to(half), k.to(half), v.to(half)  # no-ops unless autocast left q/k in fp32
        # inside a compiled graph only precomputed boundaries (nonzero() has a data-dependent shape)
        if doc_ids is not None and (doc_ids.precomputed or not torch.compiler.is_compiling()):
            return _varlen(q, k, v, doc_ids)
        if doc_ids is None:
            return _dense(q, k, v)
    if doc_ids is not None and not torch.compiler.is_compiling():
        return _segment_sdpa(q, k, v, doc_ids)
    gqa = k.size(2) != q.size(2)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if doc_ids is None:
        y = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=gqa)
    else:  # compiled graph: data-independent shapes, a dense block-diagonal mask
        y = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=doc_ids.mask, enable_gqa=gqa)
    return y.transpose(1, 2)


def exclusive_self_attention(y: Tensor, v: Tensor) -> Tensor:
    """XSA (arXiv 2603.09078; #265, #287, #478): remove from each head output the component along the token's own
    value vector, ``y_t ← y_t − (y_t·v̂_t) v̂_t`` with v̂ the unit value of the KV head serving that query head.

    ``y``: ``[B, T, H, D]``, ``v``: ``[B, T, H_kv, D]``. GQA-efficient form: ``y`` is viewed as
    ``[B, T, H_kv, H/H_kv, D]`` and the normalised ``v`` broadcast over the group (no ``repeat_interleave``).
    """
    b, t, h, d = y.shape
    hk = v.size(2)
    y5 = y.view(b, t, hk, h // hk, d)
    vn = F.normalize(v, dim=-1).unsqueeze(3)
    y5 = y5 - (y5 * vn).sum(-1, keepdim=True) * vn
    return y5.view(b, t, h, d)

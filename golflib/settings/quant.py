"""The quantization and export group of the run configuration (SPEC §3.B); env-var names as in
:mod:`golflib.config`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from golflib.settings.base import check_field


@dataclass(frozen=True)
class QuantConfig:
    """Export of the trained weights into the artifact (SPEC §2.8, §3.B).

    The int8 fields describe the baseline export every run writes. ``MIXED_EXPORT=1`` adds a second artifact in the
    records' format: per-class int-k (MATRIX_BITS/EMBED_BITS...), SDClip, GPTQ, optional LQER and pruning, coded with
    MIXED_CODEC (``golflib.quant.mixed``)."""

    int8_clip_percentile: float = 99.99984  # per-row clip at this percentile of |w|
    legacy_scale_floor: bool = False  # clamp per-row scale to >= 1/127 like the old exporters (SPEC §2.8, trap 1)
    keep_float_max_numel: int = 65_536  # float tensors this small pass through (fp16, or fp32 if control)
    artifact_codec: str = "zlib"  # compressor of the serialized quantized state
    mixed_export: bool = False  # also write the mixed-precision artifact below (after the int8 one)
    mixed_codec: str = "entropy"  # codec of the mixed artifact: entropy (range coder) or a byte codec
    matrix_bits: int = 6  # bits of block matrices (SPEC §3.B2)
    attn_bits: int = 0  # bits of attention matrices; 0 = MATRIX_BITS
    mlp_bits: int = 0  # bits of MLP matrices; 0 = MATRIX_BITS
    embed_bits: int = 8  # bits of the token embedding / untied head (SPEC §3.B1)
    quant_clip_rule: str = "sdclip"  # sdclip | hsdclip | percentile | search | absmax (SPEC §3.B4, §3.B7)
    matrix_clip_sigmas: float = 12.85  # SDClip k of block matrices (#1394)
    attn_clip_sigmas: float = 0.0  # SDClip k of attention matrices; 0 = MATRIX_CLIP_SIGMAS
    mlp_clip_sigmas: float = 0.0  # SDClip k of MLP matrices; 0 = MATRIX_CLIP_SIGMAS
    embed_clip_sigmas: float = 20.0  # SDClip k of the embedding (#1394)
    hessian_clip_lambda: float = 0.175  # lambda of Hessian-aware SDClip (#1412)
    gated_attn_quant_gate: bool = False  # int8 per-row (absmax) gate matrices instead of fp16 (#1736)
    gptq_enabled: bool = True  # mixed export: GPTQ with calibrated Hessians (else round-to-nearest)
    gptq_calibration: str = "train"  # train (timed inside the training budget, SPEC trap 8) | ar (#1019)
    gptq_calibration_batches: int = 16  # training micro-batches for the Hessians (#1586)
    gptq_reserve_seconds: float = 4.0  # train-data calibration: stop training this much early (>= 1 step + calib)
    gptq_ar_seqs: int = 64  # AR calibration: self-generated sequences of TRAIN_SEQ_LEN tokens
    gptq_ar_temperature: float = 0.8  # AR calibration sampling temperature
    gptq_block_size: int = 128  # GPTQ lazy-update block (columns)
    gptq_damp: float = 0.01  # GPTQ damping, relative to mean(diag H)
    gptq_act_order: bool = True  # GPTQ columns by descending diag(H)
    lqer_enabled: bool = False  # low-rank quantization-error reconstruction (#1797)
    lqer_rank: int = 4  # LQER rank r
    lqer_top_k: int = 3  # LQER on the k matrices with the largest error norm
    lqer_asym_enabled: bool = True  # A as INT2 (one scale), B as INT4 (group scales); else per-row symmetric
    lqer_asym_group: int = 64  # LQER B group size (elements of flattened B per scale)
    lqer_factor_bits: int = 4  # LQER symmetric fallback: bits of both factors
    prune_target_bytes: int = 0  # selective +-1 pruning until artifact+code <= this many decimal bytes; 0 = off

    def __post_init__(self) -> None:
        check_field(0 < self.int8_clip_percentile <= 100, "int8_clip_percentile", "must be in (0, 100]",
                    self.int8_clip_percentile)
        check_field(self.keep_float_max_numel >= 0, "keep_float_max_numel", "must be >= 0", self.keep_float_max_numel)
        for name in ("artifact_codec", "mixed_codec"):
            v = getattr(self, name)
            check_field(bool(re.fullmatch(r"(zlib|zstd|lzma|brotli)(\+shuffle[2-8])?|entropy", v)), name,
                   "must be zlib, zstd, lzma or brotli (optionally +shuffle2..8), or entropy", v)
        for name in ("matrix_bits", "embed_bits"):
            check_field(2 <= getattr(self, name) <= 8, name, "must be in [2, 8]", getattr(self, name))
        for name in ("attn_bits", "mlp_bits"):
            v = getattr(self, name)
            check_field(v == 0 or 2 <= v <= 8, name, "must be 0 (= MATRIX_BITS) or in [2, 8]", v)
        check_field(self.quant_clip_rule in ("sdclip", "hsdclip", "percentile", "search", "absmax"), "quant_clip_rule",
                    "must be sdclip, hsdclip, percentile, search or absmax", self.quant_clip_rule)
        for name in ("matrix_clip_sigmas", "embed_clip_sigmas"):
            check_field(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        for name in ("attn_clip_sigmas", "mlp_clip_sigmas", "gptq_reserve_seconds"):
            check_field(getattr(self, name) >= 0, name, "must be >= 0", getattr(self, name))
        check_field(0 <= self.hessian_clip_lambda <= 1, "hessian_clip_lambda", "must be in [0, 1]",
                    self.hessian_clip_lambda)
        check_field(self.gptq_calibration in ("train", "ar"), "gptq_calibration", "must be train or ar",
                    self.gptq_calibration)
        for name in ("gptq_calibration_batches", "gptq_ar_seqs", "gptq_block_size", "lqer_rank", "lqer_top_k",
                     "lqer_asym_group"):
            check_field(getattr(self, name) >= 1, name, "must be >= 1", getattr(self, name))
        check_field(self.gptq_ar_temperature > 0, "gptq_ar_temperature", "must be > 0", self.gptq_ar_temperature)
        check_field(0 < self.gptq_damp < 1, "gptq_damp", "must be in (0, 1)", self.gptq_damp)
        check_field(2 <= self.lqer_factor_bits <= 8, "lqer_factor_bits", "must be in [2, 8]", self.lqer_factor_bits)
        check_field(self.prune_target_bytes >= 0, "prune_target_bytes", "must be >= 0 (decimal bytes; 0 = off)",
                    self.prune_target_bytes)

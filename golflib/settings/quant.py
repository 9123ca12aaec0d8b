"""The quantization and export group of the run configuration (SPEC §3.B); env-var names as in
:mod:`golflib.config`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from golflib.settings.base import CHALLENGE_LIMIT_BYTES, check_field


CLIP_KINDS = ("sdclip", "hsdclip", "percentile", "search", "search_row", "absmax")
CODEC_RE = r"(zlib|zstd|lzma|lzma6|lzma9|lzma9e|brotli|brotli24)(\+(shuffle|bshf)[2-8])?|entropy|pergroup-lrzip"
_NUM = r"[0-9]+(\.[0-9]*)?(e-?[0-9]+)?"
OVERRIDE_RE = (rf"[^=]+=(fp16|fp32|keep|int[2-8](:(sdclip|percentile):{_NUM}|:hsdclip:{_NUM}:{_NUM}|:absmax|:search"
               rf"|:search_row)?(\+(floor(={_NUM})?|fp32|nogptq))*)")


@dataclass(frozen=True)
class QuantConfig:
    """Export of the trained weights into the artifact (SPEC §2.8, §3.B).

    The int8 fields describe the baseline export every run writes. ``MIXED_EXPORT=1`` adds a second artifact in the
    records' format: per-class int-k (MATRIX_BITS/EMBED_BITS...), SDClip, GPTQ, optional LQER and pruning, coded with
    MIXED_CODEC (``golflib.quant.mixed``). Every float tensor with ``<= KEEP_FLOAT_MAX_NUMEL`` elements passes
    through as fp16 in the mixed export whatever its class (every record; #461 uses 8,192), except int8 attention
    gates (GATED_ATTN_QUANT_GATE, 32..8,192 elements) and QUANT_OVERRIDES entries."""

    int8_clip_percentile: float = 99.99984  # per-row clip at this percentile of |w|
    legacy_scale_floor: bool = False  # clamp per-row scale to >= 1/127 like the old exporters (SPEC §2.8, trap 1)
    keep_float_max_numel: int = 65_536  # float tensors this small pass through: fp16 (int8 export: fp32 if control)
    artifact_codec: str = "zlib"  # compressor of the serialized quantized state
    mixed_export: bool = False  # also write the mixed-precision artifact below (after the int8 one)
    mixed_codec: str = "entropy"  # codec of the mixed artifact: entropy (range coder), pergroup-lrzip (#1855's
    # per-group lrzip ZPAQ, needs the lrzip binary) or a byte codec
    matrix_bits: int = 6  # bits of block matrices (SPEC §3.B2)
    attn_bits: int = 0  # bits of attention matrices; 0 = MATRIX_BITS
    mlp_bits: int = 0  # bits of MLP matrices; 0 = MATRIX_BITS
    embed_bits: int = 8  # bits of the token embedding / untied head (SPEC §3.B1)
    quant_clip_rule: str = "sdclip"  # sdclip | hsdclip | percentile | search (per tensor) | search_row | absmax [B4,B7]
    matrix_clip_sigmas: float = 12.85  # SDClip k of block matrices (#1394)
    attn_clip_sigmas: float = 0.0  # SDClip k of attention matrices; 0 = MATRIX_CLIP_SIGMAS
    mlp_clip_sigmas: float = 0.0  # SDClip k of MLP matrices; 0 = MATRIX_CLIP_SIGMAS
    embed_clip_sigmas: float = 20.0  # SDClip k of the embedding (#1394)
    embed_clip_rule: str = ""  # clip rule of the embedding/head class; "" = QUANT_CLIP_RULE (#287-#1019: percentile)
    embed_scale_rounding: str = "fp16"  # fp16 | fp32: values clipped at c, codes from the fp32 scale (records' int8)
    embed_gptq: bool = True  # GPTQ the embedding/head on the final-norm Hessian (#1394, #1855); 0 = RTN (#1019, #1487)
    quant_overrides: tuple[str, ...] = ()  # "pattern=treatment" per name, first match wins (#461: tok_emb=fp16, ...)
    hessian_clip_lambda: float = 0.175  # lambda of Hessian-aware SDClip (#1412)
    gated_attn_quant_gate: bool = False  # int8 per-row (absmax) gate matrices instead of fp16 (#1736)
    gptq_enabled: bool = True  # mixed export: GPTQ with calibrated Hessians (else round-to-nearest)
    gptq_calibration: str = "train"  # train (timed inside the training budget, SPEC trap 8) | ar (#1019)
    gptq_calibration_batches: int = 16  # training micro-batches for the Hessians (#1586)
    gptq_calib_loader: str = "train"  # train: a fresh TRAIN_LOADER | shuffled: ShuffledSequenceLoader (#1855)
    gptq_calib_dense: bool = False  # calibrate with dense causal attention, no document ids (#1855)
    gptq_hessian_allreduce: bool = True  # sum Hessians over ranks; 0 = rank-local, rank 0's artifact (#1394-#1855)
    gptq_reserve_seconds: float = 4.0  # train-data calibration: stop training this much early (>= 1 step + calib)
    gptq_ar_seqs: int = 64  # AR calibration: self-generated sequences of TRAIN_SEQ_LEN tokens
    gptq_ar_temperature: float = 0.8  # AR calibration sampling temperature
    gptq_block_size: int = 128  # GPTQ lazy-update block (columns)
    gptq_damp: float = 0.01  # GPTQ damping, relative to mean(diag H)
    gptq_hessian_damp: float = 0.0  # damping added when the Hessians are collected, before GPTQ's own (#1019: 0.01)
    gptq_act_order: bool = True  # GPTQ columns by descending diag(H)
    lqer_enabled: bool = False  # low-rank quantization-error reconstruction (#1797)
    lqer_rank: int = 4  # LQER rank r
    lqer_top_k: int = 3  # LQER on the k matrices with the largest error norm
    lqer_asym_enabled: bool = True  # A as INT2 (one scale), B as INT4 (group scales); else per-row symmetric
    lqer_asym_group: int = 64  # LQER B group size (elements of flattened B per scale)
    lqer_factor_bits: int = 4  # LQER symmetric fallback: bits of both factors
    lqer_factors: str = "refit"  # refit: B refit to the quantized A | plain: A = U_r S_r, B = V_r^T (#1855)
    prune_target_bytes: int = 0  # selective +-1 pruning until artifact+code < this many decimal bytes; 0 = off
    prune_rule: str = "search"  # search: fewest +-1 codes that fit (#1019) | oneshot: 8 x excess bytes codes (#1487)
    prune_magnitude_frac: float = 0.0  # zero this fraction of smallest |w| before quantization (#461: 0.03); 0 = off
    prune_magnitude_min_numel: int = 65_536  # magnitude pruning: 2-D tensors with more elements than this (#461)

    def __post_init__(self) -> None:
        check_field(0 < self.int8_clip_percentile <= 100, "int8_clip_percentile", "must be in (0, 100]",
                    self.int8_clip_percentile)
        check_field(self.keep_float_max_numel >= 0, "keep_float_max_numel", "must be >= 0", self.keep_float_max_numel)
        for name in ("artifact_codec", "mixed_codec"):
            v = getattr(self, name)
            check_field(bool(re.fullmatch(CODEC_RE, v)), name, "must be zlib, zstd, lzma (lzma6, lzma9, lzma9e), "
                        "brotli (brotli24), optionally +shuffle2..8 or +bshf2..8, entropy, or pergroup-lrzip", v)
        for name in ("matrix_bits", "embed_bits"):
            check_field(2 <= getattr(self, name) <= 8, name, "must be in [2, 8]", getattr(self, name))
        for name in ("attn_bits", "mlp_bits"):
            v = getattr(self, name)
            check_field(v == 0 or 2 <= v <= 8, name, "must be 0 (= MATRIX_BITS) or in [2, 8]", v)
        check_field(self.quant_clip_rule in CLIP_KINDS, "quant_clip_rule", f"must be one of {', '.join(CLIP_KINDS)}",
                    self.quant_clip_rule)
        check_field(self.embed_clip_rule in ("",) + CLIP_KINDS, "embed_clip_rule",
                    f"must be empty (= QUANT_CLIP_RULE) or one of {', '.join(CLIP_KINDS)}", self.embed_clip_rule)
        for name, allowed in (("embed_scale_rounding", ("fp16", "fp32")), ("gptq_calib_loader", ("train", "shuffled")),
                              ("lqer_factors", ("refit", "plain")), ("prune_rule", ("search", "oneshot"))):
            check_field(getattr(self, name) in allowed, name, f"must be {' or '.join(allowed)}", getattr(self, name))
        check_field(self.embed_scale_rounding == "fp16" or (self.embed_clip_rule or self.quant_clip_rule) not in
                    ("search", "search_row"), "embed_scale_rounding",
                    "fp32 needs a closed-form embedding clip rule (EMBED_CLIP_RULE percentile, sdclip, hsdclip or "
                    "absmax)",
                    self.embed_scale_rounding)
        for entry in self.quant_overrides:
            check_field(bool(re.fullmatch(OVERRIDE_RE, entry)), "quant_overrides",
                        f"entry {entry!r} must be PATTERN=fp16|fp32|keep or PATTERN=int<2-8>[:<clip rule>]"
                        "[+floor[=X]][+fp32][+nogptq], e.g. ve_shared.embed=int8:percentile:99.99984+floor+fp32",
                        self.quant_overrides)
            for x in re.findall(r"\+floor=([^+]+)", entry):
                check_field(float(x) > 0, "quant_overrides", f"entry {entry!r}: floor={x} must be a positive scale",
                            self.quant_overrides)
        check_field(0 <= self.prune_magnitude_frac < 1, "prune_magnitude_frac", "must be in [0, 1)",
                    self.prune_magnitude_frac)
        check_field(self.prune_magnitude_min_numel >= 0, "prune_magnitude_min_numel", "must be >= 0",
                    self.prune_magnitude_min_numel)
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
        check_field(0 <= self.gptq_hessian_damp < 1, "gptq_hessian_damp", "must be in [0, 1)", self.gptq_hessian_damp)
        check_field(2 <= self.lqer_factor_bits <= 8, "lqer_factor_bits", "must be in [2, 8]", self.lqer_factor_bits)
        check_field(0 <= self.prune_target_bytes <= CHALLENGE_LIMIT_BYTES, "prune_target_bytes",
                    f"must be in [0, {CHALLENGE_LIMIT_BYTES:,}] decimal bytes (0 = off; artifact + code end strictly "
                    "under it, and a target above the challenge's limit cannot give a legal artifact)",
                    self.prune_target_bytes)

"""Typed, frozen run configuration.

Every field is a hyperparameter with an environment-variable name equal to its upper-cased field name, the
challenge's own names where one exists (``NUM_LAYERS``, ``MODEL_DIM``, ``TRAIN_SEQ_LEN``, ``MAX_WALLCLOCK_SECONDS``,
... see SPEC §2.1). Names are unique across groups, so a flat ``{ENV_NAME: value}`` view is lossless.

Resolution order used by :func:`resolve` (later wins): field defaults → preset overrides → environment variables →
explicit overrides. An environment variable that looks like one of ours (a known prefix such as ``TTT_`` or
``MUON_``) but matches no field is an error, not a silent no-op.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Mapping


class ConfigError(ValueError):
    """A config field, override or environment variable is unknown or out of range."""


def _check(cond: bool, name: str, msg: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{name.upper()}={value!r}: {msg}")


@dataclass(frozen=True)
class DataConfig:
    """Where the shards and the tokenizer live (SPEC §1)."""

    data_path: str = "./data/datasets/fineweb10B_sp1024"  # folder holding *_train_*.bin and *_val_*.bin shards
    tokenizer_path: str = "./data/tokenizers/fineweb_1024_bpe.model"  # SentencePiece .model used for byte LUTs
    train_files: str = ""  # glob of train shards; "" = <data_path>/*_train_*.bin
    val_files: str = ""  # glob of val shards; "" = <data_path>/*_val_*.bin (sidecars *_val_bytes_* excluded)

    def __post_init__(self) -> None:
        _check(bool(self.data_path), "data_path", "must name a folder of shards", self.data_path)

    @property
    def train_glob(self) -> str:
        return self.train_files or os.path.join(self.data_path, "*_train_*.bin")

    @property
    def val_glob(self) -> str:
        return self.val_files or os.path.join(self.data_path, "*_val_*.bin")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the GPT (SPEC §2.2)."""

    vocab_size: int = 1024  # token ids are uint16 in shards, so at most 65,536
    num_layers: int = 9  # physical transformer blocks
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4  # GQA: num_heads must be a multiple
    mlp_mult: float = 2.0  # MLP hidden = int(mlp_mult * model_dim)
    tie_embeddings: bool = True  # output head = token embedding
    rope_base: float = 10000.0
    logit_softcap: float = 30.0  # logits = c * tanh(z / c)
    qk_gain_init: float = 1.5  # per-head q multiplier (attention temperature) [C16]
    tied_embed_init_std: float = 0.005
    bos_id: int = 1  # BOS token id (SmearGate BOS mask, document boundaries)
    # ---- record-stack architecture (SPEC §3.C); every default is the baseline behaviour ----
    mlp_activation: str = "relu_sq"  # relu_sq | leaky_relu_sq [C2, #493/#549]
    leaky_relu_slope: float = 0.5  # negative slope of leaky_relu_sq
    smear_gate: int = 0  # SmearGate version 1 (#65) | 2 (#162) | 3 (#1667); 0 = off; BOS-masked [C3]
    gate_window: int = 12  # input dims of the v3 smear gate and the output/sparse attention gates
    bigram_vocab_size: int = 0  # BigramHash buckets; 0 = off [C4]
    bigram_dim: int = 128  # BigramHash table width (projected to model_dim)
    bigram_hash: str = "xor"  # xor: (36313*cur ^ 27191*prev) % (B-1), pos 0 -> B-1 | mul92821: (prev*92821+cur) % B
    ortho_init: bool = False  # orthogonal init of block matrices; other .proj ×1/sqrt(2L) [C5, #162/#198]
    proj_init: str = "zero"  # attn/MLP output projections: zero | scaled (orthogonal × 1/sqrt(2L))
    xsa_last_n: int = 0  # exclusive self-attention on the last N (physical / core) layers [C7]
    rope_dims: int = 0  # rotate only the first ROPE_DIMS of each head; 0 = all [C8]
    rope_train_seq_len: int = 0  # NTK base rescale for sequences longer than this; 0 = off [A2]
    ln_scale: bool = False  # scale block norm outputs by 1/sqrt(layer+1) [C9]
    ve_enabled: bool = False  # value embeddings [C10]
    ve_dim: int = 128  # value-embedding table width
    ve_layers: tuple[int, ...] = (9, 10)  # layers whose V gets the value embedding
    value_residual: bool = False  # v_l = λ0 v_0 + λ1 v_l, λ init (0.5, 0.5) [C11]
    attn_gate: str = "none"  # none | headwise | g1 | output | sparse [C12]
    gated_attn_init_std: float = 0.01  # init std of the G1 gate matrix
    sparse_attn_gate_scale: float = 0.5  # κ of the sparse gate σ(κ·W x[:GATE_WINDOW])
    skip_gates_enabled: bool = False  # sigmoid-gated U-Net skips [C13]
    num_loops: int = 0  # extra passes over physical layers LOOP_START..LOOP_END [C14, #1394]
    loop_start: int = 0
    loop_end: int = 0
    recur_layers: tuple[int, ...] = ()  # one extra pass over these layers after max(...) [C14, #1204/#1487]
    unique_layers: int = 0  # shared cores: layer i uses the attention/MLP of core i % UNIQUE_LAYERS [#461]
    repeat_untie_mlp: bool = False  # repeated passes get their own MLP, copied when looping starts [#1204]
    skip_sizing: str = "virtual"  # U-Net skip count from the looped virtual list | physical (#1487)
    parallel_residual: str = "none"  # none | two_lane (#1204) | gptj (#1412) | routed (#1529) | merge (#1487) [C15]
    parallel_start_layer: int = 0  # first physical layer with parallel residuals
    parallel_final_lane: str = "mean"  # routed: mean | attn | mlp
    disable_layer0_attn: bool = False  # physical layer 0 is MLP-only, no attention weights allocated [C14, #1204]

    def __post_init__(self) -> None:
        _check(2 <= self.vocab_size <= 65536, "vocab_size", "must be in [2, 65536] (uint16 token ids)", self.vocab_size)
        _check(self.num_layers >= 1, "num_layers", "must be >= 1", self.num_layers)
        _check(self.num_heads >= 1, "num_heads", "must be >= 1", self.num_heads)
        _check(self.model_dim % self.num_heads == 0, "model_dim", f"must be divisible by NUM_HEADS={self.num_heads}",
               self.model_dim)
        _check(self.num_kv_heads >= 1 and self.num_heads % self.num_kv_heads == 0, "num_kv_heads",
               f"must divide NUM_HEADS={self.num_heads}", self.num_kv_heads)
        _check((self.model_dim // self.num_heads) % 2 == 0, "model_dim",
               "model_dim / num_heads (head_dim) must be even for RoPE", self.model_dim)
        _check(self.mlp_mult > 0, "mlp_mult", "must be > 0", self.mlp_mult)
        _check(self.logit_softcap > 0, "logit_softcap", "must be > 0", self.logit_softcap)
        _check(self.rope_base > 1, "rope_base", "must be > 1", self.rope_base)
        _check(0 <= self.bos_id < self.vocab_size, "bos_id", f"must be in [0, VOCAB_SIZE={self.vocab_size})",
               self.bos_id)
        _check(self.mlp_activation in ("relu_sq", "leaky_relu_sq"), "mlp_activation",
               "must be relu_sq or leaky_relu_sq", self.mlp_activation)
        _check(self.smear_gate in (0, 1, 2, 3), "smear_gate", "must be 0 (off), 1, 2 or 3", self.smear_gate)
        _check(1 <= self.gate_window <= self.model_dim, "gate_window", "must be in [1, MODEL_DIM]", self.gate_window)
        _check(self.bigram_vocab_size >= 0 and self.bigram_vocab_size != 1, "bigram_vocab_size",
               "must be 0 (off) or >= 2", self.bigram_vocab_size)
        _check(self.bigram_hash in ("xor", "mul92821"), "bigram_hash", "must be xor or mul92821", self.bigram_hash)
        _check(self.proj_init in ("zero", "scaled"), "proj_init", "must be zero or scaled", self.proj_init)
        n_cores = self.unique_layers or self.num_layers
        _check(0 <= self.xsa_last_n <= n_cores, "xsa_last_n", f"must be in [0, {n_cores}] (layers or cores)",
               self.xsa_last_n)
        _check(self.rope_dims == 0 or (0 < self.rope_dims <= self.model_dim // max(self.num_heads, 1)
                                       and self.rope_dims % 2 == 0), "rope_dims",
               "must be 0 (all) or an even number <= head_dim", self.rope_dims)
        _check(self.rope_train_seq_len >= 0, "rope_train_seq_len", "must be >= 0", self.rope_train_seq_len)
        _check(self.ve_dim >= 1, "ve_dim", "must be >= 1", self.ve_dim)
        if self.ve_enabled:
            _check(len(self.ve_layers) > 0 and all(0 <= i < self.num_layers for i in self.ve_layers), "ve_layers",
                   f"needs layers in [0, NUM_LAYERS={self.num_layers})", self.ve_layers)
        _check(self.attn_gate in ("none", "headwise", "g1", "output", "sparse"), "attn_gate",
               "must be none, headwise, g1, output or sparse", self.attn_gate)
        _check(self.num_loops >= 0, "num_loops", "must be >= 0", self.num_loops)
        if self.num_loops:
            _check(0 <= self.loop_start <= self.loop_end < self.num_layers, "loop_end",
                   f"need 0 <= LOOP_START={self.loop_start} <= LOOP_END < NUM_LAYERS={self.num_layers}",
                   self.loop_end)
        _check(all(0 <= i < self.num_layers for i in self.recur_layers), "recur_layers",
               f"layers must be in [0, NUM_LAYERS={self.num_layers})", self.recur_layers)
        _check(not (self.num_loops and self.recur_layers), "recur_layers",
               "use either NUM_LOOPS (+LOOP_START/LOOP_END) or RECUR_LAYERS, not both", self.recur_layers)
        _check(0 <= self.unique_layers <= self.num_layers, "unique_layers",
               f"must be in [0, NUM_LAYERS={self.num_layers}]", self.unique_layers)
        _check(self.skip_sizing in ("virtual", "physical"), "skip_sizing", "must be virtual or physical",
               self.skip_sizing)
        _check(self.parallel_residual in ("none", "two_lane", "gptj", "routed", "merge"), "parallel_residual",
               "must be none, two_lane, gptj, routed or merge", self.parallel_residual)
        _check(0 <= self.parallel_start_layer < self.num_layers, "parallel_start_layer",
               f"must be in [0, NUM_LAYERS={self.num_layers})", self.parallel_start_layer)
        _check(self.parallel_final_lane in ("mean", "attn", "mlp"), "parallel_final_lane",
               "must be mean, attn or mlp", self.parallel_final_lane)
        if self.disable_layer0_attn:
            _check(not (self.ve_enabled and 0 in self.ve_layers), "ve_layers",
                   "must not include layer 0 with DISABLE_LAYER0_ATTN=1 (layer 0 has no attention)", self.ve_layers)
            _check(not self.unique_layers or self.unique_layers == self.num_layers, "unique_layers",
                   "cannot share cores with DISABLE_LAYER0_ATTN=1 (core 0 would lose attention in every layer "
                   "that reuses it)", self.unique_layers)

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_mult * self.model_dim)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer split and schedule (SPEC §2.4-2.5)."""

    embed_lr: float = 0.6  # Adam LR of an untied token embedding
    head_lr: float = 0.008  # Adam LR of an untied lm_head
    tied_embed_lr: float = 0.05  # Adam LR of the tied embedding
    matrix_lr: float = 0.04  # Muon LR of 2-D block matrices
    scalar_lr: float = 0.04  # Adam LR of vectors / control tensors / skip weights
    muon_momentum: float = 0.95
    muon_backend_steps: int = 5  # Newton-Schulz iterations
    muon_momentum_warmup_start: float = 0.85
    muon_momentum_warmup_steps: int = 500
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip_norm: float = 0.0  # 0 = off
    warmdown_iters: int = 1200  # linear LR warmdown length in steps (wall-clock aware when capped)
    warmdown_frac: float = 0.0  # >0: warmdown over this fraction of training instead (#1394) [D1]
    min_lr: float = 0.0  # floor of the LR multiplier (#1787) [D1]
    muon_wd: float = 0.0  # decoupled weight decay of Muon matrices [D3]
    embed_wd: float = 0.0  # AdamW weight decay of the token embedding / head [D3]
    adam_wd: float = 0.0  # AdamW weight decay of scalars / control tensors [D3]
    muon_row_normalize: bool = False  # MuonEq-R: row-normalise the update before Newton-Schulz [D4]
    muon_ns_coeffs: str = "ns5"  # ns5 | polar_express [D5]
    wd_taper_start_frac: float = 1.0  # Muon WD multiplier 1 until this training fraction, then linear... [#1729]
    wd_taper_final_mult: float = 1.0  # ...to this multiplier at the end

    def __post_init__(self) -> None:
        for name in ("embed_lr", "head_lr", "tied_embed_lr", "matrix_lr", "scalar_lr", "grad_clip_norm"):
            _check(getattr(self, name) >= 0, name, "must be >= 0", getattr(self, name))
        for name in ("muon_momentum", "muon_momentum_warmup_start", "beta1", "beta2"):
            _check(0 <= getattr(self, name) < 1, name, "must be in [0, 1)", getattr(self, name))
        _check(self.muon_backend_steps >= 1, "muon_backend_steps", "must be >= 1", self.muon_backend_steps)
        _check(self.warmdown_iters >= 0, "warmdown_iters", "must be >= 0", self.warmdown_iters)
        _check(self.muon_momentum_warmup_steps >= 0, "muon_momentum_warmup_steps", "must be >= 0",
               self.muon_momentum_warmup_steps)
        _check(0 <= self.warmdown_frac <= 1, "warmdown_frac", "must be in [0, 1]", self.warmdown_frac)
        _check(0 <= self.min_lr < 1, "min_lr", "must be in [0, 1)", self.min_lr)
        for name in ("muon_wd", "embed_wd", "adam_wd"):
            _check(getattr(self, name) >= 0, name, "must be >= 0", getattr(self, name))
        _check(self.muon_ns_coeffs in ("ns5", "polar_express"), "muon_ns_coeffs", "must be ns5 or polar_express",
               self.muon_ns_coeffs)
        _check(0 <= self.wd_taper_start_frac <= 1, "wd_taper_start_frac", "must be in [0, 1]",
               self.wd_taper_start_frac)
        _check(self.wd_taper_final_mult >= 0, "wd_taper_final_mult", "must be >= 0", self.wd_taper_final_mult)


@dataclass(frozen=True)
class TrainConfig:
    """Training length, batch and logging cadence (SPEC §2.1, §2.6-2.7)."""

    run_id: str = ""  # "" = generated from the time and preset
    seed: int = 1337
    iterations: int = 20000
    warmup_steps: int = 20  # compile warm-up steps, then weights/optimizer/loader are restored (SPEC §2.6)
    train_batch_tokens: int = 524_288  # tokens per optimizer step, all ranks and micro-batches together
    train_seq_len: int = 1024
    global_microbatches: int = 8  # micro-batches per step over all ranks; grad_accum = this / WORLD_SIZE (SPEC §2.7)
    max_wallclock_seconds: float = 600.0  # training-time cap; 0 = off (iteration-based warmdown)
    val_batch_size: int = 524_288  # tokens per validation batch, all ranks together
    val_loss_every: int = 1000  # steps between validations; 0 = only at the end
    train_log_every: int = 200
    val_max_tokens: int = 0  # 0 = whole val split; >0 truncates (tests/smoke only, never for a score)
    device: str = "auto"  # auto | cpu | cuda
    use_compile: str = "auto"  # auto (on CUDA only) | 0 | 1
    train_loader: str = "sequential"  # sequential | coprime | shuffled | packed [D9]
    enable_looping_at: tuple[float, ...] = ()  # fraction(s) of training at which loop k turns on; () = from the start
    recur_start_step: int = 0  # >0: all loops turn on at this step instead (#1204) [C14]
    ema_decay: float = 0.0  # EMA of the weights, exported; 0 = off [D7]
    swa_every: int = 0  # SWA snapshot period in steps; 0 = off [D7]
    swa_start_frac: float = 0.2  # SWA snapshots once the LR multiplier is below this ("tight SWA", #461 name)
    late_qat_threshold: float = 0.0  # enable STE fake-quant once the LR multiplier falls below this; 0 = off [B3]
    qat_bits: int = 6  # bits of the fake quantizer (per-row symmetric)
    qat_clip: str = "absmax"  # clip rule of the fake quantizer: absmax (records' rowmax/qmax) | sdclip:K | percentile:P

    def __post_init__(self) -> None:
        _check(self.iterations >= 1, "iterations", "must be >= 1", self.iterations)
        _check(self.warmup_steps >= 0, "warmup_steps", "must be >= 0", self.warmup_steps)
        _check(self.train_seq_len >= 2, "train_seq_len", "must be >= 2", self.train_seq_len)
        _check(self.global_microbatches >= 1, "global_microbatches", "must be >= 1", self.global_microbatches)
        _check(self.train_batch_tokens % (self.global_microbatches * self.train_seq_len) == 0, "train_batch_tokens",
               f"must be a multiple of GLOBAL_MICROBATCHES*TRAIN_SEQ_LEN = "
               f"{self.global_microbatches}*{self.train_seq_len}", self.train_batch_tokens)
        _check(self.max_wallclock_seconds >= 0, "max_wallclock_seconds", "must be >= 0", self.max_wallclock_seconds)
        _check(self.val_batch_size >= 1, "val_batch_size", "must be >= 1", self.val_batch_size)
        _check(self.val_loss_every >= 0, "val_loss_every", "must be >= 0", self.val_loss_every)
        _check(self.train_log_every >= 0, "train_log_every", "must be >= 0", self.train_log_every)
        _check(self.val_max_tokens >= 0, "val_max_tokens", "must be >= 0", self.val_max_tokens)
        _check(self.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda", self.device)
        _check(self.use_compile in ("auto", "0", "1"), "use_compile", "must be auto, 0 or 1", self.use_compile)
        _check(self.train_loader in ("sequential", "coprime", "shuffled", "packed"), "train_loader",
               "must be sequential, coprime, shuffled or packed", self.train_loader)
        _check(all(0 <= f < 1 for f in self.enable_looping_at), "enable_looping_at",
               "fractions must be in [0, 1)", self.enable_looping_at)
        _check(list(self.enable_looping_at) == sorted(self.enable_looping_at), "enable_looping_at",
               "must be non-decreasing", self.enable_looping_at)
        _check(self.recur_start_step >= 0, "recur_start_step", "must be >= 0", self.recur_start_step)
        _check(0 <= self.ema_decay < 1, "ema_decay", "must be in [0, 1)", self.ema_decay)
        _check(self.swa_every >= 0, "swa_every", "must be >= 0", self.swa_every)
        _check(self.late_qat_threshold >= 0, "late_qat_threshold", "must be >= 0", self.late_qat_threshold)
        _check(2 <= self.qat_bits <= 8, "qat_bits", "must be in [2, 8]", self.qat_bits)
        _check(re.fullmatch(r"absmax|search|(sdclip|percentile):[0-9.]+", self.qat_clip) is not None, "qat_clip",
               "must be absmax, search, sdclip:K or percentile:P", self.qat_clip)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocols after training (SPEC §1.4, §3.A1)."""

    eval_seq_len: int = 0  # window length for sliding eval; 0 = TRAIN_SEQ_LEN
    eval_stride: int = 64  # sliding-window stride in tokens; 0 = no sliding-window eval
    eval_batch_seqs: int = 32  # windows per forward pass in sliding eval (per rank)

    def __post_init__(self) -> None:
        _check(self.eval_seq_len >= 0, "eval_seq_len", "must be >= 0", self.eval_seq_len)
        _check(self.eval_stride >= 0, "eval_stride", "must be >= 0", self.eval_stride)
        _check(self.eval_batch_seqs >= 1, "eval_batch_seqs", "must be >= 1", self.eval_batch_seqs)


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
        _check(0 < self.int8_clip_percentile <= 100, "int8_clip_percentile", "must be in (0, 100]",
               self.int8_clip_percentile)
        _check(self.keep_float_max_numel >= 0, "keep_float_max_numel", "must be >= 0", self.keep_float_max_numel)
        for name in ("artifact_codec", "mixed_codec"):
            v = getattr(self, name)
            _check(bool(re.fullmatch(r"(zlib|zstd|lzma|brotli)(\+shuffle[2-8])?|entropy", v)), name,
                   "must be zlib, zstd, lzma or brotli (optionally +shuffle2..8), or entropy", v)
        for name in ("matrix_bits", "embed_bits"):
            _check(2 <= getattr(self, name) <= 8, name, "must be in [2, 8]", getattr(self, name))
        for name in ("attn_bits", "mlp_bits"):
            v = getattr(self, name)
            _check(v == 0 or 2 <= v <= 8, name, "must be 0 (= MATRIX_BITS) or in [2, 8]", v)
        _check(self.quant_clip_rule in ("sdclip", "hsdclip", "percentile", "search", "absmax"), "quant_clip_rule",
               "must be sdclip, hsdclip, percentile, search or absmax", self.quant_clip_rule)
        for name in ("matrix_clip_sigmas", "embed_clip_sigmas"):
            _check(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        for name in ("attn_clip_sigmas", "mlp_clip_sigmas", "gptq_reserve_seconds"):
            _check(getattr(self, name) >= 0, name, "must be >= 0", getattr(self, name))
        _check(0 <= self.hessian_clip_lambda <= 1, "hessian_clip_lambda", "must be in [0, 1]",
               self.hessian_clip_lambda)
        _check(self.gptq_calibration in ("train", "ar"), "gptq_calibration", "must be train or ar",
               self.gptq_calibration)
        for name in ("gptq_calibration_batches", "gptq_ar_seqs", "gptq_block_size", "lqer_rank", "lqer_top_k",
                     "lqer_asym_group"):
            _check(getattr(self, name) >= 1, name, "must be >= 1", getattr(self, name))
        _check(self.gptq_ar_temperature > 0, "gptq_ar_temperature", "must be > 0", self.gptq_ar_temperature)
        _check(0 < self.gptq_damp < 1, "gptq_damp", "must be in (0, 1)", self.gptq_damp)
        _check(2 <= self.lqer_factor_bits <= 8, "lqer_factor_bits", "must be in [2, 8]", self.lqer_factor_bits)
        _check(self.prune_target_bytes >= 0, "prune_target_bytes", "must be >= 0 (decimal bytes; 0 = off)",
               self.prune_target_bytes)


TTT_KINDS = ("chunked", "lora", "phased")
LORA_SITES = ("q", "k", "v", "o", "mlp", "head")  # projections a doc-LoRA adapter can sit on (head = lm_head)


@dataclass(frozen=True)
class TTTConfig:
    """Score-first test-time training on the dequantized artifact model (SPEC §3.E; legality §4).

    Kinds: ``chunked`` = full-model TTT over TTT_CHUNK_TOKENS chunks scored by sliding windows (E2, #461/#549),
    ``lora`` = per-document batched LoRA (E4, #1530), ``phased`` = doc-LoRA plus global SGD of the base model on
    already-scored documents at phase boundaries (E5, #1610/#1626). Defaults are the records' values.
    """

    ttt_enabled: bool = False  # run the TTT_KINDS protocols after the round-trip eval (off in the baseline)
    ttt_kinds: tuple[str, ...] = ("chunked",)  # comma list of chunked | lora | phased
    # chunked full-model TTT (#549: lr 0.002, 3 epochs, 32,768-token chunks, freeze 0, SGD momentum 0.9)
    ttt_lr: float = 0.002  # peak LR, cosine-decayed across chunks
    ttt_epochs: int = 3  # passes over each chunk after it is scored (never the last chunk)
    ttt_chunk_tokens: int = 32768  # target positions per chunk
    ttt_freeze_blocks: int = 0  # the first N physical blocks stay frozen (#461 used 2)
    ttt_momentum: float = 0.9  # SGD momentum (AdamW: beta1)
    ttt_batch_seqs: int = 32  # training sequences (EVAL_SEQ_LEN tokens) per step and rank
    ttt_grad_clip: float = 1.0  # global grad-norm clip; 0 = off
    ttt_optimizer: str = "sgd"  # sgd | adamw
    # per-document batched LoRA TTT (#1530 / #1626: rank 96, lr 1e-4, chunk 48, batch 64 docs, AdamW b1 0)
    ttt_lora_rank: int = 96
    ttt_lora_alpha: float = 0.0  # LoRA output scale alpha/rank; 0 = scale 1
    ttt_lora_lr: float = 1e-4
    ttt_chunk_size: int = 48  # tokens scored (then trained on) per LoRA step
    ttt_eval_seq_len: int = 0  # context window of a LoRA chunk; 0 = EVAL_SEQ_LEN (or TRAIN_SEQ_LEN)
    ttt_batch_size: int = 64  # documents per LoRA batch (sorted by length)
    ttt_beta1: float = 0.0
    ttt_beta2: float = 0.999
    ttt_weight_decay: float = 0.5  # AdamW decoupled weight decay of the adapters
    ttt_warm_start_a: bool = False  # keep LoRA A across documents, zero only B (#1767)
    # adapter sites: all of them as #1530+ (Q, K, V, O, MLP of every virtual layer + lm_head); E1 used "q,v,head"
    ttt_lora_sites: tuple[str, ...] = LORA_SITES
    # phased global SGD over already-scored documents (#1626: 3 phases over 2,000 docs, lr 0.001, 1 epoch)
    phased_ttt_prefix_docs: int = 2000  # documents (in processing order) covered by the phases
    phased_ttt_num_phases: int = 3  # phase boundaries at prefix*i/phases documents
    global_ttt_lr: float = 0.001
    global_ttt_momentum: float = 0.9
    global_ttt_epochs: int = 1
    global_ttt_chunk_tokens: int = 32768  # cosine LR steps over chunks of this many tokens
    global_ttt_batch_seqs: int = 32
    global_ttt_grad_clip: float = 1.0

    def __post_init__(self) -> None:
        _check(bool(self.ttt_kinds) and all(k in TTT_KINDS for k in self.ttt_kinds)
               and len(set(self.ttt_kinds)) == len(self.ttt_kinds), "ttt_kinds",
               f"must be distinct names from {', '.join(TTT_KINDS)}", self.ttt_kinds)
        _check(bool(self.ttt_lora_sites) and all(k in LORA_SITES for k in self.ttt_lora_sites)
               and len(set(self.ttt_lora_sites)) == len(self.ttt_lora_sites), "ttt_lora_sites",
               f"must be distinct names from {', '.join(LORA_SITES)}", self.ttt_lora_sites)
        _check(self.ttt_optimizer in ("sgd", "adamw"), "ttt_optimizer", "must be sgd or adamw", self.ttt_optimizer)
        for name in ("ttt_lr", "ttt_grad_clip", "ttt_lora_lr", "ttt_lora_alpha", "ttt_weight_decay",
                     "global_ttt_lr", "global_ttt_grad_clip"):
            _check(getattr(self, name) >= 0, name, "must be >= 0", getattr(self, name))
        for name in ("ttt_momentum", "ttt_beta1", "ttt_beta2", "global_ttt_momentum"):
            _check(0 <= getattr(self, name) < 1, name, "must be in [0, 1)", getattr(self, name))
        for name in ("ttt_epochs", "ttt_freeze_blocks", "ttt_eval_seq_len", "phased_ttt_prefix_docs",
                     "global_ttt_epochs"):
            _check(getattr(self, name) >= 0, name, "must be >= 0", getattr(self, name))
        for name in ("ttt_chunk_tokens", "ttt_batch_seqs", "ttt_lora_rank", "ttt_chunk_size", "ttt_batch_size",
                     "phased_ttt_num_phases", "global_ttt_chunk_tokens", "global_ttt_batch_seqs"):
            _check(getattr(self, name) >= 1, name, "must be >= 1", getattr(self, name))


NGRAM_SCHEDULES = ("entropy", "entropy_order", "fixed", "none")
NGRAM_PROTOCOLS = ("sliding", "chunked", "lora", "phased")


@dataclass(frozen=True)
class NgramConfig:
    """Eval-time n-gram mixing done right (SPEC §3.F4/F5, §4.5; :mod:`golflib.eval.ngram`): exact multi-order counts
    of already-scored targets, interpolated Witten-Bell over the whole vocabulary, mixed into the model's distribution
    with an entropy-adaptive α, optional causal exponential tilt (#1514). Off in the baseline."""

    ngram_enabled: bool = False  # run NGRAM_PROTOCOLS with the mixer after the round-trip eval and TTT
    ngram_protocols: tuple[str, ...] = ("sliding",)  # sliding | chunked | lora | phased (TTT kinds mix adapted logits)
    ngram_orders: tuple[int, ...] = (2, 3, 4, 5, 6, 7)  # n-gram orders counted exactly (context length n - 1)
    ngram_alpha_schedule: str = "entropy"  # entropy (#940) | entropy_order (+ highest order with a hit) | fixed | none
    ngram_alpha: float = 0.4  # α of the fixed schedule
    ngram_ent_base: float = 0.05  # α = base + span * sigmoid(scale * (H - center)), H = model entropy in nats (#940)
    ngram_ent_span: float = 0.55
    ngram_ent_scale: float = 2.0
    ngram_ent_center: float = 4.0
    ngram_ent_order_slope: float = 0.25  # entropy_order: centre lowered by this per order above the lowest (#798)
    ngram_tilt_beta: float = 0.0  # causal exponential tilt strength (#1514 used 2.0); 0 = off
    ngram_tilt_tau: float = 0.5  # tilt only if the hint's maximum-likelihood probability >= tau
    ngram_tilt_min_count: int = 2  # ... and its context was seen at least this many times
    ngram_doc_contexts: bool = True  # contexts stop at the BOS that opens a document
    ngram_update_every: int = 64  # scored positions between additions to the counts; 0 = once per scored batch
    ngram_check_rows: int = 2  # mixed rows per scored batch passed through the ledger's C2 check

    def __post_init__(self) -> None:
        _check(bool(self.ngram_protocols) and all(k in NGRAM_PROTOCOLS for k in self.ngram_protocols)
               and len(set(self.ngram_protocols)) == len(self.ngram_protocols), "ngram_protocols",
               f"must be distinct names from {', '.join(NGRAM_PROTOCOLS)}", self.ngram_protocols)
        _check(bool(self.ngram_orders) and all(2 <= o <= 32 for o in self.ngram_orders)
               and len(set(self.ngram_orders)) == len(self.ngram_orders), "ngram_orders",
               "must be distinct integers in [2, 32]", self.ngram_orders)
        _check(self.ngram_alpha_schedule in NGRAM_SCHEDULES, "ngram_alpha_schedule",
               f"must be one of {', '.join(NGRAM_SCHEDULES)}", self.ngram_alpha_schedule)
        _check(0.0 <= self.ngram_alpha <= 1.0, "ngram_alpha", "must be in [0, 1]", self.ngram_alpha)
        _check(self.ngram_ent_base >= 0.0, "ngram_ent_base", "must be >= 0", self.ngram_ent_base)
        _check(self.ngram_ent_span >= 0.0 and self.ngram_ent_base + self.ngram_ent_span <= 1.0, "ngram_ent_span",
               "must be >= 0 with NGRAM_ENT_BASE + NGRAM_ENT_SPAN <= 1", self.ngram_ent_span)
        _check(self.ngram_ent_scale >= 0.0, "ngram_ent_scale", "must be >= 0", self.ngram_ent_scale)
        _check(self.ngram_tilt_beta >= 0.0, "ngram_tilt_beta", "must be >= 0", self.ngram_tilt_beta)
        _check(0.0 <= self.ngram_tilt_tau <= 1.0, "ngram_tilt_tau", "must be in [0, 1]", self.ngram_tilt_tau)
        _check(self.ngram_tilt_min_count >= 1, "ngram_tilt_min_count", "must be >= 1", self.ngram_tilt_min_count)
        _check(self.ngram_check_rows >= 0, "ngram_check_rows", "must be >= 0", self.ngram_check_rows)
        _check(self.ngram_update_every >= 0, "ngram_update_every", "must be >= 0", self.ngram_update_every)


GROUPS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "quant": QuantConfig,
    "ttt": TTTConfig,
    "ngram": NgramConfig,
}

# Environment variables with these prefixes are "ours": one that matches no field is a typo or an unimplemented
# technique, and silently ignoring it would make a run differ from what its author believes.
CHALLENGE_PREFIXES = (
    "GOLF_", "TTT_", "MUON_", "QAT_", "LATE_QAT", "GPTQ_", "EVAL_", "TRAIN_", "VAL_", "WARMDOWN_", "WARMUP_", "NUM_",
    "MODEL_", "MLP_", "ROPE_", "QK_", "LOGIT_", "TIED_", "EMBED_", "HEAD_", "MATRIX_", "SCALAR_", "ADAM_", "GRAD_",
    "SWA_", "EMA_", "XSA_", "LOOP_", "SMEAR", "BIGRAM", "VE_", "LN_", "PARALLEL_", "SPARSE_", "GATED_", "LQER_",
    "SDCLIP", "NGRAM_", "INT8_", "INT6_", "QUANT_", "ARTIFACT_", "GLOBAL_", "MAX_WALLCLOCK", "ENABLE_LOOPING",
    "RECUR_", "ROPE_", "WD_", "MIN_LR", "ORTHO", "PROJ_", "ATTN_", "SKIP_", "VALUE_", "BOS_", "LEAKY", "UNIQUE_",
    "REPEAT_", "GATE_", "LOOP_", "PHASED_",
)


def _coerce(name: str, typ: Any, raw: Any) -> Any:
    """Parse ``raw`` (a string from the environment, or a Python value) into the field type."""
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, (int, float)) and raw in (0, 1):
                return bool(raw)
            s = str(raw).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(s)
        if typ is int:
            if isinstance(raw, bool):
                return int(raw)
            if isinstance(raw, float):
                if raw != int(raw):
                    raise ValueError(raw)
                return int(raw)
            return int(str(raw).strip())
        if typ is float:
            return float(str(raw).strip()) if not isinstance(raw, (int, float)) else float(raw)
        if typ is str:
            return str(raw)
        if origin is tuple:
            (elem, *_rest) = typing.get_args(typ)
            if isinstance(raw, str):
                parts = [p for p in raw.replace(" ", "").split(",") if p]
            else:
                parts = list(raw)
            return tuple(_coerce(name, elem, p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"{name.upper()}={raw!r}: expected {getattr(typ, '__name__', typ)}") from None
    raise ConfigError(f"{name.upper()}: unsupported field type {typ}")


def _field_index() -> dict[str, tuple[str, dataclasses.Field]]:
    index: dict[str, tuple[str, dataclasses.Field]] = {}
    for group, cls in GROUPS.items():
        for f in fields(cls):
            if f.name in index:
                raise RuntimeError(f"config field {f.name} is defined in two groups")  # programming error
            index[f.name] = (group, f)
    return index


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration: one frozen dataclass per group.

    Access fields as ``cfg.model.num_layers``; :meth:`flat` gives ``{"NUM_LAYERS": 9, ...}``.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    ttt: TTTConfig = field(default_factory=TTTConfig)
    ngram: NgramConfig = field(default_factory=NgramConfig)

    # ---- views -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested ``{group: {field: value}}`` (JSON-serializable)."""
        return {g: dataclasses.asdict(getattr(self, g)) for g in GROUPS}

    def flat(self) -> dict[str, Any]:
        """Flat ``{ENV_NAME: value}`` view."""
        return {k.upper(): v for g in GROUPS for k, v in dataclasses.asdict(getattr(self, g)).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    # ---- construction ------------------------------------------------------------------------------------------
    def replace(self, overrides: Mapping[str, Any] | None = None, *, source: str = "override") -> "Config":
        """Return a copy with ``overrides`` applied.

        Keys are field names or env-var names, case-insensitive (``"num_layers"`` or ``"NUM_LAYERS"``); values are
        Python values or strings (parsed with the field's type). Raises :class:`ConfigError` naming the key for an
        unknown field or an invalid value, with close matches suggested.
        """
        if not overrides:
            return self
        index = _field_index()
        per_group: dict[str, dict[str, Any]] = {}
        for key, raw in overrides.items():
            name = str(key).strip().lower()
            if name not in index:
                close = difflib.get_close_matches(name.upper(), [n.upper() for n in index], n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"unknown config field {str(key)!r} (from {source}){hint}")
            group, f = index[name]
            hints = typing.get_type_hints(GROUPS[group])
            per_group.setdefault(group, {})[name] = _coerce(name, hints[name], raw)
        kwargs = {}
        for group, vals in per_group.items():
            kwargs[group] = dataclasses.replace(getattr(self, group), **vals)
        return dataclasses.replace(self, **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        """Inverse of :meth:`to_dict` (also accepts a flat ``{ENV_NAME: value}`` mapping)."""
        flat: dict[str, Any] = {}
        for key, val in d.items():
            if key in GROUPS and isinstance(val, Mapping):
                flat.update(val)
            else:
                flat[key] = val
        return cls().replace(flat, source="config file")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "Config":
        """Load a ``config.json`` written by a run (extra top-level keys such as ``meta`` are ignored)."""
        try:
            with open(path, encoding="utf-8") as fh:
                raw = json.load(fh)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if "config" in raw and isinstance(raw["config"], Mapping):
            raw = raw["config"]
        return cls.from_dict({k: v for k, v in raw.items() if k in GROUPS})

    def with_env(self, environ: Mapping[str, str] | None = None) -> "Config":
        """Apply environment variables named like fields; refuse unknown ones that look like ours."""
        environ = os.environ if environ is None else environ
        index = _field_index()
        found: dict[str, str] = {}
        unknown: list[str] = []
        for key, val in environ.items():
            if key.lower() in index and key == key.upper():
                found[key] = val
            elif key.startswith(CHALLENGE_PREFIXES):
                unknown.append(key)
        if unknown:
            msgs = []
            for key in sorted(unknown):
                close = difflib.get_close_matches(key, [n.upper() for n in index], n=2)
                msgs.append(key + (f" (did you mean {', '.join(close)}?)" if close else ""))
            raise ConfigError("environment variables match no golflib config field: " + "; ".join(msgs))
        return self.replace(found, source="environment")


def env_names() -> list[str]:
    """All config env-var names, in group order."""
    return [f.name.upper() for cls in GROUPS.values() for f in fields(cls)]

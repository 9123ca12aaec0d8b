"""The data, optimizer, training-loop and evaluation groups of the run configuration (SPEC §1, §2.1, §3.D);
env-var names as in :mod:`golflib.config`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from golflib.settings.base import check_field


@dataclass(frozen=True)
class DataConfig:
    """Where the shards and the tokenizer live (SPEC §1)."""

    data_path: str = "./data/datasets/fineweb10B_sp1024"  # folder holding *_train_*.bin and *_val_*.bin shards
    tokenizer_path: str = "./data/tokenizers/fineweb_1024_bpe.model"  # SentencePiece .model used for byte LUTs
    train_files: str = ""  # glob of train shards; "" = <data_path>/*_train_*.bin
    val_files: str = ""  # glob of val shards; "" = <data_path>/*_val_*.bin (sidecars *_val_bytes_* excluded)
    val_bytes_files: str = ""  # CaseOps byte sidecar glob; "" = <data_path>/*_val_bytes_*.bin (used when present)
    caseops_enabled: bool = False  # #1855's CASEOPS_ENABLED: the byte sidecar is required (error when missing)

    def __post_init__(self) -> None:
        check_field(bool(self.data_path), "data_path", "must name a folder of shards", self.data_path)

    @property
    def train_glob(self) -> str:
        return self.train_files or os.path.join(self.data_path, "*_train_*.bin")

    @property
    def val_glob(self) -> str:
        return self.val_files or os.path.join(self.data_path, "*_val_*.bin")


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
    embed_proj_optimizer: str = "muon"  # bigram.proj/ve_shared.proj: muon (#287, #414) | adam (scalar AdamW: #549)
    muon_banked: bool = False  # the parameter-bank records' Muon arithmetic: bf16 momentum, b*A + c*(A@A) (#549, #1855)
    muon_sharded: bool = True  # Parallel Muon (#399): Muon matrices out of DDP, reduce-scatter + all-gather [D6]

    def __post_init__(self) -> None:
        for name in ("embed_lr", "head_lr", "tied_embed_lr", "matrix_lr", "scalar_lr", "grad_clip_norm"):
            check_field(getattr(self, name) >= 0, name, "must be >= 0", getattr(self, name))
        for name in ("muon_momentum", "muon_momentum_warmup_start", "beta1", "beta2"):
            check_field(0 <= getattr(self, name) < 1, name, "must be in [0, 1)", getattr(self, name))
        check_field(self.muon_backend_steps >= 1, "muon_backend_steps", "must be >= 1", self.muon_backend_steps)
        check_field(self.warmdown_iters >= 0, "warmdown_iters", "must be >= 0", self.warmdown_iters)
        check_field(self.muon_momentum_warmup_steps >= 0, "muon_momentum_warmup_steps", "must be >= 0",
                    self.muon_momentum_warmup_steps)
        check_field(0 <= self.warmdown_frac <= 1, "warmdown_frac", "must be in [0, 1]", self.warmdown_frac)
        check_field(0 <= self.min_lr < 1, "min_lr", "must be in [0, 1)", self.min_lr)
        for name in ("muon_wd", "embed_wd", "adam_wd"):
            check_field(getattr(self, name) >= 0, name, "must be >= 0", getattr(self, name))
        check_field(self.muon_ns_coeffs in ("ns5", "polar_express"), "muon_ns_coeffs", "must be ns5 or polar_express",
                    self.muon_ns_coeffs)
        check_field(0 <= self.wd_taper_start_frac <= 1, "wd_taper_start_frac", "must be in [0, 1]",
                    self.wd_taper_start_frac)
        check_field(self.wd_taper_final_mult >= 0, "wd_taper_final_mult", "must be >= 0", self.wd_taper_final_mult)
        check_field(self.embed_proj_optimizer in ("muon", "adam"), "embed_proj_optimizer", "must be muon or adam",
                    self.embed_proj_optimizer)


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
    precision: str = "auto"  # auto (bf16 autocast + bf16 layout on CUDA, fp32 on CPU) | bf16 (any device) | fp32
    attention_backend: str = "auto"  # auto (FlashAttention 3/2 when usable, else SDPA) | fa3 | fa2 | sdpa [D6]
    flash_attn_op: str = "auto"  # auto (probe) | native | custom_op: how a compiled graph calls FlashAttention
    loader_prefetch: int = 2  # train micro-batches built ahead on a background thread (pinned on CUDA); 0 = off
    warmup_cu_buckets: int = 4  # compiled packed training: varlen boundary sizes 64·1..64·k warmed before the timer
    train_loader: str = "sequential"  # sequential | coprime | shuffled | packed [D9]
    enable_looping_at: tuple[float, ...] = ()  # fraction(s) of training at which loop k turns on; () = from the start
    recur_start_step: int = 0  # >0: all loops turn on at this step instead (#1204) [C14]
    ema_decay: float = 0.0  # EMA of the weights, exported; 0 = off [D7]
    swa_every: int = 0  # SWA snapshot period in steps; 0 = off [D7]
    swa_start_frac: float = 0.2  # SWA snapshots once the LR multiplier is below this ("tight SWA", #461 name)
    late_qat_threshold: float = 0.0  # enable STE fake-quant once the LR multiplier falls below this; 0 = off [B3]
    qat_bits: int = 6  # bits of the fake quantizer (per-row symmetric)
    qat_clip: str = "absmax"  # fake quantizer: absmax | rowmax_floor (#287-#1019) | search | sdclip:K | percentile:P
    late_qat_modules: tuple[str, ...] = ()  # names (substrings) of the fake-quantized linears; () = all but lm_head
    late_qat_after_backward: bool = False  # switch on after the crossing step's backward (#461), not before it
    late_qat_in_ttt: bool = False  # keep the fake quantizer on for TTT training steps (#549 never clears its flag)
    init_checkpoint: str = ""  # safetensors state dict loaded over the init before training ("" = the model's init)
    preflight_budget: bool = True  # estimate the scored artifact's bytes before step 1 (golflib.quant.preflight)
    counted_code_bytes: int = 0  # code bytes a submission counts (golf train: the bundle's); 0 = this core's own
    allow_over_budget: bool = False  # train even when the pre-flight estimate is clearly over 16,000,000 bytes

    def __post_init__(self) -> None:
        check_field(self.iterations >= 1, "iterations", "must be >= 1", self.iterations)
        check_field(self.warmup_steps >= 0, "warmup_steps", "must be >= 0", self.warmup_steps)
        check_field(self.train_seq_len >= 2, "train_seq_len", "must be >= 2", self.train_seq_len)
        check_field(self.global_microbatches >= 1, "global_microbatches", "must be >= 1", self.global_microbatches)
        check_field(self.train_batch_tokens >= 1, "train_batch_tokens", "must be >= 1", self.train_batch_tokens)
        check_field(self.train_batch_tokens % (self.global_microbatches * self.train_seq_len) == 0,
                    "train_batch_tokens",
                    f"must be a multiple of GLOBAL_MICROBATCHES*TRAIN_SEQ_LEN = "
                    f"{self.global_microbatches}*{self.train_seq_len}", self.train_batch_tokens)
        check_field(self.max_wallclock_seconds >= 0, "max_wallclock_seconds", "must be >= 0",
                    self.max_wallclock_seconds)
        check_field(self.val_batch_size >= 1, "val_batch_size", "must be >= 1", self.val_batch_size)
        check_field(self.val_loss_every >= 0, "val_loss_every", "must be >= 0", self.val_loss_every)
        check_field(self.train_log_every >= 0, "train_log_every", "must be >= 0", self.train_log_every)
        check_field(self.val_max_tokens >= 0, "val_max_tokens", "must be >= 0", self.val_max_tokens)
        check_field(self.counted_code_bytes >= 0, "counted_code_bytes", "must be >= 0 (decimal bytes; 0 = this "
                    "training core's own code bytes)", self.counted_code_bytes)
        check_field(self.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda", self.device)
        check_field(self.use_compile in ("auto", "0", "1"), "use_compile", "must be auto, 0 or 1", self.use_compile)
        check_field(self.precision in ("auto", "bf16", "fp32"), "precision", "must be auto, bf16 or fp32",
                    self.precision)
        check_field(self.attention_backend in ("auto", "fa3", "fa2", "sdpa"), "attention_backend",
                    "must be auto, fa3, fa2 or sdpa", self.attention_backend)
        check_field(self.flash_attn_op in ("auto", "native", "custom_op"), "flash_attn_op",
                    "must be auto, native or custom_op", self.flash_attn_op)
        check_field(self.loader_prefetch >= 0, "loader_prefetch", "must be >= 0", self.loader_prefetch)
        check_field(self.warmup_cu_buckets >= 0, "warmup_cu_buckets", "must be >= 0", self.warmup_cu_buckets)
        check_field(self.train_loader in ("sequential", "coprime", "shuffled", "packed"), "train_loader",
                    "must be sequential, coprime, shuffled or packed", self.train_loader)
        check_field(all(0 <= f < 1 for f in self.enable_looping_at), "enable_looping_at",
                    "fractions must be in [0, 1)", self.enable_looping_at)
        check_field(list(self.enable_looping_at) == sorted(self.enable_looping_at), "enable_looping_at",
                    "must be non-decreasing", self.enable_looping_at)
        check_field(self.recur_start_step >= 0, "recur_start_step", "must be >= 0", self.recur_start_step)
        check_field(0 <= self.ema_decay < 1, "ema_decay", "must be in [0, 1)", self.ema_decay)
        check_field(self.swa_every >= 0, "swa_every", "must be >= 0", self.swa_every)
        check_field(self.late_qat_threshold >= 0, "late_qat_threshold", "must be >= 0", self.late_qat_threshold)
        check_field(2 <= self.qat_bits <= 8, "qat_bits", "must be in [2, 8]", self.qat_bits)
        check_field(re.fullmatch(r"absmax|rowmax_floor|search|(sdclip|percentile):[0-9.]+", self.qat_clip) is not None,
                    "qat_clip",
                    "must be absmax, rowmax_floor, search, sdclip:K or percentile:P", self.qat_clip)


# sliding-window sets (golflib.eval.sliding): fixed = #1218; legacy = every start < N (#287/#414/#549/#1019);
# legacy_stride = starts whose window holds >= stride targets, plus 0 (#461, and #549's TTT)
EVAL_WINDOW_SETS = ("fixed", "legacy", "legacy_stride")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocols after training (SPEC §1.4, §3.A1)."""

    eval_seq_len: int = 0  # window length for sliding eval; 0 = TRAIN_SEQ_LEN
    eval_stride: int = 64  # sliding-window stride in tokens; 0 = no sliding-window eval
    eval_batch_seqs: int = 32  # windows per forward pass in sliding eval (per rank)
    # sliding window set: fixed (#1218, each target once) | legacy (#287/#414/#549/#1019) | legacy_stride (#461);
    # the legacy sets re-score the tail (declared in the ledger) and zero-pad batches to EVAL_SEQ_LEN
    eval_windows: str = "fixed"
    eval_doc_isolated: bool = False  # standard evals doc-isolated in flat batches, segments at BOS (#1855)
    # plugins (golflib.plugins): comma list of module names or .py files imported before training; they register
    # protocols (golflib.plugins.register_protocol), mixers (golflib.plugins.register_mixer) and model
    # classes (golflib.plugins.register_model_class). Their SHA-256 goes to config.json (the audit checks it)
    eval_plugins: tuple[str, ...] = ()
    eval_protocols: tuple[str, ...] = ()  # registered custom/<name> protocols scored after the built-in ones

    def __post_init__(self) -> None:
        check_field(self.eval_seq_len >= 0, "eval_seq_len", "must be >= 0", self.eval_seq_len)
        check_field(self.eval_stride >= 0, "eval_stride", "must be >= 0", self.eval_stride)
        check_field(self.eval_batch_seqs >= 1, "eval_batch_seqs", "must be >= 1", self.eval_batch_seqs)
        check_field(self.eval_windows in EVAL_WINDOW_SETS, "eval_windows",
                    f"must be one of {', '.join(EVAL_WINDOW_SETS)}", self.eval_windows)
        check_field(all(p.startswith("custom/") and len(p) > 7 for p in self.eval_protocols)
                    and len(set(self.eval_protocols)) == len(self.eval_protocols), "eval_protocols",
                    "must be distinct custom/<name> protocols registered by EVAL_PLUGINS", self.eval_protocols)
        check_field(all(p.strip() for p in self.eval_plugins), "eval_plugins",
                    "must be module names or .py files", self.eval_plugins)

"""One training run's state and its phases before the export: set-up, warm-up and restore, the timed loop (one
optimizer step at a time) and the choice of the exported weights (SPEC §2.5-2.7, trap 3).

:func:`golflib.train.train` drives a :class:`Trainer`: ``Trainer(cfg, rt, log)`` (set-up) → :meth:`Trainer.warmup`
→ :meth:`Trainer.run_loop` → :meth:`Trainer.finalize_weights`, then exports and scores
(:func:`golflib.train.export_and_score`). Each phase is a method, so each can be read and tested on its own.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from golflib.codesize import BUNDLED, code_bytes, code_bytes_source
from golflib.config import Config
from golflib.settings.training import TrainConfig
from golflib.data.bytecount import is_sidecar, load_byte_counter, sidecar_path_note
from golflib.data.loader import DistributedTokenLoader, load_validation_tokens
from golflib.data.luts import load_sentencepiece
from golflib.eval.bpb import EvalResult
from golflib.eval.context import ScoringContext
from golflib.eval.protocols import eval_window, run_standard
from golflib.data.prefetch import Batch, PrefetchLoader
from golflib.data.varlen import CU_BUCKET
from golflib.model.attention import DENSE_MASK_MAX_ELEMENTS, describe_backends, require_backend
from golflib.model.flash_op import choose_flash_op
from golflib.model.gpt import count_params, unused_parameter_reasons
from golflib.model.registry import build_model
from golflib.model.layers import CONTROL_PATTERNS
from golflib.model.recurrence import encoder_decoder, max_loops
from golflib.optim.averaging import Averager
from golflib.optim.build import build_optimizers
from golflib.optim.muon import Muon
from golflib.optim.schedule import loop_phase, lr_multiplier, muon_momentum, training_fraction, wd_multiplier
from golflib.quant.fake_quant import set_late_qat
from golflib.quant.reserve import reserve_ms
from golflib.quant.prune import SIZE_LIMIT  # 16,000,000 bytes, decimal (SPEC §0)
from golflib.runlog import RunLogger
from golflib.runtime import (Runtime, all_reduce_max, all_reduce_sum, autocast, cast_model_for_device,
                             should_compile, synchronize, uses_bf16)


def load_init_checkpoint(model: torch.nn.Module, path: str) -> None:
    """Load a safetensors state dict (``INIT_CHECKPOINT``) over ``model``'s init, every entry required.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file and the missing, unexpected
    or mis-shaped tensors."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"INIT_CHECKPOINT={path}: no such file")
    sd = load_file(path)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    shapes = [f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in own
              if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"INIT_CHECKPOINT={path} does not fit the configured model: missing {missing[:8]}, "
                         f"unexpected {unexpected[:8]}, shape mismatches {shapes[:8]}")
    with torch.no_grad():
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)


def counted_code(cfg: Config) -> tuple[int, str]:
    """``(bytes, what)`` of the code a submission of this run counts: ``COUNTED_CODE_BYTES`` when given (``golf
    train`` passes the bundled ``train_gpt.py``'s), else this training core's own (the package: its module
    sources); a bundled script always counts its own file. The byte budget, the pruning target and
    ``bytes_total`` use it."""
    if cfg.train.counted_code_bytes and not BUNDLED:
        return cfg.train.counted_code_bytes, "COUNTED_CODE_BYTES (the bundled train_gpt.py of this config)"
    return code_bytes(), code_bytes_source()


def preflight_check(cfg: Config, rt: Runtime, log: RunLogger) -> dict | None:
    """Log the pre-flight byte budget (:func:`golflib.quant.preflight.preflight_budget`: the scored artifact of this
    config exported from Gaussian-row weights, plus :func:`counted_code` bytes) before the
    first step, on rank 0, and refuse to train — on every rank — when the estimate is over the limit by more than
    the estimate's error band (2% for scale-invariant recipes, 15% otherwise: :mod:`golflib.quant.preflight`),
    unless ``ALLOW_OVER_BUDGET=1``. Returns the report (rank 0)."""
    from golflib.quant.preflight import preflight_budget, preflight_line  # optional (golflib.seams)

    rep, verdict = None, [None]
    if rt.master:
        n_code, source = counted_code(cfg)
        rep = preflight_budget(cfg, code_bytes=n_code, code_source=source)
        log.log(preflight_line(rep) + f" seconds:{rep['seconds']:.1f}")
        if rep["bytes_total"] > SIZE_LIMIT * (1 + rep["band"]):
            verdict[0] = (f"pre-flight: {rep['bytes_total']:,} bytes estimated ({rep['weights']} weights), over the "
                          f"{SIZE_LIMIT:,}-byte limit by more than the estimate's {rep['band']:.0%} band; change the "
                          f"export recipe, or set ALLOW_OVER_BUDGET=1 to train anyway")
        elif not rep["fits"]:
            log.log(f"preflight:warning estimate over the limit by {-rep['headroom']:,} bytes, inside the estimate's "
                    f"{rep['band']:.0%} band: check with golf budget --checkpoint after training")
    if rt.distributed:
        dist.broadcast_object_list(verdict, src=0)
    if verdict[0] and not cfg.train.allow_over_budget:
        raise SystemExit(verdict[0])
    if verdict[0]:
        log.log("preflight:ALLOW_OVER_BUDGET=1 — training although " + verdict[0].removeprefix("pre-flight: "))
    return rep


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def grad_accum_steps(tc: TrainConfig, world_size: int) -> int:
    """Micro-batches per rank and step: ``GLOBAL_MICROBATCHES / WORLD_SIZE`` (the records' ``8 // world_size``,
    SPEC §2.7), or 1 when there are more ranks than micro-batches (each rank then takes
    ``TRAIN_BATCH_TOKENS / WORLD_SIZE`` tokens: the same global batch, so a smoke preset's 2 micro-batches run on 8
    GPUs). Raises ``ValueError`` when neither count divides the other, or the per-rank micro-batch would not be a
    whole number of ``TRAIN_SEQ_LEN`` sequences."""
    gm = tc.global_microbatches
    if gm % world_size and world_size % gm:
        raise ValueError(f"WORLD_SIZE={world_size} and GLOBAL_MICROBATCHES={gm}: one must divide the other "
                         f"(records: GLOBAL_MICROBATCHES=8 with 1, 2, 4 or 8 GPUs)")
    accum = max(1, gm // world_size)
    per_rank = tc.train_batch_tokens // (world_size * accum)
    if tc.train_batch_tokens % (world_size * accum) or per_rank % tc.train_seq_len:
        raise ValueError(f"TRAIN_BATCH_TOKENS={tc.train_batch_tokens} over WORLD_SIZE={world_size} x {accum} "
                         f"micro-batches is {tc.train_batch_tokens / (world_size * accum):g} tokens per rank, not a "
                         f"multiple of TRAIN_SEQ_LEN={tc.train_seq_len}")
    return accum


@dataclass
class LoopResult:
    """What the timed loop leaves: ``step`` optimizer steps taken, ``train_ms`` training time (ms, validation
    excluded), ``last_val`` the last validation of the live weights, ``qat_on`` whether late QAT was switched on."""

    step: int
    train_ms: float
    last_val: EvalResult | None
    qat_on: bool


class Trainer:
    """A training run up to the exported weights. Building one is the set-up: seeds, tokenizer, byte counter
    (LUTs or the CaseOps sidecar) and val stream, the GPT (optionally from ``INIT_CHECKPOINT``), compile and DDP
    wrappers, the optimizer split, the pre-flight byte budget and the run's header log lines.

    Attributes used by the later phases: ``base_model`` (the unwrapped GPT), ``model`` (compiled/DDP wrapper),
    ``optimizers``, ``luts`` (:mod:`golflib.data.bytecount`), ``val_tokens`` (int64 ``[n_targets + 1]``, truncated at
    ``TRAIN_SEQ_LEN``), ``eval_len``, ``accum`` (micro-batches per rank and step), ``cap_ms`` (the wall-clock cap
    minus the GPTQ reserve, ms, or None), ``averager``, ``n_params``, ``scoring_ctx``.
    Raises ``ValueError`` for a world size that does not fit ``GLOBAL_MICROBATCHES`` (:func:`grad_accum_steps`), a
    tokenizer that does not match ``VOCAB_SIZE``, or a packed loader that would need a huge dense attention mask.
    """

    def __init__(self, cfg: Config, rt: Runtime, log: RunLogger):
        self.cfg, self.rt, self.log = cfg, rt, log
        tc, mc = cfg.train, cfg.model
        seed_everything(tc.seed)
        self.accum = grad_accum_steps(tc, rt.world_size)
        self.unused_reasons: list[str] = []  # why DDP must look for parameters without a gradient
        self._load_val()
        base_model = build_model(mc)
        if tc.init_checkpoint:
            load_init_checkpoint(base_model, tc.init_checkpoint)
            log.log(f"init_checkpoint:{tc.init_checkpoint}")
        self.base_model = base_model = base_model.to(rt.device)
        cast_model_for_device(base_model, rt.device, CONTROL_PATTERNS)
        self.compiled = compiled = should_compile(tc.use_compile, rt.device)
        self.backend = require_backend(tc.attention_backend, rt.device)  # a requested one that cannot run: error
        # a FlashAttention build whose calls break a compiled graph goes through golflib's custom ops (logged)
        self.flash_op = choose_flash_op(tc.flash_attn_op, rt.device) if compiled and self.backend != "sdpa" else ""
        if compiled and tc.train_loader == "packed" and self.backend == "sdpa":
            row = tc.train_batch_tokens // (rt.world_size * self.accum)  # one flat row per rank and micro-step
            if row * row > DENSE_MASK_MAX_ELEMENTS:
                raise ValueError(f"TRAIN_LOADER=packed with USE_COMPILE on {rt.device} and no FlashAttention varlen "
                                 f"kernel: a compiled step would attend through a dense [{row}, {row}] mask (rows "
                                 f"of TRAIN_BATCH_TOKENS / (world · microbatches) = {row} tokens); install "
                                 f"flash_attn, set USE_COMPILE=0, or lower TRAIN_BATCH_TOKENS")
        if compiled:  # a graph per loop phase × late-QAT mode × varlen bucket: none may be evicted (eager fallback)
            import torch._dynamo.config as dynamo_config

            graphs = (max_loops(mc) + 1) * 2 * max(1, tc.warmup_cu_buckets + 2)
            dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, graphs)
        model = torch.compile(base_model, dynamic=False, fullgraph=True) if compiled else base_model
        self.optimizers = build_optimizers(base_model, cfg.optim, mc.tie_embeddings,
                                           sharded=rt.distributed and cfg.optim.muon_sharded, compile_ns=compiled)
        self.muon = next((o for o in self.optimizers if isinstance(o, Muon)), None)
        self.muon_ids = {id(p) for g in self.muon.param_groups for p in g["params"]} if self.muon else set()
        if rt.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.unused_reasons = unused_parameter_reasons(mc)
            if self.muon is not None and self.muon.sharded:  # Parallel Muon reduce-scatters these itself (#399)
                DDP._set_params_and_buffers_to_ignore_for_model(
                    model, [n for n, p in model.named_parameters() if id(p) in self.muon_ids])
                with torch.no_grad():  # DDP broadcasts only what it syncs: rank 0's init for the rest
                    for g in self.muon.param_groups:
                        for p in g["params"]:
                            dist.broadcast(p.data, src=0)
            model = DDP(model, device_ids=[rt.local_rank] if rt.is_cuda else None, broadcast_buffers=False,
                        find_unused_parameters=bool(self.unused_reasons))
        self.model = model
        self.n_params = count_params(base_model)
        self.n_loops = max_loops(mc)
        self.cap_ms = 1000.0 * tc.max_wallclock_seconds - reserve_ms(cfg) if tc.max_wallclock_seconds > 0 else None
        self.scoring_ctx = ScoringContext(device=rt.device, rank=rt.rank, world_size=rt.world_size)
        self._log_header()

    def _load_val(self) -> None:
        cfg, log, tc, mc = self.cfg, self.log, self.cfg.train, self.cfg.model
        sp = load_sentencepiece(cfg.data.tokenizer_path)
        if int(sp.vocab_size()) != mc.vocab_size:
            raise ValueError(f"VOCAB_SIZE={mc.vocab_size} does not match tokenizer {cfg.data.tokenizer_path} "
                             f"vocab_size={int(sp.vocab_size())}")
        self.luts = load_byte_counter(cfg.data, mc.vocab_size, int(sp.bos_id()))
        self.eval_len = eval_window(cfg)
        self.val_tokens = load_validation_tokens(cfg.data.val_glob, tc.train_seq_len, mc.vocab_size,
                                                 tc.val_max_tokens)
        log.log(f"val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path={cfg.data.tokenizer_path}")
        if is_sidecar(self.luts):  # CaseOps: original bytes per token (SPEC §1.4); LUTs would count transformed text
            self.luts.check_stream(self.val_tokens.numel())
            log.log(sidecar_path_note(self.luts))
        log.log(f"val_loader:shards pattern:{cfg.data.val_glob} tokens:{self.val_tokens.numel() - 1}"
                + (f" (truncated by VAL_MAX_TOKENS={tc.val_max_tokens}: not a val_bpb)" if tc.val_max_tokens else ""))

    def _log_header(self) -> None:
        cfg, rt, log, tc, mc = self.cfg, self.rt, self.log, self.cfg.train, self.cfg.model
        log.log(f"model_params:{self.n_params}")
        if tc.preflight_budget:
            preflight_check(cfg, rt, log)
        log.log(f"world_size:{rt.world_size} grad_accum_steps:{self.accum} device:{rt.device} "
                f"compile:{self.compiled}")
        if rt.world_size > tc.global_microbatches:
            log.log(f"grad_accum_note: GLOBAL_MICROBATCHES={tc.global_microbatches} < WORLD_SIZE={rt.world_size}: one "
                    f"micro-batch of {tc.train_batch_tokens // rt.world_size} tokens per rank (same global batch)")
        if self.muon is not None:
            banks = [b for group in self.muon.banks() for b in group]
            log.log(f"muon:{'sharded' if self.muon.sharded else 'replicated'} banks:{len(banks)} matrices:"
                    f"{sum(b.n for b in banks)} shapes:{','.join('x'.join(map(str, b.shape)) for b in banks)} "
                    f"compiled_ns:{int(self.muon.compile_ns)}")
        if rt.distributed:
            log.log(f"ddp_find_unused_parameters:{int(bool(self.unused_reasons))}"
                    + (f" ({'; '.join(self.unused_reasons)})" if self.unused_reasons else ""))
        log.log(f"attention_mode:gqa num_heads:{mc.num_heads} num_kv_heads:{mc.num_kv_heads}")
        log.log(f"precision:{tc.precision} autocast:{'bf16' if uses_bf16(rt.device) else 'off'} "
                f"tok_emb:{str(self.base_model.tok_emb.weight.dtype).removeprefix('torch.')}")
        log.log(f"attention_backend:{self.backend} requested:{tc.attention_backend} {describe_backends()} "
                f"torch:{torch.__version__} cuda:{torch.version.cuda or 'none'}")
        if self.flash_op:
            log.log(self.flash_op)
        log.log(f"train_batch_tokens:{tc.train_batch_tokens} train_seq_len:{tc.train_seq_len} "
                f"iterations:{tc.iterations} warmup_steps:{tc.warmup_steps} "
                f"max_wallclock_seconds:{tc.max_wallclock_seconds:.3f}")
        log.log(f"seed:{tc.seed}")
        log.log(f"train_loader:{tc.train_loader}")

    # ---- the pieces every phase uses ---------------------------------------------------------------------------
    def new_loader(self, device: torch.device | None = None):
        """A fresh train loader of ``TRAIN_LOADER`` at the start of the train shards, its batches on ``device``
        (default: the run's)."""
        tc, rt = self.cfg.train, self.rt
        device = rt.device if device is None else device
        if tc.train_loader == "sequential":  # the official loader; the records' others are optional (golflib.seams)
            return DistributedTokenLoader(self.cfg.data.train_glob, rt.rank, rt.world_size, device,
                                          self.cfg.model.vocab_size)
        from golflib.data.loaders import make_loader

        return make_loader(tc.train_loader, self.cfg.data.train_glob, rt.rank, rt.world_size, device,
                           self.cfg.model.vocab_size, bos_id=self.cfg.model.bos_id)

    def new_train_stream(self) -> PrefetchLoader:
        """:meth:`new_loader` built on the host behind a :class:`golflib.data.prefetch.PrefetchLoader`
        (``LOADER_PREFETCH`` micro-batches ahead, pinned and copied asynchronously on CUDA, varlen boundaries made
        on the loader's thread)."""
        tc = self.cfg.train
        return PrefetchLoader(self.new_loader(torch.device("cpu")), self.rt.device, tc.train_batch_tokens,
                              tc.train_seq_len, self.accum, depth=tc.loader_prefetch)

    def zero_grad(self) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)

    def run_step(self, loader: PrefetchLoader) -> torch.Tensor:
        """Forward and backward over this rank's ``accum`` micro-batches (gradients synced on the last one under
        DDP); returns the mean training loss (fp32 scalar tensor, nats/token)."""
        rt, accum = self.rt, self.accum
        total = torch.zeros((), device=rt.device)
        for micro in range(accum):
            if rt.distributed:
                self.model.require_backward_grad_sync = micro == accum - 1
            total += self.forward_backward(loader.next_batch(), 1.0 / accum)
        return total / accum

    def forward_backward(self, batch: Batch, scale: float) -> torch.Tensor:
        """One micro-batch: the loss under autocast (varlen boundaries made by the loader, outside the compiled
        graph, as #1855), its backward scaled by ``scale``; returns the detached loss."""
        with autocast(self.rt.device):
            loss = self.model(batch.x, batch.y, **batch.model_kwargs(self.cfg.train.train_seq_len))
        (loss * scale).backward()
        return loss.detach()

    def warm_cu_buckets(self, loader: PrefetchLoader) -> None:
        """#1855's varlen warm-up: forward/backward of one packed micro-batch with its boundaries padded to each of
        ``WARMUP_CU_BUCKETS`` sizes (64, 128, …; segments every TRAIN_SEQ_LEN tokens), so the timed loop does not
        compile a graph the first time a batch's documents need a bigger bucket. No optimizer step; the gradients
        are dropped."""
        tc = self.cfg.train
        b = loader.next_batch()
        n = b.x.numel()
        bounds = list(range(0, n, tc.train_seq_len)) + [n]
        for k in range(1, tc.warmup_cu_buckets + 1):
            size = CU_BUCKET * k
            if size < len(bounds):
                continue
            cu = torch.full((size,), n, dtype=torch.int32, device=b.x.device)
            cu[:len(bounds)] = torch.tensor(bounds, dtype=torch.int32, device=b.x.device)
            ids = torch.bucketize(torch.arange(n, device=b.x.device), cu[1:len(bounds)], right=True).view_as(b.x)
            self.zero_grad()
            self.forward_backward(Batch(b.x, b.y, ids, cu), 1.0)
        self.zero_grad()

    def phase_at(self, step: int, elapsed_ms: float) -> int:
        """The layer-loop phase (number of active extra loops) at ``step`` after ``elapsed_ms`` of training."""
        tc = self.cfg.train
        frac = training_fraction(step, elapsed_ms, iterations=tc.iterations, max_wallclock_ms=self.cap_ms)
        return loop_phase(frac, step, max_loops=self.n_loops, enable_at=tc.enable_looping_at,
                          start_step=tc.recur_start_step)

    def val_eval(self, model) -> EvalResult:
        """The standard val_bpb (the registry's ``standard`` protocol, :func:`golflib.eval.protocols.run_standard`):
        non-overlapping TRAIN_SEQ_LEN windows, or #1855's doc-isolated flat batches (EVAL_DOC_ISOLATED=1)."""
        return run_standard(model, self.val_tokens, self.luts, self.cfg, self.scoring_ctx)

    # ---- phases ------------------------------------------------------------------------------------------------
    def warmup(self):
        """SPEC §2.6: ``WARMUP_STEPS`` steps (of every loop phase a recurrent model will run, so each graph is
        compiled before the timer) to prime compile/autotune, then restore weights, optimizer state and the
        loader. Sets the initial loop phase and the weight averager; returns the train loader for the loop."""
        tc, log, base_model, optimizers = self.cfg.train, self.log, self.base_model, self.optimizers
        cap_ms = self.cap_ms
        if cap_ms is not None and reserve_ms(self.cfg) > 0:  # GPTQ calibration on train data must fit (trap 8)
            log.log(f"gptq:reserving {reserve_ms(self.cfg):.0f}ms for train-data calibration, "
                    f"effective cap {cap_ms:.0f}ms")
        loader = self.new_train_stream()
        if tc.warmup_steps > 0:
            init_model = {k: v.detach().clone() for k, v in base_model.state_dict().items()}
            init_opts = [copy.deepcopy(o.state_dict()) for o in optimizers]
            self.model.train()
            phases = sorted({self.phase_at(0, 0.0), self.n_loops}) if self.n_loops else [0]
            # compiled: late QAT's graph too, so switching it on in the timed loop does not recompile (issue 14)
            qat_modes = (False, True) if self.compiled and tc.late_qat_threshold > 0 else (False,)
            for qat in qat_modes:
                if qat:
                    set_late_qat(base_model, tc.qat_bits, tc.qat_clip, modules=tc.late_qat_modules)
                for k in phases:
                    base_model.set_active_loops(k)
                    if self.compiled and tc.train_loader == "packed" and tc.warmup_cu_buckets:
                        self.warm_cu_buckets(loader)
                        sizes = ",".join(str(CU_BUCKET * i) for i in range(1, tc.warmup_cu_buckets + 1))
                        log.log(f"warmup_cu_buckets:{sizes}" + (f" loops:{k}" if self.n_loops else "")
                                + (" late_qat:on" if qat else ""))
                    for w in range(tc.warmup_steps):
                        self.zero_grad()
                        self.run_step(loader)
                        for o in optimizers:
                            o.step()
                        log.log(f"warmup_step:{w + 1}/{tc.warmup_steps}" + (f" loops:{k}" if self.n_loops else "")
                                + (" late_qat:on" if qat else ""))
            if len(qat_modes) > 1:
                set_late_qat(base_model, 0, modules=tc.late_qat_modules)
            base_model.load_state_dict(init_model, strict=True)
            for o, s in zip(optimizers, init_opts):
                o.load_state_dict(s)
            self.zero_grad()
            loader.close()
            loader = self.new_train_stream()
        base_model.set_active_loops(self.phase_at(0, 0.0))
        if self.n_loops:
            enc, dec = encoder_decoder(base_model.virtual_layers())
            log.log(f"layer_loop:initial loops:{base_model.active_loops}/{self.n_loops} encoder:{enc} decoder:{dec}")
        self.averager = Averager(base_model, tc.ema_decay, tc.swa_every, tc.swa_start_frac)
        return loader

    def _qat_due(self, mult: float) -> bool:
        return self.cfg.train.late_qat_threshold > 0 and mult < self.cfg.train.late_qat_threshold

    def _enable_qat(self, step: int, mult: float) -> bool:
        tc = self.cfg.train
        n_qat = set_late_qat(self.base_model, tc.qat_bits, tc.qat_clip, modules=tc.late_qat_modules)
        self.log.log(f"late_qat:enabled step:{step} lr_mult:{mult:.4f} bits:{tc.qat_bits} clip:{tc.qat_clip} "
                     f"modules:{n_qat}" + (" (after this step's backward)" if tc.late_qat_after_backward else ""))
        return True

    def optimizer_step(self, loader, step: int, elapsed_ms: float, qat_on: bool) -> tuple[torch.Tensor, float, bool]:
        """One training step at ``step`` after ``elapsed_ms``: the LR multiplier (warmdown, SPEC §2.5), late QAT
        when due (before or after this step's backward), the loop phase, forward/backward, Muon momentum warm-up
        and WD taper, gradient clipping, every optimizer's step and the weight averager. Returns ``(train_loss,
        lr_mult, qat_on)``."""
        tc, oc, log, base_model = self.cfg.train, self.cfg.optim, self.log, self.base_model
        mult = lr_multiplier(step, elapsed_ms, warmdown_iters=oc.warmdown_iters, iterations=tc.iterations,
                             max_wallclock_ms=self.cap_ms, warmdown_frac=oc.warmdown_frac, min_lr=oc.min_lr)
        frac = training_fraction(step, elapsed_ms, iterations=tc.iterations, max_wallclock_ms=self.cap_ms)
        if not qat_on and not tc.late_qat_after_backward and self._qat_due(mult):
            qat_on = self._enable_qat(step, mult)
        if self.n_loops and base_model.set_active_loops(self.phase_at(step, elapsed_ms)):
            enc, dec = encoder_decoder(base_model.virtual_layers())
            log.log(f"layer_loop:enabled step:{step} frac:{frac:.3f} loops:{base_model.active_loops} "
                    f"encoder:{enc} decoder:{dec}")
        self.zero_grad()
        train_loss = self.run_step(loader)
        if not qat_on and tc.late_qat_after_backward and self._qat_due(mult):  # #461: from the next forward on
            qat_on = self._enable_qat(step, mult)
        if self.muon is not None:
            mom = muon_momentum(step, start=oc.muon_momentum_warmup_start, end=oc.muon_momentum,
                                warmup_steps=oc.muon_momentum_warmup_steps)
            wd_mult = wd_multiplier(frac, start_frac=oc.wd_taper_start_frac, final_mult=oc.wd_taper_final_mult)
            for g in self.muon.param_groups:
                g["momentum"] = mom
                g["weight_decay"] = g["base_wd"] * wd_mult
        for o in self.optimizers:
            for g in o.param_groups:
                g["lr"] = g["base_lr"] * mult
        if self.muon is not None:
            self.muon.reduce_grads()  # Parallel Muon: the matrices' reduce-scatters, launched before anything waits
        if oc.grad_clip_norm > 0:
            self.clip_gradients(oc.grad_clip_norm)
        for o in self.optimizers:
            o.step()
        self.zero_grad()
        if self.averager.after_step(base_model, step + 1, mult) and self.averager.swa.count == 1:
            log.log(f"swa:start step:{step + 1} lr_mult:{mult:.4f}")
        return train_loss, mult, qat_on

    def clip_gradients(self, max_norm: float) -> None:
        """``clip_grad_norm_`` over every parameter's averaged gradient: scale all by ``min(1, max_norm / (‖g‖ +
        1e-6))``. With Parallel Muon the matrices' averaged gradients are shards on their ranks, so the norm adds
        their squared norms over ranks (:meth:`golflib.optim.muon.Muon.grad_sq_norm`, one scalar all-reduce) to the
        DDP-averaged rest — the same global norm DDP would give."""
        params = self.base_model.parameters()
        if self.muon is None or not self.muon.sharded:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            return
        rest = [p for p in params if p.grad is not None and id(p) not in self.muon_ids]
        sq = self.muon.grad_sq_norm().to(self.rt.device)
        if rest:
            sq = sq + torch.nn.utils.get_total_norm([p.grad for p in rest]).float() ** 2
        total = sq.sqrt()
        torch.nn.utils.clip_grads_with_norm_(rest, max_norm, total)  # the coefficient clip_grad_norm_ uses
        self.muon.scale_grads(torch.clamp(max_norm / (total + 1e-6), max=1.0))

    def _validate(self, step: int, train_ms: float) -> EvalResult:
        tc = self.cfg.train
        val = self.val_eval(self.base_model)
        self.log.log(f"step:{step}/{tc.iterations} val_loss:{val.val_loss:.4f} val_bpb:{val.val_bpb:.4f} "
                     f"train_time:{train_ms:.0f}ms step_avg:{train_ms / max(step, 1):.2f}ms eval_mode:{val.mode}")
        self.log.metric(kind="val", step=step, val_loss=val.val_loss, val_bpb=val.val_bpb, train_time_ms=train_ms,
                        tokens=step * tc.train_batch_tokens)
        return val

    def run_loop(self, loader) -> LoopResult:
        """The timed loop: steps until ``ITERATIONS`` or the wall-clock cap (every rank stops at the same step),
        validating every ``VAL_LOSS_EVERY`` steps and at the end with the timer paused."""
        tc, rt, log = self.cfg.train, self.rt, self.log
        train_ms, step, stop_after, qat_on = 0.0, 0, None, False
        last_val: EvalResult | None = None
        synchronize(rt.device)
        t0 = time.perf_counter()
        self.model.train()
        while True:
            last = step == tc.iterations or (stop_after is not None and step >= stop_after)
            if last or (tc.val_loss_every > 0 and step % tc.val_loss_every == 0):
                synchronize(rt.device)
                train_ms += 1000.0 * (time.perf_counter() - t0)
                last_val = self._validate(step, train_ms)
                synchronize(rt.device)
                t0 = time.perf_counter()
            if last:
                if stop_after is not None and step < tc.iterations:
                    log.log(f"stopping_early: wallclock_cap train_time:{train_ms:.0f}ms step:{step}/{tc.iterations}")
                break
            train_loss, mult, qat_on = self.optimizer_step(loader, step, train_ms + 1000.0 * (time.perf_counter()
                                                                                             - t0), qat_on)
            step += 1
            approx_ms = train_ms + 1000.0 * (time.perf_counter() - t0)
            if tc.train_log_every > 0 and (step <= 10 or step % tc.train_log_every == 0 or stop_after is not None):
                tl = all_reduce_sum(train_loss.detach().clone()).item() / rt.world_size  # mean over ranks
                log.log(f"step:{step}/{tc.iterations} train_loss:{tl:.4f} train_time:{approx_ms:.0f}ms "
                        f"step_avg:{approx_ms / step:.2f}ms")
                log.metric(kind="train", step=step, train_loss=tl, lr_mult=mult, train_time_ms=approx_ms,
                           tokens=step * tc.train_batch_tokens)
            reached = self.cap_ms is not None and approx_ms >= self.cap_ms
            if rt.distributed and self.cap_ms is not None:
                reached = bool(all_reduce_max(torch.tensor(int(reached), device=rt.device)).item())
            if stop_after is None and reached:
                stop_after = step
        loader.close()
        log.log(f"train_loader_wait:{1000 * loader.wait_seconds:.0f}ms batches:{loader.batches} "
                f"prefetch:{tc.loader_prefetch}")
        return LoopResult(step, train_ms, last_val, qat_on)

    def finalize_weights(self, loop: LoopResult) -> EvalResult | None:
        """Load the weights to export — the EMA/SWA average when one is kept (SPEC trap 3), else the live ones —
        and return their validation (the live weights' last one when no averaging)."""
        rt, log, averager = self.rt, self.log, self.averager
        if rt.is_cuda:
            log.log(f"peak memory allocated: {torch.cuda.max_memory_allocated() // 2**20} MiB "
                    f"reserved: {torch.cuda.max_memory_reserved() // 2**20} MiB")
        val = loop.last_val
        if averager.source != "live":
            self.base_model.load_state_dict(averager.export_state(self.base_model), strict=True)
            val = self.val_eval(self.base_model)
            log.log(f"pre-quantization post-{averager.source} val_loss:{val.val_loss:.8f} "
                    f"val_bpb:{val.val_bpb:.8f} eval_mode:{val.mode}"
                    + (f" swa_snapshots:{averager.swa.count}" if averager.source == "swa" else ""))
        log.log(f"export_weights:{averager.source}")
        return val

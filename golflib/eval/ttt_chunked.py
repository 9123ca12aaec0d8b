"""Chunked score-first full-model TTT (SPEC §3.E2: seed #461, record #549; re-enabled by #1413).

The target stream is split into ``C = ceil(N / chunk_tokens)`` chunks. For chunk ``c`` (skipped entirely when no
window starts in it, as the records do):

1. **score**: every sliding window (``window_set`` of :mod:`golflib.eval.sliding`: the fixed set, or the records'
   ``legacy_stride`` set with zero-padded batches) whose *first scored target* lies in chunk ``c`` is scored under
   ``torch.inference_mode()`` — its scored targets may run past the chunk's end, which is fine: they are scored
   before anything is learned from them. Each rank scores a contiguous share of the chunk's windows;
2. **adapt** (not on the last chunk): the chunk's ``floor(len / L)`` training sequences of ``L = seq_len``
   targets each (sequence ``i`` covers token indices ``[cs + iL, cs + (i+1)L]``, so its targets stay inside the
   chunk) are split contiguously across ranks (#461/#549: rank ``r`` takes sequences
   ``[n·r/W, n·(r+1)/W)``); for ``epochs`` passes each rank steps through its share ``batch_seqs`` sequences at a
   time: mean cross-entropy of the rank's batch (the model's training forward), gradients averaged across ranks,
   grad-norm clip over the trainable parameters, SGD with momentum or AdamW (one optimizer for the whole pass),
   LR ``lr·½(1 + cos(π c/(C−1)))``, the first ``freeze_blocks`` blocks frozen.

Every score and every optimizer step is recorded in a stream-order :class:`~golflib.eval.ledger.Ledger` with the
exact positions involved (all ranks' sequences of the step), so the report proves that no training sequence
reached an unscored target; a legacy window set declares its repeated tail there.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from golflib.data.bytecount import ByteCounter
from golflib.eval.bpb import BPBAccumulator, EvalResult
from golflib.eval.context import ScoringContext
from golflib.eval.protocols import eval_window
from golflib.eval.ledger import Ledger, checked_report, record_other_ranks
from golflib.eval.sliding import (LEGACY_REPEAT, score_window_batch, scored_positions, sliding_windows,
                                   window_batches)
from golflib.eval.ttt_common import (all_reduce_grads, build_optimizer, check_rows, clip_and_step,
                                     consumed_positions, cosine_lr, rank_steps, running_bpb, select_trainable,
                                     set_all_requires_grad, write_scores)
from golflib.runtime import autocast, synchronize
from golflib.eval.compiled import forward_of
from golflib.progress import Progress


def chunk_windows(n_targets: int, seq_len: int, stride: int, chunk_tokens: int,
                  window_set: str = "fixed") -> list[list]:
    """The sliding windows (``window_set``, see :func:`golflib.eval.sliding.sliding_windows`) grouped by chunk:
    window ``w`` goes to chunk ``min(first_scored // chunk_tokens, C-1)`` with ``first_scored = w.start +
    w.score_from`` and ``C = ceil(n_targets / chunk_tokens)``."""
    windows = sliding_windows(n_targets, seq_len, stride, window_set)
    n_chunks = -(-n_targets // chunk_tokens)
    out: list[list] = [[] for _ in range(n_chunks)]
    for w in windows:
        out[min((w.start + w.score_from) // chunk_tokens, n_chunks - 1)].append(w)
    return out


def train_sequences(chunk: int, n_targets: int, seq_len: int, chunk_tokens: int) -> tuple[int, int]:
    """``(first token index, number of sequences)`` of chunk ``chunk``'s training sequences of ``seq_len`` targets."""
    cs, ce = chunk * chunk_tokens, min((chunk + 1) * chunk_tokens, n_targets)
    return cs, (ce - cs) // seq_len


@dataclass(frozen=True)
class ChunkedTTTSettings:
    """Hyperparameters of chunked score-first TTT (env names of :class:`golflib.settings.scoring.TTTConfig`).

    ``seq_len`` / ``stride``: sliding-window shape used for scoring, in tokens (``stride = seq_len`` scores
    non-overlapping windows); training sequences have ``seq_len`` targets. ``chunk_tokens`` (``TTT_CHUNK_TOKENS``),
    ``epochs`` (``TTT_EPOCHS``), ``lr`` (``TTT_LR``), ``optimizer`` (sgd | adamw, ``TTT_OPTIMIZER``), ``momentum``,
    ``freeze_blocks`` (the first N blocks stay frozen), ``batch_seqs`` (training sequences per step and rank),
    ``grad_clip`` (max grad norm), ``eval_batch_seqs`` (windows per scoring batch), ``log_every`` (a progress line
    every N chunks; 0 = none), ``window_set``: fixed | legacy | legacy_stride (``TTT_WINDOWS``; #461/#549 score
    ``legacy_stride`` windows, zero-padded batches). Raises ``ValueError`` for ``chunk_tokens <= 0``,
    ``epochs < 0`` or ``seq_len``/``stride`` <= 0."""

    seq_len: int
    stride: int
    chunk_tokens: int
    epochs: int
    lr: float
    optimizer: str = "sgd"
    momentum: float = 0.9
    freeze_blocks: int = 0
    batch_seqs: int = 32
    grad_clip: float = 1.0
    eval_batch_seqs: int = 32
    log_every: int = 0
    window_set: str = "fixed"

    def __post_init__(self):
        if self.chunk_tokens <= 0 or self.epochs < 0:
            raise ValueError(f"TTT_CHUNK_TOKENS={self.chunk_tokens} must be > 0 and TTT_EPOCHS={self.epochs} >= 0")
        if self.seq_len <= 0 or self.stride <= 0:
            raise ValueError(f"chunked TTT window seq_len={self.seq_len} stride={self.stride}: both must be > 0")

    @classmethod
    def from_config(cls, cfg, n_targets: int) -> ChunkedTTTSettings:
        """The settings a :class:`golflib.config.Config` asks for: windows of ``EVAL_SEQ_LEN`` (else
        ``TRAIN_SEQ_LEN``) at ``EVAL_STRIDE`` (0: non-overlapping), ``TTT_WINDOWS`` (else ``EVAL_WINDOWS``), and
        a progress line every tenth of the ``n_targets`` targets' chunks."""
        t = cfg.ttt
        L = eval_window(cfg)
        return cls(seq_len=L, stride=cfg.eval.eval_stride or L, chunk_tokens=t.ttt_chunk_tokens, epochs=t.ttt_epochs,
                   lr=t.ttt_lr, optimizer=t.ttt_optimizer, momentum=t.ttt_momentum, freeze_blocks=t.ttt_freeze_blocks,
                   batch_seqs=t.ttt_batch_seqs, grad_clip=t.ttt_grad_clip, eval_batch_seqs=cfg.eval.eval_batch_seqs,
                   log_every=max(1, -(-n_targets // t.ttt_chunk_tokens) // 10),
                   window_set=t.ttt_windows or cfg.eval.eval_windows)


def eval_ttt_chunked(model, val_tokens: torch.Tensor, luts: ByteCounter, settings: ChunkedTTTSettings,
                     ctx: ScoringContext | None = None) -> EvalResult:
    """Run chunked score-first TTT (module docstring) on ``model`` (adapted in place) over ``val_tokens`` (int64
    ``[n_targets + 1]``) with ``settings``, in ``ctx`` (:class:`golflib.eval.context.ScoringContext`; None:
    single process on the CPU, a fresh strict ledger).

    Under torchrun each rank scores a contiguous share of each chunk's windows and trains on its contiguous share
    of the chunk's sequences (:func:`rank_steps`); each rank's loss is its batch mean, gradients are averaged
    across ranks, and the scored positions of all ranks are recorded in every rank's ledger before the step.
    ``model(x, y)`` must return the mean training loss (:class:`golflib.model.gpt.GPT`). ``ctx.scores_out``
    receives this rank's scores (:func:`golflib.eval.ttt_common.write_scores`). Returns an :class:`EvalResult`
    (mode ``ttt_chunked``) whose ``details`` are the settings plus ``n_chunks``, ``optimizer_steps``,
    ``train_seconds``, ``world_size`` and the running val_bpb after each chunk (``curve``); raises
    :class:`golflib.eval.ledger.LegalityError` if the protocol breaks a condition (strict ledger) and
    ``ValueError`` for a legacy window set with a mixer. ``ctx.mixer`` mixes the adapted model's logits of each
    scored batch and records their scoring in the ledger (its NLLs and rows replace the model's).
    """
    ctx = ctx or ScoringContext()
    s = settings
    seq_len, stride, chunk_tokens, epochs, lr = s.seq_len, s.stride, s.chunk_tokens, s.epochs, s.lr
    batch_seqs, window_set = s.batch_seqs, s.window_set
    rank, world_size, ledger, scores_out, mixer = ctx.rank, ctx.world_size, ctx.ledger, ctx.scores_out, ctx.mixer
    device = ctx.torch_device
    t0 = time.perf_counter()
    n = val_tokens.numel() - 1
    groups = chunk_windows(n, seq_len, stride, chunk_tokens, window_set)
    n_chunks = len(groups)
    legacy = window_set != "fixed"
    if legacy and mixer is not None:
        raise ValueError(f"TTT_WINDOWS={window_set}: the n-gram mixer needs the fixed window set")
    repeat = LEGACY_REPEAT if legacy else None
    ledger = Ledger(n) if ledger is None else ledger
    params = select_trainable(model, s.freeze_blocks)
    opt = build_optimizer(params, s.optimizer, lr, s.momentum)
    luts = luts.to(device)
    acc = BPBAccumulator(device)
    curve: list[dict] = []
    train_s = 0.0
    steps = scored = 0
    prog = Progress(len(groups), "ttt/chunked", "chunks", enabled=rank == 0)
    for c, cw in prog.wrap(enumerate(groups)):
        if not cw:  # no window starts here (chunk_tokens < stride): the records skip the chunk, training included
            continue
        mine = cw[len(cw) * rank // world_size:len(cw) * (rank + 1) // world_size]
        local: list[np.ndarray] = []
        model.eval()
        with torch.inference_mode():
            for bi, batch in enumerate(window_batches(mine, s.eval_batch_seqs, padded=legacy)):
                want_rows = (bi == 0 or mixer is not None or (scores_out is not None and scores_out.dim() == 2)
                             or (ctx.dump is not None and ctx.dump.wants_rows(scored_positions(batch))))
                pos, nll, xp, yt, rows = score_window_batch(model, val_tokens, batch, device, rows=want_rows,
                                                            pad_to=seq_len if legacy else 0)
                if mixer is None:  # a mixer records the scoring itself, block by block
                    ledger.score(pos, repeat=repeat)
                local.append(pos)
                if bi == 0 and mixer is None:
                    check_rows(ledger, rows, pos, nll, yt)
                dumped = rows  # the model's logits, or the mixer's log-prob rows (what was scored)
                if mixer is not None:  # mixed log-prob rows pass through write_scores' log_softmax unchanged
                    wanted = (scores_out is not None and scores_out.dim() == 2) or (
                        ctx.dump is not None and ctx.dump.wants_rows(pos))
                    nll, rows = mixer(pos, rows, yt, ledger, rows=wanted)
                    dumped = rows
                if scores_out is not None:
                    write_scores(scores_out, pos, nll, rows)
                if ctx.dump is not None:  # golflib.eval.dump.ScoreDump (the audit's replay)
                    ctx.dump.write(pos, nll, dumped, log_probs=mixer is not None, ledger=ledger)
                acc.add(nll, xp, yt, luts, pos)
        if world_size > 1:
            record_other_ranks(ledger, np.concatenate(local) if local else np.zeros(0, np.int64), device,
                               repeat=repeat)
        lr_c = cosine_lr(lr, c, n_chunks)
        cs, n_seqs = train_sequences(c, n, seq_len, chunk_tokens)
        if c < n_chunks - 1 and epochs > 0 and n_seqs > 0:
            t1 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = lr_c
            model.train()
            steps_c = rank_steps(n_seqs, batch_seqs, world_size)
            for _ in range(epochs):
                for ranges in steps_c:
                    r0, r1 = ranges[rank]
                    if r1 > r0:
                        span = val_tokens[cs + r0 * seq_len:cs + r1 * seq_len + 1].to(device)
                        x, y = span[:-1].view(-1, seq_len), span[1:].view(-1, seq_len)
                        with autocast(device):
                            loss = forward_of(model, "forward")(x, y)  # mean cross-entropy of this rank's batch
                        loss.backward()
                    all_reduce_grads(params, average=True)
                    clip_and_step(params, opt, s.grad_clip)
                    ledger.update(np.concatenate([consumed_positions(cs + a * seq_len, cs + b * seq_len)
                                                  for a, b in ranges if b > a]))
                    steps += 1
            model.eval()
            train_s += time.perf_counter() - t1
        bpb = running_bpb(acc.sums)
        scored += sum(w.length - w.score_from for w in cw)  # scores (a legacy tail counts each time)
        curve.append({"chunk": c, "scored_tokens": scored, "running_val_bpb": bpb, "lr": lr_c})
        if s.log_every and ((c + 1) % s.log_every == 0 or c == n_chunks - 1):
            ctx.say(f"ttt_chunk:{c + 1}/{n_chunks} running_bpb:{bpb:.6f} lr:{lr_c:.6g} "
                f"time:{time.perf_counter() - t0:.1f}s")
    set_all_requires_grad(model, True)
    model.eval()
    acc.all_reduce()
    report = checked_report(ledger)
    synchronize(device)
    res = acc.result("ttt_chunked", time.perf_counter() - t0, report)
    res.details = {**dataclasses.asdict(s), "n_chunks": n_chunks, "optimizer_steps": steps, "train_seconds": train_s,
                   "world_size": world_size, "curve": curve}
    return res

"""Phased TTT: doc-LoRA plus global SGD of the base model on already-scored documents (SPEC §3.E5: #1610, #1626;
the protocol as #1855 runs it, ``eval_val_ttt_phased`` / ``train_val_ttt_global_sgd_distributed``).

The per-document LoRA protocol of :mod:`golflib.eval.ttt_lora` runs over the length-sorted document queue (longest
batches first). Phase boundaries are ``P·i // num_phases`` documents (``i = 1..num_phases``, ``P =
min(prefix_docs, documents)``). After every finished round of LoRA batches the number of documents scored so far
is compared with the *current* boundary; when it is reached, ONE phase runs (at most one per round, so boundaries
passed together are taken over the next rounds):

* the phase's documents are the ``boundary`` scored documents with the smallest (ascending-length batch index,
  position in batch) — i.e. the SHORTEST of those scored so far (#1855 sorts the gathered documents that way and
  cuts the list at the boundary) — in that order;
* :func:`global_sgd` trains every parameter of the base model on the concatenation of their tokens, each document
  with its trailing BOS (the next document's opening BOS, the target of its last position): chunks of
  ``chunk_tokens`` over the concatenation, cosine LR over the chunks, the LAST chunk skipped, ``len // seq_len``
  sequences per chunk (the remainder dropped) split contiguously across ranks, batches of ``batch_seqs``
  sequences flattened into one row with BOS segmentation (:func:`golflib.eval.doc_eval.bos_segment_ids`, segments
  at most ``seq_len`` from each document start), mean cross-entropy, gradients averaged across ranks, grad-norm
  clip, momentum SGD (a new optimizer per phase), ``epochs`` passes per chunk.

The queue then resumes with the updated base model (and, with ``adapters="per_slot"``, fresh adapters). The
base-model updates survive the per-batch adapter reset, so they are recorded as ``persistent`` in the ledger, with
the exact target positions each step consumed (a document's opening BOS is the segmentation marker, not a
consumed target).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from golflib.data.bytecount import ByteCounter
from golflib.eval.bpb import EvalResult
from golflib.eval.context import ScoringContext
from golflib.eval.protocols import eval_window
from golflib.eval.doc_eval import bos_segment_ids
from golflib.eval.ledger import Ledger
from golflib.eval.ttt_common import (all_reduce_grads, clip_and_step, cosine_lr, doc_segments, rank_steps,
                                     set_all_requires_grad)
from golflib.eval.ttt_lora import LoRATTTSettings, eval_ttt_lora, lora_schedule
from golflib.runtime import autocast
from golflib.eval.compiled import forward_of


def phase_boundaries(prefix_docs: int, num_phases: int, n_docs: int) -> list[int]:
    """Document counts ``P·(i + 1) // num_phases`` for ``i < num_phases`` with ``P = min(prefix_docs, n_docs)``,
    in order, repeats and zeros kept as #1855 keeps them (each is one phase); ``[]`` when ``P = 0``. Raises
    ``ValueError`` for ``num_phases < 1`` (PHASED_TTT_NUM_PHASES)."""
    if num_phases < 1:
        raise ValueError(f"PHASED_TTT_NUM_PHASES={num_phases}: expected >= 1")
    prefix = min(prefix_docs, n_docs)
    if prefix <= 0:
        return []
    return [prefix * (i + 1) // num_phases for i in range(num_phases)]


def phase_documents(scored: np.ndarray, segments: np.ndarray, boundary: int) -> np.ndarray:
    """The documents a phase trains on: of the ``scored`` document indices, the ``boundary`` first in ascending
    (length, index) order — #1855's (ascending-length batch index, position) order — in that order (int64)."""
    lengths = segments[:, 1] - segments[:, 0]
    asc = np.empty(len(segments), dtype=np.int64)
    asc[np.argsort(lengths, kind="stable")] = np.arange(len(segments))
    scored = np.asarray(scored, dtype=np.int64)
    return scored[np.argsort(asc[scored], kind="stable")][:boundary]


def concat_documents(val_tokens: torch.Tensor, segments: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """The training stream of a phase: the tokens ``val_tokens[start:end + 1]`` of every document (with its
    trailing BOS) concatenated in ``segments`` order, and for every token of it the target position it reveals
    (``token index − 1``; ``-1`` at each document's first token, its opening BOS marker). Returns int64
    ``[T]`` tokens and int64 ``[T]`` positions."""
    if len(segments) == 0:
        return val_tokens[:0].to(torch.int64), np.zeros(0, dtype=np.int64)
    toks = torch.cat([val_tokens[int(s):int(e) + 1] for s, e in segments]).to(torch.int64)
    pos = np.concatenate([np.arange(int(s) - 1, int(e), dtype=np.int64) for s, e in segments])
    firsts = np.cumsum([0] + [int(e) - int(s) + 1 for s, e in segments[:-1]])
    pos[firsts] = -1
    return toks, pos


@dataclass(frozen=True)
class GlobalSGDSettings:
    """Hyperparameters of one global SGD pass of phased TTT (``GLOBAL_TTT_*`` of
    :class:`golflib.settings.scoring.TTTConfig`): ``seq_len`` (tokens per training sequence and BOS segment cap;
    0 = the LoRA window; #1855 uses EVAL_SEQ_LEN), ``chunk_tokens``, ``batch_seqs`` (sequences per step and rank),
    ``lr``, ``momentum``, ``epochs`` (passes per chunk), ``grad_clip`` (max grad norm) and ``bos_id``. Raises
    ``ValueError`` for ``chunk_tokens <= 0`` or ``batch_seqs <= 0``."""

    lr: float
    momentum: float = 0.9
    epochs: int = 1
    chunk_tokens: int = 32768
    batch_seqs: int = 32
    grad_clip: float = 1.0
    seq_len: int = 0
    bos_id: int = 1

    def __post_init__(self):
        if self.chunk_tokens <= 0 or self.batch_seqs <= 0:
            raise ValueError(f"GLOBAL_TTT_CHUNK_TOKENS={self.chunk_tokens} and GLOBAL_TTT_BATCH_SEQS="
                             f"{self.batch_seqs} must be > 0")


@dataclass(frozen=True)
class PhasedTTTSettings:
    """Phased TTT: ``lora`` (the per-document protocol's :class:`~golflib.eval.ttt_lora.LoRATTTSettings`),
    ``prefix_docs`` (``PHASED_TTT_PREFIX_DOCS``: documents the phases cover), ``num_phases``
    (``PHASED_TTT_NUM_PHASES``) and ``global_sgd`` (:class:`GlobalSGDSettings`; its ``bos_id`` and a 0
    ``seq_len`` are taken from ``lora``). Raises ``ValueError`` for ``num_phases < 1`` or ``prefix_docs < 0``."""

    lora: LoRATTTSettings
    prefix_docs: int
    num_phases: int
    global_sgd: GlobalSGDSettings

    def __post_init__(self):
        if self.num_phases < 1 or self.prefix_docs < 0:
            raise ValueError(f"PHASED_TTT_NUM_PHASES={self.num_phases} must be >= 1 and PHASED_TTT_PREFIX_DOCS="
                             f"{self.prefix_docs} >= 0")
        g = self.global_sgd
        object.__setattr__(self, "global_sgd", dataclasses.replace(g, bos_id=self.lora.bos_id,
                                                                   seq_len=g.seq_len or self.lora.window))

    @classmethod
    def from_config(cls, cfg, bos_id: int | None = None) -> PhasedTTTSettings:
        """The settings a :class:`golflib.config.Config` asks for; global SGD runs sequences of ``EVAL_SEQ_LEN``
        (else ``TRAIN_SEQ_LEN``), as #1855 does (not TTT_EVAL_SEQ_LEN)."""
        t = cfg.ttt
        g = GlobalSGDSettings(lr=t.global_ttt_lr, momentum=t.global_ttt_momentum, epochs=t.global_ttt_epochs,
                              chunk_tokens=t.global_ttt_chunk_tokens, batch_seqs=t.global_ttt_batch_seqs,
                              grad_clip=t.global_ttt_grad_clip,
                              seq_len=eval_window(cfg))
        return cls(lora=LoRATTTSettings.from_config(cfg, bos_id), prefix_docs=t.phased_ttt_prefix_docs,
                   num_phases=t.phased_ttt_num_phases, global_sgd=g)


def global_sgd(model, val_tokens: torch.Tensor, segments: np.ndarray, settings: GlobalSGDSettings,
               ctx: ScoringContext | None = None) -> dict:
    """One global SGD pass (#1855) on every parameter of ``model`` over the documents ``segments`` (int64
    ``[D, 2]`` position ranges, all already scored, in training order) with ``settings`` (its ``seq_len`` must be
    > 0 here); see the module docstring. ``model(x, y, doc_ids=ids)`` must return the mean cross-entropy of a
    ``[1, T]`` row. Each optimizer step is recorded as a persistent update in ``ctx.ledger`` (if any) with the
    target positions of all ranks' sequences. Returns ``{"chunks", "steps", "tokens", "seconds"}`` (``tokens``:
    length of the concatenation); leaves ``requires_grad`` off. Raises ``ValueError`` for ``seq_len <= 0``."""
    ctx = ctx or ScoringContext()
    g = settings
    if g.seq_len <= 0:
        raise ValueError(f"global SGD seq_len={g.seq_len}: expected > 0 tokens")
    seq_len, chunk_tokens, epochs, bos_id = g.seq_len, g.chunk_tokens, g.epochs, g.bos_id
    rank, world_size, ledger = ctx.rank, ctx.world_size, ctx.ledger
    t0 = time.perf_counter()
    device = ctx.torch_device
    cat, reveal = concat_documents(val_tokens, segments)
    total = cat.numel() - 1
    n_chunks = max(0, -(-total // chunk_tokens))
    params = list(model.parameters())
    set_all_requires_grad(model, True)
    opt = torch.optim.SGD(params, lr=g.lr, momentum=g.momentum)
    steps = 0
    for c in range(n_chunks):
        if c == n_chunks - 1 or epochs <= 0:  # the last chunk is never trained on
            continue
        cs, ce = c * chunk_tokens, min((c + 1) * chunk_tokens, total)
        n_seqs = (ce - cs) // seq_len
        if n_seqs <= 0:
            continue
        for group in opt.param_groups:
            group["lr"] = cosine_lr(g.lr, c, n_chunks)
        model.train()
        plan = rank_steps(n_seqs, g.batch_seqs, world_size)
        for _ in range(epochs):
            for ranges in plan:
                a, b = ranges[rank]
                if b > a:
                    row = cat[cs + a * seq_len:cs + b * seq_len + 1].to(device)
                    x, y = row[:-1], row[1:]
                    ids = bos_segment_ids(x, bos_id, seq_len)
                    with autocast(device):
                        loss = forward_of(model, "forward")(x[None], y[None], doc_ids=ids[None])
                    loss.backward()
                all_reduce_grads(params, average=True)
                clip_and_step(params, opt, g.grad_clip)
                steps += 1
                if ledger is not None:
                    used = np.concatenate([reveal[cs + a0 * seq_len:cs + b0 * seq_len + 1]
                                           for a0, b0 in ranges if b0 > a0])
                    ledger.update(used[used >= 0], persistent=True)
        model.eval()
    model.eval()
    set_all_requires_grad(model, False)
    return {"chunks": n_chunks, "steps": steps, "tokens": int(cat.numel()), "seconds": time.perf_counter() - t0}


def eval_ttt_phased(model, val_tokens: torch.Tensor, luts: ByteCounter, settings: PhasedTTTSettings,
                    ctx: ScoringContext | None = None) -> EvalResult:
    """Phased TTT (module docstring) over ``val_tokens`` (int64 ``[n_targets + 1]``) with ``settings``, in ``ctx``
    (:class:`golflib.eval.context.ScoringContext`; None: single process on the CPU, a fresh strict ledger).
    ``model`` is adapted in place. Returns an :class:`EvalResult` (mode ``ttt_phased``) whose ``details`` are
    the LoRA protocol's, plus ``prefix_docs``, ``num_phases``, the phase ``boundaries``, ``global_sgd`` (its
    settings) and the ``phases`` (boundary, documents, steps, seconds). ``ctx.mixer``: see
    :func:`golflib.eval.ttt_lora.eval_ttt_lora`."""
    ctx = ctx or ScoringContext()
    lora, g = settings.lora, settings.global_sgd
    bos_id, world_size = lora.bos_id, ctx.world_size
    segments = doc_segments(val_tokens, bos_id)
    batches = lora_schedule(segments, lora.batch_docs)
    bounds = phase_boundaries(settings.prefix_docs, settings.num_phases, len(segments))
    phases: list[dict] = []

    def after_round(r: int, docs_done: int, ledger: Ledger, sync: Callable[[], None]) -> bool:
        if len(phases) >= len(bounds) or docs_done < bounds[len(phases)]:
            return False
        b = bounds[len(phases)]
        sync()  # every rank's ledger knows every scored position before the base model learns from them
        scored = np.concatenate(batches[:(r + 1) * world_size])
        docs = phase_documents(scored, segments, b)
        stats = global_sgd(model, val_tokens, segments[docs], g, ctx.replace(ledger=ledger))
        phases.append({"phase": len(phases) + 1, "boundary_docs": b, "docs_scored": int(docs_done),
                       "after_round": r, **stats})
        ctx.say(f"ttt_phased:phase {len(phases)}/{len(bounds)} docs:{b} scored:{docs_done} steps:{stats['steps']} "
                f"tokens:{stats['tokens']} time:{stats['seconds']:.1f}s")
        return True

    res = eval_ttt_lora(model, val_tokens, luts, lora, ctx, after_round=after_round, mode="ttt_phased")
    res.details.update({"prefix_docs": settings.prefix_docs, "num_phases": settings.num_phases, "boundaries": bounds,
                        "global_sgd": dataclasses.asdict(g), "phases": phases})
    return res

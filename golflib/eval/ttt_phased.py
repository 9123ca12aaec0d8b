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

import time
from typing import Callable

import numpy as np
import torch

from golflib.data.bytecount import ByteCounter
from golflib.eval.bpb import EvalResult
from golflib.eval.doc_eval import bos_segment_ids
from golflib.eval.ledger import Ledger
from golflib.eval.ttt_common import (all_reduce_grads, clip_and_step, cosine_lr, doc_segments, rank_steps,
                                     set_all_requires_grad)
from golflib.eval.ttt_lora import SITES, eval_ttt_lora, lora_schedule
from golflib.runtime import autocast


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


def global_sgd(model, val_tokens: torch.Tensor, segments: np.ndarray, *, seq_len: int, chunk_tokens: int,
               batch_seqs: int, lr: float, momentum: float, epochs: int, grad_clip: float, bos_id: int = 1,
               rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
               ledger: Ledger | None = None) -> dict:
    """One global SGD pass (#1855) on every parameter of ``model`` over the documents ``segments`` (int64
    ``[D, 2]`` position ranges, all already scored, in training order); see the module docstring. ``model(x, y,
    doc_ids=ids)`` must return the mean cross-entropy of a ``[1, T]`` row. Each optimizer step is recorded as a
    persistent update in ``ledger`` with the target positions of all ranks' sequences. Returns ``{"chunks",
    "steps", "tokens", "seconds"}`` (``tokens``: length of the concatenation); leaves ``requires_grad`` off."""
    t0 = time.perf_counter()
    device = torch.device(device)
    cat, reveal = concat_documents(val_tokens, segments)
    total = cat.numel() - 1
    n_chunks = max(0, -(-total // chunk_tokens))
    params = list(model.parameters())
    set_all_requires_grad(model, True)
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    steps = 0
    for c in range(n_chunks):
        if c == n_chunks - 1 or epochs <= 0:  # the last chunk is never trained on
            continue
        cs, ce = c * chunk_tokens, min((c + 1) * chunk_tokens, total)
        n_seqs = (ce - cs) // seq_len
        if n_seqs <= 0:
            continue
        for g in opt.param_groups:
            g["lr"] = cosine_lr(lr, c, n_chunks)
        model.train()
        plan = rank_steps(n_seqs, batch_seqs, world_size)
        for _ in range(epochs):
            for ranges in plan:
                a, b = ranges[rank]
                if b > a:
                    row = cat[cs + a * seq_len:cs + b * seq_len + 1].to(device)
                    x, y = row[:-1], row[1:]
                    ids = bos_segment_ids(x, bos_id, seq_len)
                    with autocast(device):
                        loss = model(x[None], y[None], doc_ids=ids[None])
                    loss.backward()
                all_reduce_grads(params, average=True)
                clip_and_step(params, opt, grad_clip)
                steps += 1
                if ledger is not None:
                    used = np.concatenate([reveal[cs + a0 * seq_len:cs + b0 * seq_len + 1]
                                           for a0, b0 in ranges if b0 > a0])
                    ledger.update(used[used >= 0], persistent=True)
        model.eval()
    model.eval()
    set_all_requires_grad(model, False)
    return {"chunks": n_chunks, "steps": steps, "tokens": int(cat.numel()), "seconds": time.perf_counter() - t0}


def eval_ttt_phased(model, val_tokens: torch.Tensor, luts: ByteCounter, *, window: int, chunk_size: int,
                    batch_docs: int, lora_rank: int, lr: float, prefix_docs: int, num_phases: int, global_lr: float,
                    global_momentum: float = 0.9, global_epochs: int = 1, global_chunk_tokens: int = 32768,
                    global_batch_seqs: int = 32, global_grad_clip: float = 1.0, lora_alpha: float = 0.0,
                    beta1: float = 0.0, beta2: float = 0.999, weight_decay: float = 0.5, warm_start_a: bool = False,
                    bos_id: int = 1, sites: tuple[str, ...] = SITES, rank: int = 0, world_size: int = 1,
                    device: torch.device | str = "cpu", ledger: Ledger | None = None,
                    scores_out: torch.Tensor | None = None, log: Callable[[str], None] | None = None,
                    mixer=None, adapters: str = "shared", last_window: str = "chunk", seed: int = 0,
                    global_seq_len: int = 0) -> EvalResult:
    """Phased TTT over ``val_tokens``; the LoRA arguments (``adapters``, ``last_window``, ``seed`` included) are
    those of :func:`golflib.eval.ttt_lora.eval_ttt_lora`, the ``global_*`` ones those of :func:`global_sgd`
    (``global_seq_len``: its sequence length and segment cap, #1855's EVAL_SEQ_LEN; 0 = ``window``). ``model`` is
    adapted in place. Returns an :class:`EvalResult` (mode ``ttt_phased``) whose ``details`` list the phases
    (boundary, documents, steps, seconds). ``mixer``: see :func:`golflib.eval.ttt_lora.eval_ttt_lora`."""
    segments = doc_segments(val_tokens, bos_id)
    batches = lora_schedule(segments, batch_docs)
    bounds = phase_boundaries(prefix_docs, num_phases, len(segments))
    phases: list[dict] = []

    def after_round(r: int, docs_done: int, ledger: Ledger, sync: Callable[[], None]) -> bool:
        if len(phases) >= len(bounds) or docs_done < bounds[len(phases)]:
            return False
        b = bounds[len(phases)]
        sync()  # every rank's ledger knows every scored position before the base model learns from them
        scored = np.concatenate(batches[:(r + 1) * world_size])
        docs = phase_documents(scored, segments, b)
        stats = global_sgd(model, val_tokens, segments[docs], seq_len=global_seq_len or window,
                           chunk_tokens=global_chunk_tokens, batch_seqs=global_batch_seqs, lr=global_lr,
                           momentum=global_momentum, epochs=global_epochs, grad_clip=global_grad_clip,
                           bos_id=bos_id, rank=rank, world_size=world_size, device=device, ledger=ledger)
        phases.append({"phase": len(phases) + 1, "boundary_docs": b, "docs_scored": int(docs_done),
                       "after_round": r, **stats})
        if log is not None:
            log(f"ttt_phased:phase {len(phases)}/{len(bounds)} docs:{b} scored:{docs_done} steps:{stats['steps']} "
                f"tokens:{stats['tokens']} time:{stats['seconds']:.1f}s")
        return True

    res = eval_ttt_lora(model, val_tokens, luts, window=window, chunk_size=chunk_size, batch_docs=batch_docs,
                        lora_rank=lora_rank, lr=lr, lora_alpha=lora_alpha, beta1=beta1, beta2=beta2,
                        weight_decay=weight_decay, warm_start_a=warm_start_a, bos_id=bos_id, sites=sites, rank=rank,
                        world_size=world_size, device=device, ledger=ledger, scores_out=scores_out, log=log,
                        after_round=after_round, mode="ttt_phased", mixer=mixer, adapters=adapters,
                        last_window=last_window, seed=seed)
    res.details.update({"prefix_docs": prefix_docs, "num_phases": num_phases, "boundaries": bounds,
                        "global_lr": global_lr, "global_momentum": global_momentum, "global_epochs": global_epochs,
                        "global_chunk_tokens": global_chunk_tokens, "global_batch_seqs": global_batch_seqs,
                        "global_grad_clip": global_grad_clip, "global_seq_len": global_seq_len or window,
                        "phases": phases})
    return res

"""Phased TTT: doc-LoRA plus global SGD of the base model on already-scored documents (SPEC §3.E5: #1610, #1626).

The per-document LoRA protocol of :mod:`golflib.eval.ttt_lora` runs over the length-sorted document queue. At phase
boundaries ``prefix_docs · i / num_phases`` (``i = 1..num_phases``, counted in documents of the queue), once the
first ``boundary`` queued documents are fully scored, all ranks pause and run a *global* pass of distributed SGD
on the base model over exactly those documents (#1626: every phase trains on all documents scored so far):
sequences of at most ``seq_len`` targets cut inside each document (document boundaries respected), chunks of
``chunk_tokens`` with a cosine LR across chunks, momentum SGD, grad-norm clip, ``epochs`` passes, gradients
all-reduced. The queue then resumes with the updated base model and fresh adapters. These base-model updates
survive the per-batch adapter reset, so they are recorded as ``persistent`` in the ledger.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from golflib.data.luts import ByteLUTs
from golflib.eval.bpb import EvalResult
from golflib.eval.ledger import Ledger
from golflib.eval.ttt_common import (all_reduce_grads, clip_and_step, consumed_positions, cosine_lr, doc_segments,
                                     masked_nll, set_all_requires_grad)
from golflib.eval.ttt_lora import SITES, eval_ttt_lora, lora_schedule
from golflib.runtime import autocast


def phase_boundaries(prefix_docs: int, num_phases: int, n_docs: int) -> list[int]:
    """Distinct document counts ``min(prefix, n_docs) · i // num_phases`` for ``i = 1..num_phases`` (zeros dropped)."""
    prefix = min(prefix_docs, n_docs)
    return sorted({prefix * (i + 1) // num_phases for i in range(num_phases)} - {0})


def doc_pieces(segments: np.ndarray, seq_len: int) -> list[tuple[int, int, int]]:
    """``(start, stop, doc_start)`` pieces of at most ``seq_len`` target positions inside each document, in order."""
    return [(p, min(p + seq_len, int(e)), int(s)) for s, e in segments for p in range(int(s), int(e), seq_len)]


def global_sgd(model, val_tokens: torch.Tensor, segments: np.ndarray, *, seq_len: int, chunk_tokens: int,
               batch_seqs: int, lr: float, momentum: float, epochs: int, grad_clip: float, rank: int = 0,
               world_size: int = 1, device: torch.device | str = "cpu", ledger: Ledger | None = None) -> dict:
    """One global SGD pass on every parameter of ``model`` over the documents ``segments`` (int64 ``[D, 2]``
    position ranges, all already scored). Pieces (≤ ``seq_len`` targets, never crossing a document boundary) are
    grouped into chunks of ``chunk_tokens`` targets; each step takes ``batch_seqs`` pieces per rank (right-padded,
    padding masked), normalises the summed NLL by the step's global target count and all-reduces the gradient.
    Each step is recorded as a persistent update in ``ledger``. Returns ``{"chunks", "steps", "tokens",
    "seconds"}``; leaves ``requires_grad`` off."""
    t0 = time.perf_counter()
    device = torch.device(device)
    pieces = doc_pieces(segments, seq_len)
    sizes = np.array([q - p for p, q, _ in pieces], dtype=np.int64)
    chunk_of = (np.cumsum(sizes) - sizes) // chunk_tokens
    n_chunks = int(chunk_of.max()) + 1 if len(pieces) else 0
    params = list(model.parameters())
    set_all_requires_grad(model, True)
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    model.train()
    steps = 0
    for c in range(n_chunks):
        idx = np.flatnonzero(chunk_of == c)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(lr, c, n_chunks)
        per_step = batch_seqs * world_size
        for _ in range(epochs):
            for g0 in range(0, len(idx), per_step):
                step = idx[g0:g0 + per_step]
                mine = step[len(step) * rank // world_size:len(step) * (rank + 1) // world_size]
                if len(mine):
                    width = int(sizes[mine].max())
                    x = torch.zeros(len(mine), width, dtype=torch.int64)
                    y = torch.full((len(mine), width), -1, dtype=torch.int64)
                    for i, j in enumerate(mine):
                        p, q, _ = pieces[j]
                        x[i, :q - p], y[i, :q - p] = val_tokens[p:q], val_tokens[p + 1:q + 1]
                    x, y = x.to(device), y.to(device)
                    with autocast(device):
                        logits = model.logits(x)
                    (masked_nll(logits, y).sum() / float(sizes[step].sum())).backward()
                all_reduce_grads(params)
                clip_and_step(params, opt, grad_clip)
                steps += 1
                if ledger is not None:
                    ledger.update(np.concatenate([consumed_positions(pieces[j][0], pieces[j][1], lo=pieces[j][2])
                                                  for j in step]), persistent=True)
    model.eval()
    set_all_requires_grad(model, False)
    return {"chunks": n_chunks, "steps": steps, "tokens": int(sizes.sum()), "seconds": time.perf_counter() - t0}


def eval_ttt_phased(model, val_tokens: torch.Tensor, luts: ByteLUTs, *, window: int, chunk_size: int,
                    batch_docs: int, lora_rank: int, lr: float, prefix_docs: int, num_phases: int, global_lr: float,
                    global_momentum: float = 0.9, global_epochs: int = 1, global_chunk_tokens: int = 32768,
                    global_batch_seqs: int = 32, global_grad_clip: float = 1.0, lora_alpha: float = 0.0,
                    beta1: float = 0.0, beta2: float = 0.999, weight_decay: float = 0.5, warm_start_a: bool = False,
                    bos_id: int = 1, sites: tuple[str, ...] = SITES, rank: int = 0, world_size: int = 1,
                    device: torch.device | str = "cpu", ledger: Ledger | None = None,
                    scores_out: torch.Tensor | None = None, log: Callable[[str], None] | None = None,
                    mixer=None) -> EvalResult:
    """Phased TTT over ``val_tokens``; the LoRA arguments are those of :func:`golflib.eval.ttt_lora.eval_ttt_lora`,
    the ``global_*`` ones those of :func:`global_sgd` (training sequences have at most ``window`` targets).
    ``model`` is adapted in place. Returns an :class:`EvalResult` (mode ``ttt_phased``) whose ``details`` list the
    phases (boundary, documents, steps, seconds). ``mixer``: see :func:`golflib.eval.ttt_lora.eval_ttt_lora`."""
    segments = doc_segments(val_tokens, bos_id)
    queue = np.concatenate(lora_schedule(segments, batch_docs))
    bounds = phase_boundaries(prefix_docs, num_phases, len(segments))
    phases: list[dict] = []

    def after_round(r: int, docs_done: int, ledger: Ledger, sync: Callable[[], None]) -> None:
        while len(phases) < len(bounds) and bounds[len(phases)] <= docs_done:
            b = bounds[len(phases)]
            sync()  # every rank's ledger knows every scored position before the base model learns from them
            docs = np.sort(queue[:b])
            stats = global_sgd(model, val_tokens, segments[docs], seq_len=window, chunk_tokens=global_chunk_tokens,
                               batch_seqs=global_batch_seqs, lr=global_lr, momentum=global_momentum,
                               epochs=global_epochs, grad_clip=global_grad_clip, rank=rank, world_size=world_size,
                               device=device, ledger=ledger)
            phases.append({"phase": len(phases) + 1, "boundary_docs": b, "after_round": r, **stats})
            if log is not None:
                log(f"ttt_phased:phase {len(phases)}/{len(bounds)} docs:{b} steps:{stats['steps']} "
                    f"tokens:{stats['tokens']} time:{stats['seconds']:.1f}s")

    res = eval_ttt_lora(model, val_tokens, luts, window=window, chunk_size=chunk_size, batch_docs=batch_docs,
                        lora_rank=lora_rank, lr=lr, lora_alpha=lora_alpha, beta1=beta1, beta2=beta2,
                        weight_decay=weight_decay, warm_start_a=warm_start_a, bos_id=bos_id, sites=sites, rank=rank,
                        world_size=world_size, device=device, ledger=ledger, scores_out=scores_out, log=log,
                        after_round=after_round, mode="ttt_phased", mixer=mixer)
    res.details.update({"prefix_docs": prefix_docs, "num_phases": num_phases, "boundaries": bounds,
                        "global_lr": global_lr, "global_momentum": global_momentum, "global_epochs": global_epochs,
                        "global_chunk_tokens": global_chunk_tokens, "global_batch_seqs": global_batch_seqs,
                        "global_grad_clip": global_grad_clip, "phases": phases})
    return res

"""Pieces shared by the score-first TTT protocols (SPEC §3.E): parameter selection, optimizers, the cosine LR across
chunks, gradient all-reduce under torchrun, document segmentation and the exact bookkeeping of which target
positions a training sequence consumes (what the :class:`golflib.eval.ledger.Ledger` checks).

Position arithmetic used everywhere: target position ``t`` predicts ``tokens[t + 1]`` from ``tokens[:t + 1]``. A
training sequence over token indices ``[a, b]`` (inputs ``tokens[a:b]``, targets ``tokens[a + 1:b + 1]``)
consumes the tokens at indices ``a .. b``; token ``i`` is the target of position ``i - 1``, so it consumes target
positions ``a - 1 .. b - 1`` (position ``a - 1`` only when ``a >= 1``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.distributed as dist

from golflib.eval.bpb import LN2
from golflib.eval.ledger import Ledger


def consumed_positions(a: int, b: int, lo: int = 0) -> np.ndarray:
    """Target positions consumed by a training sequence over token indices ``[a, b]``: ``max(a - 1, lo) .. b - 1``
    (int64). ``lo`` clips at the first position of a document: the BOS that opens a document is the segmentation
    marker doc-isolated evaluation is given (SPEC §4.7), not information about the previous document's end."""
    return np.arange(max(a - 1, lo, 0), b, dtype=np.int64)


def doc_segments(tokens: torch.Tensor, bos_id: int) -> np.ndarray:
    """Documents of a packed stream in target-position space: int64 ``[D, 2]`` rows ``(start, end)``.

    Document ``d`` starts at its BOS (input ``tokens[start]``) and owns positions ``start .. end - 1``, i.e. targets
    ``tokens[start + 1 .. end]`` — its own tokens plus the next document's BOS (the end-of-document prediction).
    Positions before the first BOS (a stream that does not start with one) form a document too, so the segments
    tile ``[0, n_targets)`` exactly. Raises ``ValueError`` for a stream with fewer than 2 tokens.
    """
    n = int(tokens.numel()) - 1
    if n <= 0:
        raise ValueError("doc_segments: the stream has no targets")
    bos = torch.nonzero(tokens[:n] == bos_id).reshape(-1).cpu().numpy().astype(np.int64)
    starts = np.unique(np.concatenate([[0], bos]))
    ends = np.append(starts[1:], n)
    return np.stack([starts, ends], axis=1)


def select_trainable(model, freeze_blocks: int = 0) -> list[torch.nn.Parameter]:
    """Set ``requires_grad`` so that every parameter trains except those of the first ``freeze_blocks`` physical
    blocks (#461 froze 2); returns the trainable list. Raises ``ValueError`` for more frozen blocks than exist."""
    n_blocks = len(model.blocks)
    if freeze_blocks > n_blocks:
        raise ValueError(f"TTT_FREEZE_BLOCKS={freeze_blocks} but the model has {n_blocks} blocks")
    frozen = {id(p) for b in list(model.blocks)[:freeze_blocks] for p in b.parameters()}
    out = []
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen)
        if id(p) not in frozen:
            out.append(p)
    return out


def build_optimizer(params, name: str, lr: float, momentum: float) -> torch.optim.Optimizer:
    """``sgd``: SGD with (heavy-ball) ``momentum`` (#461/#549); ``adamw``: AdamW with betas ``(momentum, 0.999)``,
    no weight decay (#456/#940)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    raise ValueError(f"TTT_OPTIMIZER={name!r}: expected sgd or adamw")


def cosine_lr(lr: float, chunk: int, n_chunks: int) -> float:
    """``lr · ½(1 + cos(π c / (C − 1)))`` (#461): full LR on the first chunk, 0 on the last one."""
    if n_chunks <= 1:
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * chunk / (n_chunks - 1)))


def rank_steps(n_seqs: int, batch_seqs: int, world_size: int) -> list[list[tuple[int, int]]]:
    """The optimizer steps of one epoch over ``n_seqs`` sequences: rank ``r`` owns sequences ``[n·r/W, n·(r+1)/W)``
    and steps through them ``batch_seqs`` at a time (#461/#549 chunked TTT, #1855 global SGD). Returns, per step,
    each rank's ``(first, end)`` sequence range (empty when that rank's share is used up; the records assume equal
    step counts)."""
    shares = [(n_seqs * r // world_size, n_seqs * (r + 1) // world_size) for r in range(world_size)]
    n_steps = max(-(-(e - s) // batch_seqs) for s, e in shares) if n_seqs > 0 else 0
    return [[(min(s + k * batch_seqs, e), min(s + (k + 1) * batch_seqs, e)) for s, e in shares]
            for k in range(n_steps)]


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_grads(params: list[torch.nn.Parameter], average: bool = False) -> None:
    """SUM (``average``: SUM / world size, the records' AVG) the gradients of ``params`` across ranks in one flat
    buffer (a missing gradient counts as zeros, so a rank without sequences in a step still takes part). No-op
    without a process group."""
    if not distributed():
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    if average:
        flat /= dist.get_world_size()
    i = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[i:i + n].view_as(p.grad))
        i += n


def clip_and_step(params, optimizer: torch.optim.Optimizer, grad_clip: float) -> None:
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def running_bpb(sums: torch.Tensor) -> float:
    """val_bpb of float64 ``[loss_sum, tokens, bytes]`` sums, all-reduced over ranks (a copy; ``sums`` is kept)."""
    s = sums.detach().clone()
    if distributed():
        dist.all_reduce(s, op=dist.ReduceOp.SUM)
    return float(s[0] / (LN2 * s[2])) if float(s[2]) > 0 else float("nan")


def check_rows(ledger: Ledger, logits: torch.Tensor, positions: np.ndarray, nll: torch.Tensor,
               targets: torch.Tensor, k: int = 2) -> None:
    """C2 on the model's own distribution, tied to the score: pass ``k`` scored rows (log-softmax of fp32 logits
    ``[n, V]``) with their NLLs (nats ``[n]``, the ones summed into the score) and targets (int ``[n]``) to the
    ledger (:meth:`golflib.eval.ledger.Ledger.check_normalized`)."""
    if logits.numel() == 0 or k <= 0:
        return
    rows = torch.log_softmax(logits[:k].detach().float(), dim=-1)
    ledger.check_normalized(rows, positions[:k], log_probs=True, nll=nll[:k].detach(), targets=targets[:k])


def masked_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position NLL in nats, fp32 ``[B, T]`` (targets ``< 0`` give 0: padding)."""
    v = logits.size(-1)
    nll = torch.nn.functional.cross_entropy(logits.float().reshape(-1, v), targets.clamp_min(0).reshape(-1),
                                            reduction="none").view_as(targets)
    return nll * (targets >= 0)


def set_all_requires_grad(model, flag: bool) -> None:
    for p in model.parameters():
        p.requires_grad_(flag)


def write_scores(out: torch.Tensor, positions: np.ndarray, nll: torch.Tensor, logits: torch.Tensor | None) -> None:
    """Store scores at ``positions``: NLLs (nats) when ``out`` is ``[n_targets]``, log-softmax rows of ``logits``
    when it is ``[n_targets, V]``."""
    idx = torch.from_numpy(np.asarray(positions, dtype=np.int64))
    if out.dim() == 1:
        out[idx] = nll.detach().float().cpu()
    else:
        out[idx] = torch.log_softmax(logits.detach().float(), dim=-1).cpu()

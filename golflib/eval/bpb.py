"""Exact val_bpb (SPEC §1.4) and the standard non-overlapping evaluation.

``val_loss = ΣNLL / N`` (nats/token) and ``val_bpb = val_loss / ln 2 · N / Σbytes`` (= ΣNLL / (ln 2 · Σbytes),
evaluated in the records' order), with the sums kept in float64 per rank and all-reduced (SUM) across ranks. NLL
is computed in fp32 after the logit soft-cap. Every protocol records the target positions it scores in a
:class:`golflib.eval.ledger.Ledger`; its report travels with the result.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from golflib.data.bytecount import ByteCounter
from golflib.eval.ledger import Ledger, checked_report, record_other_ranks
from golflib.runtime import all_reduce_sum, autocast, synchronize
from golflib.eval.compiled import forward_of
from golflib.progress import Progress

LN2 = math.log(2.0)


def nats_to_bpb(val_loss: float, tokens: float, bytes_: float) -> float:
    """Convert mean nats/token to bits/byte given the token and byte counts of the scored set."""
    return val_loss / LN2 * (tokens / bytes_)


@dataclass
class EvalResult:
    """Outcome of one scoring protocol. ``tokens``/``bytes`` are the scored target count and their byte total;
    ``ledger`` is the protocol's legality report (:meth:`golflib.eval.ledger.Ledger.report`); ``details`` holds
    protocol-specific extras (TTT settings, per-chunk curves)."""

    mode: str
    val_loss: float
    val_bpb: float
    tokens: int
    bytes: int
    seconds: float
    ledger: dict | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class BPBAccumulator:
    """float64 running sums of NLL (nats), target count and target bytes on ``device``."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)

    def add(self, nll: torch.Tensor, prev_ids: torch.Tensor, tgt_ids: torch.Tensor, luts: ByteCounter,
            positions) -> None:
        """Add targets: ``nll`` fp32 NLL per target; ``prev_ids``/``tgt_ids`` int64 of the same shape;
        ``positions`` their target indices in the val stream (numpy or torch, same number of elements, the same
        order), which a CaseOps byte sidecar counts by (:mod:`golflib.data.bytecount`)."""
        if len(positions) != tgt_ids.numel():
            raise ValueError(f"{len(positions)} positions for {tgt_ids.numel()} targets")
        self.sums[0] += nll.to(torch.float64).sum()
        self.sums[1] += float(tgt_ids.numel())
        self.sums[2] += luts.target_bytes(prev_ids, tgt_ids, positions).to(torch.float64).sum()

    def all_reduce(self) -> "BPBAccumulator":
        all_reduce_sum(self.sums)
        return self

    @property
    def val_loss(self) -> float:
        return float(self.sums[0] / self.sums[1])

    @property
    def val_bpb(self) -> float:
        """``val_loss / ln 2 · tokens / bytes`` in Python floats, the records' own expression (baseline
        ``eval_val`` … #1855 ``_loss_bpb``), so equal sums give their bpb to the last bit."""
        return nats_to_bpb(self.val_loss, float(self.sums[1]), float(self.sums[2]))

    def result(self, mode: str, seconds: float, ledger: dict | None = None) -> EvalResult:
        if float(self.sums[1]) <= 0 or float(self.sums[2]) <= 0:
            raise ValueError(f"eval mode {mode}: nothing was scored (tokens={float(self.sums[1])}, "
                             f"bytes={float(self.sums[2])})")
        return EvalResult(mode, self.val_loss, self.val_bpb, int(self.sums[1]), int(self.sums[2]), seconds, ledger)


def finish_ledger(ledger: Ledger, local_positions, device: torch.device, world_size: int = 1,
                  repeat: str | None = None) -> dict:
    """Under torchrun (``world_size > 1``) record the other ranks' scored positions — ``local_positions()`` gives
    this rank's — in ``ledger``; return the checked report. A rank/world split without a process group (a partial
    evaluation, e.g. in tests) returns the unchecked report, which lists the positions this part did not score.
    ``repeat``: the protocol's declared double count (:meth:`golflib.eval.ledger.Ledger.score`)."""
    if world_size > 1:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return ledger.report()
        record_other_ranks(ledger, local_positions(), device, repeat=repeat)
    return checked_report(ledger)


@torch.no_grad()
def eval_standard(model, val_tokens: torch.Tensor, luts: ByteCounter, *, seq_len: int, batch_tokens: int,
                  rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
                  ledger: Ledger | None = None, nll_out: torch.Tensor | None = None, dump=None) -> EvalResult:
    """Non-overlapping evaluation of the (already truncated) val stream, as the baseline's ``eval_val``.

    ``val_tokens``: int64 ``[n_targets + 1]`` with ``n_targets % seq_len == 0``. Sequences are split contiguously
    across ranks; each rank scores ``batch_tokens // world_size // seq_len`` sequences per forward (at least 1).
    ``model.token_nll(x, y)`` must return fp32 NLL ``[B, seq_len]``. Every scored position is recorded in
    ``ledger`` (a strict stream-order :class:`Ledger` when None); ``nll_out`` (float ``[n_targets]``, optional)
    receives this rank's per-target NLLs in nats; ``dump`` (a :class:`golflib.eval.dump.ScoreDump`, optional) every
    scored batch with tied rows at its sampled positions. Returns the all-reduced :class:`EvalResult` (mode
    ``standard``) carrying the ledger report; raises :class:`golflib.eval.ledger.LegalityError` in strict mode.
    """
    device = torch.device(device)
    if (val_tokens.numel() - 1) % seq_len:
        raise ValueError(f"val stream of {val_tokens.numel() - 1} targets is not a multiple of seq_len={seq_len}")
    t0 = time.perf_counter()
    total_seqs = (val_tokens.numel() - 1) // seq_len
    s0, s1 = total_seqs * rank // world_size, total_seqs * (rank + 1) // world_size
    per_batch = max(1, batch_tokens // world_size // seq_len)
    luts = luts.to(device)
    acc = BPBAccumulator(device)
    ledger = Ledger(val_tokens.numel() - 1) if ledger is None else ledger
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        starts = range(s0, s1, per_batch)
        prog = Progress(len(starts), "standard", "batches", enabled=rank == 0)
        for b0 in prog.wrap(starts):
            b1 = min(b0 + per_batch, s1)
            chunk = val_tokens[b0 * seq_len:b1 * seq_len + 1].to(device)
            x = chunk[:-1].view(-1, seq_len)
            y = chunk[1:].view(-1, seq_len)
            positions = np.arange(b0 * seq_len, b1 * seq_len)
            if dump is not None:  # the audit's replay (golflib.eval.dump is an optional module, never bundled)
                from golflib.eval.dump import model_nll

                nll = model_nll(model, x, y, positions, dump, ledger)
            else:
                with autocast(device):
                    nll = forward_of(model, "token_nll")(x, y)
            ledger.score(positions)
            if nll_out is not None:
                nll_out[b0 * seq_len:b1 * seq_len] = nll.float().reshape(-1).cpu()
            acc.add(nll.float(), x, y, luts, positions)
    model.train(was_training)
    acc.all_reduce()
    report = finish_ledger(ledger, lambda: np.arange(s0 * seq_len, s1 * seq_len), device, world_size)
    synchronize(device)
    return acc.result("standard", time.perf_counter() - t0, report)


def unigram_bpb(train_tokens, val_tokens: torch.Tensor, luts: ByteCounter, vocab_size: int) -> float:
    """val_bpb of an add-one-smoothed unigram model fitted on ``train_tokens`` and scored on the val targets
    (``val_tokens[1:]``), as a scale reference for what "learned something" means. Bytes from ``luts`` (the LUT
    rule, or a CaseOps :class:`golflib.data.bytecount.ByteSidecar`)."""
    import numpy as np

    counts = np.bincount(np.asarray(train_tokens, dtype=np.int64), minlength=vocab_size)[:vocab_size] + 1.0
    logp = np.log(counts / counts.sum())
    v = val_tokens.to(torch.int64)
    nll = -logp[v[1:].numpy()]
    n_bytes = float(luts.stream_bytes(v))
    return float(nll.sum() / (LN2 * n_bytes))

"""A scoring session for protocols written outside golflib (plugins, :func:`golflib.plugins.register_protocol`).

A custom protocol forms a distribution over the vocabulary for each target it scores and hands the rows to
:meth:`Scorer.score`; the session takes the NLL from those very rows (``−log p[y]``, so what the C2 check sees is
what was scored), records the positions in the legality ledger, ties two rows of every call to their NLLs in the
ledger's C2 check, writes the batch to the score dump of the context (``ctx.dump``, read by the perturbation audit)
and adds the NLLs and the targets' bytes to the val_bpb sums. :meth:`Scorer.update` / :meth:`Scorer.reset` record
adaptation; :meth:`Scorer.result` closes the session as an :class:`~golflib.eval.bpb.EvalResult`. Single process
(a plugin protocol run under torchrun scores on every rank independently).

    def run(model, tokens, luts, cfg, ctx):
        s = Scorer(tokens, luts, ctx, mode="my_protocol")
        for a in range(0, s.n_targets, 64):
            x = tokens[a:a + 64][None]
            s.score(np.arange(a, a + x.size(1)), model.logits(x)[0])
        return s.result()
"""

from __future__ import annotations

import time

import numpy as np
import torch

from golflib.data.bytecount import ByteCounter
from golflib.eval.bpb import BPBAccumulator, EvalResult
from golflib.eval.context import ScoringContext
from golflib.eval.ledger import Ledger, checked_report


class Scorer:
    """One scoring session over ``tokens`` (int64 ``[n_targets + 1]``) with byte counter ``luts`` in ``ctx``
    (:class:`~golflib.eval.context.ScoringContext`; its ledger, or a fresh strict one with ``order``: int
    ``[n_targets]`` ranks of a declared evaluation order). ``mode`` names the result; ``c2_rows``: rows per
    :meth:`score` call tied in the ledger's C2 check."""

    def __init__(self, tokens: torch.Tensor, luts: ByteCounter, ctx: ScoringContext | None = None, *,
                 mode: str = "custom", order=None, c2_rows: int = 2):
        self.ctx = ctx or ScoringContext()
        self.tokens = tokens.to(torch.int64).cpu()
        self.n_targets = int(self.tokens.numel() - 1)
        self.ledger = self.ctx.ledger if self.ctx.ledger is not None else Ledger(self.n_targets, order=order)
        self.luts, self.mode, self.c2_rows = luts, mode, int(c2_rows)
        self.acc = BPBAccumulator("cpu")
        self.t0 = time.perf_counter()

    def score(self, positions, logits: torch.Tensor | None = None, *, log_probs: torch.Tensor | None = None
              ) -> torch.Tensor:
        """Score target ``positions`` (int ``[n]``) with the distribution given as ``logits`` ``[n, V]`` (its
        log-softmax) or ``log_probs`` ``[n, V]``; returns fp32 NLLs (nats ``[n]``) taken from those rows. Raises
        ``ValueError`` when neither or both are given or the shapes disagree, and
        :class:`golflib.eval.ledger.LegalityError` (strict ledger) on a violation."""
        if (logits is None) == (log_probs is None):
            raise ValueError("Scorer.score: pass exactly one of logits or log_probs")
        pos = np.asarray(positions.cpu().numpy() if hasattr(positions, "cpu") else positions, dtype=np.int64)
        pos = pos.reshape(-1)
        rows = logits if logits is not None else log_probs
        if rows.dim() != 2 or rows.shape[0] != pos.size:
            raise ValueError(f"Scorer.score: expected rows [{pos.size}, V], got {tuple(rows.shape)}")
        lp = torch.log_softmax(rows.detach().float().cpu(), -1) if logits is not None else rows.detach().float().cpu()
        idx = torch.from_numpy(pos)
        y, x = self.tokens[idx + 1], self.tokens[idx]
        nll = -lp.gather(1, y[:, None]).squeeze(1)
        self.ledger.score(pos)
        k = min(self.c2_rows, pos.size)
        if k:
            self.ledger.check_normalized(lp[:k], pos[:k], log_probs=True, nll=nll[:k], targets=y[:k])
        if self.ctx.dump is not None:
            self.ctx.dump.write(pos, nll, lp, log_probs=True)
        self.acc.add(nll, x, y, self.luts, pos)
        return nll

    def update(self, positions, persistent: bool = False) -> None:
        """The adaptive state learned from these target positions (:meth:`golflib.eval.ledger.Ledger.update`)."""
        self.ledger.update(positions, persistent=persistent)

    def reset(self) -> None:
        """The per-document adaptive state was discarded (:meth:`golflib.eval.ledger.Ledger.reset`)."""
        self.ledger.reset()

    def result(self, details: dict | None = None) -> EvalResult:
        """The session's :class:`EvalResult` (mode ``mode``) with the ledger's report (raises
        :class:`golflib.eval.ledger.LegalityError` for a strict ledger holding a violation, e.g. unscored
        targets)."""
        res = self.acc.result(self.mode, time.perf_counter() - self.t0, checked_report(self.ledger))
        res.details = dict(details or {})
        return res

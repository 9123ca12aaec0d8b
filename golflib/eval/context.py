"""The scoring context: where a protocol runs and what it reports to, passed whole to every scoring protocol.

A scoring protocol needs the same handful of run-time objects whatever it scores: the device, its rank among
``world_size`` torchrun processes, the legality :class:`~golflib.eval.ledger.Ledger` that records every score and
update (SPEC §7.1), an optional per-token score sink (for the future-perturbation audit, SPEC §7.2), a log
function and an optional n-gram mixer (SPEC §3.E5). :class:`ScoringContext` carries them, so a protocol's own
settings object holds only what the protocol means (its hyperparameters) and the context only where it runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class ScoringContext:
    """Run-time objects shared by every scoring protocol.

    ``device``: torch device (or its name) the model lives on. ``rank`` / ``world_size``: this process among the
    torchrun ranks (0 / 1 single-process). ``ledger``: the :class:`golflib.eval.ledger.Ledger` to record into
    (None: the protocol makes a fresh strict one). ``scores_out``: optional float tensor receiving this rank's
    scores — per-target NLLs in nats if ``[n_targets]``, log-probability rows if ``[n_targets, V]``.
    ``log``: ``log(line: str)`` for progress lines (None: silent). ``mixer``: optional
    :class:`golflib.eval.ngram.NgramMixer` applied to every scored batch's logits. ``dump``: optional
    :class:`golflib.eval.dump.ScoreDump` every protocol writes each scored batch to (per-target NLLs, tied log-prob
    rows at its sampled positions; the future-perturbation audit reads it). Raises ``ValueError`` for
    ``world_size < 1`` or a rank outside ``[0, world_size)``."""

    device: torch.device | str = "cpu"
    rank: int = 0
    world_size: int = 1
    ledger: Any = None
    scores_out: torch.Tensor | None = None
    log: Callable[[str], None] | None = None
    mixer: Any = None
    dump: Any = None

    def __post_init__(self):
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"scoring context: rank {self.rank} of world_size {self.world_size}; expected "
                             f"0 <= rank < world_size")

    @property
    def torch_device(self) -> torch.device:
        """``device`` as a :class:`torch.device`."""
        return torch.device(self.device)

    def replace(self, **changes) -> ScoringContext:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def say(self, line: str) -> None:
        """Log ``line`` if a log function is set."""
        if self.log is not None:
            self.log(line)

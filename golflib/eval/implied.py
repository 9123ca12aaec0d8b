"""The distribution a scorer *implies*: evaluate any "probability of the target" function for every token of the
vocabulary (SPEC §4.5, §4.8 item 3).

A scorer that only ever computes a number for the realised target — the hashed n-gram blends of #727…#940 — still
defines, for each position, the function ``v ↦ score(v)`` it would have used had the target been ``v``. Condition
C2 of #1017 asks that function to be a probability distribution over the whole vocabulary. :func:`implied_rows`
evaluates it for every ``v`` (vectorised: one call with a ``[n, V]`` candidate matrix), so
:func:`golflib.eval.ledger.check_distribution` can judge it and :func:`implied_mass` can show how far from 1 it sums
(#886 measured ~277 at 1,024 tokens).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

CandidateScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def implied_rows(score: CandidateScorer, positions, vocab_size: int) -> np.ndarray:
    """``score(positions [n], candidates [n, V]) -> [n, V]`` — the value the scorer would assign at position
    ``positions[i]`` if the target were ``candidates[i, j]`` — evaluated for every token ``0..V-1``. Returns
    float64 ``[n, V]``. Raises ``ValueError`` if the scorer returns another shape."""
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    cand = np.broadcast_to(np.arange(vocab_size, dtype=np.int64), (pos.size, vocab_size))
    out = np.asarray(score(pos, cand), dtype=np.float64)
    if out.shape != (pos.size, vocab_size):
        raise ValueError(f"implied_rows: scorer returned {out.shape}, expected {(pos.size, vocab_size)}")
    return out


def implied_mass(score: CandidateScorer, positions, vocab_size: int) -> np.ndarray:
    """``Σ_v score(v)`` at each position (float64 ``[n]``): 1 for a proper distribution."""
    return implied_rows(score, positions, vocab_size).sum(axis=1)

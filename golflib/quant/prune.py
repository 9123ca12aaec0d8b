"""Pruning: selective ±1 pruning to a decimal byte target (#609 → #1019, #1487; SPEC §3.B9), magnitude pruning
before quantization (#461), and byte-target parsing (trap 7).

After quantization, codes equal to ±1 are the cheapest to drop: zeroing one costs ``scale_row²`` of squared
reconstruction error and makes the code stream more compressible. The candidates are the ±1 codes of the block
matrices (classes attention, mlp, matrix — the records' int6 tensors; the int8 embedding tables are never pruned),
sorted by that cost (stable: ties in tensor order, then flat index, as the records' ``list.sort``).
:func:`prune_to_target` binary-searches the smallest count whose artifact fits the target, re-encoding the artifact
at every probe (#1019, with decimal bytes); :func:`prune_oneshot` is #1487's rule: when the artifact is
``excess`` bytes over, zero the ``8·excess`` cheapest candidates once, without measuring again.

:func:`magnitude_prune` is #461's: every 2-D float tensor with more than ``min_numel`` elements has its entries
with ``|w|`` below the ``frac`` quantile of ``|w|`` set to zero, before quantization.

Targets are **decimal** bytes: ``"15.9MB"`` is 15,900,000 bytes. #1019 computed ``TARGET_MB·1024·1024`` — a
"15.9 MB" target of 16,672,358 bytes, over the limit — so binary units (``MiB``, ``KiB``) are refused here.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import torch

from golflib.errors import BudgetError
from golflib.quant.classes import entry_class
from golflib.settings.base import CHALLENGE_LIMIT_BYTES
from golflib.quant.int8 import QuantizedState

SIZE_LIMIT = CHALLENGE_LIMIT_BYTES  # bytes, decimal, strict (SPEC §0)
_UNITS = {"": 1, "b": 1, "kb": 1_000, "mb": 1_000_000, "gb": 1_000_000_000}
_TARGET_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_byte_target(value: int | float | str) -> int:
    """A byte target in decimal bytes: ``16000000``, ``"15.9MB"`` (= 15,900,000), ``"15900 kB"``, ``"15.9e6"``.

    Raises :class:`~golflib.errors.BudgetError` (a ``ValueError``) for binary units (``MiB``/``KiB``/``GiB``: the
    challenge limit is 16,000,000 decimal bytes, SPEC trap 7), unknown units, non-positive or fractional byte
    counts.
    """
    if isinstance(value, bool):
        raise BudgetError(f"byte target {value!r}: expected a number of bytes or a string like '15.9MB'")
    if isinstance(value, (int, float)):
        num, unit = float(value), ""
    else:
        m = _TARGET_RE.match(str(value))
        if not m:
            raise BudgetError(f"byte target {value!r}: expected a number of bytes or a string like '15.9MB'")
        num, unit = float(m.group(1)), m.group(2).lower()
        if unit.endswith("ib"):
            raise BudgetError(f"byte target {value!r}: binary units ({m.group(2)}) are refused — the artifact limit "
                             f"is {SIZE_LIMIT:,} decimal bytes (SPEC trap 7: #1019's TARGET_MB*1024*1024); "
                             f"write e.g. '15.9MB' for 15,900,000 bytes")
        if unit not in _UNITS:
            raise BudgetError(f"byte target {value!r}: unknown unit {m.group(2)!r}; use B, kB, MB or GB (decimal)")
    n = num * _UNITS[unit]
    if n <= 0 or abs(n - round(n)) > 1e-6:
        raise BudgetError(f"byte target {value!r}: must be a positive whole number of bytes, got {n}")
    return int(round(n))


def parse_limit(value: int | float | str, what: str = "--limit") -> int:
    """A byte limit to check against (:func:`parse_byte_target`), at most the challenge's 16,000,000: a larger
    limit would call an illegal artifact fitting. Raises :class:`~golflib.errors.BudgetError` naming ``what``."""
    try:
        n = parse_byte_target(value)
    except BudgetError as e:
        raise BudgetError(f"{what}: {e}") from None
    if n > SIZE_LIMIT:
        raise BudgetError(f"{what}={value!r} is {n:,} bytes, above the challenge limit of {SIZE_LIMIT:,} decimal bytes "
                          "(a looser limit would pass an artifact the challenge refuses); use at most 16000000")
    return n


def check_code_bytes(n: int, what: str = "--code-bytes") -> int:
    """``n`` if it is a whole, non-negative number of code bytes; else :class:`~golflib.errors.BudgetError`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise BudgetError(f"{what}={n!r}: code bytes must be a whole number >= 0")
    return n


PRUNE_CLASSES = ("attention", "mlp", "matrix")  # the records' int6 tensors
ONESHOT_FACTOR = 8  # #1487: codes pruned per excess byte


def magnitude_prune(state_dict: dict[str, torch.Tensor], frac: float, min_numel: int = 65_536) -> \
        tuple[dict[str, torch.Tensor], int]:
    """#461's magnitude pruning: a copy of ``state_dict`` in which every 2-D float tensor with more than
    ``min_numel`` elements has the entries with ``|w| < quantile(|w|, frac)`` (``torch.quantile`` of the float32
    values, the comparison in the tensor's own dtype, as the record's ``masked_fill_``) set to 0. Returns the copy
    and the number of zeroed entries (entries already 0 included). Raises ``ValueError`` for ``frac`` outside
    [0, 1) and ``RuntimeError`` (from torch) for tensors over 16 M elements."""
    if not 0 <= frac < 1:
        raise ValueError(f"magnitude pruning frac={frac}: must be in [0, 1)")
    out, n = {}, 0
    for name, t in state_dict.items():
        if frac > 0 and t.is_floating_point() and t.ndim == 2 and t.numel() > min_numel:
            thr = torch.quantile(t.detach().abs().float().flatten(), frac)
            mask = t.detach().abs() < thr
            t = t.detach().masked_fill(mask, 0.0)
            n += int(mask.sum())
        out[name] = t
    return out, n


def prune_candidates(qs: QuantizedState) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per per-row tensor of :data:`PRUNE_CLASSES`: ``(name, flat indices of ±1 codes, their cost scale_row²)``."""
    out = []
    for name, e in qs.meta["tensors"].items():
        if e.get("kind") != "per_row" or entry_class(name, e) not in PRUNE_CLASSES:
            continue
        q = qs.tensors[name + ".q"].numpy()
        scale = qs.tensors[name + ".scale"].float().numpy().astype(np.float64)
        idx = np.flatnonzero(np.abs(q.reshape(-1)) == 1)
        rows = idx // q.shape[1]
        out.append((name, idx, scale[rows] ** 2))
    return out


def pruned(qs: QuantizedState, names: list[str], which: np.ndarray, flat: np.ndarray, n: int) -> QuantizedState:
    """A copy of ``qs`` with the first ``n`` candidates zeroed: candidate ``i`` is code ``flat[i]`` (flat index)
    of tensor ``names[which[i]]``."""
    tensors = dict(qs.tensors)
    w, f = which[:n], flat[:n]
    for t in np.unique(w):
        name = names[int(t)]
        q = tensors[name + ".q"].clone()
        q.view(-1)[torch.from_numpy(f[w == t].astype(np.int64))] = 0
        tensors[name + ".q"] = q
    meta = {**qs.meta, "tensors": dict(qs.meta["tensors"])}
    return QuantizedState(tensors=tensors, meta=meta)


def _sorted_candidates(qs: QuantizedState) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(names, which, flat)``: every candidate by cost, ties by tensor then position."""
    cands = prune_candidates(qs)
    names = [c[0] for c in cands]
    flat_name = np.concatenate([np.full(len(c[1]), i, dtype=np.int64) for i, c in enumerate(cands)]) \
        if cands else np.zeros(0, np.int64)
    flat_idx = np.concatenate([c[1] for c in cands]) if cands else np.zeros(0, np.int64)
    flat_cost = np.concatenate([c[2] for c in cands]) if cands else np.zeros(0)
    perm = np.lexsort((flat_idx, flat_name, flat_cost))
    return names, flat_name[perm], flat_idx[perm]


def prune_oneshot(qs: QuantizedState, size_fn: Callable[[QuantizedState], int], target_bytes: int,
                  factor: int = ONESHOT_FACTOR) -> tuple[QuantizedState, dict]:
    """#1487's one-shot rule: if ``size_fn(qs)`` (e.g. artifact + code bytes) exceeds ``target_bytes`` (decimal)
    by ``excess``, zero the ``min(factor·excess, #candidates)`` cheapest ±1 codes once (no re-measure; the result
    may still be over, or far under; at exactly ``target_bytes`` nothing is pruned, as in the record, although the
    limit is strict — reproduce #1487 with it and use ``search`` for a guaranteed fit). Returns the state and
    ``{"target_bytes", "bytes_before", "excess", "pruned", "candidates", "probes", "rule"}``."""
    target_bytes = parse_byte_target(target_bytes)
    before = size_fn(qs)
    names, which, flat = _sorted_candidates(qs)
    excess = max(0, before - target_bytes)  # the record's count, kept exact (see the docstring)
    n = min(factor * excess, int(which.size))
    info = {"rule": "oneshot", "target_bytes": target_bytes, "bytes_before": before, "excess": excess,
            "pruned": n, "candidates": int(which.size), "probes": 1}
    return (pruned(qs, names, which, flat, n) if n else qs), info


class PruneTargetError(BudgetError):
    """Pruning every ±1 code still leaves the artifact over its byte target."""


def prune_to_target(qs: QuantizedState, size_fn: Callable[[QuantizedState], int], target_bytes: int) -> \
        tuple[QuantizedState, dict]:
    """Zero the cheapest ±1 codes until ``size_fn(qs) < target_bytes`` (decimal bytes; strict, as the challenge's
    limit: a target of 16,000,000 yields at most 15,999,999 bytes).

    Binary search over the count (each probe calls ``size_fn``, e.g. the encoded artifact length). Returns the
    pruned state and ``{"rule", "target_bytes", "bytes_before", "bytes_after", "pruned", "candidates", "probes"}``.
    Raises :class:`PruneTargetError` (a ``ValueError``) when even pruning every ±1 code does not reach the target.
    """
    target_bytes = parse_byte_target(target_bytes)
    before = size_fn(qs)
    names, which, flat = _sorted_candidates(qs)
    info = {"rule": "search", "target_bytes": target_bytes, "bytes_before": before, "candidates": int(which.size),
            "probes": 1}
    if before < target_bytes:
        return qs, {**info, "bytes_after": before, "pruned": 0}
    lo, hi = 0, int(which.size)
    best = pruned(qs, names, which, flat, hi)
    size_hi = size_fn(best)
    info["probes"] += 1
    if size_hi >= target_bytes:
        raise PruneTargetError(f"pruning all {hi:,} ±1 codes gives {size_hi:,} bytes, not under the target "
                               f"{target_bytes:,}: lower the bits or raise the SDClip k instead")
    best_size = size_hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        cand = pruned(qs, names, which, flat, mid)
        size = size_fn(cand)
        info["probes"] += 1
        if size < target_bytes:
            hi, best, best_size = mid, cand, size
        else:
            lo = mid
    return best, {**info, "bytes_after": best_size, "pruned": hi}

"""The legality ledger: what an evaluation protocol scored and what it learned from (SPEC §4.4, §4.8).

Every evaluation protocol in golflib (standard, sliding window, each TTT kind) reports through a :class:`Ledger`.
Positions are *target positions*: target position ``t`` is scored by the distribution the evaluator emits for
``tokens[t + 1]`` after input ``tokens[t]`` (``n_targets = len(tokens) - 1``). The four conditions of Issue #1017
(NoesisGenesis, "A Field Guide to Valid Submissions") are checked at every call:

- **C1 causal** (at :meth:`Ledger.score`): position ``t`` is scored while the adaptive state has been updated —
  since the last :meth:`Ledger.reset`, or ever for ``persistent`` updates — with a position whose rank is ``>=``
  the rank of ``t``. The rank is the position in the evaluation order: stream order by default (the strict
  reading); a protocol that evaluates documents in another order (length-sorted doc-LoRA / phased TTT, accepted in
  #1610/#1626) declares it with ``order`` and its report says so.
- **C2 normalized** (at :meth:`Ledger.check_normalized`): sampled rows of a distribution the protocol formed
  itself do not sum to 1 or contain negative mass (#779, #886).
- **C3 score before update** (at :meth:`Ledger.update`): an update consumed a position not scored yet (#402, #1376).
- **C4 single pass** (at :meth:`Ledger.score`): a position is scored twice; :meth:`Ledger.report` also flags
  positions never scored (#568, #713, #991).

In strict mode the first violation raises :class:`LegalityError` naming the condition, the position and the call,
before the offending call's positions are recorded (only the call counter has moved). A protocol that reproduces a
record's *known* deviation declares it instead of hiding it: ``score(..., repeat=reason)`` for positions the record scores again (the pre-#1218 sliding tail, SPEC
§3.A1 ⚠) and :meth:`Ledger.skip` for positions it never scores (#1855's truncation of its diagnostic eval to whole
batches). Declared deviations do not raise, are listed apart from the violations, and make the report not
``legal`` (C4 is still broken) but ``legal_except_declared``.

:func:`perturbation_test` is the in-process form of the black-box check of SPEC §4.8 item 2 (after #1240): run a
scoring function on the stream and on a copy whose future is replaced, and compare the past. The audit of a finished
run (``golf audit --perturb``, :mod:`golflib.workbook.audit`) replays the run's own code in fresh processes instead.
The ledger is the fast, always-on check; the audit is the proof.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

CONDITION_NAMES = {1: "causal", 2: "normalized", 3: "score before update", 4: "single pass"}
MAX_LISTED_VIOLATIONS = 50  # the report lists at most this many entries (counts are always complete)


class LegalityError(Exception):
    """A protocol broke condition ``condition`` (1-4) at target ``position`` during ``call`` (e.g.
    ``"update call #3"``); ``detail`` explains it."""

    def __init__(self, condition: int, position: int, call: str, detail: str):
        self.condition, self.position, self.call, self.detail = condition, position, call, detail
        super().__init__(f"C{condition} ({CONDITION_NAMES[condition]}) violated at position {position} "
                         f"in {call}: {detail}")


def _positions(positions, n_targets: int, call: str) -> np.ndarray:
    """Positions as a 1-D int64 array; raises ``ValueError`` for non-integers or values outside the stream."""
    if hasattr(positions, "detach"):  # torch tensor
        positions = positions.detach().cpu().numpy()
    pos = np.asarray(positions)
    if pos.ndim == 0:
        pos = pos.reshape(1)
    pos = pos.reshape(-1)
    if pos.size and not np.issubdtype(pos.dtype, np.integer):
        raise ValueError(f"{call}: positions must be integers, got dtype {pos.dtype}")
    pos = pos.astype(np.int64, copy=False)
    if pos.size and (pos.min() < 0 or pos.max() >= n_targets):
        bad = int(pos[(pos < 0) | (pos >= n_targets)][0])
        raise ValueError(f"{call}: position {bad} outside [0, {n_targets})")
    return pos


class Ledger:
    """Records score/update calls of one evaluation protocol over ``n_targets`` target positions.

    ``order``: optional int array ``[n_targets]``, the rank of each target in the evaluation order (default:
    stream order, rank = position). ``strict``: raise :class:`LegalityError` at the first violation; otherwise
    violations are collected for :meth:`report`. Memory: two bytes per target (+ 8 bytes with ``order``, + 1 per
    declared repeat reason).
    """

    def __init__(self, n_targets: int, strict: bool = True, order=None):
        n_targets = int(n_targets)
        if n_targets <= 0:
            raise ValueError(f"Ledger: n_targets must be > 0, got {n_targets}")
        self.n_targets, self.strict = n_targets, bool(strict)
        self.order = None
        if order is not None:
            rank = np.asarray(order.detach().cpu().numpy() if hasattr(order, "detach") else order)
            if rank.shape != (n_targets,) or not np.issubdtype(rank.dtype, np.integer):
                raise ValueError(f"Ledger: order must be an int array of shape ({n_targets},), got "
                                 f"{rank.dtype} {rank.shape}")
            self.order = rank.astype(np.int64, copy=False)
        self._scored = np.zeros(n_targets, dtype=np.uint8)  # times each position was scored (saturates at 255)
        # highest rank consumed by the adaptive state: (rank, position) for persistent / since-reset updates
        self._persistent: tuple[int, int] | None = None
        self._transient: tuple[int, int] | None = None
        self._calls = {"score": 0, "update": 0, "reset": 0, "check_normalized": 0}
        self._updated_positions = 0
        self._c2_rows = 0
        self._c2_tied = 0  # rows whose -log p[target] equals the scored NLL (check_normalized with nll, targets)
        self._violations: list[dict] = []
        self._counts = {1: 0, 2: 0, 3: 0, 4: 0}
        self._skipped = np.zeros(n_targets, dtype=bool)  # declared never-scored positions (Ledger.skip)
        self._declared: dict[tuple[str, str], dict] = {}  # (kind, reason) -> {"positions", "scores"}
        self._repeats = 0  # undeclared repeated scores

    # ---- recording -----------------------------------------------------------------------------------------
    def _rank(self, pos: np.ndarray) -> np.ndarray:
        return pos if self.order is None else self.order[pos]

    def _flag(self, condition: int, position: int, call: str, detail: str, count: int = 1) -> None:
        if self.strict:
            raise LegalityError(condition, position, call, detail)
        self._counts[condition] += count
        if len(self._violations) < MAX_LISTED_VIOLATIONS:
            self._violations.append({"condition": condition, "position": int(position), "detail": f"{call}: {detail}"})

    def score(self, positions, repeat: str | None = None) -> None:
        """The current adaptive state produced the scored distributions for these target positions.

        ``repeat``: the protocol knowingly scores some of them again (a record's known double count, e.g. the
        pre-#1218 sliding tail): repeated positions of this call are recorded as a declared C4 deviation with this
        reason instead of a violation. C1 is checked as always."""
        self._score(positions, check_state=True, repeat=repeat)

    def skip(self, positions, reason: str) -> None:
        """Declare target positions the protocol deliberately never scores (a record's known truncation, e.g.
        #1855's diagnostic eval dropping each rank's last partial batch): the report lists them as a declared C4
        deviation with ``reason`` instead of "never scored". Raises ``ValueError`` for positions outside the
        stream or an empty reason."""
        if not reason:
            raise ValueError("Ledger.skip: a reason is required")
        pos = _positions(positions, self.n_targets, "skip")
        new = pos[~self._skipped[pos]]
        self._skipped[new] = True
        entry = self._declared.setdefault(("unscored", reason), {"positions": 0, "scores": 0})
        entry["positions"] += int(np.unique(new).size)

    def _score(self, positions, check_state: bool, repeat: str | None = None) -> None:
        self._calls["score"] += 1
        call = f"score call #{self._calls['score']}" + ("" if check_state else " (another rank)")
        pos = _positions(positions, self.n_targets, call)
        if pos.size == 0:
            return
        # C4: scored before (in an earlier call, or twice in this one)
        seen = self._scored[pos] > 0
        if pos.size > 1:
            srt = np.argsort(pos, kind="stable")
            dup = np.zeros(pos.size, dtype=bool)
            dup[srt[1:]] = pos[srt[1:]] == pos[srt[:-1]]
            seen |= dup
        # C1: the state already consumed a position ranked at or after this one
        state = self._state_max() if check_state else None
        bad = self._rank(pos) <= state[0] if state is not None else None
        # both checks flag (strict: raise) before this call's positions are recorded anywhere
        if seen.any() and not repeat:
            i = int(np.flatnonzero(seen)[0])
            self._flag(4, int(pos[i]), call, f"position scored again (single pass); {int(seen.sum())} repeated "
                       f"position(s) in this call", int(seen.sum()))
        if bad is not None and bad.any():
            i = int(np.flatnonzero(bad)[0])
            self._flag(1, int(pos[i]), call,
                       f"scored after the adaptive state was updated with position {state[1]} (rank {state[0]} "
                       f">= rank {int(self._rank(pos[i:i + 1])[0])} of the scored position); "
                       f"{int(bad.sum())} such position(s) in this call", int(bad.sum()))
        if seen.any() and repeat:
            entry = self._declared.setdefault(("repeat", repeat), {"positions": 0, "scores": 0, "_mask": None})
            if entry["_mask"] is None:
                entry["_mask"] = np.zeros(self.n_targets, dtype=bool)
            entry["_mask"][pos[seen]] = True
            entry["positions"] = int(entry["_mask"].sum())
            entry["scores"] += int(seen.sum())
        elif seen.any():
            self._repeats += int(seen.sum())
        np.add.at(self._scored, pos[self._scored[pos] < 255], 1)

    def update(self, positions, persistent: bool = False) -> None:
        """The adaptive state (weights, LoRA, optimizer, cache, statistics) was changed using the tokens at these
        target positions; ``persistent=True`` for changes that survive :meth:`reset` (e.g. the base model in
        phased TTT)."""
        self._calls["update"] += 1
        call = f"update call #{self._calls['update']}"
        pos = _positions(positions, self.n_targets, call)
        if pos.size == 0:
            return
        unscored = self._scored[pos] == 0
        if unscored.any():
            i = int(np.flatnonzero(unscored)[0])
            self._flag(3, int(pos[i]), call, f"update used a position that was not scored yet; "
                       f"{int(unscored.sum())} unscored position(s) in this call", int(unscored.sum()))
        ranks = self._rank(pos)
        j = int(np.argmax(ranks))
        top = (int(ranks[j]), int(pos[j]))
        if persistent:
            self._persistent = top if self._persistent is None or top[0] > self._persistent[0] else self._persistent
        else:
            self._transient = top if self._transient is None or top[0] > self._transient[0] else self._transient
        self._updated_positions += int(pos.size)

    def reset(self) -> None:
        """The non-persistent adaptive state was restored (e.g. per-document LoRA reset): what it had consumed no
        longer counts for C1."""
        self._calls["reset"] += 1
        self._transient = None

    def check_normalized(self, probs, positions=None, *, log_probs: bool = False, atol: float = 1e-4, nll=None,
                         targets=None, tie_atol: float = 1e-4) -> dict:
        """C2 for protocols that form their own distribution: pass sampled rows ``[..., V]`` (probabilities, or
        log-probabilities with ``log_probs``) through :func:`check_distribution`; a failure is a C2 violation at
        the first of ``positions`` (or -1). With ``nll`` (nats, one per row) and ``targets`` (int, one per row) the
        rows are also **tied** to what was scored: ``-log p[target]`` must equal the NLL summed into the score
        within ``tie_atol``, else C2 fails (rows shown for C2 that are not the rows scored). The report claims C2
        (``conditions_checked`` holds 2) only for tied rows. Returns the check's dict (``tied`` added)."""
        self._calls["check_normalized"] += 1
        call = f"check_normalized call #{self._calls['check_normalized']}"
        out = check_distribution(probs, log_probs=log_probs, atol=atol)
        shape = np.shape(probs)
        n_rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        self._c2_rows += n_rows
        pos = _positions(positions, self.n_targets, call) if positions is not None else np.array([-1])
        first = int(pos[0]) if pos.size else -1
        if not out["normalized"]:
            self._flag(2, first, call, f"distribution not normalized: max |sum - 1| = {out['max_abs_sum_error']:.3g}, "
                                       f"min prob = {out['min_prob']:.3g}")
        out["tied"] = False
        if nll is not None and targets is not None:
            p = _to_numpy(probs).reshape(-1, shape[-1])
            y = np.asarray(targets.detach().cpu().numpy() if hasattr(targets, "detach") else targets,
                           dtype=np.int64).reshape(-1)
            v = _to_numpy(nll).reshape(-1)
            if y.size != p.shape[0] or v.size != p.shape[0]:
                raise ValueError(f"{call}: {p.shape[0]} rows but {y.size} targets and {v.size} NLLs")
            at = p[np.arange(y.size), y]
            row_nll = -at if log_probs else -np.log(np.maximum(at, 1e-300))
            err = np.abs(row_nll - v)
            err = np.where(np.isnan(err), np.inf, err)
            out["max_tie_error"] = float(err.max()) if err.size else 0.0
            if err.size and err.max() > tie_atol:
                i = int(np.argmax(err > tie_atol))
                self._flag(2, int(pos[i]) if i < pos.size else first, call,
                           f"the scored NLL {v[i]:.6g} is not -log p[target] = {row_nll[i]:.6g} of the row checked "
                           f"(rows shown for C2 are not the rows scored)")
            else:
                self._c2_tied += n_rows
                out["tied"] = True
        return out

    def _state_max(self) -> tuple[int, int] | None:
        cands = [s for s in (self._persistent, self._transient) if s is not None]
        return max(cands) if cands else None

    # ---- reporting -----------------------------------------------------------------------------------------
    @property
    def scored_mask(self) -> np.ndarray:
        """bool ``[n_targets]``: positions scored at least once (a copy)."""
        return self._scored > 0

    def report(self) -> dict:
        """``{"legal", "violations": [{"condition", "position", "detail"}, ...], "n_targets", "n_scored",
        "n_updates", ...}`` plus counts, the order used and which conditions were checked. Never raises:
        positions never scored are listed as a C4 violation here (see :func:`checked_report`) unless declared
        with :meth:`skip`. ``declared`` lists the declared deviations (``{"condition": 4, "kind": "repeat" |
        "unscored", "reason", "positions", "scores"}``: distinct positions, extra scores); ``legal`` is False when
        there is any violation or declared deviation, ``legal_except_declared`` only looks at violations, and
        ``single_pass`` / ``complete`` say whether every position was scored at most once / at least once."""
        violations = list(self._violations)
        counts = dict(self._counts)
        never = np.flatnonzero((self._scored == 0) & ~self._skipped)
        if never.size:
            counts[4] += int(never.size)
            violations.append({"condition": 4, "position": int(never[0]),
                               "detail": f"report: {never.size} position(s) never scored (first {int(never[0])})"})
        declared = [{"condition": 4, "kind": kind, "reason": reason, "positions": e["positions"],
                     "scores": e["scores"]} for (kind, reason), e in self._declared.items()]
        declared = [d for d in declared if d["positions"] or d["scores"]]
        n_scored = int((self._scored > 0).sum())
        return {
            "legal": not violations and not declared,
            "legal_except_declared": not violations,
            "declared": declared,
            "single_pass": self._repeats == 0 and not any(d["kind"] == "repeat" for d in declared),
            "complete": n_scored == self.n_targets,
            "violations": violations,
            "n_targets": self.n_targets,
            "n_scored": n_scored,
            "n_updates": self._calls["update"],
            "n_updated_positions": self._updated_positions,
            "n_score_calls": self._calls["score"],
            "n_resets": self._calls["reset"],
            "violation_counts": {f"C{c}": n for c, n in counts.items()},
            "order": "stream" if self.order is None else "declared",
            "stream_order": self.order is None,
            "conditions_checked": [1, 2, 3, 4] if self._c2_tied else [1, 3, 4],
            "c2_rows_checked": self._c2_rows,
            "c2_rows_tied": self._c2_tied,
            "strict": self.strict,
        }


def checked_report(ledger: Ledger) -> dict:
    """:meth:`Ledger.report`, raising :class:`LegalityError` in strict mode when it holds a violation (the only
    violation a strict ledger can still hold at the end is a position never scored); declared deviations do not
    raise."""
    rep = ledger.report()
    if ledger.strict and not rep["legal_except_declared"]:
        v = rep["violations"][0]
        raise LegalityError(v["condition"], v["position"], "report", v["detail"])
    return rep


def record_other_ranks(ledger: Ledger, local_positions, device=None, repeat: str | None = None) -> None:
    """Under ``torch.distributed``: gather the target positions every rank scored since the last sync and record the
    other ranks' positions in this rank's ledger, so each rank's ledger describes the whole evaluation for C3 and C4
    (the caller syncs before any collective update that depends on those scores). C1 for those positions was
    checked by the ledger of the rank whose state scored them, not against this rank's state. ``repeat``: as in
    :meth:`Ledger.score` (a protocol with a declared double count). No-op without a process group."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    local = np.asarray(local_positions, dtype=np.int64).reshape(-1)
    device = torch.device(device or "cpu")
    n = torch.tensor([local.size], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    width = max(int(s.item()) for s in sizes)
    buf = torch.full((max(width, 1),), -1, dtype=torch.int64, device=device)
    buf[:local.size] = torch.from_numpy(local).to(device)
    parts = [torch.empty_like(buf) for _ in sizes]
    dist.all_gather(parts, buf)
    me = dist.get_rank()
    others = [p[:int(s.item())].cpu().numpy() for r, (p, s) in enumerate(zip(parts, sizes)) if r != me]
    if others:
        ledger._score(np.concatenate(others), check_state=False, repeat=repeat)


# ---- black-box audits ------------------------------------------------------------------------------------------
def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def perturbation_test(score_fn: Callable, tokens, cut: int, *, seed: int = 0, atol: float = 1e-6) -> dict:
    """Future-perturbation (causality) test of SPEC §4.8 item 2 (after #1240).

    ``score_fn(tokens)`` runs the WHOLE protocol (adaptation included) and returns either per-target NLL in nats,
    shape ``[len(tokens) - 1]``, or per-target log-probability rows over the vocabulary, shape
    ``[len(tokens) - 1, V]``. It is run on ``tokens`` (1-D int tensor or array) and on a copy whose tokens at index
    ``>= cut`` are all replaced by different ids (seeded: ``(x + u) mod V`` with ``u`` uniform in ``[1, V)``,
    ``V = max(tokens) + 1``). Target position ``t`` predicts ``tokens[t + 1]`` from ``tokens[:t + 1]``: with NLLs
    every target whose token index is ``< cut`` is compared (``t <= cut - 2``); with rows every row ``t <= cut - 1``,
    which also catches a distribution that depends on its own target (e.g. an update one token past a chunk
    edge). Returns ``{"causal", "max_abs_diff", "first_bad_position", "mode", "cut", "n_compared"}``.
    Raises ``ValueError`` for a cut outside ``[1, len(tokens) - 1]`` or an output of the wrong shape.
    """
    n = len(tokens)
    if not 1 <= cut <= n - 1:
        raise ValueError(f"perturbation_test: cut={cut} must be in [1, {n - 1}]")
    is_torch = hasattr(tokens, "detach")
    arr = tokens.detach().cpu().numpy() if is_torch else np.asarray(tokens)
    vocab = max(int(arr.max()) + 1, 2)
    rng = np.random.default_rng(seed)
    other = arr.copy()
    other[cut:] = (arr[cut:].astype(np.int64) + rng.integers(1, vocab, size=n - cut)) % vocab
    if is_torch:
        import torch

        other = torch.from_numpy(other).to(device=tokens.device, dtype=tokens.dtype)
    a, b = _to_numpy(score_fn(tokens)), _to_numpy(score_fn(other))
    if a.shape != b.shape or a.shape[:1] != (n - 1,) or a.ndim not in (1, 2):
        raise ValueError(f"perturbation_test: score_fn must return [{n - 1}] NLLs or [{n - 1}, V] rows, got "
                         f"{a.shape} and {b.shape}")
    mode = "nll" if a.ndim == 1 else "rows"
    m = cut - 1 if mode == "nll" else cut
    diff = np.abs(a[:m] - b[:m])
    diff = np.where(np.isnan(a[:m]) & np.isnan(b[:m]), 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    per = diff if mode == "nll" else (diff.max(axis=1) if m else diff.reshape(0))
    bad = np.flatnonzero(per > atol)
    return {"causal": bool(bad.size == 0), "max_abs_diff": float(per.max()) if per.size else 0.0,
            "first_bad_position": int(bad[0]) if bad.size else None, "mode": mode, "cut": int(cut),
            "n_compared": int(m)}


def check_distribution(probs, *, log_probs: bool = False, atol: float = 1e-4) -> dict:
    """C2 check (SPEC §4.8 item 3): ``probs`` ``[..., V]`` are probabilities (log-probabilities if ``log_probs``)
    over the whole vocabulary. Returns ``{"normalized": bool, "max_abs_sum_error": float, "min_prob": float}``;
    normalized means every row sums to 1 within ``atol``, no probability is negative and all are finite."""
    p = _to_numpy(probs)
    if p.ndim == 0:
        raise ValueError("check_distribution: expected rows [..., V], got a scalar")
    if log_probs:
        p = np.exp(p)
    finite = bool(np.isfinite(p).all())
    err = float(np.abs(p.sum(axis=-1) - 1.0).max()) if p.size else 0.0
    mn = float(p.min()) if p.size else 0.0
    return {"normalized": bool(finite and err <= atol and mn >= 0.0), "max_abs_sum_error": err, "min_prob": mn}

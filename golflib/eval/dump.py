"""Per-token score dumps: what a protocol actually scored, position by position (SPEC §4.8 items 2, 3; issue 15).

A :class:`ScoreDump` rides on the :class:`~golflib.eval.context.ScoringContext` (``ctx.dump``). Every scoring
protocol writes each scored batch to it with :meth:`ScoreDump.write`: the target positions, their NLL in nats and —
for the positions in the dump's *sample* — the full log-probability rows of the distribution those NLLs were taken
from. The dump keeps:

- ``nll`` float32 ``[n_targets]``: the last NLL written at each target position (NaN: never scored);
- ``count`` uint8 ``[n_targets]``: how many times each position was written (a second full pass over val shows up
  here as counts of 2, whatever the protocol reports about itself: C4);
- ``rank`` int32 ``[n_targets]``: the place of each position in the order it was first scored (-1: never) —
  positions count up through the writes, in the row order of each write — the evaluation order as it happened,
  whatever order the protocol declares;
- ``rows`` float32 ``[k, V]``: the log-prob rows at the ``k`` sampled positions, as scored.

Each sampled row is **tied** to its score: it must be a distribution over the whole vocabulary (C2) *and* its
entry at the target must give the NLL the protocol wrote for that position, ``|−row[y] − nll| ≤ tie_atol``. A row
shown for C2 that is not the row the score came from (say a top-k renormalised mixture scored while the full
mixture is shown) breaks the tie and fails C2. With a ledger attached, tied rows are recorded there
(:meth:`golflib.eval.ledger.Ledger.check_normalized`), so a report claims C2 only for rows that were scored.

The future-perturbation audit (:mod:`golflib.workbook.audit`) compares dumps of the same protocol on the val
stream and on copies whose future is replaced; :meth:`ScoreDump.save` / :func:`load_dump` move them between
processes as safetensors files (no pickle).
"""

from __future__ import annotations

import os

import numpy as np
import torch

TIE_ATOL = 1e-4  # nats: an fp32 log-softmax row against a fused cross-entropy of the same logits differs by ~1e-6


class ScoreDump:
    """Per-token scores of one protocol over a stream of ``n_targets + 1`` tokens (module docstring).

    ``tokens``: the stream, int ``[n_targets + 1]`` (targets are ``tokens[t + 1]``). ``vocab_size``: V.
    ``sample``: target positions whose full log-prob rows are kept (any int iterable; deduplicated, sorted).
    ``tie_atol``: nats allowed between a sampled row's ``−row[y]`` and the written NLL. Memory: 5 bytes per
    target + ``4·V`` per sampled position. Raises ``ValueError`` for sample positions outside ``[0, n_targets)``.
    """

    def __init__(self, tokens, vocab_size: int, sample=(), tie_atol: float = TIE_ATOL):
        t = tokens.detach().cpu().numpy() if hasattr(tokens, "detach") else np.asarray(tokens)
        self.targets = t[1:].astype(np.int64)
        self.n_targets = int(self.targets.size)
        self.vocab_size = int(vocab_size)
        s = np.unique(np.asarray(list(sample), dtype=np.int64))
        if s.size and (s[0] < 0 or s[-1] >= self.n_targets):
            raise ValueError(f"ScoreDump: sample positions must lie in [0, {self.n_targets}), got {s[0]}..{s[-1]}")
        self.sample = s
        self._slot = np.full(self.n_targets, -1, dtype=np.int64)
        self._slot[s] = np.arange(s.size)
        self.nll = torch.full((self.n_targets,), float("nan"), dtype=torch.float32)
        self.count = torch.zeros(self.n_targets, dtype=torch.uint8)
        # the place of each position in the order it was first scored (-1: never): the order as it happened
        self.rank = torch.full((self.n_targets,), -1, dtype=torch.int32)
        self._ranked = 0
        self.rows = torch.full((s.size, self.vocab_size), float("nan"), dtype=torch.float32)
        self.tie_atol = float(tie_atol)
        self.stats = {"writes": 0, "rows_written": 0, "rows_missing": 0, "untied_rows": 0, "unnormalized_rows": 0,
                      "max_tie_error": 0.0, "max_sum_error": 0.0, "first_untied": None}

    def wants_rows(self, positions) -> bool:
        """True when any of ``positions`` (int array) is sampled: the protocol should pass rows for that batch."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        return bool(pos.size) and bool((self._slot[pos] >= 0).any())

    @torch.no_grad()
    def write(self, positions, nll: torch.Tensor, rows: torch.Tensor | None = None, *, log_probs: bool = True,
              ledger=None) -> None:
        """Record a scored batch: ``positions`` int ``[n]`` (target positions), ``nll`` float ``[n]`` (nats, the
        numbers summed into the score) and optionally ``rows`` ``[n, V]`` of the scored distribution —
        log-probabilities (``log_probs=True``), or logits whose log-softmax is the distribution. Sampled positions
        get their row stored and tied (module docstring); when a sampled position comes without rows it is
        counted in ``stats["rows_missing"]``. ``ledger``: receives the tied rows' C2 check. Raises ``ValueError``
        for mismatched lengths."""
        pos = np.asarray(positions.detach().cpu().numpy() if hasattr(positions, "detach") else positions,
                         dtype=np.int64).reshape(-1)
        v = nll.detach().float().reshape(-1).cpu()
        if v.numel() != pos.size:
            raise ValueError(f"ScoreDump.write: {pos.size} positions but {v.numel()} NLLs")
        self.stats["writes"] += 1
        if not pos.size:
            return
        idx = torch.from_numpy(pos)
        first = np.flatnonzero((self.rank[idx] < 0).numpy())
        if first.size:  # rows of a write in their order; a position twice in one write keeps its first place
            _, keep = np.unique(pos[first], return_index=True)
            first = first[np.sort(keep)]
            self.rank[idx[torch.from_numpy(first)]] = torch.arange(self._ranked, self._ranked + first.size,
                                                                   dtype=torch.int32)
            self._ranked += int(first.size)
        self.nll[idx] = v
        count = self.count.numpy()  # a view; a position twice in one batch counts twice; counts saturate at 255
        uniq, k = np.unique(pos, return_counts=True)
        count[uniq] = np.minimum(count[uniq].astype(np.int64) + k, 255)
        hit = np.flatnonzero(self._slot[pos] >= 0)
        if not hit.size:
            return
        if rows is None:
            self.stats["rows_missing"] += int(hit.size)
            return
        if rows.shape[0] != pos.size or rows.shape[-1] != self.vocab_size:
            raise ValueError(f"ScoreDump.write: rows must be [{pos.size}, {self.vocab_size}], got {tuple(rows.shape)}")
        sel = rows.detach()[torch.from_numpy(hit).to(rows.device)].double()
        lp = sel if log_probs else torch.log_softmax(sel, dim=-1)
        lp = lp.cpu()
        self._tie(pos[hit], lp, v[torch.from_numpy(hit)].double(), ledger)
        self.rows[torch.from_numpy(self._slot[pos[hit]])] = lp.float()
        self.stats["rows_written"] += int(hit.size)

    def _tie(self, pos: np.ndarray, lp: torch.Tensor, nll: torch.Tensor, ledger) -> None:
        y = torch.from_numpy(self.targets[pos])
        tie = (-lp.gather(1, y[:, None]).squeeze(1) - nll).abs()
        tie = torch.where(torch.isnan(tie), torch.full_like(tie, float("inf")), tie)
        bad = tie > self.tie_atol
        p = lp.exp()
        sum_err = (p.sum(-1) - 1.0).abs()
        unnorm = ~torch.isfinite(p).all(-1) | (sum_err > 1e-4) | (p < 0).any(-1)
        self.stats["max_tie_error"] = max(self.stats["max_tie_error"], float(tie.max()))
        self.stats["max_sum_error"] = max(self.stats["max_sum_error"], float(torch.nan_to_num(sum_err, nan=np.inf).max()))
        self.stats["untied_rows"] += int(bad.sum())
        self.stats["unnormalized_rows"] += int(unnorm.sum())
        if bad.any() and self.stats["first_untied"] is None:
            i = int(torch.nonzero(bad)[0])
            self.stats["first_untied"] = {"position": int(pos[i]), "nll": float(nll[i]), "row_nll": float(tie[i] + nll[i])
                                          if torch.isfinite(tie[i]) else None}
        if ledger is not None:
            ledger.check_normalized(lp, pos, log_probs=True, nll=nll, targets=y)

    # ---- summaries and files ---------------------------------------------------------------------------------
    def summary(self) -> dict:
        """``{"n_targets", "scored", "max_count", "repeated", "rows_sampled", "rows_written", "rows_missing",
        "untied_rows", "unnormalized_rows", "max_tie_error", "max_sum_error", "first_untied", "writes"}``:
        positions written at least once / more than once and the state of the tied rows."""
        c = self.count
        return {"n_targets": self.n_targets, "scored": int((c > 0).sum()), "max_count": int(c.max()) if c.numel() else 0,
                "repeated": int((c > 1).sum()), "rows_sampled": int(self.sample.size), **self.stats}

    def save(self, path: str | os.PathLike, meta: dict | None = None) -> None:
        """Write the dump as a safetensors file (``nll``, ``count``, ``rank``, ``sample``, ``rows``) with
    ``meta`` (str→str)."""
        from safetensors.torch import save_file

        save_file({"nll": self.nll, "count": self.count, "rank": self.rank,
                   "sample": torch.from_numpy(self.sample.copy()), "rows": self.rows.contiguous()}, str(path), metadata={k: str(v) for k, v in (meta or {}).items()})


def load_dump(path: str | os.PathLike) -> dict:
    """A dump written by :meth:`ScoreDump.save`: ``{"nll": float32 [n], "count": uint8 [n], "rank": int32
    [n], "sample": int64 [k], "rows": float32 [k, V], "meta": {str: str}}`` (numpy arrays)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        out = {k: f.get_tensor(k).numpy() for k in ("nll", "count", "rank", "sample", "rows")}
        out["meta"] = dict(f.metadata() or {})
    return out


def emit(ctx, positions, nll: torch.Tensor, rows: torch.Tensor | None = None, *, log_probs: bool = False,
         ledger=None) -> None:
    """Write a scored batch to ``ctx.dump`` when the context carries one (no-op otherwise); ``rows`` are logits
    unless ``log_probs`` (see :meth:`ScoreDump.write`)."""
    dump = getattr(ctx, "dump", None)
    if dump is not None:
        dump.write(positions, nll, rows, log_probs=log_probs, ledger=ledger)



def model_nll(model, x: torch.Tensor, y: torch.Tensor, positions, dump: ScoreDump, ledger=None,
              doc_ids: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 NLL (nats, shape of ``y``) of a model-only scoring batch (``x``, ``y`` int64 ``[B, T]``), with the
    scored targets written to ``dump``: ``positions`` are the target positions of ``y[mask]`` (all of ``y`` when
    ``mask`` is None), row-major. When the dump samples any of them the batch goes through ``model.logits`` and the
    NLL is the cross-entropy of those very logits, so the rows the dump ties are the rows scored (``token_nll``
    computes the same cross-entropy of the same logits); otherwise ``model.token_nll``. Both forwards run under
    :func:`golflib.runtime.autocast` via :func:`golflib.eval.compiled.forward_of`."""
    from golflib.eval.compiled import forward_of
    from golflib.runtime import autocast

    kw = {} if doc_ids is None else {"doc_ids": doc_ids}
    sel = (lambda t: t[mask]) if mask is not None else (lambda t: t.reshape(-1, *t.shape[2:]))
    if dump.wants_rows(positions):
        with autocast(x.device):
            logits = forward_of(model, "logits")(x, None, **kw)
        logits = logits.float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                                reduction="none").view_as(y)
        dump.write(positions, sel(nll), sel(logits), log_probs=False, ledger=ledger)
        return nll
    with autocast(x.device):
        nll = forward_of(model, "token_nll")(x, y, **kw).float()
    dump.write(positions, sel(nll))
    return nll

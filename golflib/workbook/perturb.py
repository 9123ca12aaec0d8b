"""The future-perturbation experiment on score dumps (SPEC §4.8 item 2, after #1240; issue 15): which streams to
build, and what must not move.

A *perturbation* replaces the target tokens from a cut on — to the end of the stream (a **stream** cut) or to the
end of one document (a **document** cut) — by other ids; BOS tokens stay where they are and no replacement is a
BOS, so document boundaries (which the accepted length-sorted orders of #1610/#1626 may use) do not move. With
``p*`` the first target position whose token was replaced, a protocol is causal when, between the dumps of the
original and the perturbed stream (:mod:`golflib.eval.dump`), these are bitwise identical (float32 bit patterns):

- the NLL of every position scored *before* any replaced target in the order the protocol actually ran (the dump's
  ``rank``: a cache spanning documents must be causal in that order; for a ``document``-unit protocol a document
  cut so checks that replacing a document's later tokens does not move its earlier scores);
- for a ``stream``-unit protocol, the NLL of every position before ``p*`` as well, whatever order it ran in;
- the log-prob rows at sampled positions among those and at ``p*`` itself when no replaced target was scored
  before it (its row is formed from an unchanged prefix; a distribution that leans toward its own target, or the
  token after it, moves there).

Order checks on the same dumps: the order must be identical on every stream (an order is a function of what is
already known: boundaries, not contents), and it must be stream order — over the whole stream for unit ``stream``,
inside every document for unit ``document``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Perturbation:
    """``name`` (for reports), ``kind`` (``stream`` | ``document``), ``cut`` = ``p*`` (the first target position
    whose target token is replaced), ``end`` (targets ``[cut, end)`` are replaced, BOS targets excepted) and the
    perturbed ``tokens`` (int64 ``[N]``)."""

    name: str
    kind: str
    cut: int
    end: int
    tokens: np.ndarray


def doc_ids(tokens: np.ndarray, bos_id: int) -> np.ndarray:
    """Document index of every target position (int64 ``[N-1]``): target ``t`` belongs to the document holding
    input token ``t`` (a new document starts at each BOS input)."""
    x = np.asarray(tokens[:-1])
    return np.cumsum(x == bos_id).astype(np.int64)


def replace_tokens(tokens: np.ndarray, start: int, end: int, vocab_size: int, bos_id: int,
                   rng: np.random.Generator) -> np.ndarray:
    """A copy of ``tokens`` whose tokens at indices ``[start, end)`` are replaced by a different id that is not
    ``bos_id``; BOS tokens stay. Raises ``ValueError`` for a vocabulary of fewer than 3 ids."""
    if vocab_size < 3:
        raise ValueError(f"replace_tokens: vocab_size={vocab_size} leaves no id to replace with")
    out = np.array(tokens, dtype=np.int64, copy=True)
    seg = out[start:end]
    keep = seg == bos_id
    new = seg.copy()
    todo = ~keep
    while todo.any():
        draw = (seg[todo] + rng.integers(1, vocab_size, size=int(todo.sum()))) % vocab_size
        new[todo] = draw
        todo = ~keep & ((new == bos_id) | (new == seg))
    out[start:end] = new
    return out


def plan(tokens: np.ndarray, *, vocab_size: int, bos_id: int, cuts: int, seed: int, first_chunk: int) -> list[Perturbation]:
    """The perturbations of one audit on ``tokens`` (int64 ``[N]``): ``cuts`` seeded stream cuts in the second
    half, one stream cut inside the first chunk (``first_chunk`` targets: a TTT chunk, or a window), one inside the
    first document; and document cuts — 60% into the longest document (which a length-sorted queue scores first)
    and into ``cuts`` seeded documents of at least 4 targets. Deduplicated by (kind, cut)."""
    n = len(tokens) - 1
    rng = np.random.default_rng(seed)
    docs = doc_ids(tokens, bos_id)
    starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
    ends = np.r_[starts[1:], n]
    out: list[Perturbation] = []
    seen: set[tuple[str, int]] = set()

    def add(name: str, kind: str, cut: int, end: int) -> None:
        cut = int(min(max(cut, 1), n - 1))
        if (kind, cut) in seen or end <= cut:
            return
        seen.add((kind, cut))
        toks = replace_tokens(tokens, cut + 1, end + 1, vocab_size, bos_id,
                              np.random.default_rng([seed, len(out)]))
        out.append(Perturbation(name, kind, cut, int(end), toks))

    for c in sorted(rng.integers(n // 2, n, size=cuts).tolist()):
        add(f"stream cut at {c}", "stream", c, n)
    add(f"stream cut inside the first chunk ({first_chunk} targets)", "stream", max(1, min(first_chunk, n) // 2), n)
    first_len = int(ends[0] - starts[0])
    add("stream cut inside the first document", "stream", int(starts[0]) + max(1, first_len // 2), n)
    lengths = ends - starts
    cand = [int(np.argmax(lengths))]
    long_enough = np.flatnonzero(lengths >= 4)
    if long_enough.size:
        cand += rng.choice(long_enough, size=min(cuts, long_enough.size), replace=False).tolist()
    for d in dict.fromkeys(cand):
        s, e = int(starts[d]), int(ends[d])
        if e - s >= 2:
            add(f"document {d} cut 60% in", "document", s + max(1, int(0.6 * (e - s))), e)
    return out


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise bitwise equality of float32 arrays (NaN equals NaN of the same bits)."""
    return a.view(np.int32) == b.view(np.int32)


def compare(orig: dict, pert: dict, p: Perturbation, unit: str) -> dict:
    """Compare the dumps (:func:`golflib.eval.dump.load_dump`) of one protocol on the original and a perturbed
    stream (module docstring). Returns ``{"ok", "perturbation", "cut",
    "n_compared", "first_diff", "max_abs_diff", "rows_compared", "first_row_diff"}`` (``ok`` None when the cut lies
    past what this protocol scored)."""
    nll_a, nll_b = orig["nll"], pert["nll"]
    n = nll_a.size
    res = {"perturbation": p.name, "cut": p.cut, "ok": None, "n_compared": 0, "first_diff": None,
           "max_abs_diff": 0.0, "rows_compared": 0, "first_row_diff": None}
    if p.cut >= n:
        return res
    w = orig["rank"].astype(np.int64)
    pos = np.arange(n)
    replaced = (pos >= p.cut) & (pos < min(p.end, n))
    hit = w[replaced & (w >= 0)]
    first = int(hit.min()) if hit.size else np.iinfo(np.int64).max
    must = (w >= 0) & (w < first)
    if unit == "stream":
        must |= pos < p.cut
    must &= ~replaced
    same = _same(nll_a, nll_b) & (orig["count"] == pert["count"])
    bad = np.flatnonzero(must & ~same)
    diff = np.abs(nll_a[must].astype(np.float64) - nll_b[must].astype(np.float64))
    res.update(n_compared=int(must.sum()), first_diff=int(bad[0]) if bad.size else None,
               max_abs_diff=float(np.nan_to_num(diff, nan=np.inf).max()) if diff.size else 0.0)
    sample = orig["sample"]
    # p*'s own row comes from an unchanged prefix: it must not move when nothing replaced was scored before it
    cut_row = unit == "stream" or (w[p.cut] >= 0 and w[p.cut] == first)
    row_ok = np.isin(sample, np.flatnonzero(must)) | ((sample == p.cut) & cut_row)
    rows_a, rows_b = orig["rows"][row_ok], pert["rows"][row_ok]
    written = ~np.isnan(rows_a).all(axis=1)
    rdiff = ~_same(rows_a, rows_b).all(axis=1) & written
    res["rows_compared"] = int(written.sum())
    if rdiff.any():
        res["first_row_diff"] = int(sample[row_ok][np.flatnonzero(rdiff)[0]])
    res["ok"] = not bad.size and not rdiff.any()
    return res


def order_check(dump: dict, unit: str, docs: np.ndarray) -> tuple[bool, str]:
    """Is the order the dump was scored in stream order (unit ``stream``) or stream order inside every document (unit
    ``document``)? Returns ``(ok, detail)``."""
    w = dump["rank"].astype(np.int64)
    n = w.size
    scored = np.flatnonzero(w >= 0)
    if scored.size < 2:
        return True, "fewer than 2 positions scored"
    ws, d = w[scored], docs[:n][scored]
    back = ws[1:] < ws[:-1]
    if unit == "document":
        back &= d[1:] == d[:-1]
    if back.any():
        i = int(np.flatnonzero(back)[0])
        where = "inside document " + str(int(d[i + 1])) if unit == "document" else "in the stream"
        return False, (f"position {int(scored[i + 1])} was scored (rank {int(ws[i + 1])}) before position "
                       f"{int(scored[i])} (rank {int(ws[i])}) {where}: not {unit}-unit order")
    return True, f"{unit} order"

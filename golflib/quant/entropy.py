"""Entropy coding of quantized codes with an adaptive, scale-conditioned context model on ``constriction``'s range
coder (SPEC §3.B12; DESIGN.md "Artifact").

Why: the codes of a weight matrix are nearly independent, but not identically distributed — its columns (input
features) and rows carry different variances even after per-row scaling, and some rows nearly repeat others
(embedding rows of rare tokens share one learned direction; #1855 reorders rows for lrzip for that reason). A byte
compressor sees one mixed distribution; this coder conditions every code on a predicted scale, codes near-repeat
rows as residuals against an earlier row, and learns every distribution from the codes already coded.

Model (per tensor; integer arithmetic wherever the decoder must agree bit for bit):

* row references: the encoder pairs row ``i`` with its nearest earlier row ``r`` (L2) and codes the residual
  ``q_i − q_r`` when that is cheaper under order-0 estimates of both; a flag per row (adaptive) and the offset
  ``i − 1 − r`` (uniform over ``[0, i)``) are side information.
* scale grid: the tensor's RMS level ``T = round(log2(rms)/step) + LEVEL_OFFSET`` (stored in the container
  header), a grid id per row ``a_i`` (RMS of the row's codes — or residuals — relative to the tensor's) and per
  column ``b_j`` (column RMS over directly coded rows), ``round(log2(ratio)/step)`` clipped to ±``ID_RANGE``,
  coded with adaptive per-kind counts.
* contexts: a direct code ``q_ij`` uses level ``T + a_i + b_j``, a residual ``T + a_i``, each in its own table
  set per ``kind`` (the tensor name with layer indices removed, plus the bit width: all layers of the same role
  share statistics).
* probabilities: ``32·(n[v] + n[−v]) + ⌊64·PRIOR·(N[v] + N[−v])/ΣN⌋ + 1`` with ``n`` the counts of the context and
  ``N`` those of the kind (symmetric distributions pool ``v`` and ``−v``; the kind-wide prior carries ``PRIOR``
  pseudo-counts; the floor keeps every value decodable). Counts update after every row (after spans of 1, 2, 4, …
  codes while a kind is new); each span is one vectorized ``constriction`` call.

``constriction`` quantizes the integer-valued weights to its fixed-point precision deterministically, so the decoder,
replaying the same updates, decodes bit-exactly. Per-tensor streams (one container section each) keep exact byte
counts per tensor; the adaptive state is carried across tensors, so sections decode in encoding order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from golflib.errors import GolfError

CODER_NAME = "golflib-ctx-rc-1"
ID_RANGE = 16  # row/column grid ids are clipped to [-ID_RANGE, ID_RANGE]
N_LEVELS = 96  # context levels are clipped to [0, N_LEVELS)
LEVEL_OFFSET = 48  # T = round(log2(rms)/step) + LEVEL_OFFSET
PRIOR = 4  # pseudo-counts of the kind-wide distribution in every context
SCALE = 64  # weight of one observed count
DEFAULT_STEP = 0.25  # grid step in log2 units (a quarter octave)
MAX_SYMBOLS = 1 << 31
WARM = 1024  # codes a table set must have seen before whole rows are coded between model updates
WARM_IDS = 256  # side symbols a model must have seen before a tensor's are coded in one call
REF_BLOCK = 1024  # rows per block of the nearest-earlier-row search


class EntropyError(GolfError):
    """Bad input to the coder or a stream that does not decode."""


def kind_of(name: str, bits: int) -> str:
    """Statistics-sharing key of a tensor: its name with every ``.<digits>.`` layer index replaced by ``.#.``
    plus the bit width (``blocks.3.attn.c_q.weight`` at 6 bits → ``blocks.#.attn.c_q.weight/6``)."""
    return re.sub(r"\.\d+\.", ".#.", f".{name}.").strip(".") + f"/{bits}"


def _grid_ids(ms: np.ndarray, total_ms: float, step: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        rel = 0.5 * np.log2(np.maximum(ms, 1e-30) / max(total_ms, 1e-30)) / step
    return np.clip(np.round(rel), -ID_RANGE, ID_RANGE).astype(np.int64)


class _Tables:
    """Adaptive counts of one table set: per context level and over all levels, for values ``0..alphabet-1``
    (symmetric around the middle; ``sym`` holds the pooled counts ``n[v] + n[−v]``)."""

    def __init__(self, alphabet: int):
        self.alphabet = alphabet
        self.sym = np.zeros((N_LEVELS, alphabet), np.int64)
        self.total = np.zeros(alphabet, np.int64)
        self._prior = np.ones(alphabet, np.int64)

    def _update_prior(self) -> None:
        t = self.total + self.total[::-1]
        s = int(t.sum())
        self._prior = np.ones(self.alphabet, np.int64) if s == 0 else (SCALE * PRIOR * t) // s + 1

    def weights(self, levels: np.ndarray) -> np.ndarray:
        """Integer weights ``[len(levels), alphabet]`` for values in the given context levels."""
        return (SCALE // 2) * self.sym[levels] + self._prior[None, :]

    def update(self, levels: np.ndarray, values: np.ndarray) -> None:
        flat = np.bincount(levels * self.alphabet + values, minlength=N_LEVELS * self.alphabet)
        c = flat.reshape(N_LEVELS, self.alphabet)
        self.sym += c + c[:, ::-1]
        self.total += np.bincount(values, minlength=self.alphabet)
        self._update_prior()

    def seen(self) -> int:
        return int(self.total.sum())


_ID_PRIOR = np.array([320 if i == 0 else max(1, 320 >> (2 * abs(i))) for i in range(-ID_RANGE, ID_RANGE + 1)],
                     np.int64)


@dataclass
class _KindState:
    """Everything adaptive of one kind: direct and residual tables, grid-id counts and reference flags."""

    m: int  # qmax

    def __post_init__(self) -> None:
        self.direct = _Tables(2 * self.m + 1)
        self.resid = _Tables(4 * self.m + 1)
        self.row_ids = np.zeros(2 * ID_RANGE + 1, np.int64)
        self.col_ids = np.zeros(2 * ID_RANGE + 1, np.int64)
        self.flags = np.zeros(2, np.int64)


def _spans(n: int, warm: bool) -> list[tuple[int, int]]:
    """Spans coded between two model updates: all ``n`` at once when ``warm``, else 1, 2, 4, … so a fresh model
    adapts after its first values."""
    if warm:
        return [(0, n)]
    spans, a, k = [], 0, 1
    while a < n:
        spans.append((a, min(n, a + k)))
        a, k = a + k, 2 * k
    return spans


def _ids_weights(counts: np.ndarray) -> np.ndarray:
    return (SCALE * counts + _ID_PRIOR).astype(np.float64)


def _flag_weights(counts: np.ndarray) -> np.ndarray:
    return (SCALE * counts + np.array([8 * SCALE, SCALE])).astype(np.float64)  # prior: references are rare


def _nearest_earlier_rows(x: np.ndarray) -> np.ndarray:
    """For each row ``i > 0`` the index of the earlier row nearest in L2 (``-1`` for row 0)."""
    n = x.shape[0]
    best = np.full(n, -1, np.int64)
    if n < 2:
        return best
    xf = x.astype(np.float32)
    norms = (xf * xf).sum(axis=1)
    for b0 in range(1, n, REF_BLOCK):
        b1 = min(n, b0 + REF_BLOCK)
        d = norms[b0:b1, None] + norms[None, :b1] - 2.0 * (xf[b0:b1] @ xf[:b1].T)
        d[np.arange(b1 - b0)[:, None] <= np.arange(b1)[None, :] - b0] = np.inf  # only earlier rows
        best[b0:b1] = np.argmin(d, axis=1)
    return best


def _bits_under(values: np.ndarray, fit: np.ndarray, alphabet: int) -> np.ndarray:
    """``−log2 p̂(v)`` for every entry of ``values`` under the (Laplace-smoothed) histogram of ``fit``."""
    c = np.bincount(fit.ravel(), minlength=alphabet).astype(np.float64) + 0.5
    return -np.log2(c / c.sum())[values]


def choose_references(q: np.ndarray, m: int) -> np.ndarray:
    """Reference row per row (``-1`` = code directly): the nearest earlier row, kept when the residual's
    order-0 cost plus ``log2(i) + 1`` bits of side information is below the row's direct order-0 cost (residual
    costs are estimated twice: under all candidate residuals, then under those of the rows that chose one)."""
    refs = _nearest_earlier_rows(q)
    if q.shape[0] < 2:
        return refs
    direct = _bits_under(q + m, q + m, 2 * m + 1).sum(axis=1)
    cand = np.arange(1, q.shape[0])
    res = q[cand] - q[refs[cand]] + 2 * m
    overhead = np.log2(cand) + 1.0
    use = np.zeros(q.shape[0], bool)
    use[cand] = _bits_under(res, res, 4 * m + 1).sum(axis=1) + overhead < direct[cand]
    if use.any():
        use[cand] = _bits_under(res, res[use[cand]], 4 * m + 1).sum(axis=1) + overhead < direct[cand]
    return np.where(use, refs, -1)


class EntropyCoder:
    """Stateful coder: encode (or decode) the tensors of one artifact in a fixed order.

    ``encode(q, bits, kind)`` → ``(bytes, info)``; ``decode(blob, shape, bits, kind, level)`` → codes. A fresh
    coder must be used for each artifact, and the decoder must see the tensors in the encoder's order.
    """

    def __init__(self, step: float = DEFAULT_STEP):
        if not 0 < step <= 4:
            raise EntropyError(f"grid step {step}: must be in (0, 4]")
        self.step = float(step)
        self._kinds: dict[str, _KindState] = {}

    def _state(self, kind: str, bits: int) -> _KindState:
        m = (1 << (bits - 1)) - 1
        st = self._kinds.get(kind)
        if st is None:
            st = self._kinds[kind] = _KindState(m)
        elif st.m != m:
            raise EntropyError(f"kind {kind!r} used with two bit widths")
        return st

    @staticmethod
    def _check(bits: int, shape: tuple[int, ...]) -> tuple[int, int]:
        if not (isinstance(bits, int) and 2 <= bits <= 8):
            raise EntropyError(f"bits={bits!r}: expected 2..8")
        if len(shape) != 2 or min(shape) < 1 or shape[0] * shape[1] >= MAX_SYMBOLS:
            raise EntropyError(f"shape {tuple(shape)}: expected a non-empty 2-D code matrix")
        return int(shape[0]), int(shape[1])

    # ---- side information --------------------------------------------------------------------------------------
    @staticmethod
    def _side_spans(counts: np.ndarray, n: int) -> list[tuple[int, int]]:
        return _spans(n, int(counts.sum()) >= WARM_IDS)

    def _levels(self, level: int, a: np.ndarray, b: np.ndarray, refs: np.ndarray) -> np.ndarray:
        direct = level + a[:, None] + b[None, :]
        resid = np.broadcast_to((level + a)[:, None], direct.shape)
        return np.clip(np.where((refs >= 0)[:, None], resid, direct), 0, N_LEVELS - 1)

    # ---- encode ------------------------------------------------------------------------------------------------
    def encode(self, q: np.ndarray, bits: int, kind: str) -> tuple[bytes, dict]:
        """Range-code the int codes ``q`` ``[rows, cols]`` (values in ``[-qmax, qmax]``).

        Returns the section bytes and ``{"level": T, "bits_side", "bits_codes", "ref_rows"}`` (information content
        in bits of the side information and of the codes under the model; rows coded as residuals). Raises
        :class:`EntropyError` for out-of-range codes or a bad shape.
        """
        import constriction

        rows, cols = self._check(bits, q.shape)
        m = (1 << (bits - 1)) - 1
        q = np.asarray(q).astype(np.int64)
        if q.min() < -m or q.max() > m:
            raise EntropyError(f"codes outside [-{m}, {m}] for {bits} bits")
        st = self._state(kind, bits)
        refs = choose_references(q, m)
        has_ref = refs >= 0
        content = np.where(has_ref[:, None], q - q[np.maximum(refs, 0)], q)  # residual rows, or the codes
        total_ms = float((q.astype(np.float64) ** 2).mean())
        with np.errstate(divide="ignore"):
            level = int(np.clip(np.round(0.5 * np.log2(max(total_ms, 1e-30)) / self.step), -LEVEL_OFFSET,
                                N_LEVELS - 1 - LEVEL_OFFSET)) + LEVEL_OFFSET
        a = _grid_ids((content.astype(np.float64) ** 2).mean(axis=1), total_ms, self.step)
        direct_rows = q[~has_ref] if (~has_ref).any() else q
        b = _grid_ids((direct_rows.astype(np.float64) ** 2).mean(axis=0), total_ms, self.step)
        enc = constriction.stream.queue.RangeEncoder()
        cat = constriction.stream.model.Categorical
        bits_side = 0.0

        def side(values: np.ndarray, counts: np.ndarray, weights_fn) -> float:
            info = 0.0
            for a0, a1 in self._side_spans(counts, values.size):
                w = weights_fn(counts)
                part = values[a0:a1]
                enc.encode(part.astype(np.int32), cat(w, perfect=False))
                info += float(-np.log2(w[part] / w.sum()).sum())
                counts += np.bincount(part, minlength=counts.size)
            return info

        bits_side += side(has_ref.astype(np.int64), st.flags, _flag_weights)
        idx = np.flatnonzero(has_ref & (np.arange(rows) >= 2))
        if idx.size:
            enc.encode((idx - 1 - refs[idx]).astype(np.int32), constriction.stream.model.Uniform(),
                       idx.astype(np.int32))
            bits_side += float(np.log2(idx).sum())
        bits_side += side(a + ID_RANGE, st.row_ids, _ids_weights)
        bits_side += side(b + ID_RANGE, st.col_ids, _ids_weights)
        lv_all = self._levels(level, a, b, refs)
        fam = cat(perfect=False)
        bits_codes = 0.0
        for i in range(rows):
            tables, vals = (st.resid, content[i] + 2 * m) if has_ref[i] else (st.direct, content[i] + m)
            for a0, a1 in _spans(cols, tables.seen() >= WARM):
                lv, v = lv_all[i, a0:a1], vals[a0:a1]
                w = tables.weights(lv)
                enc.encode(v.astype(np.int32), fam, w.astype(np.float64))
                bits_codes += float(-np.log2(w[np.arange(a1 - a0), v] / w.sum(axis=1)).sum())
                tables.update(lv, v)
        words = enc.get_compressed()
        return words.astype("<u4").tobytes(), {"level": level, "bits_side": bits_side, "bits_codes": bits_codes,
                                               "ref_rows": int(has_ref.sum())}

    # ---- decode ------------------------------------------------------------------------------------------------
    def decode(self, blob: bytes, shape: tuple[int, int], bits: int, kind: str, level: int) -> np.ndarray:
        """Inverse of :meth:`encode` (same coder state): int8 codes ``[rows, cols]``.

        Raises :class:`EntropyError` for a malformed section (bad length, level or decoded values, or data the
        model cannot decode — e.g. a section written by a different coder version)."""
        try:
            return self._decode(blob, shape, bits, kind, level)
        except EntropyError:
            raise
        except (AssertionError, ValueError, RuntimeError, OverflowError, IndexError) as e:
            raise EntropyError(f"section does not decode ({type(e).__name__}: {e})") from None

    def _decode(self, blob: bytes, shape: tuple[int, int], bits: int, kind: str, level: int) -> np.ndarray:
        import constriction

        rows, cols = self._check(bits, tuple(shape))
        if len(blob) % 4:
            raise EntropyError(f"section of {len(blob)} bytes is not a whole number of 32-bit words")
        if not (isinstance(level, int) and 0 <= level < N_LEVELS):
            raise EntropyError(f"level {level!r}: expected an int in [0, {N_LEVELS})")
        m = (1 << (bits - 1)) - 1
        st = self._state(kind, bits)
        dec = constriction.stream.queue.RangeDecoder(np.frombuffer(blob, dtype="<u4").astype(np.uint32))
        cat = constriction.stream.model.Categorical

        def side(n: int, counts: np.ndarray, weights_fn, hi: int) -> np.ndarray:
            got = np.empty(n, np.int64)
            for a0, a1 in self._side_spans(counts, n):
                got[a0:a1] = dec.decode(cat(weights_fn(counts), perfect=False), a1 - a0)
                counts += np.bincount(got[a0:a1], minlength=counts.size)
            if n and (got.min() < 0 or got.max() > hi):
                raise EntropyError("decoded side information out of range (corrupt section?)")
            return got

        has_ref = side(rows, st.flags, _flag_weights, 1).astype(bool)
        if has_ref[0]:
            raise EntropyError("row 0 cannot reference an earlier row (corrupt section?)")
        refs = np.full(rows, -1, np.int64)
        refs[has_ref] = 0  # row 1 can only reference row 0
        idx = np.flatnonzero(has_ref & (np.arange(rows) >= 2))
        if idx.size:
            off = dec.decode(constriction.stream.model.Uniform(), idx.astype(np.int32)).astype(np.int64)
            refs[idx] = idx - 1 - off
        a = side(rows, st.row_ids, _ids_weights, 2 * ID_RANGE) - ID_RANGE
        b = side(cols, st.col_ids, _ids_weights, 2 * ID_RANGE) - ID_RANGE
        lv_all = self._levels(level, a, b, refs)
        fam = cat(perfect=False)
        out = np.empty((rows, cols), np.int64)
        for i in range(rows):
            tables = st.resid if has_ref[i] else st.direct
            vals = np.empty(cols, np.int64)
            for a0, a1 in _spans(cols, tables.seen() >= WARM):
                lv = lv_all[i, a0:a1]
                vals[a0:a1] = dec.decode(fam, tables.weights(lv).astype(np.float64))
                tables.update(lv, vals[a0:a1])
            out[i] = vals - 2 * m + out[refs[i]] if has_ref[i] else vals - m
            if out[i].min() < -m or out[i].max() > m:
                raise EntropyError(f"decoded codes of row {i} out of range (corrupt section?)")
        return out.astype(np.int8)


def order0_bits(q: np.ndarray) -> float:
    """Empirical order-0 information of ``q``: ``Σ −log2 p̂(q)`` in bits, ``p̂`` = the tensor's own histogram."""
    _, counts = np.unique(np.asarray(q).ravel(), return_counts=True)
    c = counts.astype(np.float64)
    return float(-(c * np.log2(c / c.sum())).sum())


def order0_table_bits(q: np.ndarray) -> int:
    """Bits to transmit the histogram of ``q`` for a static order-0 coder: the support ``[lo, hi]`` (2 bytes)
    and every count in it with an Elias-gamma code of ``count + 1`` (``2⌊log2(c+1)⌋ + 1`` bits)."""
    v = np.asarray(q).astype(np.int64).ravel()
    counts = np.bincount(v - v.min())
    return 16 + int(sum(2 * int(np.floor(np.log2(c + 1))) + 1 for c in counts))


def order0_bound_bytes(q: np.ndarray) -> dict:
    """The order-0 entropy bound of one code tensor in bytes: ``{"data": Σ−log2 p̂ / 8, "tables": table bits / 8,
    "total"}``."""
    data = order0_bits(q) / 8
    tables = order0_table_bits(q) / 8
    return {"data": data, "tables": tables, "total": data + tables}

"""Record-bar significance (SPEC §0, §4.1 rule 6, §4.8 item 7, §5.5).

A new record must beat the current one by at least ``margin`` = 0.005 nats of val_loss with p < 0.01. The null
hypothesis is "the improvement is at most the margin": H0: mu_base - mu_new <= margin, H1: mu_base - mu_new >
margin, tested one-sided on per-seed val_loss in nats (never on bpb, whose scale depends on the tokenizer):

- :func:`welch_test` against the previous record's per-seed values (Welch's unequal-variance t-test; the
  Welch-Satterthwaite degrees of freedom);
- :func:`one_sample_test` against a claimed threshold (the previous record's mean): a one-sample t-test of the new
  seeds against ``threshold - margin`` (df = n - 1).

scipy computes the statistics (``ttest_ind(..., equal_var=False, alternative="greater")``, ``ttest_1samp``). The bpb
equivalent of a nats difference is ``Δbpb = Δnats / ln 2 · tokens/byte`` (SPEC §1.4), with tokens/byte of the
scored val set (0.4095 for sp1024 FineWeb: 0.005 nats ≈ 0.00295 bpb).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sst

MARGIN_NATS = 0.005  # record bar (README FAQ)
ALPHA = 0.01  # required significance level


def nats_to_bpb_delta(delta_nats: float, tokens_per_byte: float) -> float:
    """bpb difference equivalent to a val_loss difference (nats/token) on a val set with ``tokens_per_byte``."""
    if not tokens_per_byte > 0:
        raise ValueError(f"tokens_per_byte={tokens_per_byte!r}: expected a positive number")
    return delta_nats / math.log(2.0) * tokens_per_byte


def baseline_bpb(base_nats: Sequence[float] | None, threshold_nats: float | None,
                 tokens_per_byte: float) -> list[float]:
    """The base record's per-seed val_loss (or its threshold) as val_bpb on a set with ``tokens_per_byte``
    (``val_bpb = val_loss / ln 2 · tokens/byte``, SPEC §1.4); empty when neither is given."""
    values = list(base_nats or []) or ([threshold_nats] if threshold_nats else [])
    return [nats_to_bpb_delta(v, tokens_per_byte) for v in values]


@dataclass
class Significance:
    """Outcome of a record-bar test. ``improvement_nats`` = mean(base) - mean(new) (positive = better);
    ``t``, ``df``, ``p`` of the one-sided test of H0: improvement <= ``margin_nats``; ``passes`` = p < ``alpha``
    and improvement > margin; bpb fields are filled when ``tokens_per_byte`` is known."""

    test: str
    n_new: int
    n_base: int | None
    mean_new_nats: float
    mean_base_nats: float
    improvement_nats: float
    margin_nats: float
    t: float
    df: float
    p: float
    alpha: float
    passes: bool
    tokens_per_byte: float | None = None
    improvement_bpb: float | None = None
    margin_bpb: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        bpb = (f" ({self.improvement_bpb:+.5f} bpb; bar {self.margin_bpb:.5f} bpb)"
               if self.improvement_bpb is not None else "")
        verdict = "PASSES" if self.passes else "does NOT pass"
        return (f"{self.test}: improvement {self.improvement_nats:+.5f} nats{bpb} vs H0 <= {self.margin_nats} nats: "
                f"t = {self.t:.3f}, df = {self.df:.2f}, p = {self.p:.3g} -> {verdict} the record bar "
                f"(p < {self.alpha})")


def _values(x: Sequence[float], what: str, min_n: int) -> np.ndarray:
    a = np.asarray(list(x), dtype=np.float64)
    if a.ndim != 1 or a.size < min_n or not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: expected at least {min_n} finite per-seed val_loss values (nats), got {list(x)}")
    return a


def _finish(test, new, base_mean, n_base, t, df, p, margin, alpha, tokens_per_byte) -> Significance:
    imp = float(base_mean - new.mean())
    out = Significance(test=test, n_new=int(new.size), n_base=n_base, mean_new_nats=float(new.mean()),
                       mean_base_nats=float(base_mean), improvement_nats=imp, margin_nats=margin, t=float(t),
                       df=float(df), p=float(p), alpha=alpha, passes=bool(p < alpha and imp > margin))
    if tokens_per_byte is not None:
        out.tokens_per_byte = float(tokens_per_byte)
        out.improvement_bpb = nats_to_bpb_delta(imp, tokens_per_byte)
        out.margin_bpb = nats_to_bpb_delta(margin, tokens_per_byte)
    return out


def welch_test(new_nats: Sequence[float], base_nats: Sequence[float], margin: float = MARGIN_NATS,
               alpha: float = ALPHA, tokens_per_byte: float | None = None) -> Significance:
    """One-sided Welch t-test of H0: mean(base) - mean(new) <= ``margin`` (nats). Both samples need >= 2 seeds.

    t = (mean_b - mean_n - margin) / sqrt(s_b²/n_b + s_n²/n_n) (sample variances, ddof 1);
    df = (s_b²/n_b + s_n²/n_n)² / ((s_b²/n_b)²/(n_b-1) + (s_n²/n_n)²/(n_n-1)); p = P(T_df >= t)."""
    new = _values(new_nats, "new seeds", 2)
    base = _values(base_nats, "baseline seeds", 2)
    if float(np.var(new, ddof=1) + np.var(base, ddof=1)) == 0.0:
        raise ValueError("every per-seed value is identical in both samples: the t statistic is undefined")
    res = sst.ttest_ind(base - margin, new, equal_var=False, alternative="greater")
    return _finish("one-sided Welch t-test vs the base record's seeds", new, base.mean(), int(base.size),
                   res.statistic, res.df, res.pvalue, margin, alpha, tokens_per_byte)


def one_sample_test(new_nats: Sequence[float], threshold_nats: float, margin: float = MARGIN_NATS,
                    alpha: float = ALPHA, tokens_per_byte: float | None = None) -> Significance:
    """One-sided one-sample t-test of H0: ``threshold`` - mean(new) <= ``margin``, i.e. the new seeds' mean is not
    below ``threshold - margin``; t = (threshold - margin - mean_n) / (s_n / sqrt(n)), df = n - 1."""
    new = _values(new_nats, "new seeds", 2)
    if not math.isfinite(threshold_nats):
        raise ValueError(f"threshold_nats={threshold_nats!r}: expected a finite val_loss in nats")
    if float(np.var(new, ddof=1)) == 0.0:
        raise ValueError("every per-seed value is identical: the t statistic is undefined")
    res = sst.ttest_1samp(new, popmean=threshold_nats - margin, alternative="less")
    # scipy's statistic is (mean - popmean)/se; report it with the sign of the improvement (positive = better)
    return _finish("one-sided one-sample t-test vs the claimed threshold", new, threshold_nats, None,
                   -res.statistic, res.df, res.pvalue, margin, alpha, tokens_per_byte)


def significance(new_nats: Sequence[float], *, base_nats: Sequence[float] | None = None,
                 threshold_nats: float | None = None, margin: float = MARGIN_NATS, alpha: float = ALPHA,
                 tokens_per_byte: float | None = None) -> Significance:
    """:func:`welch_test` when ``base_nats`` (>= 2 values) is given, else :func:`one_sample_test` against
    ``threshold_nats`` (or the mean of a single ``base_nats`` value). Raises ``ValueError`` when neither is given."""
    if base_nats is not None and len(list(base_nats)) >= 2:
        return welch_test(new_nats, base_nats, margin, alpha, tokens_per_byte)
    if threshold_nats is None and base_nats is not None and len(list(base_nats)) == 1:
        threshold_nats = float(list(base_nats)[0])
    if threshold_nats is None:
        raise ValueError("significance needs the base record's per-seed val_loss (nats) or a threshold val_loss")
    return one_sample_test(new_nats, threshold_nats, margin, alpha, tokens_per_byte)

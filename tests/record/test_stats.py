"""Record-bar significance against hand-computed t-tests (SPEC §4.8 item 7, §5.5)."""

from __future__ import annotations

import math

import pytest

from golflib.record.stats import nats_to_bpb_delta, one_sample_test, significance, welch_test


def _t4_sf(t: float) -> float:
    """P(T >= t) for Student's t with 4 degrees of freedom, closed form: F(t) = 1/2 + 3/4 a (1 - a²/3),
    a = t / sqrt(4 + t²)."""
    a = t / math.sqrt(4 + t * t)
    return 0.5 - 0.75 * a * (1 - a * a / 3)


def _t_sf_numeric(t: float, df: float, n: int = 200_000) -> float:
    """P(T >= t) by integrating the Student-t density (midpoint rule after x = t + u / (1 - u))."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    total = 0.0
    for i in range(n):
        u = (i + 0.5) / n
        x = t + u / (1 - u)
        total += c * (1 + x * x / df) ** (-(df + 1) / 2) / (1 - u) ** 2
    return total / n


def test_welch_matches_hand_computation():
    base = [1.2200, 1.2230, 1.2210]  # the previous record's seeds (nats)
    new = [1.2100, 1.2120, 1.2090]
    # by hand: means 1.221333.. and 1.210333..; both sample variances 2.3333e-6; se = sqrt(2 * 2.3333e-6 / 3)
    se = math.sqrt(2 * (4.6666667e-6 / 2) / 3)
    t = (0.011 - 0.005) / se
    assert t == pytest.approx(4.81070, abs=1e-4)
    res = welch_test(new, base)
    assert res.improvement_nats == pytest.approx(0.011, abs=1e-12)
    assert res.t == pytest.approx(t, rel=1e-6)
    assert res.df == pytest.approx(4.0, rel=1e-9)  # equal variances and sizes: Welch df = 2(n-1)
    assert res.p == pytest.approx(_t4_sf(res.t), rel=1e-9) and res.p == pytest.approx(_t4_sf(t), rel=1e-5)
    assert res.p == pytest.approx(0.0042905, rel=1e-4) and res.passes
    assert res.n_new == 3 and res.n_base == 3


def test_welch_unequal_variances_and_bpb():
    base = [1.0820, 1.0800, 1.0811, 1.0790]
    new = [1.0740, 1.0752, 1.0749]
    mb, mn = sum(base) / 4, sum(new) / 3
    vb = sum((x - mb) ** 2 for x in base) / 3
    vn = sum((x - mn) ** 2 for x in new) / 2
    se2 = vb / 4 + vn / 3
    t = (mb - mn - 0.005) / math.sqrt(se2)
    df = se2 ** 2 / ((vb / 4) ** 2 / 3 + (vn / 3) ** 2 / 2)
    res = welch_test(new, base, tokens_per_byte=0.2683)
    assert res.t == pytest.approx(t, rel=1e-9) and res.df == pytest.approx(df, rel=1e-9)
    assert res.p == pytest.approx(_t_sf_numeric(t, df), rel=1e-4)
    assert res.improvement_bpb == pytest.approx((mb - mn) / math.log(2) * 0.2683, rel=1e-12)
    assert res.margin_bpb == pytest.approx(0.00194, abs=1e-5)  # SPEC §1.4: 0.005 nats ≈ 0.00194 bpb (sp8192)
    assert res.passes == (res.p < 0.01)
    assert "t = " in res.summary() and "df = " in res.summary()


def test_one_sample_against_threshold():
    new = [1.0700, 1.0712, 1.0705, 1.0698]
    thr = 1.0810
    m = sum(new) / 4
    s = math.sqrt(sum((x - m) ** 2 for x in new) / 3)
    t = (thr - 0.005 - m) / (s / 2)
    res = one_sample_test(new, thr)
    assert res.t == pytest.approx(t, rel=1e-9) and res.df == 3
    assert res.p == pytest.approx(_t_sf_numeric(t, 3), rel=1e-4)
    assert res.improvement_nats == pytest.approx(thr - m)
    assert significance(new, threshold_nats=thr).t == pytest.approx(res.t)
    assert significance(new, base_nats=[thr]).p == pytest.approx(res.p)  # one base value = a threshold


def test_improvement_below_the_margin_does_not_pass():
    res = welch_test([1.2180, 1.2185, 1.2178], [1.2200, 1.2210, 1.2205])  # 0.0024 nats better: under the bar
    assert res.t < 0 and res.p > 0.5 and not res.passes


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        welch_test([1.0], [1.1, 1.2])
    with pytest.raises(ValueError, match="finite"):
        welch_test([1.0, float("nan")], [1.1, 1.2])
    with pytest.raises(ValueError, match="identical"):
        one_sample_test([1.0, 1.0], 1.2)
    with pytest.raises(ValueError, match="needs the base record"):
        significance([1.0, 1.1])
    with pytest.raises(ValueError, match="tokens_per_byte"):
        nats_to_bpb_delta(0.005, 0)
    assert nats_to_bpb_delta(0.005, 0.4095) == pytest.approx(0.00295, abs=1e-5)  # SPEC §1.4 (sp1024)

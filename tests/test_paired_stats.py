"""Paired statistics against scipy, statsmodels and rliable (test-only dependencies), and hand-worked cases."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pwmbench.analysis.paired_stats import (
    holm,
    minimum_detectable_effect,
    paired_difference,
    paired_difference_ci,
    paired_permutation_p,
    paired_power,
    seed_differences,
    seeds_needed,
    sign_flip_p,
    wilcoxon_p,
)
from pwmbench.analysis.stats import aggregate

scores = st.floats(-1, 2, allow_nan=False).map(lambda x: round(x, 3))


def _pairs(cand: dict, base: dict) -> dict:
    return {t: {s: (cand[t][i], base[t][i]) for i, s in enumerate((42, 123, 456, 7, 8, 9)[: len(cand[t])])} for t in cand}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(scores, scores), min_size=2, max_size=9))
def test_sign_flip_equals_scipys_paired_permutation_test(pairs):
    c, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    ours = sign_flip_p(c, b)
    ref = sps.permutation_test((c, b), lambda x, y: np.mean(x - y), permutation_type="samples", n_resamples=np.inf).pvalue
    assert ours == pytest.approx(ref, abs=1e-9)


def test_sign_flip_hand_worked():
    assert sign_flip_p([1, 2, 3], [0, 0, 0]) == pytest.approx(2 / 8)  # all positive: the smallest p 3 pairs allow
    assert sign_flip_p([1, 1], [1, 1]) == 1.0
    assert math.isnan(sign_flip_p([], []))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(scores, scores), min_size=6, max_size=12))
def test_wilcoxon_is_scipys_from_six_pairs(pairs):
    c, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    d = c - b
    if np.any(d != 0):
        assert wilcoxon_p(c, b) == pytest.approx(sps.wilcoxon(d).pvalue)
    assert math.isnan(wilcoxon_p(c[:5], b[:5]))  # 5 pairs cannot reach 0.05: no test


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1), st.just(math.nan)), min_size=1, max_size=12))
def test_holm_equals_statsmodels(pvalues):
    from statsmodels.stats.multitest import multipletests

    ours = np.array(holm(pvalues))
    p = np.array(pvalues)
    ok = np.isfinite(p)
    assert np.all(np.isnan(ours[~ok]))
    if ok.any():
        assert ours[ok] == pytest.approx(multipletests(p[ok], method="holm")[1], abs=1e-12)


def test_holm_hand_worked():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_paired_power_and_seeds_needed_match_statsmodels():
    from statsmodels.stats.power import TTestPower

    for n, effect in [(3, 0.3), (3, 1.0), (10, 0.5), (30, 0.2)]:
        assert paired_power(n, effect) == pytest.approx(TTestPower().power(effect, n, 0.05), abs=1e-9)
    for effect in (0.3, 0.8, 2.0):
        n = seeds_needed(effect)
        exact = TTestPower().solve_power(effect, nobs=None, alpha=0.05, power=0.8)
        assert n == max(2, math.ceil(exact - 1e-9))
        assert paired_power(n, effect) >= 0.8 and (n == 2 or paired_power(n - 1, effect) < 0.8)
    assert seeds_needed(0.0) is None and seeds_needed(math.nan) is None
    mde = minimum_detectable_effect(3, sd=0.1)
    assert paired_power(3, mde / 0.1) == pytest.approx(0.8, abs=1e-6)
    assert math.isnan(minimum_detectable_effect(1, 0.1)) and minimum_detectable_effect(5, 0.0) == 0.0


def test_paired_bootstrap_keeps_pairs_together():
    # the candidate is the baseline + 0.1 on every run: every paired resample differs by exactly 0.1 (an unpaired
    # bootstrap would spread the difference over the baseline's own seed spread)
    base = {"a": [0.1, 0.5, 0.9], "b": [0.2, 0.4, 0.8]}
    cand = {t: [x + 0.1 for x in v] for t, v in base.items()}
    for metric in ("iqm", "mean", "median"):
        est = paired_difference_ci(_pairs(cand, base), metric, reps=2000)
        assert est.value == pytest.approx(0.1) and est.low == pytest.approx(0.1) and est.high == pytest.approx(0.1)


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.sampled_from("abcd"), st.lists(st.tuples(scores, scores), min_size=3, max_size=3), min_size=1))
def test_paired_difference_is_the_difference_of_rliables_aggregates(table):
    from rliable import metrics

    cand = {t: [p[0] for p in v] for t, v in table.items()}
    base = {t: [p[1] for p in v] for t, v in table.items()}
    c = np.array([cand[t] for t in sorted(cand)]).T  # rliable: runs × tasks
    b = np.array([base[t] for t in sorted(base)]).T
    pairs = _pairs(cand, base)
    assert paired_difference(pairs, "iqm") == pytest.approx(metrics.aggregate_iqm(c) - metrics.aggregate_iqm(b), abs=1e-9)
    assert paired_difference(pairs, "mean") == pytest.approx(metrics.aggregate_mean(c) - metrics.aggregate_mean(b), abs=1e-9)
    assert paired_difference(pairs, "median") == pytest.approx(metrics.aggregate_median(c) - metrics.aggregate_median(b), abs=1e-9)
    ours = aggregate(cand, reps=10)
    assert ours["median"].value == pytest.approx(metrics.aggregate_median(c), abs=1e-9)
    assert ours["optimality_gap"].value == pytest.approx(metrics.aggregate_optimality_gap(c), abs=1e-9)


def test_paired_bootstrap_interval_agrees_with_a_direct_loop():
    rng = np.random.default_rng(3)
    base = {t: list(rng.uniform(0, 1, 4)) for t in "abc"}
    cand = {t: [x + d for x, d in zip(v, rng.normal(0.05, 0.1, 4))] for t, v in base.items()}
    pairs = _pairs(cand, base)
    fast = paired_difference_ci(pairs, "mean", reps=4000, seed=1)
    loop = []
    r2 = np.random.default_rng(2)
    for _ in range(4000):
        diffs = []
        for t in sorted(cand):
            i = r2.integers(0, 4, 4)
            diffs.append(np.mean(np.array(cand[t])[i]) - np.mean(np.array(base[t])[i]))
        loop.append(np.mean(diffs))
    assert fast.low == pytest.approx(np.quantile(loop, 0.025), abs=0.02)
    assert fast.high == pytest.approx(np.quantile(loop, 0.975), abs=0.02)


def test_aggregate_permutation_test_exact_and_hand_worked():
    # one task, 3 pairs, all better: the observed |Δmean| is reached by the all-kept and all-swapped patterns only
    p, exact = paired_permutation_p({"a": {1: (1.0, 0.0), 2: (2.0, 0.0), 3: (3.0, 0.0)}}, "mean")
    assert exact and p == pytest.approx(2 / 8)
    # with the mean, the stratified test over one task is the sign-flip test
    c, b = [0.3, 0.1, 0.7, 0.2], [0.1, 0.2, 0.3, 0.25]
    p, _ = paired_permutation_p({"a": dict(enumerate(zip(c, b)))}, "mean")
    assert p == pytest.approx(sign_flip_p(c, b))
    # equal arms: p = 1
    assert paired_permutation_p({"a": {1: (0.5, 0.5), 2: (0.2, 0.2)}}, "iqm")[0] == 1.0


def test_aggregate_permutation_test_goes_monte_carlo_above_sixteen_pairs():
    pairs = {t: {s: (0.6 + 0.01 * s, 0.5) for s in range(6)} for t in "abc"}  # 18 pairs, all better
    p, exact = paired_permutation_p(pairs, "iqm", reps=2000)
    assert not exact and p == pytest.approx(1 / 2001, abs=2e-3)


def test_seed_differences_average_over_tasks():
    pairs = {"a": {42: (0.5, 0.3), 123: (0.1, 0.2)}, "b": {42: (0.4, 0.4)}}
    assert seed_differences(pairs) == pytest.approx({42: 0.1, 123: -0.1})


def test_paired_power_where_scipys_noncentral_t_gives_nan():
    # statsmodels (scipy's nct) returns NaN here; the integral over the variance agrees with a simulation
    rng = np.random.default_rng(0)
    n, effect, alpha = 2, 6.2, 0.025
    d = rng.normal(effect, 1.0, (400_000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    simulated = np.mean(np.abs(t) > sps.t.ppf(1 - alpha / 2, n - 1))
    assert paired_power(n, effect, alpha) == pytest.approx(simulated, abs=0.005)
    assert all(paired_power(n, e, alpha) <= paired_power(n, e * 1.5, alpha) + 1e-9 for e in (0.5, 2, 6.2, 20))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 400), st.floats(0.01, 50), st.sampled_from([0.05, 0.025, 0.01]))
def test_paired_power_grows_with_the_effect_and_stays_a_probability(n, effect, alpha):
    p = paired_power(n, effect, alpha)
    assert alpha - 1e-9 <= p <= 1.0
    assert paired_power(n, effect * 1.2, alpha) >= p - 1e-9

"""Statistics against scipy and hand-worked cases; bootstrap reproducibility."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from pwmbench.analysis.stats import (
    aggregate,
    bootstrap_ci,
    iqm,
    mean_ci,
    optimality_gap,
    performance_profile,
    probability_of_improvement,
    probability_of_improvement_ci,
    steps_to_threshold,
    welch,
    welch_power,
)

samples = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=8)


@given(a=samples, b=samples)
def test_welch_matches_scipy(a, b):
    t, p = welch(a, b)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sps.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic, nan_ok=True) and p == pytest.approx(ref.pvalue, nan_ok=True)


def test_welch_edge_cases_are_scipys():
    assert welch([1, 1, 1], [2, 2, 2]) == (-math.inf, 0.0)  # two different constant arms: certain
    assert welch([2, 2], [1, 1, 1]) == (math.inf, 0.0)
    assert all(math.isnan(v) for v in welch([1, 1], [1, 1]))  # the same constant: undefined
    assert all(math.isnan(v) for v in welch([1.0], [2.0, 3.0]))  # one value: no variance estimate


def test_welch_power_at_three_seeds_is_low():
    assert welch_power(3) == pytest.approx(0.16, abs=0.01)
    assert welch_power(30) > 0.95


def test_iqm_hand_worked():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5  # middle four: 3, 4, 5, 6
    assert iqm([10, 0, 0, 0]) == 0.0
    assert iqm([5]) == 5.0


@given(st.lists(st.floats(-100, 100), min_size=1, max_size=40))
def test_iqm_matches_scipy_trim_mean(values):
    assert iqm(values) == pytest.approx(sps.trim_mean(values, 0.25), rel=1e-9, abs=1e-9)


def test_probability_of_improvement_hand_worked():
    # task a: x beats y in 3 of 4 pairs; task b: all ties → 0.5; mean 0.625
    assert probability_of_improvement({"a": [2, 4], "b": [1, 1]}, {"a": [1, 3], "b": [1, 1]}) == pytest.approx(0.625)


def test_optimality_gap_and_threshold():
    assert optimality_gap([0.5, 1.5, 1.0]) == pytest.approx(0.5 / 3)
    assert steps_to_threshold([10, 20, 30], [None, 5.0, 9.0], 5.0) == 20
    assert steps_to_threshold([10, 20], [1.0, 2.0], 5.0) is None


def test_bootstrap_is_reproducible_with_a_seed_and_brackets_the_point():
    scores = {"a": [0.1, 0.5, 0.3], "b": [0.9, 0.7, 0.8]}
    first = aggregate(scores, reps=500, seed=3)
    assert aggregate(scores, reps=500, seed=3) == first
    assert aggregate(scores, reps=500, seed=4) != first
    for est in first.values():
        assert est.low <= est.value <= est.high
    poi = bootstrap_ci(probability_of_improvement, {"a": [3, 4, 5]}, {"a": [0, 1, 2]}, reps=200)
    assert poi.value == 1.0 and poi.low == 1.0


def test_stratified_bootstrap_resamples_within_tasks():
    # each task's scores are constant: any within-task resample leaves the mean unchanged
    est = aggregate({"a": [1.0, 1.0, 1.0], "b": [3.0, 3.0, 3.0]}, reps=200)["mean"]
    assert est.value == est.low == est.high == 2.0


def test_tasks_weigh_the_same_whatever_their_number_of_finished_runs():
    # task a lost a run: its two runs carry weight 1/4 each, task b's three 1/6 each
    ragged = {"a": [0.1, 0.5], "b": [0.9, 0.7, 0.8]}
    point = aggregate(ragged, reps=10)
    assert point["mean"].value == pytest.approx((0.3 + 0.8) / 2)  # per-task means, then across tasks
    assert point["optimality_gap"].value == pytest.approx((0.7 + 0.2) / 2)
    assert point["median"].value == pytest.approx((0.3 + 0.8) / 2)  # rliable's: the median of the per-task means
    assert point["iqm"].value == pytest.approx((0.5 * 0.25 + 0.7 / 6 + 0.8 / 12) / 0.5)  # quantiles 0.25–0.75
    # a task duplicated seed for seed is the same distribution: weighted estimators must not move
    doubled = {"a": [0.1, 0.5, 0.1, 0.5], "b": [0.9, 0.7, 0.8]}
    for key in ("median", "iqm", "mean", "optimality_gap"):
        assert aggregate(doubled, reps=10)[key].value == pytest.approx(point[key].value)


@given(st.dictionaries(st.sampled_from("abcdef"), st.lists(st.floats(-2, 2), min_size=3, max_size=3), min_size=1))
def test_balanced_estimators_are_rliables_on_the_flattened_runs(scores):
    flat = np.concatenate([np.asarray(v) for v in scores.values()])
    point = aggregate(scores, reps=10)
    assert point["iqm"].value == pytest.approx(sps.trim_mean(flat, 0.25), abs=1e-9)
    assert point["median"].value == pytest.approx(np.median([np.mean(v) for v in scores.values()]), abs=1e-9)
    assert point["mean"].value == pytest.approx(flat.mean(), abs=1e-9)
    assert point["optimality_gap"].value == pytest.approx(np.maximum(1 - flat, 0).mean(), abs=1e-9)


def test_non_finite_scores_are_refused_not_trimmed():
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="non-finite score on task 'a'"):
            aggregate({"a": [0.1, bad, 0.3]}, reps=10)


def test_vectorised_bootstrap_agrees_with_the_generic_loop():
    scores = {"a": [0.1, 0.5, 0.3, 0.2], "b": [0.9, 0.7, 0.8, 0.6], "c": [0.4, 0.45, 0.2, 0.3]}
    fast = aggregate(scores, reps=4000, seed=1)["iqm"]
    slow = bootstrap_ci(lambda s: iqm(np.concatenate(list(s.values()))), scores, reps=4000, seed=2)
    assert fast.value == slow.value
    assert fast.low == pytest.approx(slow.low, abs=0.03) and fast.high == pytest.approx(slow.high, abs=0.03)
    other = {"a": [0.0, 0.2, 0.1, 0.4], "b": [0.9, 0.9, 0.95, 0.5], "c": [0.1, 0.2, 0.3, 0.3]}
    poi_fast = probability_of_improvement_ci(scores, other, reps=4000, seed=1)
    poi_slow = bootstrap_ci(probability_of_improvement, scores, other, reps=4000, seed=2)
    assert poi_fast.value == poi_slow.value
    assert poi_fast.low == pytest.approx(poi_slow.low, abs=0.03) and poi_fast.high == pytest.approx(poi_slow.high, abs=0.03)


def test_performance_profile_hand_worked_and_monotone():
    scores = {"a": [0.1, 0.5, 0.3], "b": [0.9, 0.7, 0.8]}
    value, low, high = performance_profile(scores, [0.0, 0.2, 0.5, 0.85, 1.0], reps=500)
    assert value.tolist() == pytest.approx([1.0, (2 / 3 + 1) / 2, 0.5, 1 / 6, 0.0])
    assert np.all(np.diff(value) <= 0) and np.all(low <= value + 1e-12) and np.all(value <= high + 1e-12)


def test_mean_ci_and_default_resamples():
    est = mean_ci([1.0, 2.0, 3.0], reps=2000)
    assert est.value == 2.0 and 1.0 <= est.low < 2.0 < est.high <= 3.0
    from pwmbench.analysis.stats import BOOTSTRAP_REPS

    assert BOOTSTRAP_REPS == 50_000

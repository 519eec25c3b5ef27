"""Statistics against scipy and hand-worked cases; bootstrap reproducibility."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from pwmbench.stats import (
    aggregate,
    bootstrap_ci,
    iqm,
    optimality_gap,
    probability_of_improvement,
    steps_to_threshold,
    welch,
    welch_power,
)

samples = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=8)


@given(a=samples, b=samples)
def test_welch_matches_scipy(a, b):
    t, p = welch(a, b)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        assert math.isnan(p)
        return
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic, nan_ok=True) and p == pytest.approx(ref.pvalue, nan_ok=True)


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

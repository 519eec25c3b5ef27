"""Statistics for few-seed RL comparisons, on numpy only (reproducible: every resample uses a seeded RNG).

- Welch's t-test per task, exactly as scipy computes it (two constant, different arms: t = ±inf, p = 0). With 3
  seeds per arm its power is low (≈ 0.16 to detect a 1-σ effect at α = 0.05), so a non-significant p says little.
- Aggregates over tasks (rliable's estimators, Agarwal et al. 2021): median (of the per-task means, as rliable's
  `aggregate_median`), interquartile mean (IQM), mean and optimality gap of normalised scores, the probability of improvement P(X > Y) averaged over tasks, performance
  profiles; each with a stratified-bootstrap 95% percentile CI (seeds resampled within each task, 50,000 resamples
  by default, vectorised).
- Every task weighs the same. When every task has the same number of runs the estimators are rliable's on the
  flattened runs × tasks array; when they differ (a run failed), each run carries weight 1 / (its task's runs), so a
  task with fewer finished runs is not under-weighted (the IQM becomes the weighted quantile version).
- Non-finite scores are refused (ValueError): a failed or diverged run is the caller's to count and report, never
  something a statistic trims away or resamples around.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Scores = Mapping[str, Sequence[float]]  # task → per-seed normalised scores
BOOTSTRAP_REPS = 50_000
CHUNK = 5_000  # resamples drawn and evaluated at once (bounds memory; the draws do not depend on it)
AGGREGATES = ("median", "iqm", "mean", "optimality_gap")


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(t, two-sided p) of Welch's unequal-variance t-test, scipy's values including its edge cases: NaN when a side
    has fewer than 2 values or both arms are the same constant; (±inf, 0) for two different constant arms."""
    import warnings

    from scipy.stats import ttest_ind

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns on constant arms; the values are what we want
        res = ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def welch_power(n: int, effect: float = 1.0, alpha: float = 0.05) -> float:
    """Power of a two-sided two-sample t-test, n per arm, standardised effect `effect` (noncentral t)."""
    from scipy.stats import nct, t

    df = 2 * n - 2
    crit = t.ppf(1 - alpha / 2, df)
    nc = effect * math.sqrt(n / 2)
    return float(1 - nct.cdf(crit, df, nc) + nct.cdf(-crit, df, nc))


# --------------------------------------------------------------------------------------------- point estimators
def iqm(values: Sequence[float]) -> float:
    """Mean of the middle 50% (scipy's trim_mean(x, 0.25), as rliable): floor(n/4) values cut from each end."""
    return float(_trimmed(np.sort(np.asarray(values, float).ravel())[None, :])[0]) if len(values) else math.nan


def optimality_gap(values: Sequence[float], target: float = 1.0) -> float:
    """Mean shortfall below `target` (scores above it count as reaching it)."""
    x = np.asarray(values, float)
    return float(np.mean(np.maximum(target - x, 0.0)))


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """P(X > Y), ties counting half, averaged over the tasks both have (Mann–Whitney U / (n·m) per task)."""
    per_task = [_poi(np.asarray(x[t], float)[None], np.asarray(y[t], float)[None])[0] for t in _shared(x, y)]
    return float(np.mean(per_task)) if per_task else math.nan


def _shared(x: Scores, y: Scores) -> list[str]:
    return [t for t in sorted(set(x) & set(y)) if len(x[t]) and len(y[t])]


def _poi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per resample row: P(a > b) + ½ P(a = b) over all pairs; a [R, n], b [R, m] → [R]."""
    greater = (a[:, :, None] > b[:, None, :]).mean(axis=(1, 2))
    ties = (a[:, :, None] == b[:, None, :]).mean(axis=(1, 2))
    return greater + 0.5 * ties


def _trimmed(sorted_rows: np.ndarray) -> np.ndarray:
    n = sorted_rows.shape[1]
    cut = int(math.floor(0.25 * n))
    return sorted_rows[:, cut : n - cut].mean(axis=1) if n - 2 * cut > 0 else sorted_rows.mean(axis=1)


def _weighted_quantile_mean(values: np.ndarray, weights: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per row: the mean of the weighted empirical quantile function over [lo, hi] (lo < hi).

    Each run owns the probability interval of its weight; the overlap of each interval with [lo, hi] weighs its value.
    """
    order = np.argsort(values, axis=1, kind="stable")
    x = np.take_along_axis(values, order, axis=1)
    w = weights[order]
    upper = np.cumsum(w, axis=1)
    lower = upper - w
    overlap = np.clip(np.minimum(upper, hi) - np.maximum(lower, lo), 0.0, None)
    return (x * overlap).sum(axis=1) / (hi - lo)


class _Runs:
    """Scores of one variant, checked, as arrays; evaluates every aggregate on a batch of resamples at once."""

    def __init__(self, scores: Scores) -> None:
        self.tasks = [t for t in sorted(scores) if len(scores[t])]
        self.arrays = [np.asarray(scores[t], float).ravel() for t in self.tasks]
        for task, a in zip(self.tasks, self.arrays):
            if not np.all(np.isfinite(a)):
                raise ValueError(f"non-finite score on task {task!r}: count failed runs apart instead of scoring them")
        sizes = {len(a) for a in self.arrays}
        self.balanced = len(sizes) <= 1
        self.weights = np.concatenate([np.full(len(a), 1.0 / (len(a) * len(self.arrays))) for a in self.arrays]) if self.arrays else np.array([])

    def statistics(self, rows: list[np.ndarray]) -> dict[str, np.ndarray]:
        """rows: per task [R, n_task] → each aggregate [R]."""
        if not rows:
            return {name: np.full(1, math.nan) for name in AGGREGATES}
        flat = np.concatenate(rows, axis=1)
        task_means = np.stack([r.mean(axis=1) for r in rows])  # [T, R]
        gaps = np.stack([np.maximum(1.0 - r, 0.0).mean(axis=1) for r in rows])
        if self.balanced:
            middle = _trimmed(np.sort(flat, axis=1))
        else:
            middle = _weighted_quantile_mean(flat, self.weights, 0.25, 0.75)
        # rliable's median: the median over tasks of each task's mean score (not the median over all runs)
        return {"median": np.median(task_means, axis=0), "iqm": middle, "mean": task_means.mean(axis=0), "optimality_gap": gaps.mean(axis=0)}

    def point(self) -> dict[str, float]:
        return {k: float(v[0]) for k, v in self.statistics([a[None, :] for a in self.arrays]).items()}

    def resample(self, rng: np.random.Generator, reps: int) -> list[np.ndarray]:
        """One stratified bootstrap batch: seeds drawn with replacement within each task, [reps, n_task] per task."""
        return [a[rng.integers(0, len(a), (reps, len(a)))] for a in self.arrays]


def _chunks(reps: int) -> list[int]:
    return [min(CHUNK, reps - start) for start in range(0, reps, CHUNK)]


def _interval(point: float, samples: np.ndarray, level: float) -> Estimate:
    alpha = (1 - level) / 2
    if len(samples) == 0 or not np.all(np.isfinite(samples)):
        return Estimate(point, math.nan, math.nan)
    return Estimate(point, float(np.quantile(samples, alpha)), float(np.quantile(samples, 1 - alpha)))


def aggregate(scores: Scores, reps: int = BOOTSTRAP_REPS, seed: int = 0, level: float = 0.95) -> dict[str, Estimate]:
    """Median, IQM, mean and optimality gap of normalised scores across tasks and seeds, with stratified-bootstrap
    percentile CIs (all four from the same resamples)."""
    runs = _Runs(scores)
    point = runs.point()
    rng = np.random.default_rng(seed)
    samples: dict[str, list[np.ndarray]] = {k: [] for k in AGGREGATES}
    if runs.arrays:
        for size in _chunks(reps):
            for k, v in runs.statistics(runs.resample(rng, size)).items():
                samples[k].append(v)
    return {k: _interval(point[k], np.concatenate(samples[k]) if samples[k] else np.array([]), level) for k in AGGREGATES}


def probability_of_improvement_ci(x: Scores, y: Scores, reps: int = BOOTSTRAP_REPS, seed: int = 0, level: float = 0.95) -> Estimate:
    """P(X > Y) averaged over the shared tasks, with a stratified-bootstrap CI (X and Y resampled independently)."""
    tasks = _shared(x, y)
    rx, ry = _Runs({t: x[t] for t in tasks}), _Runs({t: y[t] for t in tasks})
    point = probability_of_improvement(x, y)
    rng = np.random.default_rng(seed)
    samples = []
    if tasks:
        for size in _chunks(reps):
            a, b = rx.resample(rng, size), ry.resample(rng, size)
            samples.append(np.mean([_poi(ai, bi) for ai, bi in zip(a, b)], axis=0))
    return _interval(point, np.concatenate(samples) if samples else np.array([]), level)


def mean_difference_ci(x: Scores, y: Scores, reps: int = BOOTSTRAP_REPS, seed: int = 0, level: float = 0.95) -> Estimate:
    """Mean over the shared tasks of (mean of x − mean of y), with a stratified-bootstrap CI (x and y resampled
    independently within each task)."""
    tasks = _shared(x, y)
    rx, ry = _Runs({t: x[t] for t in tasks}), _Runs({t: y[t] for t in tasks})
    if not tasks:
        return Estimate(math.nan, math.nan, math.nan)
    point = float(np.mean([a.mean() - b.mean() for a, b in zip(rx.arrays, ry.arrays)]))
    rng = np.random.default_rng(seed)
    samples = []
    for size in _chunks(reps):
        a, b = rx.resample(rng, size), ry.resample(rng, size)
        samples.append(np.mean([ai.mean(axis=1) - bi.mean(axis=1) for ai, bi in zip(a, b)], axis=0))
    return _interval(point, np.concatenate(samples), level)


def performance_profile(
    scores: Scores, taus: Sequence[float], reps: int = BOOTSTRAP_REPS, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rliable's score distribution: for each τ the fraction of runs scoring above τ (each task's fraction, averaged
    over tasks), with pointwise stratified-bootstrap CIs. Returns (value, low, high), each shaped like `taus`."""
    runs, taus = _Runs(scores), np.asarray(taus, float)
    if not runs.arrays:
        nan = np.full(len(taus), math.nan)
        return nan, nan, nan

    def profile(rows: list[np.ndarray]) -> np.ndarray:  # [R, K]
        return np.mean([(r[:, :, None] > taus).mean(axis=1) for r in rows], axis=0)

    point = profile([a[None, :] for a in runs.arrays])[0]
    rng = np.random.default_rng(seed)
    samples = np.concatenate([profile(runs.resample(rng, size)) for size in _chunks(reps)])
    alpha = (1 - level) / 2
    return point, np.quantile(samples, alpha, axis=0), np.quantile(samples, 1 - alpha, axis=0)


def mean_ci(values: Sequence[float], reps: int = BOOTSTRAP_REPS, seed: int = 0, level: float = 0.95) -> Estimate:
    """One task's mean over seeds with a bootstrap percentile CI (per-task bars)."""
    return aggregate({"task": values}, reps=reps, seed=seed, level=level)["mean"]


def bootstrap_ci(
    statistic: Callable[..., float], *scores: Scores, reps: int = BOOTSTRAP_REPS, seed: int = 0, level: float = 0.95
) -> Estimate:
    """Point estimate and percentile CI of any `statistic(*scores)` under stratified bootstrap (seeded). A Python loop
    over resamples: for the built-in aggregates use the vectorised `aggregate` / `probability_of_improvement_ci`.
    A resample whose statistic is not finite makes the CI NaN instead of being dropped."""
    rng = np.random.default_rng(seed)
    point = statistic(*scores)
    samples = []
    for _ in range(reps):
        resampled = [{t: np.asarray(v, float)[rng.integers(0, len(v), len(v))] for t, v in s.items() if len(v)} for s in scores]
        samples.append(statistic(*resampled))
    return _interval(float(point), np.asarray(samples, float), level)


def late_half_median(rows: Sequence[Mapping[str, float | None]], key: str) -> float | None:
    """Median of the finite `key` values over the last half of a run's rows (None without any): a run's summary
    once its early transient is past (the gradient probe's run-row and report figures)."""
    values = [float(r[key]) for r in rows[len(rows) // 2 :] if r.get(key) is not None and math.isfinite(r[key])]
    return float(np.median(values)) if values else None


def steps_to_threshold(steps: Sequence[float], returns: Sequence[float | None], threshold: float) -> float | None:
    """First step at which the return reaches `threshold` (None if never): sample efficiency."""
    for step, value in zip(steps, returns):
        if value is not None and not math.isnan(value) and value >= threshold:
            return float(step)
    return None

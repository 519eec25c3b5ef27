"""Statistics for few-seed RL comparisons, on numpy only (reproducible: every resample uses a seeded RNG).

- Welch's t-test per task (scipy). With 3 seeds per arm its power is low (≈ 0.16 to detect a 1-σ effect at
  α = 0.05), so a non-significant p says little; the report states this.
- Aggregates over tasks (rliable's estimators, Agarwal et al. 2021): mean, interquartile mean (IQM),
  optimality gap, and the probability of improvement P(X > Y) averaged over tasks, each with a
  stratified-bootstrap 95% CI (seeds resampled within each task).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Scores = Mapping[str, Sequence[float]]  # task → per-seed normalised scores


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(t, two-sided p) of Welch's unequal-variance t-test; NaN when either side has < 2 values or no spread."""
    from scipy.stats import ttest_ind

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan, math.nan
    res = ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def welch_power(n: int, effect: float = 1.0, alpha: float = 0.05) -> float:
    """Power of a two-sided two-sample t-test, n per arm, standardised effect `effect` (noncentral t)."""
    from scipy.stats import nct, t

    df = 2 * n - 2
    crit = t.ppf(1 - alpha / 2, df)
    nc = effect * math.sqrt(n / 2)
    return float(1 - nct.cdf(crit, df, nc) + nct.cdf(-crit, df, nc))


def iqm(values: Sequence[float]) -> float:
    """Mean of the middle 50% (values in the 25th–75th percentile band, rliable's definition via trimming)."""
    x = np.sort(np.asarray(values, float).ravel())
    n = len(x)
    if n == 0:
        return math.nan
    cut = int(math.floor(0.25 * n))
    middle = x[cut : n - cut] if n - 2 * cut > 0 else x
    return float(middle.mean())


def optimality_gap(values: Sequence[float], target: float = 1.0) -> float:
    """Mean shortfall below `target` (scores above it count as reaching it)."""
    x = np.asarray(values, float)
    return float(np.mean(np.maximum(target - x, 0.0)))


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """P(X > Y), ties counting half, averaged over the tasks both have (Mann–Whitney U / (n·m) per task)."""
    per_task = []
    for task in sorted(set(x) & set(y)):
        a, b = np.asarray(x[task], float), np.asarray(y[task], float)
        if len(a) and len(b):
            greater = (a[:, None] > b[None, :]).mean()
            ties = (a[:, None] == b[None, :]).mean()
            per_task.append(greater + 0.5 * ties)
    return float(np.mean(per_task)) if per_task else math.nan


def _flatten(scores: Scores) -> np.ndarray:
    return np.concatenate([np.asarray(v, float) for v in scores.values()]) if scores else np.array([])


def _resample(scores: Scores, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One stratified bootstrap sample: seeds drawn with replacement within each task."""
    return {task: np.asarray(v, float)[rng.integers(0, len(v), len(v))] for task, v in scores.items()}


def bootstrap_ci(
    statistic: Callable[..., float], *scores: Scores, reps: int = 2000, seed: int = 0, level: float = 0.95
) -> Estimate:
    """Point estimate and percentile CI of `statistic(*scores)` under stratified bootstrap (seeded)."""
    rng = np.random.default_rng(seed)
    point = statistic(*scores)
    samples = np.array([statistic(*[_resample(s, rng) for s in scores]) for _ in range(reps)])
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return Estimate(point, math.nan, math.nan)
    alpha = (1 - level) / 2
    return Estimate(float(point), float(np.quantile(samples, alpha)), float(np.quantile(samples, 1 - alpha)))


def aggregate(scores: Scores, reps: int = 2000, seed: int = 0) -> dict[str, Estimate]:
    """Mean, IQM and optimality gap of normalised scores across tasks and seeds, with 95% CIs."""
    return {
        "mean": bootstrap_ci(lambda s: float(np.mean(_flatten(s))), scores, reps=reps, seed=seed),
        "iqm": bootstrap_ci(lambda s: iqm(_flatten(s)), scores, reps=reps, seed=seed),
        "optimality_gap": bootstrap_ci(lambda s: optimality_gap(_flatten(s)), scores, reps=reps, seed=seed),
    }


def steps_to_threshold(steps: Sequence[float], returns: Sequence[float | None], threshold: float) -> float | None:
    """First step at which the return reaches `threshold` (None if never): sample efficiency."""
    for step, value in zip(steps, returns):
        if value is not None and not math.isnan(value) and value >= threshold:
            return float(step)
    return None

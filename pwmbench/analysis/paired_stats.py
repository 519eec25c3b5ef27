"""Paired statistics: every variant of a suite runs the same seeds (same start states, data and data order), so a
candidate's run and the baseline's run of one (task, seed) are a pair, and the tests here use that.

- `paired_difference_ci`: aggregate(candidate) − aggregate(baseline) with a paired, stratified bootstrap interval —
  within each task the *seeds* are resampled, and a drawn seed brings both of its runs (rliable's stratified bootstrap,
  with the pairing kept).
- `paired_permutation_p`: the exact randomisation test of the same difference — under "no difference" the two runs of
  a pair are exchangeable, so each pair's labels may be swapped; p is the share of the 2^N swap patterns (N pairs over
  all tasks; Monte Carlo above `EXACT_MAX_PAIRS`) whose |difference| reaches the observed one. Exact at any N, it
  also says what a percentile interval over 3 seeds cannot: how small a p the pairs can give at all (2 / 2^N).
- `sign_flip_p` per task (scipy's paired `permutation_test` of the mean difference), `wilcoxon_p` where the seeds allow
  a p below α (n ≥ 6), `holm` (Holm–Bonferroni adjusted p, statsmodels' "holm").
- `paired_power`, `seeds_needed`, `minimum_detectable_effect`: a two-sided paired t-test's power on the per-seed
  differences (noncentral t), to say how many seeds an effect needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from pwmbench.analysis.stats import BOOTSTRAP_REPS, CHUNK, Estimate, _chunks, _interval, _Runs

Pairs = Mapping[str, Mapping[int, tuple[float, float]]]  # task → seed → (candidate score, baseline score)
EXACT_MAX_PAIRS = 16  # 2^16 = 65,536 swap patterns enumerated; above that, Monte Carlo
WILCOXON_MIN_PAIRS = 6  # below 6 pairs the signed-rank test cannot reach p < 0.05 (two-sided)
DECISION_METRICS = ("iqm", "mean", "median")


def _arrays(pairs: Pairs) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    tasks = [t for t in sorted(pairs) if pairs[t]]
    cand = [np.array([pairs[t][s][0] for s in sorted(pairs[t])], float) for t in tasks]
    base = [np.array([pairs[t][s][1] for s in sorted(pairs[t])], float) for t in tasks]
    for t, c, b in zip(tasks, cand, base):
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(b))):
            raise ValueError(f"non-finite paired score on task {t!r}: count failed runs apart instead of scoring them")
    return tasks, cand, base


def _metric(rows: list[np.ndarray], runs: _Runs, metric: str) -> np.ndarray:
    if metric not in DECISION_METRICS:
        raise ValueError(f"decision metric must be one of {DECISION_METRICS}, not {metric!r}")
    return runs.statistics(rows)[metric]


def paired_difference(pairs: Pairs, metric: str = "iqm") -> float:
    tasks, cand, base = _arrays(pairs)
    if not tasks:
        return math.nan
    runs = _Runs(dict(zip(tasks, cand)))
    return float(_metric([c[None] for c in cand], runs, metric)[0] - _metric([b[None] for b in base], runs, metric)[0])


def paired_difference_ci(pairs: Pairs, metric: str = "iqm", reps: int = BOOTSTRAP_REPS, seed: int = 0, level: float = 0.95) -> Estimate:
    """aggregate(candidate) − aggregate(baseline) with a paired stratified-bootstrap percentile interval."""
    tasks, cand, base = _arrays(pairs)
    if not tasks:
        return Estimate(math.nan, math.nan, math.nan)
    runs = _Runs(dict(zip(tasks, cand)))  # same shapes for both arms: one set of weights
    point = paired_difference(pairs, metric)
    rng = np.random.default_rng(seed)
    samples = []
    for size in _chunks(reps):
        idx = [rng.integers(0, len(c), (size, len(c))) for c in cand]
        samples.append(_metric([c[i] for c, i in zip(cand, idx)], runs, metric) - _metric([b[i] for b, i in zip(base, idx)], runs, metric))
    return _interval(point, np.concatenate(samples), level)


def paired_permutation_p(pairs: Pairs, metric: str = "iqm", reps: int = BOOTSTRAP_REPS, seed: int = 0) -> tuple[float, bool]:
    """(two-sided p, exact?) of aggregate(candidate) − aggregate(baseline) under within-pair label swaps."""
    tasks, cand, base = _arrays(pairs)
    if not tasks:
        return math.nan, True
    runs = _Runs(dict(zip(tasks, cand)))
    observed = abs(paired_difference(pairs, metric))
    sizes = [len(c) for c in cand]
    total = sum(sizes)
    tol = 1e-12 * max(1.0, observed)

    def count(swaps: np.ndarray) -> int:  # swaps [R, total] bool
        rows_c, rows_b, at = [], [], 0
        for c, b, n in zip(cand, base, sizes):
            s = swaps[:, at : at + n]
            rows_c.append(np.where(s, b, c))
            rows_b.append(np.where(s, c, b))
            at += n
        diff = _metric(rows_c, runs, metric) - _metric(rows_b, runs, metric)
        return int(np.sum(np.abs(diff) >= observed - tol))

    if total <= EXACT_MAX_PAIRS:
        hits, patterns = 0, 2**total
        codes = np.arange(patterns)
        for start in range(0, patterns, CHUNK):
            block = codes[start : start + CHUNK]
            hits += count(((block[:, None] >> np.arange(total)) & 1).astype(bool))
        return hits / patterns, True
    rng = np.random.default_rng(seed)
    hits = sum(count(rng.integers(0, 2, (size, total)).astype(bool)) for size in _chunks(reps))
    return (1 + hits) / (1 + reps), False


def sign_flip_p(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """Two-sided p of the mean paired difference under sign flips (scipy's `permutation_test` with
    permutation_type="samples"): the paired permutation test of one task's mean; NaN without a pair."""
    if len(candidate) == 0:
        return math.nan
    return paired_permutation_p({"task": dict(enumerate(zip(candidate, baseline)))}, "mean")[0]


def wilcoxon_p(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """Wilcoxon signed-rank two-sided p (scipy's defaults) where there are ≥ 6 pairs, else NaN (it cannot reach 0.05)."""
    d = np.asarray(candidate, float) - np.asarray(baseline, float)
    if len(d) < WILCOXON_MIN_PAIRS:
        return math.nan
    if not np.any(d != 0):
        return 1.0
    from scipy.stats import wilcoxon

    return float(wilcoxon(d).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (statsmodels' multipletests(method="holm")); NaNs stay NaN and do not count."""
    p = np.asarray(pvalues, float)
    out = np.full(len(p), math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out.tolist()


# ------------------------------------------------------------------------------------------------- power
def paired_power(n: int, effect: float, alpha: float = 0.05) -> float:
    """Power of a two-sided paired t-test with n pairs at standardised effect `effect` (mean / sd of differences)."""
    from scipy.stats import nct, t

    if n < 2:
        return math.nan
    df = n - 1
    crit = t.ppf(1 - alpha / 2, df)
    nc = abs(effect) * math.sqrt(n)
    power = float(nct.sf(crit, df, nc) + nct.cdf(-crit, df, nc))
    if not math.isfinite(power):  # scipy's noncentral t gives NaN in parts of its tail: integrate over the variance
        from scipy.integrate import quad
        from scipy.stats import chi2, norm

        def inside(v: float) -> float:
            scale = crit * math.sqrt(v / df)
            return chi2.pdf(v, df) * (norm.sf(scale - nc) + norm.cdf(-scale - nc))

        lo, hi = chi2.ppf(1e-12, df), chi2.isf(1e-12, df)  # finite limits around the variance's mass, so quad sees it
        power = float(min(1.0, quad(inside, lo, hi, limit=200)[0]))
    return power


def seeds_needed(effect: float, alpha: float = 0.05, power: float = 0.8, limit: int = 100_000) -> int | None:
    """The fewest pairs (≥ 2) giving `power` at standardised effect `effect`; None for no effect (0 or not finite)."""
    if not math.isfinite(effect) or effect == 0:
        return None
    lo, hi = 2, 2
    while paired_power(hi, effect, alpha) < power:
        if hi >= limit:
            return None
        lo, hi = hi, min(hi * 2, limit)
    while lo < hi:  # power grows with n: bisect for the first n that reaches it
        mid = (lo + hi) // 2
        if paired_power(mid, effect, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi


def minimum_detectable_effect(n: int, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest |mean paired difference| a two-sided paired t-test on n pairs detects with `power`, for
    differences with standard deviation `sd` (NaN below 2 pairs)."""
    from scipy.optimize import brentq

    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    high = 1.0
    while paired_power(n, high, alpha) < power:  # the smallest bracket: far tails are numerically the weakest
        high *= 2
    effect = brentq(lambda e: paired_power(n, e, alpha) - power, 1e-9, high)
    return float(effect * sd)


def seed_differences(pairs: Pairs) -> dict[int, float]:
    """Per seed, the mean over the tasks where it has a pair of (candidate − baseline): the replication unit of a suite
    (one seed runs every task), used for the power figures."""
    by_seed: dict[int, list[float]] = {}
    for task in pairs:
        for s, (c, b) in pairs[task].items():
            by_seed.setdefault(s, []).append(c - b)
    return {s: float(np.mean(v)) for s, v in sorted(by_seed.items())}

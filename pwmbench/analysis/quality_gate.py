"""The model-quality gate: a decision that a candidate is "better" or "non-inferior" says something about dynamics
models only if both world models have learned the dynamics — otherwise it compares two untrained models.

Each run row carries, from its last evaluation, the world model's errors on held-out episodes divided by a trivial
predictor's (pwmbench/pwm/diagnostics.py). The gate uses two of them: the reward error along the H-step open-loop
rollout over the mean-reward predictor's (`model_reward_ratio_mean_H_final`) — the quantity PWM's actor loss is made
of — and the latent error after H open-loop steps over "no change" across H steps (`model_error_ratio_copy_H_final`).
Per (variant, task) it takes the log ratios of the finished seeds and the upper 95% bootstrap bound of their mean
(the exact bootstrap distribution: every resample of the seeds enumerated up to 6 seeds, seeded Monte Carlo above);
the model beats the trivial predictor when the bound is below 0 (ratio < 1). Fewer than two measured seeds cannot
bound it, so they do not pass.

The one-step latent ratio against "no change" is recorded and reported, not gated: on
benchmarks/results/model_quality_budget even the baseline MLP pretrained for 30,000 steps — whose H-step latent error
is then 0.2× "no change" and whose rewards along the rollout are 0.013× the constant's — stays 13× above "no change"
at one step (consecutive latents of a learned encoder are very close); gating it would call every trained MLP
untrained (docs/protocol.md#the-model-quality-gate).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

GATED = {
    "model_reward_ratio_mean_H_final": "reward error along the rollout / mean-reward predictor",
    "model_error_ratio_copy_H_final": "H-step latent error / 'no change'",
}
LEVEL = 0.95
TRIVIAL_ERROR = {"model_reward_ratio_mean_H_final": "model_reward_error_mean_H_final"}  # the trivial predictor's own error
RECORDED_SINCE = {"model_error_ratio_copy_H_final": 3, "model_reward_ratio_mean_H_final": 7}  # result schema versions
EXACT_MAX_SEEDS = 6  # 6^6 = 46,656 resamples enumerated; above, Monte Carlo
MONTE_CARLO = 20_000


def bound(ratios: list[float]) -> tuple[float, float]:
    """(geometric mean, upper 95% bootstrap bound of the geometric mean) of positive ratios; NaN below two values."""
    logs = np.log(np.asarray(ratios, float))
    centre = float(logs.mean())
    n = len(logs)
    if n < 2:
        return math.exp(centre), math.nan
    if n <= EXACT_MAX_SEEDS:
        draws = np.array(list(itertools.product(range(n), repeat=n)))
    else:
        draws = np.random.default_rng(0).integers(0, n, (MONTE_CARLO, n))
    return math.exp(centre), math.exp(float(np.quantile(logs[draws].mean(axis=1), LEVEL)))


def _not_measured(rows: list[Mapping[str, Any]], column: str) -> str:
    """Why no seed has a usable value of `column`: an older result schema, a trivial predictor with no error to beat,
    or diagnostics that did not run."""
    old = [r["schema_version"] for r in rows if r.get("schema_version") is not None and r["schema_version"] < RECORDED_SINCE.get(column, 0)]
    if old:
        return f"not recorded (these runs were written by an older pwmbench, result schema v{old[0]}; it is recorded since v{RECORDED_SINCE[column]})"
    flat = [r for r in rows if column in TRIVIAL_ERROR and r.get(TRIVIAL_ERROR[column]) == 0.0]
    if flat:
        return f"undefined on {len(flat)} seed(s): their held-out rewards are all equal, so there is no reward variation to predict"
    return "not measured (diagnostics_windows = 0, or episodes shorter than H + 1)"


def check(runs: Iterable[Mapping[str, Any]], variants: Iterable[str], tasks: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """(every check as a dict, the failures as sentences) for each variant × task × gated ratio, on finished runs."""
    finished = [r for r in runs if r.get("status") == "ok"]
    checks, failures = [], []
    for variant, task, (column, label) in itertools.product(variants, tasks, GATED.items()):
        rows = [r for r in finished if r["variant"] == variant and r["task"] == task]
        values = [float(r[column]) for r in rows if r.get(column) is not None and math.isfinite(r[column]) and r[column] > 0]
        entry: dict[str, Any] = {"variant": variant, "task": task, "ratio": column, "seeds": len(values), "values": values}
        if not values:
            entry.update(geomean=None, upper=None, passed=False)
            failures.append(f"{variant} on {task}: {label} {_not_measured(rows, column)}")
        else:
            centre, upper = bound(values)
            entry.update(geomean=centre, upper=upper, passed=bool(upper < 1.0))
            if not entry["passed"]:
                why = f"upper 95% bound {upper:.3g}" if math.isfinite(upper) else f"{len(values)} seed cannot bound it"
                failures.append(f"{variant} on {task}: {label} = {centre:.3g} ({why}; needs < 1)")
        checks.append(entry)
    return checks, failures

"""The model-quality gate: a decision that a candidate is "better" or "non-inferior" says something about dynamics
models only if both world models have learned the dynamics — otherwise it compares two untrained models.

Each run row carries, from its last evaluation, the world model's error on held-out episodes divided by a trivial
predictor's (pwmbench/pwm/diagnostics.py): the H-step open-loop latent error over "no change" across H steps
(`model_error_ratio_copy_H_final`) and the open-loop reward error over the windows' mean reward
(`model_reward_ratio_mean_H_final`). Per (variant, task) the gate takes the log ratios of the finished seeds and their
one-sided 95% t upper bound; the model beats the trivial predictor when the bound is below 0 (ratio < 1). Fewer than
two measured seeds cannot bound it, so they do not pass.

The one-step ratio (`model_error_ratio_copy`) is recorded but not gated: consecutive latents are so close that even a
world model pretrained for 10,000 steps stays above 1 on it (benchmarks/results/model_quality_budget), so gating it
would fail every model, trained or not — see docs/protocol.md#the-model-quality-gate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

GATED = {
    "model_error_ratio_copy_H_final": "H-step latent error / 'no change'",
    "model_reward_ratio_mean_H_final": "reward error / mean-reward predictor",
}
LEVEL = 0.95


def bound(ratios: list[float]) -> tuple[float, float]:
    """(geometric mean, one-sided upper 95% t bound) of positive ratios; the bound is NaN below two values."""
    logs = [math.log(r) for r in ratios]
    centre = statistics.mean(logs)
    if len(logs) < 2:
        return math.exp(centre), math.nan
    from scipy.stats import t

    upper = centre + t.ppf(LEVEL, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(centre), math.exp(upper)


def check(runs: Iterable[Mapping[str, Any]], variants: Iterable[str], tasks: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """(every check as a dict, the failures as sentences) for each variant × task × gated ratio, on finished runs."""
    runs = [r for r in runs if r.get("status") == "ok"]
    checks, failures = [], []
    for variant in variants:
        for task in tasks:
            rows = [r for r in runs if r["variant"] == variant and r["task"] == task]
            for column, label in GATED.items():
                values = [float(r[column]) for r in rows if r.get(column) is not None and math.isfinite(r[column]) and r[column] > 0]
                entry: dict[str, Any] = {"variant": variant, "task": task, "ratio": column, "seeds": len(values), "values": values}
                if not values:
                    entry.update(geomean=None, upper=None, passed=False)
                    failures.append(f"{variant} on {task}: {label} not measured (diagnostics_windows = 0, or episodes shorter than H + 1)")
                else:
                    centre, upper = bound(values)
                    entry.update(geomean=centre, upper=upper, passed=bool(upper < 1.0))
                    if not entry["passed"]:
                        why = f"upper 95% bound {upper:.3g}" if math.isfinite(upper) else f"{len(values)} seed cannot bound it"
                        failures.append(f"{variant} on {task}: {label} = {centre:.3g} ({why}; needs < 1)")
                checks.append(entry)
    return checks, failures

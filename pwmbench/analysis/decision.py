"""The decision on a candidate: better, non-inferior, worse or inconclusive — a paired statistical decision with a
margin, not a count of tasks won (docs/protocol.md#the-decision).

    Δ = aggregate(candidate) − aggregate(baseline)      on normalised scores, aggregate = the suite's metric (IQM)
    interval: paired, stratified bootstrap (seeds resampled within each task, a seed bringing both of its runs) at
              level 1 − α/k (Bonferroni over the k candidates of one scoring)
    better        lower bound > 0           and the exact paired permutation test of Δ gives p < α/k
    non-inferior  lower bound > −δ
    worse         upper bound < −δ          and p < α/k
    inconclusive  anything else

then: a claim of "better" or "non-inferior" becomes "inconclusive" when a task has no usable run of one arm, or (with
`model_quality = "gate"`) when a compared world model does not beat the trivial predictors (pwmbench/analysis/quality_gate.py);
a "worse" is never hidden. Every step that moved the decision is a reason in its list.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pwmbench.analysis.paired_stats import (
    DECISION_METRICS,
    Pairs,
    minimum_detectable_effect,
    paired_difference_ci,
    paired_permutation_p,
    seed_differences,
    seeds_needed,
)
from pwmbench.analysis.stats import BOOTSTRAP_REPS, Estimate
from pwmbench.errors import ConfigError, check_keys
from pwmbench.plugin.options import is_number

OUTCOMES = ("better", "non-inferior", "worse", "inconclusive")
MODEL_QUALITY = ("gate", "report")
SCORE_AT = ("final", "peak")
POWER = 0.8


@dataclass(frozen=True)
class DecisionSettings:
    """A suite's [decision] table (every key optional; `pwmbench score` flags override it). Why each default is what
    it is: docs/protocol.md#the-decision."""

    metric: str = "iqm"  # the aggregate Δ is taken on: "iqm", "mean" or "median" (rliable's estimators)
    margin: float = 0.02  # δ, normalised points: a loss smaller than this is not "worse"
    alpha: float = 0.05  # error rate of the whole scoring (split over candidates)
    model_quality: str = "gate"  # "gate": untrained models cannot be "better"; "report": a warning only
    score_at: str = "final"  # "final" evaluation, or "peak" of each arm's seed-averaged curve (PWM's figures)
    noise_sd: float = 0.05  # expected std of one seed's paired difference (normalised): `pwmbench check`'s power warning

    KEYS = ("metric", "margin", "alpha", "model_quality", "score_at", "noise_sd")

    @classmethod
    def parse(cls, block: Any, where: str = "[decision]") -> DecisionSettings:
        if not isinstance(block, Mapping):
            raise ConfigError(f"{where} must be a table (metric, margin, alpha, model_quality, score_at, noise_sd), got {block!r}")
        check_keys(block, cls.KEYS, kind="decision key", where=where)
        return cls().replace(where=where, **block)

    def replace(self, where: str = "decision", **changes: Any) -> DecisionSettings:
        """A copy with `changes`, every value checked by name (callers drop the flags a user did not give)."""
        check_keys(changes, self.KEYS, kind="decision key", where=where)
        for key, choices in (("metric", DECISION_METRICS), ("model_quality", MODEL_QUALITY), ("score_at", SCORE_AT)):
            if key in changes and changes[key] not in choices:
                raise ConfigError(f"{where}: {key} must be one of {', '.join(map(repr, choices))}, got {changes[key]!r}")
        bounds = {"margin": (0.0, 1.0, True), "alpha": (0.0, 0.5, False), "noise_sd": (0.0, 10.0, False)}
        for key, (lo, hi, closed) in bounds.items():
            if key in changes:
                v = changes[key]
                if not is_number(v) or not (lo <= v <= hi if closed else lo < v < hi):
                    span = f"[{lo}, {hi}]" if closed else f"({lo}, {hi})"
                    raise ConfigError(f"{where}: {key} must be a number in {span}, got {v!r}")
                changes[key] = float(v)
        return replace(self, **changes)

    def with_flags(self, where: str, **flags: Any) -> DecisionSettings:
        """A copy with the command-line flags a user gave (None: not given), each checked by name."""
        return self.replace(where=where, **{k: v for k, v in flags.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> DecisionSettings:
        """From suite.json (older records have none: the defaults)."""
        return cls().replace(where="suite.json decision", **{k: v for k, v in (record or {}).items() if k in cls.KEYS})


@dataclass
class Decision:
    outcome: str
    reasons: list[str]
    settings: DecisionSettings
    level: float  # of the interval (1 − α/k)
    difference: Estimate  # aggregate(candidate) − aggregate(baseline), normalised
    p_value: float  # exact paired permutation test of the difference (Monte Carlo above 16 pairs)
    p_exact: bool
    pairs: int
    tasks: list[str]
    seeds: int
    effect_size: float  # mean / sd of the per-seed paired differences
    seeds_needed: int | None  # seeds for 80% power at that effect (paired t-test, α/k)
    minimum_detectable_effect: float  # at the seeds used, normalised
    warnings: list[str] = field(default_factory=list)
    gate: list[dict[str, Any]] = field(default_factory=list)
    headline: str = ""  # the last step's reason in a few words (verdict lines); `reasons` has them all


    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.outcome, "decision_headline": self.headline, "decision_reasons": self.reasons, "decision_warnings": self.warnings,
            "metric": self.settings.metric, "margin": self.settings.margin, "alpha": self.settings.alpha, "level": self.level,
            "model_quality": self.settings.model_quality, "score_at": self.settings.score_at,
            "difference": self.difference.to_dict(), "permutation_p": self.p_value, "permutation_exact": self.p_exact,
            "pairs": self.pairs, "tasks": self.tasks, "seeds": self.seeds, "effect_size": self.effect_size,
            "seeds_needed": self.seeds_needed, "minimum_detectable_effect": self.minimum_detectable_effect,
            "model_quality_gate": self.gate,
        }  # fmt: skip


def _pts(x: float) -> str:
    return f"{x:+.4f}" if math.isfinite(x) else "n/a"


def decide(
    pairs: Pairs,
    settings: DecisionSettings,
    *,
    candidates: int = 1,
    reps: int = BOOTSTRAP_REPS,
    missing: list[str] | None = None,
    gate_failures: list[str] | None = None,
    gate: list[dict[str, Any]] | None = None,
) -> Decision:
    """The decision on one candidate from its seed pairs (task → seed → (candidate, baseline) normalised score).
    `missing`: tasks of the comparison with no usable run of an arm (named); `gate_failures`: why a compared world
    model does not beat the trivial predictors (empty: it does)."""
    alpha = settings.alpha / max(candidates, 1)
    level = 1 - alpha
    pairs = {t: dict(p) for t, p in pairs.items() if p}
    n_pairs = sum(len(p) for p in pairs.values())
    per_seed = seed_differences(pairs)
    reasons: list[str] = []
    warnings: list[str] = []
    m = settings.metric.upper() if settings.metric == "iqm" else settings.metric
    if not pairs:
        diff, p, exact = Estimate(math.nan, math.nan, math.nan), math.nan, True
        outcome = "inconclusive"
        reasons.append("no task has a finished run of both arms with the same seed: nothing to compare")
        headline = "no seed pairs to compare"
    else:
        diff = paired_difference_ci(pairs, settings.metric, reps=reps, level=level)
        p, exact = paired_permutation_p(pairs, settings.metric, reps=reps)
        where = (f"Δ {m} = {_pts(diff.value)} [{_pts(diff.low)}, {_pts(diff.high)}] ({100 * level:.1f}% paired stratified bootstrap, "
                 f"{n_pairs} seed pairs on {len(pairs)} task{'s' * (len(pairs) != 1)}); margin δ = {settings.margin:g}")  # fmt: skip
        smallest = 2.0 / 2**n_pairs
        test = f"exact paired permutation test p = {p:.3g}" if exact else f"paired permutation test p = {p:.3g} (Monte Carlo)"
        interval = f"Δ {m} {_pts(diff.value)} [{_pts(diff.low)}, {_pts(diff.high)}]"
        if diff.low > 0:
            outcome, headline = "better", f"{interval}, p = {p:.3g}"
            reasons.append(f"{where}: the lower bound is above 0")
            if not p < alpha:
                outcome, headline = "non-inferior", f"{interval} (above 0, but the exact test's p = {p:.3g} is not below {alpha:g})"
                reasons.append(f"not 'better': the {test} is not below α = {alpha:g}" + (f" (with {n_pairs} pairs no p can be below {smallest:.3g})" if smallest >= alpha else ""))
        elif diff.low > -settings.margin:
            outcome, headline = "non-inferior", f"{interval} lies above −δ = −{settings.margin:g}"
            reasons.append(f"{where}: the lower bound is above −δ but not above 0")
        elif diff.high < -settings.margin:
            outcome, headline = "worse", f"{interval} lies below −δ = −{settings.margin:g}, p = {p:.3g}"
            reasons.append(f"{where}: the upper bound is below −δ")
            if not p < alpha:
                outcome, headline = "inconclusive", f"{interval} lies below −δ, but {n_pairs} seed pairs cannot confirm it (exact p = {p:.3g})"
                reasons.append(f"not 'worse': the {test} is not below α = {alpha:g}" + (f" (with {n_pairs} pairs no p can be below {smallest:.3g})" if smallest >= alpha else ""))
        else:
            outcome, headline = "inconclusive", f"{interval} is too wide for {n_pairs} seed pairs (reaches below −δ = −{settings.margin:g}" + (" and above 0)" if diff.high > 0 else ")")
            reasons.append(f"{where}: the interval reaches below −δ" + (" and above 0" if diff.high > 0 else ""))
    if candidates > 1:
        reasons.append(f"α = {settings.alpha:g} split over {candidates} candidates (Bonferroni): each decision at α = {alpha:.3g}")
    if missing and outcome in ("better", "non-inferior"):
        reasons.append(f"not '{outcome}': no usable run of an arm on {', '.join(missing)} (the decision must cover every task)")
        outcome, headline = "inconclusive", f"would be {outcome}, but {len(missing)} task(s) have no usable run of an arm"
    if gate_failures:
        if settings.model_quality == "gate" and outcome in ("better", "non-inferior"):
            reasons.append(f"not '{outcome}': the model-quality gate fails — " + "; ".join(gate_failures))
            models = sorted({f.split(":")[0] for f in gate_failures})
            outcome, headline = "inconclusive", (f"would be {outcome} ({headline}), but world models do not beat the trivial predictors: "
                                                 + ", ".join(models))  # fmt: skip
        else:
            warnings.append("model-quality gate: " + "; ".join(gate_failures))
    n = len(per_seed)
    values = list(per_seed.values())
    sd = statistics.stdev(values) if n > 1 else math.nan
    mean = statistics.mean(values) if values else math.nan
    if n > 1 and sd > 0:
        effect = mean / sd
        needed = seeds_needed(effect, alpha, POWER)
    else:
        effect = math.inf if (n > 1 and mean != 0) else math.nan
        needed = 2 if effect == math.inf else None
    mde = minimum_detectable_effect(n, sd, alpha, POWER) if n > 1 else math.nan
    return Decision(outcome, reasons, settings, level, diff, p, exact, n_pairs, sorted(pairs), n, effect, needed, mde, warnings, gate or [], headline)


def power_warning(seeds: int, settings: DecisionSettings) -> str | None:
    """`pwmbench check`: a warning when `seeds` seed pairs cannot detect a difference of the margin at the suite's
    expected noise (80% power, paired t-test), with the seeds that could; None when they can."""
    mde = minimum_detectable_effect(seeds, settings.noise_sd, settings.alpha, POWER)
    if settings.margin <= 0 or (math.isfinite(mde) and mde <= settings.margin):
        return None
    need = seeds_needed(settings.margin / settings.noise_sd, settings.alpha, POWER)
    return (f"{seeds} seed{'s' * (seeds != 1)} detect a paired difference of {mde:.3g} normalised points with 80% power at the "
            f"expected noise (noise_sd = {settings.noise_sd:g}); the margin δ = {settings.margin:g} needs {need} seeds — expect "
            "'inconclusive' unless the effect is larger")  # fmt: skip

"""Score a results directory against the seed's acceptance criteria (§6.3) and its "ideal" targets.

Reads only the Arrow tables (and suite.json for the baseline and the parity reports): never the models.
A comparison is one candidate variant against the baseline, task by task on the final evaluation return
(mean over seeds). Required criteria decide the exit code; ideal ones are reported beside them.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwmbench.errors import PwmbenchError
from pwmbench.results import read_dir
from pwmbench.stats import Estimate, aggregate, bootstrap_ci, probability_of_improvement, welch, welch_power

WELCH_ALPHA = 0.05


class UnusableResults(PwmbenchError):
    """The results directory cannot be scored (no runs, no baseline, ...)."""


@dataclass(frozen=True)
class Criterion:
    name: str
    value: str
    threshold: str
    passed: bool | None  # None: not applicable / not measurable
    required: bool

    def to_dict(self) -> dict[str, Any]:
        return {"criterion": self.name, "value": self.value, "threshold": self.threshold, "pass": self.passed, "required": self.required}


@dataclass
class TaskComparison:
    task: str
    baseline: list[float]
    candidate: list[float]
    baseline_time: float
    candidate_time: float
    p_value: float
    baseline_steps: float | None = None
    candidate_steps: float | None = None

    @property
    def baseline_mean(self) -> float:
        return statistics.mean(self.baseline) if self.baseline else math.nan

    @property
    def candidate_mean(self) -> float:
        return statistics.mean(self.candidate) if self.candidate else math.nan

    @staticmethod
    def _std(x: list[float]) -> float:
        return statistics.stdev(x) if len(x) > 1 else 0.0

    @property
    def baseline_std(self) -> float:
        return self._std(self.baseline)

    @property
    def candidate_std(self) -> float:
        return self._std(self.candidate)

    @property
    def delta_pct(self) -> float:
        b = self.baseline_mean
        return 100.0 * (self.candidate_mean - b) / abs(b) if b else math.nan

    @property
    def speed_ratio(self) -> float:
        return self.candidate_time / self.baseline_time if self.baseline_time else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "baseline_mean": self.baseline_mean, "baseline_std": self.baseline_std, "baseline_returns": self.baseline,
            "candidate_mean": self.candidate_mean, "candidate_std": self.candidate_std, "candidate_returns": self.candidate,
            "delta_pct": self.delta_pct, "baseline_time_s": self.baseline_time, "candidate_time_s": self.candidate_time,
            "speed_ratio": self.speed_ratio, "welch_p": self.p_value,
            "baseline_steps_to_threshold": self.baseline_steps, "candidate_steps_to_threshold": self.candidate_steps,
        }


@dataclass
class Verdict:
    baseline: str
    candidate: str
    tasks: list[TaskComparison]
    criteria: list[Criterion]
    aggregates: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria if c.required)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "passed": self.passed,
            "criteria": [c.to_dict() for c in self.criteria],
            "tasks": [t.to_dict() for t in self.tasks],
            "aggregates": self.aggregates,
            "notes": self.notes,
        }


def load_results(results: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    results = Path(results)
    try:
        runs = read_dir(results, "run.arrow").to_pylist()
    except FileNotFoundError as exc:
        raise UnusableResults(str(exc)) from None
    suite_file = results / "suite.json"
    suite = json.loads(suite_file.read_text()) if suite_file.exists() else {}
    return runs, suite


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else math.nan


def compare(runs: list[dict[str, Any]], suite: dict[str, Any], candidate: str | None = None, baseline: str | None = None, reps: int = 2000) -> Verdict:
    variants = sorted({r["variant"] for r in runs})
    baseline = baseline or suite.get("baseline") or (variants[0] if variants else None)
    if baseline not in variants:
        raise UnusableResults(f"baseline {baseline!r} has no runs (variants with runs: {', '.join(variants) or 'none'})")
    matched = {v["name"] for v in suite.get("variants", []) if v.get("declared")}
    others = [v for v in variants if v != baseline and v not in matched]
    candidate = candidate or (others[0] if others else None)
    if candidate not in variants or candidate == baseline:
        raise UnusableResults(f"no candidate variant to compare with {baseline!r} (variants: {', '.join(variants)})")

    by = defaultdict(list)
    for r in runs:
        by[(r["task"], r["variant"])].append(r)
    tasks = sorted({r["task"] for r in runs if r["variant"] in (baseline, candidate)})
    comparisons = []
    for task in tasks:
        base_ok = [r for r in by[(task, baseline)] if r["status"] == "ok" and r["final_return"] is not None]
        cand_ok = [r for r in by[(task, candidate)] if r["status"] == "ok" and r["final_return"] is not None]
        b = [r["final_return"] for r in sorted(base_ok, key=lambda r: r["seed"])]
        c = [r["final_return"] for r in sorted(cand_ok, key=lambda r: r["seed"])]
        steps_b = [r["steps_to_threshold"] for r in base_ok if r.get("threshold") is not None]
        steps_c = [r["steps_to_threshold"] for r in cand_ok if r.get("threshold") is not None]
        comparisons.append(
            TaskComparison(
                task, b, c,
                _mean([r["wall_s"] for r in base_ok]), _mean([r["wall_s"] for r in cand_ok]),
                welch(c, b)[1],
                _steps(steps_b), _steps(steps_c),
            )
        )
    criteria, aggregates, notes = _criteria(comparisons, runs, suite, baseline, candidate, matched, by, reps)
    return Verdict(baseline, candidate, comparisons, criteria, aggregates, notes)


def _steps(values: list[float | None]) -> float | None:
    """Mean steps to threshold over seeds; a seed that never reached it counts as not reached (None overall)."""
    if not values or any(v is None for v in values):
        return None
    return statistics.mean(values)


def _criteria(comparisons, runs, suite, baseline, candidate, matched, by, reps):
    notes: list[str] = []
    both = [t for t in comparisons if t.baseline and t.candidate]
    wins = sum(t.candidate_mean >= t.baseline_mean for t in both)
    crit = [Criterion("flow ≥ baseline final return (mean over seeds) on ≥ 50% of tasks", f"{wins}/{len(both)} tasks", "≥ 50%", bool(both) and wins >= 0.5 * len(both), True)]

    gaps = [abs(info["gap_pct"][candidate]) for info in suite.get("parity", {}).values() if candidate in info.get("gap_pct", {})]
    if not gaps:  # no suite record: use the counts in the run rows
        for task in {t.task for t in comparisons}:
            pb = [r["params_total"] for r in by[(task, baseline)]]
            pc = [r["params_total"] for r in by[(task, candidate)]]
            if pb and pc:
                gaps.append(abs(100.0 * (pc[0] - pb[0]) / pb[0]))
    tolerance = float(suite.get("parity_tolerance", 2.0))
    max_gap = max(gaps) if gaps else math.nan
    crit.append(Criterion("parameter parity gap", f"{max_gap:.3f}%", f"≤ {tolerance}%", bool(gaps) and max_gap <= tolerance, True))

    relevant = [r for r in runs if r["variant"] in (baseline, candidate)]
    bad = [f"{r['task']}/{r['variant']}/{r['seed']}: {r['status']}" for r in relevant if r["status"] != "ok"]
    crit.append(Criterion("no NaN, divergence or crash", f"{len(bad)} of {len(relevant)} runs" + (f" ({'; '.join(bad[:3])})" if bad else ""), "0", not bad, True))

    # ---- ideal targets
    sig = [t for t in both if t.candidate_mean > t.baseline_mean and t.p_value < WELCH_ALPHA]
    seeds = min((min(len(t.baseline), len(t.candidate)) for t in both), default=0)
    crit.append(Criterion(f"flow significantly better (Welch p < {WELCH_ALPHA}) on most tasks", f"{len(sig)}/{len(both)} tasks", "> 50%", bool(both) and len(sig) > 0.5 * len(both), False))
    if seeds:
        notes.append(f"Welch's t-test with {seeds} seeds per arm has power ≈ {welch_power(seeds):.2f} to detect a 1-σ difference at α = {WELCH_ALPHA}: a non-significant p is weak evidence of no difference.")

    norm_b, norm_c = {}, {}
    for t in both:
        # Per-task scale shared by both arms: the largest |final return| any run reached on the task. Dividing by the
        # baseline's mean instead blows up when the baseline sits near zero (an untrained cheetah scores ≈ 1).
        scale = max(abs(x) for x in (*t.baseline, *t.candidate)) or 1.0
        norm_b[t.task] = [x / scale for x in t.baseline]
        norm_c[t.task] = [x / scale for x in t.candidate]
    aggregates: dict[str, dict[str, Any]] = {}
    if both:
        agg_b, agg_c = aggregate(norm_b, reps=reps), aggregate(norm_c, reps=reps)
        poi: Estimate = bootstrap_ci(probability_of_improvement, norm_c, norm_b, reps=reps)
        aggregates = {
            "normalisation": "final return / max |final return| over both arms' runs, per task",
            "baseline": {k: v.to_dict() for k, v in agg_b.items()},
            "candidate": {k: v.to_dict() for k, v in agg_c.items()},
            "probability_of_improvement": poi.to_dict(),
        }
        crit.append(Criterion("aggregate IQM (normalised) higher than the baseline's", f"{agg_c['iqm'].value:.3f} [{agg_c['iqm'].low:.3f}, {agg_c['iqm'].high:.3f}] vs {agg_b['iqm'].value:.3f}", "> baseline", agg_c["iqm"].value > agg_b["iqm"].value, False))
        crit.append(Criterion("probability of improvement P(flow > baseline)", f"{poi.value:.2f} [{poi.low:.2f}, {poi.high:.2f}]", "> 0.5", poi.value > 0.5, False))

    with_steps = [t for t in both if t.baseline_steps is not None or t.candidate_steps is not None]
    if with_steps:
        faster = sum(t.candidate_steps is not None and (t.baseline_steps is None or t.candidate_steps <= t.baseline_steps) for t in with_steps)
        crit.append(Criterion("sample efficiency: fewer env steps to the return threshold", f"{faster}/{len(with_steps)} tasks", "≥ 50%", faster >= 0.5 * len(with_steps), False))
    stable = sum(t.candidate_std <= t.baseline_std for t in both)
    crit.append(Criterion("stability: seed std of flow ≤ baseline's", f"{stable}/{len(both)} tasks", "≥ 50%", bool(both) and stable >= 0.5 * len(both), False))
    for m in sorted(matched):
        pairs = [(t.candidate_mean, _mean([r["final_return"] for r in by[(t.task, m)] if r["status"] == "ok" and r["final_return"] is not None])) for t in both]
        pairs = [(c, b) for c, b in pairs if b == b]
        if pairs:
            won = sum(c >= b for c, b in pairs)
            crit.append(Criterion(f"compute-matched: flow ≥ {m} on ≥ 50% of tasks", f"{won}/{len(pairs)} tasks", "≥ 50%", won >= 0.5 * len(pairs), False))
    esnr = {v: [r["esnr_global_median"] for r in runs if r["variant"] == v and r["status"] == "ok" and r.get("esnr_global_median") is not None] for v in (baseline, candidate)}
    if esnr[baseline] and esnr[candidate]:
        b_esnr, c_esnr = statistics.median(esnr[baseline]), statistics.median(esnr[candidate])
        crit.append(Criterion("actor-gradient ESNR (global, median over runs) higher than the baseline's", f"{c_esnr:.3g} vs {b_esnr:.3g}", "> baseline", c_esnr > b_esnr, False))
    ratios = [t.speed_ratio for t in both if t.speed_ratio == t.speed_ratio]
    mean_ratio = statistics.mean(ratios) if ratios else math.nan
    crit.append(Criterion("wall-clock ratio flow / baseline", f"{mean_ratio:.2f}×", "≤ 2×", bool(ratios) and mean_ratio <= 2.0, False))
    return crit, aggregates, notes


def format_verdict(verdict: Verdict) -> str:
    rows = [("criterion", "value", "threshold", "result", "")]
    for c in verdict.criteria:
        result = "n/a" if c.passed is None else ("pass" if c.passed else "FAIL")
        rows.append((c.name, c.value, c.threshold, result, "required" if c.required else "ideal"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f"{verdict.candidate} vs {verdict.baseline}"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines += [f"note: {n}" for n in verdict.notes]
    lines.append("VERDICT: " + ("accepted — every required criterion passes" if verdict.passed else "not accepted — a required criterion fails"))
    return "\n".join(lines)

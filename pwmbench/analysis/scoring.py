"""Score a results directory: every candidate variant against the baseline, on fixed per-task score references.

Reads only the Arrow tables and suite.json, never the models. The protocol it implements is docs/protocol.md:

- Each task is normalised on a scale it declares (`TaskSpec.score`, `random_score`, `reference_score`, recorded in
  every run row): 0 = random, 1 = the reference. A task that declares none gets a fallback scale that depends on the
  baseline only (its mean first-evaluation return → 0, its best final score → 1), flagged wherever it is used, so the
  same baseline has the same scores whichever candidate it meets.
- A run that failed, diverged or ended without a finite score is a failed run: counted, named and failing the required
  "no NaN, divergence or crash" criterion — never silently dropped, trimmed or resampled.
- The first required criterion is the candidate's *decision* (pwmbench/analysis/decision.py: better / non-inferior / worse /
  inconclusive from a paired interval against a margin, gated on model quality); parity and "no NaN, divergence or
  crash" are the others. Ideal ones are reported beside them. Every non-baseline variant (sweep points,
  compute-matched variants) gets its own verdict; `score_all` returns them together with a summary.
- Per task: the paired sign-flip test (and Wilcoxon's from 6 pairs), Holm-adjusted over every (candidate × task) test
  of one scoring; Welch's unpaired test stays as a descriptive column.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwmbench.analysis import quality_gate
from pwmbench.analysis.decision import Decision, DecisionSettings, decide
from pwmbench.analysis.learning_check import Learning, format_learning, learning_check, reading_line
from pwmbench.analysis.paired_stats import holm, sign_flip_p, wilcoxon_p
from pwmbench.analysis.stats import (
    BOOTSTRAP_REPS,
    Estimate,
    aggregate,
    iqm,
    mean_difference_ci,
    probability_of_improvement_ci,
    welch,
)
from pwmbench.errors import PwmbenchError, suggest

PCT_MIN_BASELINE = 0.05  # Δ% is shown only when the baseline's normalised score is at least this far from 0
PROTOCOL = "docs/protocol.md"


class UnusableResults(PwmbenchError):
    """The results directory cannot be scored (no runs, no baseline, ...)."""


# --------------------------------------------------------------------------------------------- task scales
@dataclass(frozen=True)
class TaskScale:
    """How one task's raw numbers become normalised scores: (raw − low) / (high − low)."""

    task: str
    kind: str  # "return" or "success" (what the raw number is)
    low: float
    high: float
    fixed: bool  # declared by the task; False: the baseline-anchored fallback
    source: str

    def normalise(self, raw: float) -> float:
        return (raw - self.low) / (self.high - self.low)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "kind": self.kind, "random": self.low, "reference": self.high, "fixed": self.fixed, "source": self.source}


def raw_score(row: dict[str, Any]) -> float | None:
    """What a run is scored on: its success rate for tasks scored by success, else its final evaluation return."""
    if row.get("score_kind") == "success":
        value = row.get("final_success")
        return row.get("final_score") if value is None else value
    return row.get("final_return")


def run_failure(row: dict[str, Any]) -> str | None:
    """Why a run cannot be scored (None when it can)."""
    if row["status"] != "ok":
        reason = (row.get("reason") or "").strip().splitlines()
        return f"{row['status']}" + (f" ({reason[0][:120]})" if reason else "")
    if row.get("_no_peak"):
        return "no evaluation curve to take the peak from (score_at = 'peak')"
    value = raw_score(row)
    if value is None:
        return "no evaluation recorded"
    if not math.isfinite(value):
        return f"non-finite final score {value}"
    return None


def _curve_value(row: dict[str, Any], success: bool) -> float | None:
    value = row.get("eval_success") if success else row.get("eval_return")
    return float(value) if value is not None and math.isfinite(value) else None


def at_peak(runs: list[dict[str, Any]], curves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PWM's convention (its results notebook, `process_*_data_iqm` then `argmax`): each (task, variant) is scored at
    the peak of its seed-aggregated evaluation curve — the evaluation step where the IQM over its finished seeds
    (rliable's; the mean for 3 seeds) is highest, the earliest on a tie — and each run at its value there. Returns
    copies of the run rows with final_return / final_success / final_score replaced and `peak_at` (env steps, or policy
    iterations for task-set members); a finished run without a curve value at that step is marked so that it counts
    as a failed run (never guessed)."""
    points: dict[tuple[str, str, int], dict[int, float]] = defaultdict(dict)
    kinds = {(r["task"], r["variant"]): r.get("score_kind") == "success" for r in runs}
    for c in curves:
        if c.get("phase") in ("pretrain", "probe") or (c["task"], c["variant"]) not in kinds:
            continue
        value = _curve_value(c, kinds[(c["task"], c["variant"])])
        if value is not None:
            x = c["env_steps"] if c.get("env_steps") is not None else c["epoch"]  # task-set members: policy iterations
            points[(c["task"], c["variant"], int(c["seed"]))][int(x)] = value
    out = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["task"], r["variant"])].append(r)
    for (task, variant), rows in groups.items():
        ok = [r for r in rows if r["status"] == "ok" and points.get((task, variant, int(r["seed"])))]
        steps = sorted(set.intersection(*(set(points[(task, variant, int(r["seed"]))]) for r in ok))) if ok else []
        peak = max(steps, key=lambda x: (iqm([points[(task, variant, int(r["seed"]))][x] for r in ok]), -x)) if steps else None
        for r in rows:
            row = dict(r)
            curve = points.get((task, variant, int(r["seed"])), {})
            if r["status"] == "ok":
                if peak is None or peak not in curve:
                    row["_no_peak"] = True
                else:
                    key = "final_success" if kinds[(task, variant)] else "final_return"
                    row[key] = row["final_score"] = curve[peak]
                    row["peak_at"] = peak
            out.append(row)
    return out


def _declared(task: str, rows: list[dict[str, Any]]) -> TaskScale | None:
    """The task's own references: from the run rows (schema ≥ 4), else from the installed task plugin."""
    recorded = next((r for r in rows if r.get("score_kind")), None)
    if recorded is not None:
        kind, low, high, source = recorded["score_kind"], recorded.get("score_random"), recorded.get("score_reference"), recorded.get("score_source") or ""
    else:
        try:
            from pwmbench.api import task as get_task

            spec = get_task(task).spec
        except Exception:  # not installed or not a registered name (task-set members): no declaration to use
            return None
        kind, low, high, source = spec.score, spec.random_score, spec.reference_score, spec.score_source
    if kind == "success":
        return TaskScale(task, "success", 0.0, 1.0, True, source or "success rate")
    if low is not None and high is not None and high != low:
        return TaskScale(task, "return", float(low), float(high), True, source)
    return None


def _first_evaluations(curves: list[dict[str, Any]]) -> dict[tuple[str, str, int], float]:
    """(task, variant, seed) → the run's first evaluation return (policy phase: an untrained actor)."""
    first: dict[tuple[str, str, int], tuple[int, float]] = {}
    for r in curves:
        value = r.get("eval_return")
        if r.get("phase") == "pretrain" or value is None or not math.isfinite(value):
            continue
        key = (r["task"], r["variant"], int(r["seed"]))
        if key not in first or r["epoch"] < first[key][0]:
            first[key] = (r["epoch"], value)
    return {k: v for k, (_, v) in first.items()}


def task_scales(runs: list[dict[str, Any]], curves: list[dict[str, Any]] | None, baseline: str) -> dict[str, TaskScale]:
    """Every task's scale. Fixed where the task declares references; otherwise the flagged fallback, anchored on the
    baseline alone: low = its mean first-evaluation return, high = its best finished run (low + max(|low|, 1) if the
    baseline never improved). Tasks where the baseline has no finished run and no references get no scale."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_task[r["task"]].append(r)
    firsts = _first_evaluations(curves or [])
    scales = {}
    for task, rows in sorted(by_task.items()):
        declared = _declared(task, rows)
        if declared is not None:
            scales[task] = declared
            continue
        base = [r for r in rows if r["variant"] == baseline and run_failure(r) is None]
        if not base:
            continue
        starts = [firsts[(task, baseline, int(r["seed"]))] for r in base if (task, baseline, int(r["seed"])) in firsts]
        low = statistics.mean(starts) if starts else 0.0
        high = max(raw_score(r) for r in base)
        detail = f"fallback: {baseline}'s mean first evaluation → 0" if starts else f"fallback: 0 (no evaluation curve of {baseline}) → 0"
        if high > low:
            detail += f", {baseline}'s best final return → 1"
        else:
            high = low + max(abs(low), 1.0)
            detail += f"; {baseline} never improved on it, so the unit is max(|that|, 1)"
        scales[task] = TaskScale(task, "return", low, high, False, detail)
    return scales


# --------------------------------------------------------------------------------------------- comparisons
@dataclass(frozen=True)
class Criterion:
    name: str
    value: str
    threshold: str
    passed: bool | None  # None: not applicable / not measurable
    required: bool

    def to_dict(self) -> dict[str, Any]:
        return {"criterion": self.name, "value": self.value, "threshold": self.threshold, "pass": self.passed, "required": self.required}


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else math.nan


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class TaskComparison:
    """One task: the finished runs' raw scores of both arms (by seed), their failures, times and tests."""

    task: str
    scale: TaskScale | None
    baseline: list[float]
    candidate: list[float]
    baseline_time: float
    candidate_time: float
    p_value: float
    baseline_steps: float | None = None
    candidate_steps: float | None = None
    baseline_failed: list[str] = field(default_factory=list)
    candidate_failed: list[str] = field(default_factory=list)
    baseline_seeds: list[int] = field(default_factory=list)  # the seed of each entry of `baseline`
    candidate_seeds: list[int] = field(default_factory=list)
    sign_flip_p: float = math.nan  # paired tests over the seeds both arms finished (set by score_all)
    wilcoxon_p: float = math.nan
    holm_p: float = math.nan  # sign_flip_p, Holm-adjusted over every (candidate × task) test of the scoring

    baseline_mean = property(lambda self: _mean(self.baseline))
    candidate_mean = property(lambda self: _mean(self.candidate))
    baseline_std = property(lambda self: _std(self.baseline))
    candidate_std = property(lambda self: _std(self.candidate))

    def _norm(self, values: list[float]) -> list[float]:
        return [self.scale.normalise(x) for x in values] if self.scale is not None else []

    @property
    def baseline_scores(self) -> list[float]:
        return self._norm(self.baseline)

    @property
    def candidate_scores(self) -> list[float]:
        return self._norm(self.candidate)

    @property
    def baseline_score(self) -> float:
        return _mean(self.baseline_scores)

    @property
    def candidate_score(self) -> float:
        return _mean(self.candidate_scores)

    @property
    def comparable(self) -> bool:
        return bool(self.scale is not None and self.baseline and self.candidate)

    def pairs(self) -> dict[int, tuple[float, float]]:
        """seed → (candidate, baseline) normalised score, for the seeds both arms finished."""
        if self.scale is None:
            return {}
        base = dict(zip(self.baseline_seeds, self.baseline_scores))
        return {s: (c, base[s]) for s, c in zip(self.candidate_seeds, self.candidate_scores) if s in base}

    @property
    def delta_points(self) -> float:
        """100 × (candidate − baseline) normalised mean score: a change on the task's own 0–100 scale."""
        return 100.0 * (self.candidate_score - self.baseline_score) if self.comparable else math.nan

    @property
    def delta_pct(self) -> float:
        """Relative change of the normalised mean, only where the baseline is away from zero (NaN otherwise)."""
        b = self.baseline_score
        if not self.comparable or abs(b) < PCT_MIN_BASELINE:
            return math.nan
        return 100.0 * (self.candidate_score - b) / abs(b)

    @property
    def speed_ratio(self) -> float:
        return self.candidate_time / self.baseline_time if self.baseline_time else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "scale": self.scale.to_dict() if self.scale else None,
            "baseline_mean": self.baseline_mean, "baseline_std": self.baseline_std, "baseline_returns": self.baseline,
            "candidate_mean": self.candidate_mean, "candidate_std": self.candidate_std, "candidate_returns": self.candidate,
            "baseline_score": self.baseline_score, "candidate_score": self.candidate_score,
            "delta_points": self.delta_points, "delta_pct": self.delta_pct,
            "baseline_failed": self.baseline_failed, "candidate_failed": self.candidate_failed,
            "baseline_time_s": self.baseline_time, "candidate_time_s": self.candidate_time,
            "speed_ratio": self.speed_ratio, "welch_p": self.p_value, "pairs": len(self.pairs()),
            "sign_flip_p": self.sign_flip_p, "wilcoxon_p": self.wilcoxon_p, "sign_flip_p_holm": self.holm_p,
            "baseline_steps_to_threshold": self.baseline_steps, "candidate_steps_to_threshold": self.candidate_steps,
        }  # fmt: skip


COMPLETE = "results complete (every planned cell once, readable, where it belongs)"


@dataclass
class Verdict:
    baseline: str
    candidate: str
    tasks: list[TaskComparison]
    criteria: list[Criterion]
    aggregates: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    decision: Decision | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria if c.required)

    @property
    def status(self) -> str:
        """"accepted"; "inconclusive" (nothing fails, but the decision cannot be made yet — or the results are not the
        suite's planned cells, complete); "not accepted"."""
        if self.passed:
            return "accepted"
        failing = self.failed_required
        if not all(c.name.startswith("decision") or c.name == COMPLETE for c in failing):
            return "not accepted"
        decision_failed = any(c.name.startswith("decision") for c in failing)
        if decision_failed and (self.decision is None or self.decision.outcome != "inconclusive"):
            return "not accepted"
        return "inconclusive"

    @property
    def failed_required(self) -> list[Criterion]:
        return [c for c in self.criteria if c.required and not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "passed": self.passed,
            "status": self.status,
            **(self.decision.to_dict() if self.decision else {}),
            "failed_required": [c.name for c in self.failed_required],
            "criteria": [c.to_dict() for c in self.criteria],
            "tasks": [t.to_dict() for t in self.tasks],
            "aggregates": self.aggregates,
            "notes": self.notes,
        }


@dataclass
class Scoring:
    """Every candidate's verdict against one baseline, on one set of task scales."""

    baseline: str
    scales: dict[str, TaskScale]
    verdicts: list[Verdict]
    reps: int
    baseline_failed: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # what the completeness audit found (analysis/completeness.py)
    learning: list[Learning] = field(default_factory=list)  # has each variant learned at all (analysis/learning_check.py)
    seeds: int = 0  # distinct seeds among the runs
    settings: DecisionSettings = field(default_factory=DecisionSettings)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    @property
    def exit_code(self) -> int:
        """0 every candidate accepted; 1 one is not accepted (fails a required criterion, or is worse); 3 none fails
        but at least one is inconclusive."""
        statuses = {v.status for v in self.verdicts}
        return 0 if statuses == {"accepted"} else (1 if "not accepted" in statuses else 3)

    @property
    def reading(self) -> str:
        """What the result may be used for (analysis/learning_check.py), one line."""
        return reading_line(self.learning, self.exit_code, self.seeds)

    def verdict(self, candidate: str) -> Verdict:
        return next(v for v in self.verdicts if v.candidate == candidate)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "decision_settings": self.settings.to_dict(),
            "bootstrap_resamples": self.reps,
            "protocol": PROTOCOL,
            "scales": {t: s.to_dict() for t, s in self.scales.items()},
            "verdicts": [v.to_dict() for v in self.verdicts],
            "incomplete": self.incomplete,
            "learning": [x.to_dict() for x in self.learning],
            "reading": self.reading,
        }


def load_results(results: str | Path, curves: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]] | tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """(runs, suite record) — and the curves rows with `curves=True` (the fallback scale reads first evaluations).
    Every run.arrow is checked against the suite's plan and its directory (analysis/completeness.py); what is
    missing, unreadable, empty, misplaced, stray or duplicated is left out and listed in the record's "incomplete"."""
    from pwmbench.analysis.completeness import load_checked

    results = Path(results)
    suite_file = results / "suite.json"
    try:
        suite = json.loads(suite_file.read_text()) if suite_file.exists() else {}
    except ValueError as exc:
        raise UnusableResults(f"{suite_file} is not valid JSON ({exc}): it names the baseline and the parity records; re-run the suite to rewrite it") from None
    if not isinstance(suite, dict):
        raise UnusableResults(f"{suite_file} holds {type(suite).__name__}, not a suite record: re-run the suite to rewrite it")
    if not results.is_dir():
        raise UnusableResults(f"{results} is not a directory of results")
    loaded = load_checked(results, suite, curves)
    if not loaded.runs:
        why = "; ".join(loaded.problems[:5]) or "none found"
        raise UnusableResults(f"no usable run.arrow under {results} ({why})")
    if loaded.problems:  # every problem named, never guessed at
        suite = {**suite, "incomplete": loaded.problems}
    return (loaded.runs, suite, loaded.curves) if curves else (loaded.runs, suite)


def resolve_variants(runs: list[dict[str, Any]], suite: dict[str, Any], baseline: str | None, candidates: list[str] | None) -> tuple[str, list[str]]:
    """The baseline (given, else the suite's) and the candidates (given, else every other variant with runs)."""
    variants = sorted({r["variant"] for r in runs})
    if baseline is None:
        baseline = suite.get("baseline")
        if baseline is None:
            raise UnusableResults(
                f"no baseline: suite.json is missing or names none, and --baseline was not given (variants: {', '.join(variants)}). "
                "Pass --baseline NAME; pwmbench never guesses it, since the verdict depends on it."
            )
    if baseline not in variants:
        raise UnusableResults(f"baseline {baseline!r} has no runs (variants with runs: {', '.join(variants) or 'none'})")
    others = [v for v in variants if v != baseline]
    for c in candidates or []:
        if c not in others:
            hint = suggest(c, others)
            raise UnusableResults(f"candidate {c!r} has no runs to compare with {baseline!r}{f' — did you mean {hint!r}?' if hint else ''} (candidates: {', '.join(others) or 'none'})")
    chosen = list(candidates) if candidates else others
    if not chosen:
        raise UnusableResults(f"no candidate variant to compare with {baseline!r} (variants: {', '.join(variants)})")
    return baseline, chosen


def score_all(
    runs: list[dict[str, Any]],
    suite: dict[str, Any],
    curves: list[dict[str, Any]] | None = None,
    *,
    candidates: list[str] | None = None,
    baseline: str | None = None,
    reps: int = BOOTSTRAP_REPS,
    settings: DecisionSettings | None = None,
) -> Scoring:
    """Each candidate against the baseline (one Verdict each, with its decision), all on the same task scales.
    `settings`: the decision's settings (default: the suite record's [decision], else the defaults)."""
    try:
        baseline, chosen = resolve_variants(runs, suite, baseline, candidates)
    except UnusableResults as exc:  # missing variants may be the left-out files' runs: say which they are
        if not suite.get("incomplete"):
            raise
        raise UnusableResults(f"{exc}; " + "; ".join(suite["incomplete"][:10])) from None
    settings = settings if settings is not None else DecisionSettings.from_record(suite.get("decision"))
    final_runs = runs  # the learning check compares the final evaluation with the untrained one, whatever is scored
    if settings.score_at == "peak":
        if not curves:
            raise UnusableResults("score_at = 'peak' needs the evaluation curves (curves.arrow), and none could be read")
        runs = at_peak(runs, curves)
    scales = task_scales(runs, curves, baseline)
    cache: dict[tuple[str, tuple[str, ...]], dict[str, Estimate]] = {}
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by[(r["task"], r["variant"])].append(r)
    comparisons = {c: _comparisons(by, sorted({r["task"] for r in runs if r["variant"] in (baseline, c)}), scales, baseline, c) for c in chosen}
    _paired_tests([t for tasks in comparisons.values() for t in tasks])  # one Holm family: every candidate × task
    verdicts = [_verdict(runs, by, suite, baseline, c, comparisons[c], reps, cache, settings, len(chosen)) for c in chosen]
    failed = [f"{r['task']}/seed {r['seed']}: {why}" for r in runs if r["variant"] == baseline and (why := run_failure(r))]
    scoring = Scoring(baseline, scales, verdicts, reps, failed, settings=settings)
    scoring.incomplete = list(suite.get("incomplete", []))
    scoring.learning = learning_check(final_runs, scales, [baseline, *chosen], reps)
    scoring.seeds = len({r["seed"] for r in runs})
    for v in verdicts:  # a verdict on results that are not the suite's planned cells, once each, cannot be accepted
        v.criteria.append(Criterion(COMPLETE, f"{len(scoring.incomplete)} problem(s)" if scoring.incomplete else "every planned cell, once, where it belongs",
                                    "none", not scoring.incomplete, True))  # fmt: skip
        v.notes += scoring.incomplete
    return scoring


def _paired_tests(tasks: list[TaskComparison]) -> None:
    """Per (candidate, task): the sign-flip test over seed pairs, Wilcoxon's where n allows, and the sign-flip p
    Holm-adjusted over every such test of the scoring (one family: all candidates × tasks)."""
    tested = []
    for t in tasks:
        pairs = t.pairs()
        if pairs:
            c, b = [x for x, _ in pairs.values()], [y for _, y in pairs.values()]
            t.sign_flip_p, t.wilcoxon_p = sign_flip_p(c, b), wilcoxon_p(c, b)
            tested.append(t)
    for t, adjusted in zip(tested, holm([t.sign_flip_p for t in tested])):
        t.holm_p = adjusted


def compare(runs: list[dict[str, Any]], suite: dict[str, Any], candidate: str | None = None, baseline: str | None = None,
            reps: int = BOOTSTRAP_REPS, curves: list[dict[str, Any]] | None = None, settings: DecisionSettings | None = None) -> Verdict:  # fmt: skip
    """One candidate's verdict (the first other variant when not named)."""
    scoring = score_all(runs, suite, curves, candidates=[candidate] if candidate else None, baseline=baseline, reps=reps, settings=settings)
    return scoring.verdicts[0]


def _comparisons(by: dict[tuple[str, str], list[dict[str, Any]]], tasks: list[str], scales: dict[str, TaskScale], baseline: str, candidate: str) -> list[TaskComparison]:
    out = []
    for task in tasks:
        arms = {}
        for variant in (baseline, candidate):
            rows = sorted(by[(task, variant)], key=lambda r: r["seed"])
            ok = [r for r in rows if run_failure(r) is None]
            failed = [f"seed {r['seed']}: {run_failure(r)}" for r in rows if run_failure(r) is not None]
            steps = [r["steps_to_threshold"] for r in ok if r.get("threshold") is not None]
            arms[variant] = ([raw_score(r) for r in ok], failed, _mean([r["wall_s"] for r in ok if r.get("wall_s") is not None]), _steps(steps), [int(r["seed"]) for r in ok])
        (b, b_failed, b_time, b_steps, b_seeds), (c, c_failed, c_time, c_steps, c_seeds) = arms[baseline], arms[candidate]
        out.append(TaskComparison(task, scales.get(task), b, c, b_time, c_time, welch(c, b)[1], b_steps, c_steps, b_failed, c_failed, b_seeds, c_seeds))
    return out


def _steps(values: list[float | None]) -> float | None:
    """Mean steps to threshold over seeds; a seed that never reached it counts as not reached (None overall)."""
    if not values or any(v is None for v in values):
        return None
    return statistics.mean(values)


def _verdict(runs, by, suite, baseline, candidate, comparisons: list[TaskComparison], reps, cache, settings: DecisionSettings,
             candidates: int) -> Verdict:  # fmt: skip
    missing = [_missing(t, baseline, candidate) for t in comparisons if not t.pairs()]
    checks, gate_failures = quality_gate.check(runs, (baseline, candidate), [t.task for t in comparisons if t.pairs()])
    decision = decide({t.task: t.pairs() for t in comparisons}, settings, candidates=candidates, reps=reps,
                      missing=missing, gate_failures=gate_failures, gate=checks)  # fmt: skip
    criteria, aggregates, notes = _criteria(comparisons, runs, suite, baseline, candidate, by, reps, cache, decision, missing)
    return Verdict(baseline, candidate, comparisons, criteria, aggregates, notes, decision)


def _missing(t: TaskComparison, b: str, c: str) -> str:
    """Why a task has no seed pair, in a few words naming the arm."""
    if t.scale is None and t.baseline == []:
        return f"{t.task} ({b}: no finished run)"
    lacking = [v for v, values in ((b, t.baseline), (c, t.candidate)) if not values]
    if lacking:
        return f"{t.task} ({' and '.join(lacking)}: no finished run)"
    return f"{t.task} (no seed finished by both arms)"


def _aggregate(cache, variant: str, scores: dict[str, list[float]], reps: int) -> dict[str, Estimate]:
    key = (variant, tuple(sorted(scores)))
    if key not in cache:
        cache[key] = aggregate(scores, reps=reps)
    return cache[key]


def _criteria(comparisons, runs, suite, b, c, by, reps, cache, decision: Decision, missing: list[str]):
    notes: list[str] = []
    both = [t for t in comparisons if t.comparable]
    unscaled = [t.task for t in comparisons if t.scale is None]
    if unscaled:
        notes.append(f"not scored (no task references and no finished {b} run to anchor a fallback): {', '.join(unscaled)}")
    fallback = sorted(t.task for t in both if not t.scale.fixed)
    if fallback:
        notes.append(f"fallback normalisation (the task declares no references; anchored on {b} alone, the same for every candidate): {', '.join(fallback)}")
    wins = sum(t.candidate_score >= t.baseline_score for t in both)
    d = decision
    metric = d.settings.metric.upper() if d.settings.metric == "iqm" else d.settings.metric
    value = f"{d.outcome}: Δ {metric} {d.difference.value:+.4f} [{d.difference.low:+.4f}, {d.difference.high:+.4f}]" if d.pairs else d.outcome
    crit = [Criterion(f"decision ({c} vs {b}): better or non-inferior", value, f"lower bound > −{d.settings.margin:g}", d.outcome in ("better", "non-inferior"), True)]

    # signed gap of the candidate against the baseline named here (not the suite's): (1 + g_c)/(1 + g_b) − 1 from the
    # suite record's gaps (each against the suite's baseline), else from the run rows' counts
    gaps = [100.0 * ((1 + info["gap_pct"][c] / 100) / (1 + info["gap_pct"][b] / 100) - 1)
            for info in suite.get("parity", {}).values() if c in info.get("gap_pct", {}) and b in info.get("gap_pct", {})]  # fmt: skip
    if not gaps:  # no suite record: use the counts in the run rows
        for task in {t.task for t in comparisons}:
            pb = [r["params_total"] for r in by[(task, b)] if r.get("params_total")]
            pc = [r["params_total"] for r in by[(task, c)] if r.get("params_total")]
            if pb and pc:
                gaps.append(100.0 * (pc[0] - pb[0]) / pb[0])
    tolerance = float(suite.get("parity_tolerance", 2.0))
    worst = max(gaps, key=abs) if gaps else math.nan
    crit.append(Criterion(f"parameter parity gap of {c} against {b}", f"{worst:+.3f}% ({'more' if worst > 0 else 'fewer' if worst < 0 else 'equal'} parameters)" if gaps else "-",
                          f"|gap| ≤ {tolerance}%", bool(gaps) and abs(worst) <= tolerance, True))  # fmt: skip

    relevant = [r for r in runs if r["variant"] in (b, c)]
    bad = [f"{r['task']}/{r['variant']}/{r['seed']}: {why}" for r in sorted(relevant, key=lambda r: (r["task"], r["variant"], r["seed"])) if (why := run_failure(r))]
    detail = "; ".join([*bad[:3], *(["…"] if len(bad) > 3 else []), *(f"task without a usable run: {m}" for m in missing)])
    crit.append(Criterion("no NaN, divergence or crash", f"{len(bad)} of {len(relevant)} runs" + (f" ({detail})" if detail else ""), "0", not bad and not missing, True))
    if bad:
        notes.append(f"failed runs are left out of every statistic and listed here: {'; '.join(bad)}")
    if missing:
        notes.append(f"tasks with no seed finished by both arms (out of the decision, which is then at most inconclusive): {'; '.join(missing)}")

    # ---- ideal targets
    crit.append(Criterion(f"{c} ≥ {b} normalised score on ≥ 50% of tasks (the original count rule: no margin, no interval)",
                          f"{wins}/{len(both)} tasks" + (f" ({len(missing)} without a usable run)" if missing else ""), "≥ 50%",
                          bool(both) and not missing and wins >= 0.5 * len(both), False))  # fmt: skip
    alpha = d.settings.alpha
    sig = [t for t in both if t.candidate_score > t.baseline_score and t.holm_p < alpha]
    crit.append(Criterion(f"{c} significantly better on most tasks (paired sign-flip test, Holm-adjusted p < {alpha:g})",
                          f"{len(sig)}/{len(both)} tasks", "> 50%", bool(both) and len(sig) > 0.5 * len(both), False))  # fmt: skip

    aggregates: dict[str, Any] = {}
    if both:
        norm_b = {t.task: t.baseline_scores for t in both}
        norm_c = {t.task: t.candidate_scores for t in both}
        agg_b, agg_c = _aggregate(cache, b, norm_b, reps), _aggregate(cache, c, norm_c, reps)
        poi = probability_of_improvement_ci(norm_c, norm_b, reps=reps)
        aggregates = {
            "normalisation": "per task: (raw − random) / (reference − random) on the task's declared references"
            + (f"; fallback for {', '.join(fallback)}" if fallback else ""),
            "bootstrap_resamples": reps,
            "tasks": [t.task for t in both],
            "baseline": {k: v.to_dict() for k, v in agg_b.items()},
            "candidate": {k: v.to_dict() for k, v in agg_c.items()},
            "probability_of_improvement": poi.to_dict(),
        }
        iqm_b, iqm_c = agg_b["iqm"], agg_c["iqm"]
        crit.append(Criterion(f"aggregate IQM (normalised) of {c} higher than {b}'s", f"{iqm_c.value:.3f} [{iqm_c.low:.3f}, {iqm_c.high:.3f}] vs {iqm_b.value:.3f} [{iqm_b.low:.3f}, {iqm_b.high:.3f}]", "> baseline", iqm_c.value > iqm_b.value, False))
        crit.append(Criterion(f"probability of improvement P({c} > {b})", f"{poi.value:.2f} [{poi.low:.2f}, {poi.high:.2f}]", "> 0.5", poi.value > 0.5, False))

    if d.pairs:
        needed = "-" if d.seeds_needed is None else f"{d.seeds_needed}"
        notes.append(f"power: {d.seeds} seed pairs detect a paired difference of {d.minimum_detectable_effect:.3g} normalised points with 80% power "
                     f"(paired t, α = {1 - d.level:.3g}); the observed effect (d_z = {d.effect_size:.2f}) needs {needed} seeds per arm for 80% power")  # fmt: skip
    with_steps = [t for t in both if t.baseline_steps is not None or t.candidate_steps is not None]
    if with_steps:  # counted over the tasks where either arm reached its threshold (after learning started); a tie is no win
        faster = sum(t.candidate_steps is not None and (t.baseline_steps is None or t.candidate_steps < t.baseline_steps) for t in with_steps)
        ties = sum(t.candidate_steps is not None and t.candidate_steps == t.baseline_steps for t in with_steps)
        value = (f"fewer on {faster} of the {len(with_steps)} task(s) where either reached the threshold"
                 + (f" ({ties} tie{'s' if ties != 1 else ''})" if ties else "") + (f"; {len(both) - len(with_steps)} where neither did" if len(both) > len(with_steps) else ""))  # fmt: skip
        crit.append(Criterion(f"sample efficiency: {c} needs fewer env steps to the return threshold", value, "≥ 50% of those", faster >= 0.5 * len(with_steps), False))
    stable = sum(_std(t.candidate_scores) <= _std(t.baseline_scores) for t in both)
    crit.append(Criterion(f"stability: seed std of {c} ≤ {b}'s", f"{stable}/{len(both)} tasks", "≥ 50%", bool(both) and stable >= 0.5 * len(both), False))
    matched = sorted(v["name"] for v in suite.get("variants", []) if v.get("declared") and v["name"] not in (b, c))
    if not any(v["name"] == c and v.get("declared") for v in suite.get("variants", [])):
        for m in matched:
            pairs = []
            for t in both:
                others = [t.scale.normalise(raw_score(r)) for r in by[(t.task, m)] if run_failure(r) is None]
                if others:
                    pairs.append((t.candidate_score, _mean(others)))
            if pairs:
                won = sum(x >= y for x, y in pairs)
                crit.append(Criterion(f"compute-matched: {c} ≥ {m} on ≥ 50% of tasks", f"{won}/{len(pairs)} tasks", "≥ 50%", won >= 0.5 * len(pairs), False))
    esnr = {v: [r["esnr_global_median"] for r in runs if r["variant"] == v and run_failure(r) is None and r.get("esnr_global_median") is not None] for v in (b, c)}
    if esnr[b] and esnr[c]:
        b_esnr, c_esnr = statistics.median(esnr[b]), statistics.median(esnr[c])
        crit.append(Criterion(f"actor-gradient ESNR of {c} (global, median over runs) higher than {b}'s", f"{c_esnr:.3g} vs {b_esnr:.3g}", "> baseline", c_esnr > b_esnr, False))
    crit += _gradient_criterion(runs, b, c, reps)
    ratios = [t.speed_ratio for t in both if t.speed_ratio == t.speed_ratio]
    mean_ratio = statistics.mean(ratios) if ratios else math.nan
    crit.append(Criterion(f"wall-clock ratio {c} / {b}", f"{mean_ratio:.2f}×", "≤ 2×", bool(ratios) and mean_ratio <= 2.0, False))
    return crit, aggregates, notes


def _gradient_criterion(runs: list[dict[str, Any]], b: str, c: str, reps: int) -> list[Criterion]:
    """Ideal: the candidate's policy gradient is closer to the simulator's than the baseline's (gradient probe: each
    run's median cosine over its last half of probes; per-task means, the difference averaged over tasks, with a
    stratified-bootstrap CI). Only where both arms were probed."""
    cos: dict[str, dict[str, list[float]]] = {b: defaultdict(list), c: defaultdict(list)}
    for r in runs:
        value = r.get("grad_sim_cosine_median")
        if r["variant"] in cos and run_failure(r) is None and value is not None and math.isfinite(value):
            cos[r["variant"]][r["task"]].append(float(value))
    if not (set(cos[b]) & set(cos[c])):
        return []
    diff = mean_difference_ci(cos[c], cos[b], reps=reps)
    shared = sorted(set(cos[b]) & set(cos[c]))
    mean_c = statistics.mean(statistics.mean(cos[c][t]) for t in shared)
    mean_b = statistics.mean(statistics.mean(cos[b][t]) for t in shared)
    horizon = next((r.get("grad_probe_horizon") for r in runs if r.get("grad_probe_horizon") is not None), None)
    return [Criterion(f"policy gradient of {c} closer to the simulator's than {b}'s (cosine at horizon {horizon})",
                      f"{mean_c:.3f} vs {mean_b:.3f}, Δ {diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]", "Δ > 0", diff.value > 0, False)]  # fmt: skip


# --------------------------------------------------------------------------------------------- text
def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def format_verdict(verdict: Verdict) -> str:
    rows = [("criterion", "value", "threshold", "result", "")]
    for c in verdict.criteria:
        result = "n/a" if c.passed is None else ("pass" if c.passed else "FAIL")
        rows.append((c.name, c.value, c.threshold, result, "required" if c.required else "ideal"))
    lines = [f"{verdict.candidate} vs {verdict.baseline}"]
    d = verdict.decision
    if d is not None:
        lines.append(f"decision: {d.outcome.upper()}")
        lines += [f"  because {r}" for r in d.reasons]
        lines += [f"  warning: {w}" for w in d.warnings]
    lines += _table(rows)
    lines += [f"note: {n}" for n in verdict.notes]
    lines.append(verdict_line(verdict))
    return "\n".join(lines)


def verdict_line(verdict: Verdict) -> str:
    if verdict.status == "accepted":
        return f"VERDICT ({verdict.candidate}): accepted — {verdict.decision.outcome}: {verdict.decision.headline}" if verdict.decision else f"VERDICT ({verdict.candidate}): accepted"
    if verdict.status == "inconclusive":
        return f"VERDICT ({verdict.candidate}): inconclusive — we cannot tell yet: {verdict.decision.headline}"
    return f"VERDICT ({verdict.candidate}): not accepted — failed: " + "; ".join(c.name for c in verdict.failed_required)


def summary_rows(scoring: Scoring) -> list[dict[str, Any]]:
    """One row per candidate: the headline numbers of its verdict."""
    out = []
    for v in scoring.verdicts:
        agg = v.aggregates
        both = [t for t in v.tasks if t.comparable]
        wins = sum(t.candidate_score >= t.baseline_score for t in both)
        ratios = [t.speed_ratio for t in both if t.speed_ratio == t.speed_ratio]
        gap = next((c.value for c in v.criteria if c.name.startswith("parameter parity gap")), "-")
        d = v.decision
        out.append({
            "candidate": v.candidate, "passed": v.passed, "status": v.status, "failed_required": [c.name for c in v.failed_required],
            "decision": d.outcome if d else None, "difference": d.difference.to_dict() if d else None,
            "seeds_needed": d.seeds_needed if d else None, "minimum_detectable_effect": d.minimum_detectable_effect if d else None,
            "tasks_won": wins, "tasks": len(both),
            "iqm": agg.get("candidate", {}).get("iqm"), "baseline_iqm": agg.get("baseline", {}).get("iqm"),
            "mean": agg.get("candidate", {}).get("mean"), "probability_of_improvement": agg.get("probability_of_improvement"),
            "delta_points": _mean([t.delta_points for t in both]),
            "speed_ratio": _mean(ratios), "parity_gap": gap,
            "failed_runs": sum(len(t.candidate_failed) for t in v.tasks),
        })  # fmt: skip
    return out


def _ci(est: dict[str, float] | None, digits: int = 3) -> str:
    if not est:
        return "-"
    return f"{est['value']:.{digits}f} [{est['ci_low']:.{digits}f}, {est['ci_high']:.{digits}f}]"


def format_summary(scoring: Scoring) -> str:
    st = scoring.settings
    metric = st.metric.upper() if st.metric == "iqm" else st.metric
    rows = [("candidate", "decision", f"Δ {metric} [interval]", "verdict", "seeds needed", "IQM [95% CI]", f"P(> {scoring.baseline})", "time ratio", "failed runs")]
    for s in summary_rows(scoring):
        diff = s["difference"]
        rows.append((s["candidate"], s["decision"] or "-", f"{diff['value']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]" if diff else "-",
                     s["status"], "-" if s["seeds_needed"] is None else str(s["seeds_needed"]), _ci(s["iqm"]),
                     _ci(s["probability_of_improvement"], 2), f"{s['speed_ratio']:.2f}×", str(s["failed_runs"])))  # fmt: skip
    base_iqm = next((s["baseline_iqm"] for s in summary_rows(scoring) if s["baseline_iqm"]), None)
    lines = [f"summary: {len(scoring.verdicts)} candidate(s) vs {scoring.baseline}" + (f" (baseline IQM {_ci(base_iqm)})" if base_iqm else ""), *_table(rows)]
    fallback = sorted(t for t, s in scoring.scales.items() if not s.fixed)
    if fallback:
        lines.append(f"note: fallback normalisation on {', '.join(fallback)} (no task references; anchored on {scoring.baseline})")
    if scoring.baseline_failed:
        lines.append(f"note: failed {scoring.baseline} runs: {'; '.join(scoring.baseline_failed)}")
    for u in scoring.incomplete:
        lines.append(f"incomplete results: {u}")
    lines.append(f"protocol: {PROTOCOL}; decision on {metric}, margin δ = {st.margin:g}, α = {st.alpha:g}, model quality: {st.model_quality}, "
                 f"scored at the {st.score_at} evaluation; {scoring.reps:,} bootstrap resamples")  # fmt: skip
    if scoring.learning:
        lines += [*format_learning(scoring.learning), scoring.reading]
    lines.append(overall_line(scoring))
    return "\n".join(lines)


def overall_line(scoring: Scoring) -> str:
    rejected = [v for v in scoring.verdicts if v.status == "not accepted"]
    unsure = [v for v in scoring.verdicts if v.status == "inconclusive"]
    if rejected:
        return "VERDICT: not accepted — " + "; ".join(f"{v.candidate} fails {', '.join(c.name for c in v.failed_required)}" for v in rejected)
    if unsure:
        return ("VERDICT: inconclusive — we cannot tell yet: " + "; ".join(f"{v.candidate}: {v.decision.headline}" for v in unsure)
                + " (docs/protocol.md#what-inconclusive-means)")  # fmt: skip
    return "VERDICT: accepted — " + "; ".join(f"{v.candidate} {v.decision.outcome}" for v in scoring.verdicts)


def format_scoring(scoring: Scoring) -> str:
    return "\n\n".join([*(format_verdict(v) for v in scoring.verdicts), format_summary(scoring)])

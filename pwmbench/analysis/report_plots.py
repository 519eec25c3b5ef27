"""The figures researchers read for few-seed RL comparisons (rliable, Agarwal et al. 2021), for pwmbench's report.

With 3 seeds per task a table of per-task means hides how uncertain they are; these plots show the uncertainty:
aggregate interval estimates (median, IQM, mean, optimality gap with 95% CIs), performance profiles (the whole
score distribution), per-task bars with every seed visible, and IQM learning curves on a shared "fraction of
training" axis. Scores are normalised (1 = the task's reference score, 0 = its random score). Every interval comes
from `pwmbench.analysis.stats` (stratified bootstrap, seeded), so the pictures agree with the report's numbers.

Each function writes one PNG into `out`, and the same figure as a PDF beside it for papers (matplotlib's Agg backend,
imported inside the function so that importing this module stays cheap; dpi 110), and returns the PNG's file name,
or None when there is nothing to draw.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pwmbench.analysis.stats import Estimate, Scores, aggregate, mean_ci, performance_profile

DPI = 110
METRICS = (("median", "Median"), ("iqm", "IQM"), ("mean", "Mean"), ("optimality_gap", "Optimality gap"))
PROFILE_POINTS = 101  # τ values of a performance profile
CURVE_POINTS = 20  # grid points of a normalised learning curve
CURVE_REPS = 2_000  # bootstrap resamples per curve point at most (20 points × variants would be slow at 50,000)
VERTICAL_MAX_TASKS = 12  # per-task bars: up to this many tasks as vertical bars, more as horizontal bars
TASKS_PER_COLUMN = 40  # per-task bars: horizontal panels side by side, this many tasks each at most
POLICY_PHASES = (None, "", "train", "policy")  # curves rows that count policy learning (pretrain, world_model do not)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(variants: Sequence[str]) -> dict[str, str]:
    """The same colour for a variant in every figure of a report (by its place among the sorted names)."""
    return {v: f"C{i % 10}" for i, v in enumerate(sorted(variants))}


def _triple(estimate: Estimate | Mapping[str, float] | None) -> tuple[float, float, float]:
    """(value, low, high) of an Estimate or of its `to_dict()` form (the verdict's stored aggregates)."""
    if estimate is None:
        return math.nan, math.nan, math.nan
    if isinstance(estimate, Estimate):
        return float(estimate.value), float(estimate.low), float(estimate.high)
    return tuple(math.nan if estimate.get(k) is None else float(estimate[k]) for k in ("value", "ci_low", "ci_high"))


def save_figure(fig, out: Path, fname: str) -> str:
    """`fname` (PNG, for the Markdown report) and the same figure as vector PDF beside it (for a paper)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / fname, dpi=DPI)
    fig.savefig((out / fname).with_suffix(".pdf"))
    _pyplot().close(fig)
    return fname


_save = save_figure


# ------------------------------------------------------------------------------------------ paired differences
def paired_differences(verdicts: Sequence[Any], out: Path, margin: float) -> str | None:
    """Per task, each seed pair's difference candidate − baseline (normalised points, one dot per seed, a line at the
    pairs' mean) for every candidate; on the right, each candidate's aggregate difference with the decision's
    interval. Lines at 0 and at −δ: the decision in one picture."""
    entries = [(v, t, t.pairs()) for v in verdicts for t in v.tasks]
    if not any(p for _, _, p in entries):
        return None
    plt = _pyplot()
    tasks = sorted({t.task for _, t, p in entries if p})
    names = [v.candidate for v in verdicts]
    colours = _colours(names)
    width = 0.8 / max(len(names), 1)
    fig, (ax, agg) = plt.subplots(1, 2, figsize=(max(8.0, 1.6 * len(tasks) * max(1, len(names)) ** 0.5 + 3.0), 4.4),
                                  gridspec_kw={"width_ratios": [max(len(tasks), 1), max(0.6 * len(names), 1)]}, squeeze=True)  # fmt: skip
    for i, v in enumerate(verdicts):
        first = True
        for j, task in enumerate(tasks):
            t = next((t for t in v.tasks if t.task == task), None)
            pairs = t.pairs() if t is not None else {}
            if not pairs:
                continue
            x = j - 0.4 + width * (i + 0.5)
            d = [100 * (c - b) for c, b in pairs.values()]
            ax.scatter([x] * len(d), d, color=colours[v.candidate], s=22, zorder=3, label=v.candidate if first else None)
            ax.hlines(float(np.mean(d)), x - width * 0.4, x + width * 0.4, color=colours[v.candidate], lw=2)
            for (seed, _), y in zip(pairs.items(), d):
                ax.annotate(str(seed), (x, y), xytext=(3, 0), textcoords="offset points", fontsize=6, va="center")
            first = False
    for a in (ax, agg):
        a.axhline(0.0, color="black", lw=0.8)
        a.axhline(-100 * margin, color="grey", lw=0.8, ls="--", label="−δ (margin)" if a is ax else None)
    ax.set_xticks(range(len(tasks)), tasks, rotation=20 if len(tasks) > 3 else 0, ha="right" if len(tasks) > 3 else "center", fontsize=8)
    ax.set_ylabel("candidate − baseline (normalised points)")
    ax.set_title("each seed pair (dot, seed named) and their mean (line)", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    for i, v in enumerate(verdicts):
        d = v.decision
        if d is None or not math.isfinite(d.difference.value):
            continue
        value, low, high = (100 * x for x in (d.difference.value, d.difference.low, d.difference.high))
        agg.errorbar([i], [value], yerr=[[max(value - low, 0)], [max(high - value, 0)]], fmt="o", color=colours[v.candidate], capsize=4)
        agg.annotate(d.outcome, (i, high), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7)
    agg.set_xticks(range(len(names)), names, fontsize=8)
    agg.set_xlim(-0.6, len(names) - 0.4)
    metric = verdicts[0].decision.settings.metric if verdicts and verdicts[0].decision else "iqm"
    agg.set_title(f"Δ {metric.upper() if metric == 'iqm' else metric}, decision interval", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, "paired_differences.png")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _nonempty(scores: Mapping[str, Scores]) -> list[str]:
    """Variants (in the mapping's order) with at least one score."""
    return [v for v, s in scores.items() if any(len(x) for x in s.values())]


def _errors(value: float, low: float, high: float) -> tuple[float, float]:
    """Error-bar lengths below and above the point (0 where the CI is missing; never negative)."""
    below = value - low if math.isfinite(low) else 0.0
    above = high - value if math.isfinite(high) else 0.0
    return max(below, 0.0), max(above, 0.0)


# ------------------------------------------------------------------------------------------ interval estimates
def interval_estimates(
    aggregates: Mapping[str, Mapping[str, Estimate]], out: Path, fname: str = "interval_estimates.png"
) -> str | None:
    """rliable's interval-estimate plot: one panel per aggregate (Median, IQM, Mean, Optimality gap, where lower
    is better), one row per variant, the point estimate as a black tick on a bar spanning its 95% CI.

    `aggregates` maps variant → `stats.aggregate()`'s dict (Estimates, or their `to_dict()` form as stored in the
    verdict). A missing metric or NaN estimate leaves its cell empty; a NaN CI draws the tick alone. Returns the file
    name, or None (nothing written) when no variant has aggregates.
    """
    variants = [v for v, a in aggregates.items() if a]
    if not variants:
        return None
    plt = _pyplot()
    colours, n = _colours(variants), len(variants)
    size = (3.3 * len(METRICS), 0.5 * n + 1.5)
    fig, axes = plt.subplots(1, len(METRICS), figsize=size, sharey=True, squeeze=False, layout="constrained")
    for ax, (key, title) in zip(axes[0], METRICS):
        for i, variant in enumerate(variants):
            value, low, high = _triple(aggregates[variant].get(key))
            y = n - 1 - i  # first variant on top
            if math.isfinite(low) and math.isfinite(high):
                ax.barh(y, high - low, left=low, height=0.6, color=colours[variant], alpha=0.75)
            if math.isfinite(value):
                ax.vlines(value, y - 0.3, y + 0.3, color="k", linewidth=1.5)
        ax.set_title(title + (" (lower is better)" if key == "optimality_gap" else ""), fontsize=10)
        ax.set_xlabel("normalised score")
        ax.grid(axis="x", alpha=0.3)
        ax.spines[["top", "right", "left"]].set_visible(False)
        ax.tick_params(axis="y", length=0)
    axes[0][0].set_yticks(range(n), list(reversed(variants)))
    axes[0][0].set_ylim(-0.6, n - 0.4)
    fig.suptitle("Aggregate normalised scores (95% stratified-bootstrap CIs)", fontsize=10)
    return _save(fig, out, fname)


# ---------------------------------------------------------------------------------------- performance profiles
def performance_profiles(
    scores: Mapping[str, Scores], out: Path, reps: int, seed: int = 0, fname: str = "performance_profiles.png"
) -> str | None:
    """rliable's performance profiles (score distributions): for each τ the fraction of runs whose normalised score
    exceeds τ (each task weighing the same, `stats.performance_profile`), a line per variant with its pointwise 95%
    stratified-bootstrap band, over PROFILE_POINTS values of τ from min(0, lowest score) to max(1, highest); a
    dashed vertical line marks τ = 1 (the reference score). A curve that lies above another everywhere dominates it.

    `scores` maps variant → Scores. Variants without scores are left out; returns None (nothing written) when no
    variant has any.
    """
    variants = _nonempty(scores)
    if not variants:
        return None
    everything = np.concatenate([np.asarray(x, float).ravel() for v in variants for x in scores[v].values() if len(x)])
    taus = np.linspace(min(0.0, float(everything.min())), max(1.0, float(everything.max())), PROFILE_POINTS)
    plt = _pyplot()
    colours = _colours(variants)
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for variant in variants:
        value, low, high = performance_profile(scores[variant], taus, reps=reps, seed=seed)
        tasks = sum(1 for x in scores[variant].values() if len(x))
        ax.plot(taus, value, color=colours[variant], label=f"{variant} ({_count(tasks, 'task')})")
        ax.fill_between(taus, low, high, color=colours[variant], alpha=0.2, linewidth=0)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1, label="reference (τ = 1)")
    ax.set_xlabel("normalised score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Performance profiles (95% CI, {reps:,} stratified-bootstrap resamples)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out, fname)


# ---------------------------------------------------------------------------------------------- per-task bars
def per_task_bars(
    scores: Mapping[str, Scores], out: Path, reps: int, seed: int = 0, fname: str = "per_task_scores.png"
) -> str | None:
    """Per-task normalised scores: for each task one bar per variant at the mean over seeds, its 95% bootstrap CI as
    the error bar (`stats.mean_ci`) and every seed as a black dot; a dashed line at 1 (the reference score).

    Up to VERTICAL_MAX_TASKS tasks the bars stand on a task axis (labels rotated); with more (e.g. MT80) they lie
    horizontally, tasks top to bottom, in side-by-side panels of at most TASKS_PER_COLUMN tasks, so that every label
    stays readable. `scores` maps variant → Scores; a task a variant lacks has no bar for it. Returns None (nothing
    written) when there are no scores at all.
    """
    variants = _nonempty(scores)
    tasks = sorted({t for v in variants for t, x in scores[v].items() if len(x)})
    if not tasks:
        return None
    cells = {
        (v, t): (np.asarray(scores[v][t], float).ravel(), mean_ci(scores[v][t], reps=reps, seed=seed))
        for v in variants
        for t in tasks
        if t in scores[v] and len(scores[v][t])
    }
    plt = _pyplot()
    colours, nv = _colours(variants), len(variants)
    width = 0.8 / nv
    horizontal = len(tasks) > VERTICAL_MAX_TASKS
    if horizontal:
        columns = math.ceil(len(tasks) / TASKS_PER_COLUMN)
        per_column = math.ceil(len(tasks) / columns)
        height = 1.2 + per_column * (0.16 * nv + 0.14)
        fig, axes = plt.subplots(1, columns, figsize=(6.0 * columns, height), squeeze=False, layout="constrained")
        groups = [tasks[i : i + per_column] for i in range(0, len(tasks), per_column)]
    else:
        size = (max(6.0, 1.5 + len(tasks) * (0.3 * nv + 0.4)), 4.5)
        fig, axes = plt.subplots(1, 1, figsize=size, squeeze=False, layout="constrained")
        groups = [tasks]
    for ax, group in zip(axes[0], groups):
        for j, variant in enumerate(variants):
            offset = (j - (nv - 1) / 2) * width
            for i, task in enumerate(group):
                if (variant, task) not in cells:
                    continue
                values, est = cells[(variant, task)]
                pos = -i - offset if horizontal else i + offset  # variants top to bottom, left to right
                err = np.array(_errors(est.value, est.low, est.high))[:, None]
                spread = np.linspace(-0.25, 0.25, len(values)) * width if len(values) > 1 else np.zeros(1)
                if horizontal:
                    ax.barh(pos, est.value, height=width, xerr=err, color=colours[variant], alpha=0.75, capsize=2)
                    ax.scatter(values, pos + spread, s=8, color="k", zorder=3, linewidths=0)
                else:
                    ax.bar(pos, est.value, width=width, yerr=err, color=colours[variant], alpha=0.75, capsize=2)
                    ax.scatter(pos + spread, values, s=10, color="k", zorder=3, linewidths=0)
        line = ax.axvline if horizontal else ax.axhline
        line(1.0, color="grey", linestyle="--", linewidth=1)
        line(0.0, color="k", linewidth=0.6)
        if horizontal:
            ax.set_yticks([-i for i in range(len(group))], group, fontsize=7)
            ax.set_ylim(-len(group) + 0.4, 0.6)
            ax.set_xlabel("normalised score (mean over seeds, 95% CI; dots: seeds)")
            ax.grid(axis="x", alpha=0.3)
        else:
            ax.set_xticks(range(len(group)), group, rotation=45, ha="right", fontsize=8)
            ax.set_xlim(-0.6, len(group) - 0.4)
            ax.set_ylabel("normalised score\n(mean over seeds, 95% CI; dots: seeds)")
            ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [Patch(color=colours[v], alpha=0.75, label=v) for v in variants]
    fig.suptitle(f"Per-task normalised scores ({_count(len(tasks), 'task')}; dashed: reference score)", fontsize=10)
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=min(nv, 4))  # below the plots: never over the title
    return _save(fig, out, fname)


# ------------------------------------------------------------------------------------- normalised learning curves
def curve_grid(
    runs: Mapping[Hashable, Sequence[tuple[float, float]]], points: int = CURVE_POINTS
) -> tuple[np.ndarray, dict[Hashable, np.ndarray]]:
    """Put runs evaluated at different fractions of training on one grid, without extrapolating.

    `runs` maps a run's key → its (fraction of training, normalised score) evaluations, in any order (several at one
    fraction are averaged; runs without evaluations are dropped). The grid is `points` evenly spaced fractions from
    the latest first evaluation to the earliest last evaluation over all runs, the range every run has evaluated (a
    single point where they meet); each run's values are linearly interpolated between its own evaluations. So no
    grid point lies before any run's first or after any run's last evaluation: a run evaluated only up to 50% of
    training ends the curve at 50%. Returns (grid, key → values on the grid); an empty grid (and empty value arrays)
    when no run has evaluations or the runs share no evaluated range.
    """
    series: dict[Hashable, tuple[np.ndarray, np.ndarray]] = {}
    for key, evaluations in runs.items():
        if not len(evaluations):
            continue
        x, y = np.asarray(evaluations, float).reshape(-1, 2).T
        xs, inverse = np.unique(x, return_inverse=True)
        ys = np.bincount(inverse, weights=y) / np.bincount(inverse)
        series[key] = (xs, ys)
    if not series:
        return np.empty(0), {}
    lo, hi = max(xs[0] for xs, _ in series.values()), min(xs[-1] for xs, _ in series.values())
    if lo > hi:
        return np.empty(0), {key: np.empty(0) for key in series}
    grid = np.array([lo]) if lo == hi else np.linspace(lo, hi, max(2, points))
    return grid, {key: np.interp(grid, xs, ys) for key, (xs, ys) in series.items()}


def _as_float(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def curve_runs(
    curves: Sequence[Mapping[str, Any]], normalise: Callable[[str, float], float | None]
) -> dict[str, dict[tuple[str, str], list[tuple[float, float]]]]:
    """variant → (task, seed) → [(fraction of training, normalised eval return)] from the curves table's rows.

    Only policy rows count (phase "train", "policy" or missing; "pretrain" and "world_model" rows are skipped). A
    run's fraction is epoch / the largest epoch among its policy rows (1.0 when that is 0), so runs with different
    budgets share one axis. Rows whose eval_return is missing or not finite (no evaluation; a diverged one is the run
    table's to report) are skipped before `normalise(task, eval_return)` is called; evaluations it maps to None or to
    a non-finite value are skipped too.
    """
    rows: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in curves:
        if r.get("phase") in POLICY_PHASES and math.isfinite(_as_float(r.get("epoch"))):
            rows[(str(r["variant"]), str(r["task"]), str(r["seed"]))].append(r)
    out: dict[str, dict[tuple[str, str], list[tuple[float, float]]]] = defaultdict(dict)
    for (variant, task, seed), run in sorted(rows.items()):
        last = max(_as_float(r["epoch"]) for r in run)
        evaluations = []
        for r in run:
            raw = _as_float(r.get("eval_return"))
            if not math.isfinite(raw):
                continue
            score = normalise(task, raw)
            if score is None or not math.isfinite(_as_float(score)):
                continue
            evaluations.append((_as_float(r["epoch"]) / last if last > 0 else 1.0, float(score)))
        if evaluations:
            out[variant][(task, seed)] = evaluations
    return dict(out)


def normalised_curves(
    curves: Sequence[Mapping[str, Any]],
    normalise: Callable[[str, float], float | None],
    out: Path,
    reps: int,
    seed: int = 0,
    fname: str = "normalised_curves.png",
) -> str | None:
    """Learning curves across tasks: per variant the IQM over tasks × seeds of the normalised evaluation return
    against the fraction of training, with a 95% stratified-bootstrap band (`stats.aggregate`'s "iqm" at each grid
    point; min(reps, CURVE_REPS) resamples per point to stay fast, stated in the title).

    `curves` are rows of the results' curves table; `normalise(task, eval_return)` gives the normalised score or
    None to skip it. Rows are read as in `curve_runs` (policy rows only; x = epoch / the run's last epoch), and each
    variant's runs are put on their own grid by `curve_grid` (CURVE_POINTS fractions within the range all its runs
    have evaluated; no extrapolation; a single point is drawn as a marker with its CI). Returns None (nothing
    written) when there are no evaluations, or when no variant's runs share an evaluated range.
    """
    by_variant = curve_runs(curves, normalise)
    boot = min(reps, CURVE_REPS)
    lines = []
    for variant in sorted(by_variant):
        grid, values = curve_grid(by_variant[variant])
        if not len(grid):
            continue
        iqm = []
        for g in range(len(grid)):
            per_task: dict[str, list[float]] = defaultdict(list)
            for (task, _), v in values.items():
                per_task[task].append(float(v[g]))
            iqm.append(_triple(aggregate(per_task, reps=boot, seed=seed)["iqm"]))
        tasks = len({task for task, _ in values})
        lines.append((variant, grid, np.array(iqm), tasks, len(values)))
    if not lines:
        return None
    plt = _pyplot()
    colours = _colours([v for v, *_ in lines])
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for variant, grid, est, tasks, nruns in lines:
        label = f"{variant} ({_count(tasks, 'task')}, {_count(nruns, 'run')})"
        if len(grid) == 1:
            err = np.array(_errors(*est[0]))[:, None]
            ax.errorbar(grid, est[:, 0], yerr=err, fmt="o", color=colours[variant], capsize=3, label=label)
        else:
            ax.plot(grid, est[:, 0], color=colours[variant], label=label)
            ax.fill_between(grid, est[:, 1], est[:, 2], color=colours[variant], alpha=0.2, linewidth=0)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("fraction of training (epoch / the run's last epoch)")
    ax.set_ylabel("IQM normalised eval return")
    ax.set_xlim(-0.02, 1.02)  # a point at 0 or 1 stays whole
    ax.set_title(f"IQM across tasks × seeds (95% CI, {boot:,} stratified-bootstrap resamples per point)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out, fname)

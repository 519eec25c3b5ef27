"""The publishable report of a results directory: every candidate's verdict against the baseline and a summary,
per-task tables on fixed score scales, the settings that matter next to them, rliable-style plots and CSV exports.

Reads only the Arrow tables and suite.json, like `score`. The protocol behind the numbers: docs/protocol.md.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from pwmbench.analysis import report_plots
from pwmbench.analysis.decision import DecisionSettings
from pwmbench.analysis.learning_check import format_learning
from pwmbench.analysis.scoring import (
    PROTOCOL,
    Scoring,
    TaskScale,
    UnusableResults,
    Verdict,
    format_summary,
    format_verdict,
    load_results,
    overall_line,
    raw_score,
    run_failure,
    score_all,
)
from pwmbench.analysis.stats import BOOTSTRAP_REPS, aggregate, late_half_median

SETTINGS = ("preset", "horizon", "max_epochs", "num_envs", "wm_iterations", "initial_wm_iterations", "wm_batch_size", "model_lr", "actor_lr", "critic_lr", "gamma", "lam", "rew_rms", "ret_rms", "world_model", "wm_recipe", "critic_targets", "pretrain_wm_iterations", "eval_every", "eval_episodes")


def _fmt(x: float | None, digits: int = 1, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+,.{digits}f}" if sign else f"{x:,.{digits}f}"


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def build_report(results: str | Path, out: str | Path, candidates: list[str] | None = None, baseline: str | None = None,
                 reps: int = BOOTSTRAP_REPS, latex: bool = False, decision: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """report.md, its figures (PNG and PDF), CSV exports and verdict.json in `out`; summary.tex too with `latex`.
    `decision`: [decision] settings overriding the suite's (the score command's flags)."""
    results, out = Path(results), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, suite, curves = load_results(results, curves=True)
    settings = DecisionSettings.from_record(suite.get("decision")).with_flags("pwmbench report", **(decision or {}))
    scoring = score_all(runs, suite, curves, candidates=candidates, baseline=baseline, reps=reps, settings=settings)
    plots = [p for p in [report_plots.paired_differences(scoring.verdicts, out, settings.margin)] if p]
    plots += _plots(curves, scoring, out) + _score_plots(runs, curves, scoring, out)
    if latex:
        from pwmbench.analysis.report_latex import write_latex

        write_latex(scoring, out / "summary.tex")
    _csv(runs, out / "runs.csv")
    _csv(curves, out / "curves.csv")
    _csv([{"candidate": v.candidate, **t.to_dict()} for v in scoring.verdicts for t in v.tasks], out / "summary.csv")
    (out / "verdict.json").write_text(json.dumps(scoring.to_dict(), indent=1, default=str))
    path = out / "report.md"
    plots += _gradient_plots(curves, out)
    path.write_text(_markdown(runs, suite, scoring, plots, curves, protocol=_copy_protocol(out)))
    return path


def _copy_protocol(out: Path) -> str:
    """The protocol beside the report (`protocol.md`), so its link works wherever the report is published; from an
    install without the docs, the reference names the pwmbench version instead."""
    import pwmbench

    source = Path(pwmbench.__file__).resolve().parents[1] / PROTOCOL
    if source.is_file():
        (out / "protocol.md").write_text(source.read_text())
        return "[protocol.md](protocol.md)"
    from pwmbench import __version__

    return f"{PROTOCOL} of pwmbench {__version__}"


def _markdown(runs: list[dict[str, Any]], suite: dict[str, Any], scoring: Scoring, plots: list[str], curves: list[dict[str, Any]] | None = None,
              protocol: str = PROTOCOL) -> str:  # fmt: skip
    curves = curves or []
    b = scoring.baseline
    names = ", ".join(v.candidate for v in scoring.verdicts)
    lines = [f"# pwmbench report — {suite.get('name', 'results')}: {names} vs {b}", "",
             f"**{overall_line(scoring)}**", ""]
    if scoring.learning:  # right under the verdict: what it may be used for, and whether anything learned
        lines += [f"*{scoring.reading}*", "", "```", *format_learning(scoring.learning), "```", ""]
    if scoring.incomplete:  # before any number: these results are not the suite's planned cells, each once
        lines += ["**Incomplete results — no verdict can be accepted on them:**", ""] + [f"- {p}" for p in scoring.incomplete] + [""]
    lines += _decisions(scoring)
    lines += [f"How to read it: {protocol} (the decision, parity, fairness audit, seeds, score references, statistics).", "",
              "## Verdicts", "", "```", format_summary(scoring), "```", ""]  # fmt: skip
    lines += _attribution(runs, suite, curves, scoring)
    lines += _scales(scoring.scales)
    for v in scoring.verdicts:
        lines += _candidate_section(v, suite)
    lines += _matched(runs, suite, scoring)
    lines += _data_use(runs)
    lines += _model_quality(runs)
    lines += _gradient_quality(curves)
    lines += ["## Settings that matter", ""]
    configs = {r["variant"]: json.loads(r["config"]) for r in runs if r.get("config")}
    if b in configs:
        cfg = configs[b]
        lines.append("| setting | value |")
        lines.append("|---|---|")
        for key in SETTINGS:
            if key in cfg:
                lines.append(f"| {key} | `{json.dumps(cfg.get(key))}` |")
        lines.append(f"| seeds | {sorted({r['seed'] for r in runs})} |")
        for name, c_cfg in sorted(configs.items()):
            lines.append(f"| dynamics of {name} | `{c_cfg['dynamics']}` {json.dumps(c_cfg['dynamics_options'])} |")
    first = runs[0] if runs else {}
    lines += ["", f"Environment: pwmbench {first.get('pwmbench_version')}, git {first.get('git_commit')}, torch {first.get('torch_version')}, "
              f"mujoco {first.get('mujoco_version')}, dm_control {first.get('dm_control_version')}, warp {first.get('warp_lang_version')}, "
              f"Python {first.get('python_version')}, {first.get('device')} ({first.get('device_name')}, {first.get('cpu_count')} CPUs).", ""]
    statuses: dict[str, int] = defaultdict(int)
    for r in runs:
        statuses[r["status"]] += 1
    lines.append("Runs: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ".")
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "Data: `runs.csv` (one row per cell), `curves.csv` (one row per cell and epoch), `summary.csv` (per candidate and task), "
              "`verdict.json` (every verdict, the task scales and the bootstrap settings)."]
    return "\n".join(lines) + "\n"


def _variant_kinds(runs: list[dict[str, Any]]) -> tuple[list[str], list[str], list[str]]:
    """(flow variants, residual-MLP variants, plain-MLP variants) by what their run rows record."""
    kinds: dict[str, str | None] = {}
    for r in runs:
        dynamics = r.get("dynamics")
        if dynamics == "mlp" and json.loads(r.get("dynamics_options") or "{}").get("residual"):
            dynamics = "residual"
        kinds[r["variant"]] = dynamics
    return tuple(sorted(v for v, k in kinds.items() if k == kind) for kind in ("flow", "residual", "mlp"))  # type: ignore[return-value]


def _attribution(runs: list[dict[str, Any]], suite: dict[str, Any], curves: list[dict[str, Any]], scoring: Scoring) -> list[str]:
    """When a flow variant, a residual MLP and a plain MLP are all present: how much of flow's difference from the MLP
    its residual form alone gives (residual MLP vs MLP), and what remains (flow vs residual MLP) — each a paired
    decision on the same task scales, so a reader can tell a parameterisation effect from an objective effect."""
    flows, residuals, plains = _variant_kinds(runs)
    if not (flows and residuals and plains):
        return []
    plain, residual = plains[0], residuals[0]
    lines = ["## Attribution: the residual form against the flow objective", "",
             f"{residual} is {plain}'s network with flow's residual form and unconstrained head, trained with the same MSE loss "
             "(equal parameter counts). Each row is a paired decision on the same normalised scores (same margin and α):", "",
             "| comparison | Δ (normalised points) | interval | decision |", "|---|---|---|---|"]  # fmt: skip
    pairs = [(f, plain) for f in flows] + [(residual, plain)] + [(f, residual) for f in flows]
    deltas: dict[tuple[str, str], float] = {}
    scored = {(v.candidate, v.baseline): v for v in scoring.verdicts}  # the report's own comparisons are not redone
    for candidate, baseline in pairs:
        verdict = scored.get((candidate, baseline))
        if verdict is None:
            try:
                verdict = score_all(runs, suite, curves, candidates=[candidate], baseline=baseline, reps=scoring.reps, settings=scoring.settings).verdicts[0]
            except UnusableResults as exc:
                lines.append(f"| {candidate} vs {baseline} | - | - | not scored: {exc} |")
                continue
        d = verdict.decision
        if d is None:
            continue
        deltas[(candidate, baseline)] = d.difference.value
        lines.append(f"| {candidate} vs {baseline} | {100 * d.difference.value:+.1f} | [{100 * d.difference.low:+.1f}, {100 * d.difference.high:+.1f}] | {d.outcome} |")
    for f in flows:
        total, part = deltas.get((f, plain)), deltas.get((residual, plain))
        if total is not None and part is not None and abs(total) > 1e-12:
            lines += ["", f"The residual form alone gives {100 * part:+.1f} of {f}'s {100 * total:+.1f} points over {plain} "
                      f"({part / total:.0%}); the rest, {100 * (total - part):+.1f}, is what flow's objective and integration add. "
                      "Read the decisions above before the shares: an inconclusive row means the share is not established."]  # fmt: skip
    return [*lines, ""]


def _decisions(scoring: Scoring) -> list[str]:
    """The decision on each candidate, its interval and every reason, first thing in the report."""
    st = scoring.settings
    metric = st.metric.upper() if st.metric == "iqm" else st.metric
    lines = ["## Decisions", "",
             f"Δ = {metric}(candidate) − {metric}({scoring.baseline}) of normalised scores, paired by seed; better: the "
             f"interval's lower bound > 0 (and the exact paired permutation test p < α); non-inferior: > −δ = −{st.margin:g}; "
             f"worse: its upper bound < −δ; otherwise inconclusive. Model quality: {st.model_quality}. Scored at the {st.score_at} evaluation.", "",
             f"| candidate | decision | Δ {metric} | interval | permutation p | seed pairs | MDE (80% power) | seeds needed | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for v in scoring.verdicts:
        d = v.decision
        diff = d.difference
        lines.append(f"| {v.candidate} | **{d.outcome}** | {_fmt(diff.value, 4, sign=True)} | [{_fmt(diff.low, 4, sign=True)}, {_fmt(diff.high, 4, sign=True)}] "
                     f"({100 * d.level:.1f}%) | {_fmt(d.p_value, 3)} | {d.pairs} | {_fmt(d.minimum_detectable_effect, 3)} | "
                     f"{'-' if d.seeds_needed is None else d.seeds_needed} | {v.status} |")  # fmt: skip
    lines.append("")
    for v in scoring.verdicts:
        d = v.decision
        lines.append(f"- **{v.candidate}: {d.outcome}** — " + "; ".join(d.reasons) + ("" if not d.warnings else " — warning: " + "; ".join(d.warnings)))
    return lines + [""]


def _scales(scales: dict[str, TaskScale]) -> list[str]:
    lines = ["## Score scale per task", "",
             "Each task's raw result is normalised to (raw − random) / (reference − random), so 0 is the random reference "
             "and 1 the task's reference. Fixed references come from the task itself; a fallback scale is anchored on "
             "the baseline alone and is the same for every candidate, but is not comparable with published numbers.", "",
             "| task | scored on | 0 = | 1 = | scale | source |", "|---|---|---|---|---|---|"]  # fmt: skip
    for task, s in sorted(scales.items()):
        what = "success rate" if s.kind == "success" else "final return"
        lines.append(f"| {task} | {what} | {s.low:,.4g} | {s.high:,.4g} | {'fixed' if s.fixed else '**fallback**'} | {s.source} |")
    return lines + [""]


def _candidate_section(v: Verdict, suite: dict[str, Any]) -> list[str]:
    b, c = v.baseline, v.candidate
    lines = [f"## {c} vs {b}", "",
             f"Raw results are mean ± std over finished seeds; scores are normalised (see the scale table); Δ is in normalised "
             f"points (100 × score difference), Δ% only where {b}'s score is at least 0.05 from zero.", "",
             "Per task, the paired sign-flip test over the seed pairs (exact; Holm-adjusted over every candidate × task test of "
             "this report), Wilcoxon's signed-rank test from 6 pairs, and Welch's unpaired test as a descriptive figure.", "",
             f"| task | {b} raw | {c} raw | {b} score | {c} score | Δ points | Δ% | {b} time (s) | {c} time (s) | time ratio {c}/{b} | pairs | sign-flip p | Holm p | Wilcoxon p | Welch p | failed runs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for t in v.tasks:
        failed = "; ".join([f"{b} {x}" for x in t.baseline_failed] + [f"{c} {x}" for x in t.candidate_failed]) or "0"
        lines.append(
            f"| {t.task} | {_fmt(t.baseline_mean)} ± {_fmt(t.baseline_std)} | {_fmt(t.candidate_mean)} ± {_fmt(t.candidate_std)} | "
            f"{_fmt(t.baseline_score, 3)} | {_fmt(t.candidate_score, 3)} | {_fmt(t.delta_points, 1, sign=True)} | {_fmt(t.delta_pct, 1, sign=True)} | "
            f"{_fmt(t.baseline_time)} | {_fmt(t.candidate_time)} | {_fmt(t.speed_ratio, 2)} | {len(t.pairs())} | {_fmt(t.sign_flip_p, 3)} | "
            f"{_fmt(t.holm_p, 3)} | {_fmt(t.wilcoxon_p, 3)} | {_fmt(t.p_value, 3)} | {failed} |"
        )
    both = [t for t in v.tasks if t.comparable]
    avg_points = _mean([t.delta_points for t in both])
    avg_ratio = _mean([t.speed_ratio for t in both if t.speed_ratio == t.speed_ratio])
    lines.append(f"| **mean over tasks** | | | {_fmt(_mean([t.baseline_score for t in both]), 3)} | {_fmt(_mean([t.candidate_score for t in both]), 3)} | "
                 f"{_fmt(avg_points, 1, sign=True)} | | {_fmt(_mean([t.baseline_time for t in both]))} | {_fmt(_mean([t.candidate_time for t in both]))} | {_fmt(avg_ratio, 2)} | | | | | | |")  # fmt: skip
    gap = next((cr.value for cr in v.criteria if cr.name.startswith("parameter parity gap")), "-")
    ps = ", ".join(f"{t.task} p = {_fmt(t.p_value, 3)}" for t in both)
    agg = v.aggregates
    poi = agg.get("probability_of_improvement", {})
    iqm_c, iqm_b = agg.get("candidate", {}).get("iqm", {}), agg.get("baseline", {}).get("iqm", {})
    lines += [
        "",
        f"Across {len(both)} task(s), {c} changes the normalised score by {_fmt(avg_points, 1, sign=True)} points on average "
        f"relative to {b} (per-task Welch's t-tests, descriptive: {ps or 'none'}). The interquartile mean of normalised scores is "
        f"{_fmt(iqm_c.get('value'), 3)} [95% CI {_fmt(iqm_c.get('ci_low'), 3)}, {_fmt(iqm_c.get('ci_high'), 3)}] for {c} against "
        f"{_fmt(iqm_b.get('value'), 3)} [{_fmt(iqm_b.get('ci_low'), 3)}, {_fmt(iqm_b.get('ci_high'), 3)}] for {b}, and the "
        f"probability that {c} beats {b} on a task is {_fmt(poi.get('value'), 2)} [{_fmt(poi.get('ci_low'), 2)}, {_fmt(poi.get('ci_high'), 2)}] "
        f"(stratified bootstrap, {agg.get('bootstrap_resamples', 0):,} resamples). The parameter-parity gap is {gap}, and {c} takes "
        f"{_fmt(avg_ratio, 2)}× the wall-clock time of {b}.",
        "",
        "```",
        format_verdict(v),
        "```",
        "",
    ]
    return lines


def _matched(runs: list[dict[str, Any]], suite: dict[str, Any], scoring: Scoring) -> list[str]:
    """Compute-matched variants (the baseline with more world-model updates) next to every other candidate."""
    declared = {x["name"]: x["declared"] for x in suite.get("variants", []) if x.get("declared")}
    matched = [m for m in declared if any(r["variant"] == m for r in runs)]
    if not matched:
        return []
    b = scoring.baseline
    others = [v.candidate for v in scoring.verdicts if v.candidate not in matched]
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in runs:
        scale = scoring.scales.get(r["task"])
        if scale is not None and run_failure(r) is None:
            scores[(r["task"], r["variant"])].append(scale.normalise(raw_score(r)))
    columns = [b, *matched, *others]
    lines = ["## Parameter-matched and compute-matched", "", "Mean normalised score over finished seeds.", "",
             "| task | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]  # fmt: skip
    for task in sorted(scoring.scales):
        lines.append(f"| {task} | " + " | ".join(_fmt(_mean(scores[(task, v)]), 3) for v in columns) + " |")
    for name in matched:
        iterations = next(iter(json.loads(r["config"])["wm_iterations"] for r in runs if r["variant"] == name and r.get("config")), "?")
        lines.append(f"\n`{name}`: {b} with `wm_iterations` = {iterations} (declared {declared[name]}; FLOP ratio {suite.get('compute_matched', {}).get('flop_ratio', '-')}).")
    return lines + [""]


def _data_use(runs: list[dict[str, Any]]) -> list[str]:
    """Task sets: how much of the offline dataset each member's world-model training actually sampled."""
    rows = [r for r in runs if r.get("taskset") and r.get("data_episodes") is not None]
    if not rows:
        return []
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    lines = ["## Offline data used (task sets)", "",
             f"World models trained on `{rows[0].get('data_dir')}` for {rows[0].get('wm_iterations')} steps; per member, "
             "mean over cells (every variant samples the same windows for a seed).", "",
             "| task | episodes | transitions | episodes used | transitions sampled | passes over the data |", "|---|---|---|---|---|---|"]  # fmt: skip
    for task, group in sorted(by_task.items()):
        first = group[0]
        used = sum(g["data_episodes_used"] for g in group) / len(group)
        sampled = sum(g["data_transitions_sampled"] for g in group) / len(group)
        passes = sampled / first["data_transitions"] if first["data_transitions"] else float("nan")
        lines.append(f"| {task} | {first['data_episodes']:,} | {first['data_transitions']:,} | {used:,.0f} | {sampled:,.0f} | {passes:.3g}× |")
    return lines + [""]


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one seed)."""
    m = sum(values) / len(values)
    sd = (sum((x - m) ** 2 for x in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return m, sd


def _model_quality(runs: list[dict[str, Any]]) -> list[str]:
    """World-model quality next to the returns, per task × variant: the held-out errors of pwm/diagnostics.py at the
    last evaluation, mean ± std over the ok seeds, and the model-quality gate's outcome (pwmbench/analysis/quality_gate.py)."""
    from pwmbench.analysis import quality_gate

    columns = (("model_error_1_final", "one-step error"), ("model_error_copy_final", '"no change" error'),
               ("model_error_ratio_copy_final", "ratio"), ("model_error_H_final", "H-step error"),
               ("model_error_copy_H_final", '"no change" at H'), ("model_error_ratio_copy_H_final", "ratio at H"),
               ("model_reward_error_H_final", "reward MSE on the rollout"), ("model_reward_error_mean_H_final", "mean-reward MSE"),
               ("model_reward_ratio_mean_H_final", "reward ratio"))  # fmt: skip
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        if r["status"] == "ok" and any(r.get(c) is not None for c, _ in columns):
            by[(r["task"], r["variant"])].append(r)
    if not by:
        return []
    lines = ["## Model quality", "",
             "The world model on held-out real episodes (the evaluation's own, never trained on) at the last evaluation, "
             "mean ± std over seeds. Errors are latent MSEs on each model's own latent scale; a ratio is the model's error "
             'over a trivial predictor\'s: "no change" (z_{t+1} = z_t, or z_H = z_0 at H steps) for the latents, the '
             "held-out windows' mean reward for rewards (normalised rewards along the open-loop rollout). The gate "
             "(protocol: the model-quality gate) needs the upper 95% bootstrap bound over seeds of the reward ratio and of "
             "the H-step ratio below 1; the one-step ratio is shown, not gated.", "",
             "| task | variant | seeds | " + " | ".join(name for _, name in columns) + " | gate |",
             "|---|---|---|" + "---|" * len(columns) + "---|"]  # fmt: skip
    for (task, variant), group in sorted(by.items()):
        cells = []
        for column, _ in columns:
            values = [float(r[column]) for r in group if r.get(column) is not None and math.isfinite(r[column])]
            if values:
                m, sd = _mean_std(values)
                cells.append(f"{m:.3g} ± {sd:.2g}")
            else:
                cells.append("-")
        _, failures = quality_gate.check(group, [variant], [task])
        gate = "passes" if not failures else "**fails**: " + "; ".join(f.split(": ", 1)[1] for f in failures)
        lines.append(f"| {task} | {variant} | {len(group)} | " + " | ".join(cells) + f" | {gate} |")
    return lines + [""]


def _csv(rows: list[dict[str, Any]], path: Path) -> None:
    if not rows:
        path.write_text("")
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})


def _series(curves: list[dict[str, Any]], metric: str) -> dict[tuple[str, str], dict[int, list[tuple[float, float]]]]:
    out: dict[tuple[str, str], dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in curves:
        value = r.get(metric)
        if r.get("phase") == "pretrain":  # world-model steps on a dataset, before env step 0: not on this axis
            continue
        if value is not None and value == value:
            x = r["env_steps"] if r.get("env_steps") is not None else r["epoch"]  # task-set members: iterations
            out[(r["task"], r["variant"])][int(r["seed"])].append((x, value))
    return out


def _plots(curves: list[dict[str, Any]], scoring: Scoring, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = sorted({t.task for v in scoring.verdicts for t in v.tasks})
    variants = sorted({r["variant"] for r in curves})
    offline = {r["task"] for r in curves if r.get("phase") == "policy"}  # task-set members: no env steps
    names = []
    losses = {r["variant"]: "rectified-flow" if r.get("dynamics") == "flow" else "MSE" for r in curves if r.get("dynamics")}
    loss_note = "dynamics step loss (MSE or rectified-flow: different quantities, compare each with itself)"
    for metric, fname, ylabel in (("eval_return", "learning_curves.png", "eval_return (mean ± std over seeds)"), ("dynamics_loss", "dynamics_loss.png", loss_note)):
        series = _series(curves, metric)
        fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5.5 * max(1, len(tasks)), 4), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for variant in variants:
                seeds = series.get((task, variant))
                if not seeds:
                    continue
                length = min(len(s) for s in seeds.values())
                steps = np.array([x for x, _ in next(iter(seeds.values()))[:length]])
                values = np.array([[y for _, y in s[:length]] for s in seeds.values()])
                m, sd = values.mean(0), values.std(0)
                label = f"{variant} ({losses[variant]})" if metric == "dynamics_loss" and variant in losses else variant
                line = ax.plot(steps, m, label=label, linewidth=1.6)[0]
                ax.fill_between(steps, m - sd, m + sd, alpha=0.12, color=line.get_color(), linewidth=0)  # light: three variants' bands must not hide lines
            ax.set_title(task)
            ax.set_xlabel("policy iterations" if task in offline else "env steps")
            ax.set_ylabel(ylabel)
            if not ax.lines:  # e.g. task-set members log no dynamics_loss of their own: say so, no empty legend
                ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center", transform=ax.transAxes)
                continue
            if metric == "dynamics_loss":
                ax.set_yscale("log")
            ax.legend(fontsize=8, loc="best", framealpha=0.8)
        fig.tight_layout()
        report_plots.save_figure(fig, out, fname)
        names.append(fname)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, metric in zip(axes, ("actor_grad_norm", "critic_grad_norm", "wm_grad_norm")):
        for variant in variants:
            values = [r[metric] for r in curves if r["variant"] == variant and r.get(metric) is not None and r[metric] > 0]
            if values:
                ax.hist(np.log10(values), bins=40, alpha=0.5, label=variant)
        ax.set_title(f"{metric} (log10, all tasks and seeds)")
        ax.set_xlabel(f"log10 {metric}")
        ax.set_ylabel("logged epochs (count)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    report_plots.save_figure(fig, out, "grad_norms.png")
    names.append("grad_norms.png")
    return names


def _normalised_scores(runs: list[dict[str, Any]], scoring: Scoring) -> dict[str, dict[str, list[float]]]:
    """variant → task → normalised scores of its finished runs (tasks with a scale)."""
    variants = [scoring.baseline, *(v.candidate for v in scoring.verdicts)]
    out: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in variants}
    for r in sorted(runs, key=lambda r: r["seed"]):
        scale = scoring.scales.get(r["task"])
        if r["variant"] in out and scale is not None and run_failure(r) is None:
            out[r["variant"]][r["task"]].append(scale.normalise(raw_score(r)))
    return {v: dict(s) for v, s in out.items() if s}


def _score_plots(runs: list[dict[str, Any]], curves: list[dict[str, Any]], scoring: Scoring, out: Path) -> list[str]:
    """rliable's pictures on the normalised scores: interval estimates, performance profiles, per-task bars and the
    normalised learning curves aggregated across tasks."""
    scores = _normalised_scores(runs, scoring)
    if not scores:
        return []
    reps = scoring.reps
    names = [report_plots.interval_estimates({v: aggregate(s, reps=reps) for v, s in scores.items()}, out),
             report_plots.performance_profiles(scores, out, reps=reps),
             report_plots.per_task_bars(scores, out, reps=reps)]  # fmt: skip
    kinds = {t: s.kind for t, s in scoring.scales.items()}
    rows = [({**r, "eval_return": r.get("eval_success")} if kinds.get(r["task"]) == "success" else r) for r in curves]  # success tasks: curves of success

    def normalise(task: str, raw: float) -> float | None:
        scale = scoring.scales.get(task)
        return scale.normalise(raw) if scale is not None and raw is not None and math.isfinite(raw) else None

    names.append(report_plots.normalised_curves([r for r in rows if r["variant"] in scores], normalise, out, reps=reps))
    return [n for n in names if n]


PROBE_COLUMNS = (("grad_sim_cosine", "cosine"), ("grad_sim_rel_error", "relative error"), ("grad_sim_rel_std", "simulator noise (rel. std)"),
                 ("grad_wm_esnr_global", "ESNR model"), ("grad_sim_esnr_global", "ESNR simulator"), ("time_probe", "probe (s)"))  # fmt: skip


def _probe_runs(curves: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[int, list[dict[str, Any]]]]:
    """(task, variant, horizon) → seed → the run's probe rows in epoch order."""
    out: dict[tuple[str, str, int], dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in sorted((r for r in curves if r.get("phase") == "probe" and r.get("probe_horizon") is not None), key=lambda r: r["epoch"]):
        out[(r["task"], r["variant"], int(r["probe_horizon"]))][int(r["seed"])].append(r)
    return out


def _gradient_quality(curves: list[dict[str, Any]]) -> list[str]:
    """The gradient probe per task × variant × horizon: each run's median over its last half of probes, then mean ± std
    over seeds (pwm/gradient_probe.py)."""
    runs = _probe_runs(curves)
    if not runs:
        return []
    lines = ["## Gradient quality", "",
             "The actor gradient each world model gives, held against the differentiable simulator's from the same real "
             "states and the same actor noise (pwm/gradient_probe.py): cosine 1 and relative error 0 would be the "
             "simulator's own gradient. Per run the median over its last half of probes, then mean ± std over seeds. "
             "\"Simulator noise\" is the simulator gradient's own standard deviation over its norm: a relative error near "
             "it is as good as the simulator's noise allows.", "",
             "| task | variant | horizon | seeds | " + " | ".join(name for _, name in PROBE_COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(PROBE_COLUMNS)]  # fmt: skip
    for (task, variant, horizon), seeds in sorted(runs.items()):
        cells = []
        for column, _ in PROBE_COLUMNS:
            per_run = [m for rows in seeds.values() if (m := late_half_median(rows, column)) is not None]
            if per_run:
                m, sd = _mean_std(per_run)
                cells.append(f"{m:.3g} ± {sd:.2g}")
            else:
                cells.append("-")
        lines.append(f"| {task} | {variant} | {horizon} | {len(seeds)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _gradient_plots(curves: list[dict[str, Any]], out: Path) -> list[str]:
    """Cosine and relative error over training, per task (rows) and horizon (columns), a line per variant."""
    runs = _probe_runs(curves)
    if not runs:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = sorted({k[0] for k in runs})
    horizons = sorted({k[2] for k in runs})
    variants = sorted({k[1] for k in runs})
    names = []
    for column, fname, label in (("grad_sim_cosine", "gradient_cosine.png", "cosine(g_model, g_simulator)"),
                                 ("grad_sim_rel_error", "gradient_rel_error.png", "‖g_model − g_sim‖ / ‖g_sim‖")):  # fmt: skip
        fig, axes = plt.subplots(len(tasks), len(horizons), figsize=(4.2 * len(horizons), 3.2 * len(tasks)), squeeze=False)
        for i, task in enumerate(tasks):
            for j, horizon in enumerate(horizons):
                ax = axes[i][j]
                for k, variant in enumerate(variants):
                    seeds = runs.get((task, variant, horizon))
                    if not seeds:
                        continue
                    length = min(len(v) for v in seeds.values())
                    steps = np.array([r["env_steps"] for r in next(iter(seeds.values()))[:length]])
                    values = np.array([[r[column] if r.get(column) is not None else np.nan for r in v[:length]] for v in seeds.values()], float)
                    m, sd = np.nanmean(values, 0), np.nanstd(values, 0)
                    ax.plot(steps, m, color=f"C{k}", label=variant)
                    ax.fill_between(steps, m - sd, m + sd, color=f"C{k}", alpha=0.2)
                if column == "grad_sim_rel_error":
                    ax.set_yscale("log")
                    ax.axhline(1.0, color="grey", ls="--", lw=0.8)
                ax.set_title(f"{task}, horizon {horizon}", fontsize=9)
                ax.set_xlabel("env steps")
                ax.set_ylabel(label, fontsize=8)
                ax.legend(fontsize=7)
        fig.tight_layout()
        report_plots.save_figure(fig, out, fname)
        names.append(fname)
    return names

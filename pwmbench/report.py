"""The publishable report of a results directory: Markdown tables (seed §8.1, §9.3), the §8.2 paragraph
filled with measured numbers, the settings that matter next to them, PNG plots and CSV exports.

Reads only the Arrow tables and suite.json, like `score`.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from pwmbench.results import read_dir
from pwmbench.scoring import Verdict, compare, format_verdict, load_results

SETTINGS = ("preset", "horizon", "max_epochs", "num_envs", "wm_iterations", "initial_wm_iterations", "wm_batch_size", "model_lr", "actor_lr", "critic_lr", "gamma", "lam", "rew_rms", "ret_rms", "world_model", "eval_every", "eval_episodes")


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def build_report(results: str | Path, out: str | Path, candidate: str | None = None, reps: int = 2000) -> Path:
    results, out = Path(results), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, suite = load_results(results)
    verdict = compare(runs, suite, candidate=candidate, reps=reps)
    curves = read_dir(results, "curves.arrow").to_pylist()
    plots = _plots(curves, verdict, out)
    _csv(runs, out / "runs.csv")
    _csv(curves, out / "curves.csv")
    _csv([t.to_dict() for t in verdict.tasks], out / "summary.csv")
    (out / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=1, default=str))
    text = _markdown(runs, suite, verdict, plots)
    path = out / "report.md"
    path.write_text(text)
    return path


def _markdown(runs: list[dict[str, Any]], suite: dict[str, Any], v: Verdict, plots: list[str]) -> str:
    b, c = v.baseline, v.candidate
    lines = [f"# pwmbench report — {suite.get('name', 'results')}: {c} vs {b}", ""]
    lines += ["## Results (seed §8.1)", "", f"| task | {b} reward (mean ± std) | {c} reward (mean ± std) | Δ% | {b} time (s) | {c} time (s) | speed ratio | Welch p |", "|---|---|---|---|---|---|---|---|"]
    for t in v.tasks:
        lines.append(
            f"| {t.task} | {_fmt(t.baseline_mean)} ± {_fmt(t.baseline_std)} | {_fmt(t.candidate_mean)} ± {_fmt(t.candidate_std)} | "
            f"{_fmt(t.delta_pct)} | {_fmt(t.baseline_time)} | {_fmt(t.candidate_time)} | {_fmt(t.speed_ratio, 2)} | {_fmt(t.p_value, 3)} |"
        )
    both = [t for t in v.tasks if t.baseline and t.candidate]
    mean = lambda xs: sum(xs) / len(xs) if xs else math.nan
    avg_delta = mean([t.delta_pct for t in both if t.delta_pct == t.delta_pct])
    avg_ratio = mean([t.speed_ratio for t in both if t.speed_ratio == t.speed_ratio])
    lines.append(f"| **average** | {_fmt(mean([t.baseline_mean for t in both]))} | {_fmt(mean([t.candidate_mean for t in both]))} | {_fmt(avg_delta)} | {_fmt(mean([t.baseline_time for t in both]))} | {_fmt(mean([t.candidate_time for t in both]))} | {_fmt(avg_ratio, 2)} | |")
    lines.append("")
    gap = next((cr.value for cr in v.criteria if cr.name == "parameter parity gap"), "-")
    ps = ", ".join(f"{t.task} p = {_fmt(t.p_value, 3)}" for t in both)
    agg = v.aggregates
    poi = agg.get("probability_of_improvement", {})
    iqm_c, iqm_b = agg.get("candidate", {}).get("iqm", {}), agg.get("baseline", {}).get("iqm", {})
    lines += [
        "## Summary (seed §8.2)",
        "",
        f"Across {len(both)} task(s), {c} changes the final evaluation return by {_fmt(avg_delta)}% on average relative to {b} "
        f"(per-task Welch's t-tests: {ps or 'none'}). Normalised per task by the best |return| of any run, the interquartile mean is "
        f"{_fmt(iqm_c.get('value'), 3)} [95% CI {_fmt(iqm_c.get('ci_low'), 3)}, {_fmt(iqm_c.get('ci_high'), 3)}] for {c} against "
        f"{_fmt(iqm_b.get('value'), 3)} for {b}, and the probability that {c} beats {b} on a task is {_fmt(poi.get('value'), 2)} "
        f"[{_fmt(poi.get('ci_low'), 2)}, {_fmt(poi.get('ci_high'), 2)}] (stratified bootstrap). The parameter-parity gap is {gap}, "
        f"and {c} takes {_fmt(avg_ratio, 2)}× the wall-clock time of {b}.",
        "",
        *[f"> {n}" for n in v.notes],
        "",
        "## Acceptance (seed §6.3)",
        "",
        "```",
        format_verdict(v),
        "```",
        "",
    ]
    matched = [x["name"] for x in suite.get("variants", []) if x.get("declared")]
    if matched:
        by = defaultdict(list)
        for r in runs:
            if r["status"] == "ok" and r["final_return"] is not None:
                by[(r["task"], r["variant"])].append(r["final_return"])
        lines += ["## Parameter-matched and compute-matched (seed §9.3)", "", f"| task | {b} | " + " | ".join(matched) + f" | {c} |", "|---|---|" + "---|" * len(matched) + "---|"]
        for t in v.tasks:
            cells = [mean(by[(t.task, m)]) for m in matched]
            lines.append(f"| {t.task} | {_fmt(t.baseline_mean)} | " + " | ".join(_fmt(x) for x in cells) + f" | {_fmt(t.candidate_mean)} |")
        for name in matched:
            declared = next(x["declared"] for x in suite["variants"] if x["name"] == name)
            lines.append(f"\n`{name}`: {b} with `wm_iterations` = {next(iter(json.loads(r['config'])['wm_iterations'] for r in runs if r['variant'] == name), '?')} (declared {declared}; FLOP ratio {suite.get('compute_matched', {}).get('flop_ratio', '-')}).")
        lines.append("")
    lines += _data_use(runs)
    lines += _model_quality(runs)
    lines += ["## Settings that matter", ""]
    configs = {r["variant"]: json.loads(r["config"]) for r in runs}
    if b in configs:
        cfg = configs[b]
        lines.append("| setting | value |")
        lines.append("|---|---|")
        for key in SETTINGS:
            lines.append(f"| {key} | `{json.dumps(cfg.get(key))}` |")
        lines.append(f"| seeds | {sorted({r['seed'] for r in runs})} |")
        for name, c_cfg in sorted(configs.items()):
            lines.append(f"| dynamics of {name} | `{c_cfg['dynamics']}` {json.dumps(c_cfg['dynamics_options'])} |")
    first = runs[0] if runs else {}
    lines += ["", f"Environment: pwmbench {first.get('pwmbench_version')}, git {first.get('git_commit')}, torch {first.get('torch_version')}, "
              f"mujoco {first.get('mujoco_version')}, dm_control {first.get('dm_control_version')}, warp {first.get('warp_lang_version')}, "
              f"Python {first.get('python_version')}, {first.get('device')} ({first.get('device_name')}, {first.get('cpu_count')} CPUs).", ""]
    statuses = defaultdict(int)
    for r in runs:
        statuses[r["status"]] += 1
    lines.append("Runs: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ".")
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "Data: `runs.csv` (one row per cell), `curves.csv` (one row per cell and epoch), `summary.csv` (per task), `verdict.json`."]
    return "\n".join(lines) + "\n"


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
    last evaluation, mean ± std over the ok seeds, and whether the model is worse than predicting "no change"."""
    columns = (("model_error_1_final", "one-step error"), ("model_error_copy_final", '"no change" error'),
               ("model_error_ratio_copy_final", "ratio"), ("model_error_H_final", "H-step error"),
               ("model_error_copy_H_final", '"no change" at H'), ("model_error_ratio_copy_H_final", "ratio at H"),
               ("model_reward_error_H_final", "reward MSE on the rollout"))  # fmt: skip
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        if r["status"] == "ok" and any(r.get(c) is not None for c, _ in columns):
            by[(r["task"], r["variant"])].append(r)
    if not by:
        return []
    lines = ["## Model quality", "",
             "The world model on held-out real episodes (the evaluation's own, never trained on) at the last evaluation, "
             "mean ± std over seeds. Errors are latent MSEs on each model's own latent scale; a ratio is the model's error "
             'over that of predicting "no change" (z_{t+1} = z_t, or z_H = z_0 at H steps), so a ratio above 1 means the '
             'model predicts worse than no change at all. Reward MSE is on normalised rewards along the open-loop rollout.', "",
             "| task | variant | seeds | " + " | ".join(name for _, name in columns) + " | verdict |",
             "|---|---|---|" + "---|" * len(columns) + "---|"]  # fmt: skip
    for (task, variant), group in sorted(by.items()):
        cells, means = [], {}
        for column, _ in columns:
            values = [float(r[column]) for r in group if r.get(column) is not None and math.isfinite(r[column])]
            if values:
                means[column], sd = _mean_std(values)
                cells.append(f"{means[column]:.3g} ± {sd:.2g}")
            else:
                cells.append("-")
        worse = [what for column, what in (("model_error_ratio_copy_final", "one step"), ("model_error_ratio_copy_H_final", "H steps"))
                 if means.get(column, 0.0) > 1.0]  # fmt: skip
        if worse:
            verdict = "**worse than no change** (" + ", ".join(worse) + ")"
        elif "model_error_ratio_copy_final" in means or "model_error_ratio_copy_H_final" in means:
            verdict = "better than no change"
        else:
            verdict = "-"
        lines.append(f"| {task} | {variant} | {len(group)} | " + " | ".join(cells) + f" | {verdict} |")
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


def _plots(curves: list[dict[str, Any]], verdict: Verdict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = [t.task for t in verdict.tasks]
    variants = sorted({r["variant"] for r in curves})
    offline = {r["task"] for r in curves if r.get("phase") == "policy"}  # task-set members: no env steps
    names = []
    for metric, fname, ylabel in (("eval_return", "learning_curves.png", "eval_return (mean ± std over seeds)"), ("dynamics_loss", "dynamics_loss.png", "dynamics_loss")):
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
                ax.plot(steps, m, label=variant)
                ax.fill_between(steps, m - sd, m + sd, alpha=0.2)
            ax.set_title(task)
            ax.set_xlabel("policy iterations" if task in offline else "env steps")
            ax.set_ylabel(ylabel)
            if metric == "dynamics_loss":
                ax.set_yscale("log")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        names.append(fname)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, metric in zip(axes, ("actor_grad_norm", "critic_grad_norm", "wm_grad_norm")):
        for variant in variants:
            values = [r[metric] for r in curves if r["variant"] == variant and r.get(metric) is not None and r[metric] > 0]
            if values:
                ax.hist(np.log10(values), bins=40, alpha=0.5, label=variant)
        ax.set_title(f"{metric} (log10, all tasks and seeds)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "grad_norms.png", dpi=110)
    plt.close(fig)
    names.append("grad_norms.png")
    return names

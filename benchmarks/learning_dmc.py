"""Show that pwmbench's PWM learns: baseline (mlp) and flow (Heun K=2) on DMC (or any registered) tasks, 3 seeds each.

Issue W2 asks for learning curves of `eval_return` rising well above a random policy's return, measured
side by side at a CPU budget, plus the time-per-epoch ratio flow/baseline with its breakdown. This script
trains every (task, variant, seed) cell with `pwmbench.pwm.cell.train_cell` (N worker processes, one torch
thread each), measures a uniform-random policy on the same tasks, and writes to `--out`:
  cells/<task>/<variant>/<seed>/{curves,run}.arrow, summary.json, summary.md and learning_curves.png.
Re-running resumes: finished cells are skipped.

    python benchmarks/learning_dmc.py                      # the recorded run (see summary.md for its settings)
    python benchmarks/learning_dmc.py --epochs 60 --seeds 42 --out /tmp/smoke  # a smoke test

PWM's protocol pretrains the world model on data before any policy learning (`general.pretrain`):
`--pretrain-episodes N [--pretrain-iterations K]` collects N episodes of each task with a uniform-random policy
(`pwmbench data collect --task`, once, into OUT/pretrain_data/<task>) and pretrains every cell's world model on
them for K steps with the same data order for every variant. The model-quality diagnostics (`model_error_*`,
measured on the held-out evaluation episodes) are summarised and plotted next to the returns.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from pwmbench.suite.spec import safe_name  # the runner's cell layout: cells/<task>/<variant>/<seed>

HERE = Path(__file__).resolve().parent

# The CPU budget: everything not listed is PWM's default (pwmbench.pwm.config.PWMConfig).
BUDGET = {
    "num_envs": 16,
    "wm_batch_size": 64,
    "world_model": {"units": [256, 256], "encoder_units": [256], "latent_dim": 128},
    "wm_buffer_size": 200_000,
    "eval_every": 50,
    "eval_episodes": 10,
    "checkpoint_every": 50,
}
VARIANTS = {"mlp": {"dynamics": "mlp"}, "flow-heun2": {"dynamics": "flow", "dynamics_options": {"integrator": "heun", "substeps": 2}}}
TIME_KEYS = ("time_epoch", "time_env", "time_imagine", "time_actor_backward", "time_critic", "time_wm")
MODEL_KEYS = ("model_error_1", "model_error_copy", "model_error_H", "model_reward_error_H")


def collect_pretrain_data(task: str, episodes: int, out: Path, seed: int = 0) -> Path:
    """N random-policy episodes of `task` in TD-MPC2's chunk format (once; reused when present)."""
    import subprocess

    target = out / "pretrain_data" / safe_name(task)
    if not (target / "metadata.json").exists():
        cmd = [sys.executable, "-m", "pwmbench", "data", "collect", "--task", task, "--episodes", str(episodes),
               "--policy", "random", "--seed", str(seed), "--out", str(target)]  # fmt: skip
        subprocess.run(cmd, check=True)
    return target


def run_cell(task: str, variant: str, seed: int, epochs: int, out: str, budget: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from pwmbench.pwm.cell import RUN_FILE, run_status, train_cell
    from pwmbench.pwm.config import resolve_config

    cfg = resolve_config({**budget, **VARIANTS[variant], "max_epochs": epochs})
    path = Path(out)
    if run_status(path / RUN_FILE) in ("ok", "diverged"):  # a failed cell is retried (train_cell resumes it)
        return {"task": task, "variant": variant, "seed": seed, "status": "cached"}
    result = train_cell(task, cfg, seed, path, identity={"variant": variant})
    return {"task": task, "variant": variant, "seed": seed, "status": result.status, "wall_s": result.row["wall_s"]}


def random_policy_return(task: str, episodes: int = 10, seed: int = 0) -> float:
    import torch

    from pwmbench import api

    env = api.task(task).make_env(episodes, seed)
    env.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(episodes, dtype=torch.float64)
    for _ in range(env.episode_length):
        _, reward, *_ = env.step(torch.rand(episodes, env.act_dim, generator=gen) * 2 - 1)
        total += reward.double()
    return float(total.mean())


def summarise(tasks: list[str], seeds: list[int], out: Path, budget: dict) -> dict:
    from pyarrow import ipc

    summary: dict = {"settings": {**budget, "variants": VARIANTS, "seeds": seeds}, "tasks": {}}
    for task in tasks:
        entry: dict = {"random_return": random_policy_return(task), "variants": {}}
        for variant in VARIANTS:
            finals, curves, times = [], [], {k: [] for k in TIME_KEYS}
            model_curves: dict[str, list] = {k: [] for k in MODEL_KEYS}
            model_final: dict[str, list] = {k: [] for k in MODEL_KEYS}
            pretrain_s = []
            for seed in seeds:
                cell = out / "cells" / safe_name(task) / variant / str(seed)
                run = ipc.open_file(cell / "run.arrow").read_all().to_pylist()[0]
                rows = ipc.open_file(cell / "curves.arrow").read_all().to_pylist()
                finals.append(run["final_return"])
                curves.append([(r["env_steps"], r["eval_return"]) for r in rows if r["eval_return"] is not None])
                train_rows = [r for r in rows if r.get("phase") in (None, "train")]
                pretrain_s.append(max((r["wall_s"] for r in rows if r.get("phase") == "pretrain"), default=0.0))
                for k in MODEL_KEYS:
                    points = [(r["env_steps"], r[k]) for r in train_rows if r.get(k) is not None]
                    model_curves[k].append(points)
                    model_final[k].append(points[-1][1] if points else None)
                curves[-1] = [(r["env_steps"], r["eval_return"]) for r in train_rows if r["eval_return"] is not None]
                trained = [r for r in train_rows if r["wm_updates"] is not None and r["wm_updates"] == budget.get("wm_iterations", 8)]
                for k in TIME_KEYS:
                    times[k].append(statistics.median(r[k] for r in trained))
            entry["variants"][variant] = {
                "final_return_mean": statistics.mean(finals),
                "final_return_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                "final_returns": finals,
                "curves": curves,
                "time_per_epoch": {k: statistics.mean(v) for k, v in times.items()},
                "pretrain_wall_s": statistics.mean(pretrain_s),
                "model_final": {k: [x for x in v if x is not None] for k, v in model_final.items()},
                "model_curves": model_curves,
            }
        summary["tasks"][task] = entry
    return summary


def write_report(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = list(summary["tasks"])
    variants = list(dict.fromkeys(v for entry in summary["tasks"].values() for v in entry["variants"]))
    colour = {v: f"C{i}" for i, v in enumerate(variants)}  # one colour per variant in every panel; the metric is the line style
    fig, axes = plt.subplots(2, len(tasks), figsize=(6 * len(tasks), 8), squeeze=False)
    lines = [f"# PWM learns on {', '.join(tasks)}: baseline vs flow", "", f"Settings (everything else PWM's defaults): `{json.dumps(summary['settings'])}`", ""]
    lines += ["| task | random policy | variant | final eval return (mean ± std, 3 seeds) | per-seed |", "|---|---|---|---|---|"]
    for ax, task in zip(axes[0], tasks):
        entry = summary["tasks"][task]
        for variant, v in entry["variants"].items():
            steps = np.array([s for s, _ in v["curves"][0]])
            values = np.array([[r for _, r in c] for c in v["curves"]])
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, color=colour[variant], label=variant)
            ax.fill_between(steps, mean - std, mean + std, color=colour[variant], alpha=0.25)
            lines.append(f"| {task} | {entry['random_return']:.1f} | {variant} | {v['final_return_mean']:.1f} ± {v['final_return_std']:.1f} | {', '.join(f'{x:.1f}' for x in v['final_returns'])} |")
        ax.axhline(entry["random_return"], color="grey", linestyle="--", label="random policy")
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval_return (10 episodes, deterministic actor)")
        ax.legend()
    for ax, task in zip(axes[1], tasks):
        for variant, v in summary["tasks"][task]["variants"].items():
            for key, style in (("model_error_H", "-"), ("model_error_1", ":")):
                runs = [c for c in v["model_curves"][key] if c]
                if not runs:
                    continue
                n = min(len(c) for c in runs)
                steps = np.array([s for s, _ in runs[0][:n]])
                values = np.array([[x for _, x in c[:n]] for c in runs])
                ax.plot(steps, values.mean(0), style, color=colour[variant], label=f"{variant} {key}")
            copies = [c for c in v["model_curves"]["model_error_copy"] if c]
            if copies and variant == next(iter(summary["tasks"][task]["variants"])):
                n = min(len(c) for c in copies)
                ax.plot([s for s, _ in copies[0][:n]], np.array([[x for _, x in c[:n]] for c in copies]).mean(0), "k--", label="no change (copy), one step")
        ax.set_yscale("log")
        ax.set_title(f"{task}: held-out model error (mean over seeds)")
        ax.set_xlabel("env steps")
        ax.set_ylabel("latent MSE")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=120)
    lines += ["", "## Time per training epoch (s, median over epochs, mean over seeds)", "", "| task | variant | " + " | ".join(TIME_KEYS) + " |", "|---|---|" + "---|" * len(TIME_KEYS)]
    for task, entry in summary["tasks"].items():
        for variant, v in entry["variants"].items():
            lines.append(f"| {task} | {variant} | " + " | ".join(f"{v['time_per_epoch'][k]:.3f}" for k in TIME_KEYS) + " |")
        flow, mlp = entry["variants"]["flow-heun2"]["time_per_epoch"], entry["variants"]["mlp"]["time_per_epoch"]
        lines.append(f"| {task} | **ratio flow/mlp** | " + " | ".join(f"{flow[k] / mlp[k]:.2f}" if mlp[k] else "-" for k in TIME_KEYS) + " |")
    lines += ["", "## Model quality at the last evaluation (held-out evaluation episodes; mean ± std over seeds)", "",
              "`ratio_1` = model_error_1 / model_error_copy: above 1, the model's one-step prediction is worse than predicting no change.", "",
              "| task | variant | pretrain wall (s) | " + " | ".join(MODEL_KEYS) + " | ratio_1 |", "|---|---|---|" + "---|" * (len(MODEL_KEYS) + 1)]  # fmt: skip
    for task, entry in summary["tasks"].items():
        for variant, v in entry["variants"].items():
            finals = v["model_final"]

            def fmt(xs: list) -> str:
                return f"{statistics.mean(xs):.3g} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.2g}" if xs else "-"

            ratios = [a / b for a, b in zip(finals["model_error_1"], finals["model_error_copy"]) if b]
            lines.append(f"| {task} | {variant} | {v['pretrain_wall_s']:.0f} | " + " | ".join(fmt(finals[k]) for k in MODEL_KEYS) + f" | {fmt(ratios)} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["dmc/cheetah-run", "dmc/cartpole-balance"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 123, 456])
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "learning_dmc")
    parser.add_argument("--pretrain-episodes", type=int, default=0, help="collect N random-policy episodes per task and pretrain on them (0: no pretraining)")
    parser.add_argument("--pretrain-iterations", type=int, default=None, help="world-model pretraining steps (default: the task's PWM number, else 50,000)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="change the budget (same for both variants)")
    parser.add_argument("--replot", action="store_true", help="redraw OUT/learning_curves.png and summary.md from OUT/summary.json; train nothing")
    args = parser.parse_args()
    if args.replot:
        write_report(json.loads((args.out / "summary.json").read_text()), args.out)
        return
    from pwmbench.pwm.config import parse_set

    budget = {**BUDGET, **parse_set(args.sets)}
    args.out.mkdir(parents=True, exist_ok=True)
    per_task = {t: dict(budget) for t in args.tasks}
    if args.pretrain_episodes:
        for t in args.tasks:
            per_task[t]["pretrain_data"] = str(collect_pretrain_data(t, args.pretrain_episodes, args.out))
            if args.pretrain_iterations is not None:
                per_task[t]["pretrain_wm_iterations"] = args.pretrain_iterations
        budget = {**budget, "pretrain_episodes": args.pretrain_episodes, "pretrain_wm_iterations": args.pretrain_iterations, "pretrain_policy": "random"}
    jobs = [(t, v, s) for t in args.tasks for v in VARIANTS for s in args.seeds]
    start = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(run_cell, t, v, s, args.epochs, str(args.out / "cells" / safe_name(t) / v / str(s)), per_task[t]): (t, v, s) for t, v, s in jobs}
        for future in as_completed(futures):
            print(f"[{time.time() - start:7.0f} s] {future.result()}", file=sys.stderr, flush=True)
    write_report(summarise(args.tasks, args.seeds, args.out, budget), args.out)
    write_suite_record(args.out, budget, args.seeds)


def write_suite_record(out: Path, budget: dict, seeds: list[int]) -> Path:
    """OUT/suite.json, so that `pwmbench score OUT` and `pwmbench report OUT` re-score the run under the current
    protocol: the baseline, the variants, the seeds, the shared settings and each task's parity gap (from the run
    rows' parameter counts, as scoring itself would)."""
    from pwmbench.results.tables import read_dir

    runs = read_dir(out, "run.arrow").to_pylist()
    parity: dict = {}
    for task in sorted({r["task"] for r in runs}):
        totals = {r["variant"]: r["params_total"] for r in runs if r["task"] == task and r.get("params_total")}
        if "mlp" in totals:
            parity[task] = {"totals": totals, "gap_pct": {v: 100.0 * (n - totals["mlp"]) / totals["mlp"] for v, n in totals.items()}}
    record = {
        "name": out.name, "description": "benchmarks/learning_dmc.py (PWM learning, baseline vs flow)", "tasks": sorted({r["task"] for r in runs}),
        "seeds": seeds, "baseline": "mlp", "parity_tolerance": 2.0, "base": budget,
        "variants": [{"name": v, **VARIANTS[v], "declared": {}} for v in VARIANTS], "parity": parity,
    }  # fmt: skip
    path = out / "suite.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


if __name__ == "__main__":
    main()

"""What pretraining budget makes a world model beat the trivial predictors? (W11 item 2: the model-quality gate.)

The gate (docs/protocol.md#the-model-quality-gate) refuses a "better" or "non-inferior" decision between world models
that predict no better than "no change" or a constant reward on held-out episodes. A gate is only useful if trained
models pass it and untrained ones fail it, so this script measures the ratios against pretraining steps:

- N random-policy episodes of a task to pretrain on (`pwmbench data collect --task`, seed 0) and M more with another
  seed as the held-out set (never trained on);
- per (variant, seed): PWM's single-task pretraining (pwmbench.pwm.pretrain, the code a suite's [pretrain] runs) for
  the largest budget, measured at each budget on its way (--steps), on the same held-out windows for every variant
  and seed, normalised as training normalises (pwmbench.pwm.diagnostics.model_quality, the run rows' figures):
  model_error_ratio_copy (one step vs "no change"), model_error_ratio_copy_H (H steps open loop vs "no change" over
  H steps), model_reward_ratio_mean_H (open-loop reward error vs the held-out windows' mean reward);
- writes OUT/summary.json (every measurement) and OUT/summary.md (geometric mean and range of each ratio over seeds).

    python benchmarks/model_quality_budget.py                        # the recorded run (benchmarks/results/model_quality_budget)
    python benchmarks/model_quality_budget.py --steps 100 300 --seeds 42 --out /tmp/mq   # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The smoke suite's world model and batch (the cheapest a suite here uses); everything else PWM's defaults.
WORLD = {"world_model": {"units": [128, 128], "encoder_units": [128], "latent_dim": 64}, "wm_batch_size": 64, "num_envs": 4}
VARIANTS = {"mlp": {"dynamics": "mlp"}, "flow": {"dynamics": "flow", "dynamics_options": {"integrator": "heun", "substeps": 2}}}
RATIOS = ("model_error_ratio_copy", "model_error_ratio_copy_H", "model_reward_ratio_mean_H")


def collect(task: str, episodes: int, seed: int, target: Path) -> Path:
    if not (target / "metadata.json").exists():
        cmd = [sys.executable, "-m", "pwmbench", "data", "collect", "--task", task, "--episodes", str(episodes),
               "--policy", "random", "--seed", str(seed), "--out", str(target)]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return target


def held_out_windows(directory: Path, horizon: int, count: int):
    """`count` (H+1)-windows of the held-out episodes (fixed generator): raw obs [H+1, N, D], act [H, N, A], rew [H, N]."""
    import torch

    from pwmbench.data.dataset import OfflineDataset
    from pwmbench.pwm.diagnostics import EpisodeRecord, sample_windows

    data = OfflineDataset(directory)
    obs, act, rew, lengths = [], [], [], []
    for o, a, r, n in data.episode_blocks():  # [E, L+1, D], [E, L, A]?, [E, L], [E]
        obs.append(o), act.append(a), rew.append(r), lengths.append(n)
    obs, act, rew, lengths = torch.cat(obs), torch.cat(act), torch.cat(rew), torch.cat(lengths)
    # dataset entries: obs[i], with act[i], rew[i] the action and reward that led *to* obs[i] (TD-MPC2, entry 0 NaN)
    record = EpisodeRecord(obs.transpose(0, 1).float(), act[:, 1:].transpose(0, 1).float(), rew[:, 1:].transpose(0, 1).float(), lengths - 1)
    return sample_windows(record, horizon, count, torch.Generator().manual_seed(2026))


def run_one(task: str, variant: str, seed: int, steps: list[int], train_dir: str, windows) -> dict:
    import torch

    torch.set_num_threads(1)
    from pwmbench import api
    from pwmbench.pwm.config import resolve_config
    from pwmbench.pwm.diagnostics import model_quality
    from pwmbench.pwm.pretrain import Pretraining
    from pwmbench.pwm.trainer import PWMTrainer

    cfg = resolve_config({**WORLD, **VARIANTS[variant], "pretrain_data": train_dir, "pretrain_wm_iterations": max(steps)})
    trainer = PWMTrainer(api.task(task), cfg, seed)
    obs, act, rew = windows
    rows = []

    def measure(step: int) -> None:
        with torch.no_grad():
            o = trainer.obs_rms.normalize(obs) if trainer.obs_rms is not None else obs
            r = trainer.rew_rms.normalize(rew, clip=cfg.rew_clip) if trainer.rew_rms is not None else rew
            rows.append({"step": step, **model_quality(trainer.wm, o, act, r)})

    pre = trainer.pretraining or Pretraining(trainer)
    pre.load_data(trainer)
    pre.loaded = True
    measure(0)
    start = time.perf_counter()
    pre.run(trainer, on_step=lambda s: measure(s) if s in steps else None)
    return {"task": task, "variant": variant, "seed": seed, "wall_s": time.perf_counter() - start, "rows": rows}


def summarise(results: list[dict], steps: list[int]) -> dict[str, dict[str, dict[int, dict[str, float]]]]:
    """variant → ratio → step → geometric mean, min, max over seeds, how many seeds are below 1, and the gate's
    one-sided 95% t upper bound of the geometric mean (pwmbench.analysis.quality_gate.bound; NaN for one seed)."""
    from pwmbench.analysis.quality_gate import bound

    out: dict = {}
    for variant in sorted({r["variant"] for r in results}, key=list(VARIANTS).index):
        out[variant] = {}
        for ratio in RATIOS:
            out[variant][ratio] = {}
            for step in [0, *steps]:
                values = [row[ratio] for r in results if r["variant"] == variant for row in r["rows"] if row["step"] == step]
                values = [v for v in values if v == v and v > 0]
                if values:
                    out[variant][ratio][step] = {"geomean": math.exp(sum(map(math.log, values)) / len(values)), "min": min(values),
                                                 "max": max(values), "below_1": sum(v < 1 for v in values), "seeds": len(values),
                                                 "upper": bound(values)[1]}  # fmt: skip
    return out


def markdown(task: str, summary: dict, steps: list[int], meta: dict) -> str:
    lines = [f"# Model quality against pretraining steps: {task}", "", meta["machine"], "",
             f"Settings: {json.dumps(meta['settings'])}; train data {meta['train_episodes']} random-policy episodes (seed 0), "
             f"held out {meta['held_out_episodes']} (seed 1), {meta['windows']} held-out windows of H+1 = 17 steps, same for every run.",
             "", "Each cell: geometric mean over seeds [min, max] (seeds below 1 / seeds), then the gate's one-sided 95% t upper bound "
             "of the geometric mean (✓ below 1: the gate would pass it). Below 1 = better than the trivial predictor.", ""]  # fmt: skip
    names = {"model_error_ratio_copy": "1-step vs no change", "model_error_ratio_copy_H": "H-step vs no change", "model_reward_ratio_mean_H": "reward vs mean reward"}
    head = "| variant | ratio | " + " | ".join(f"{s:,} steps" for s in [0, *steps]) + " |"
    lines += [head, "|" + "---|" * (len(steps) + 3)]
    for variant, ratios in summary.items():
        for ratio, by_step in ratios.items():
            cells = []
            for s in [0, *steps]:
                c = by_step.get(s)
                up = c.get("upper", math.nan) if c else math.nan
                mark = f"; bound {up:.3g}{' ✓' if up < 1 else ''}" if up == up else ""
                cells.append(f"{c['geomean']:.3g} [{c['min']:.3g}, {c['max']:.3g}] ({c['below_1']}/{c['seeds']}{mark})" if c else "-")
            lines.append(f"| {variant} | {names[ratio]} | " + " | ".join(cells) + " |")
    lines += ["", "Pretraining wall-clock (s, mean over seeds, one thread): " + ", ".join(f"{v} {w:.0f}" for v, w in meta["wall_s"].items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="dmc/cartpole-swingup")
    ap.add_argument("--steps", type=int, nargs="+", default=[300, 1000, 3000, 10000, 30000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 123, 456])
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--held-out", type=int, default=10)
    ap.add_argument("--windows", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "model_quality_budget")
    ap.add_argument("--resummarise", action="store_true", help="rewrite OUT/summary.md from OUT/summary.json; train nothing")
    args = ap.parse_args()
    if args.resummarise:
        record = json.loads((args.out / "summary.json").read_text())
        steps = sorted({row["step"] for r in record["runs"] for row in r["rows"]} - {0})
        record["summary"] = summarise(record["runs"], steps)
        (args.out / "summary.json").write_text(json.dumps(record, indent=1) + "\n")
        (args.out / "summary.md").write_text(markdown(record["runs"][0]["task"], record["summary"], steps, record["meta"]))
        print((args.out / "summary.md").read_text())
        return
    args.out.mkdir(parents=True, exist_ok=True)
    data = Path(os.environ.get("PWMBENCH_BUDGET_DATA", "/tmp/pwmbench-budget-data")) / args.task.replace("/", "_")
    train = collect(args.task, args.episodes, 0, data / "train")
    held = collect(args.task, args.held_out, 1, data / "held_out")
    windows = held_out_windows(held, 16, args.windows)
    load = os.getloadavg()[0]
    jobs = [(args.task, v, s, sorted(args.steps), str(train), windows) for v in args.variants for s in args.seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_one, *zip(*jobs)))
    import torch

    from pwmbench.results.provenance import cpu_model

    meta = {
        "machine": f"{cpu_model() or platform.machine()} · {os.cpu_count()} CPUs · torch {torch.__version__} · "
                   f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · load average {load:.1f} before, {os.getloadavg()[0]:.1f} after · {args.workers} workers",
        "settings": {**WORLD, "variants": {v: VARIANTS[v] for v in args.variants}, "seeds": args.seeds}, "train_episodes": args.episodes,
        "held_out_episodes": args.held_out, "windows": int(windows[0].shape[1]),
        "wall_s": {v: sum(r["wall_s"] for r in results if r["variant"] == v) / len(args.seeds) for v in args.variants},
    }  # fmt: skip
    summary = summarise(results, sorted(args.steps))
    (args.out / "summary.json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": results}, indent=1) + "\n")
    (args.out / "summary.md").write_text(markdown(args.task, summary, sorted(args.steps), meta))
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()

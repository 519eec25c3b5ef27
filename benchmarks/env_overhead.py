"""What pwmbench's batched environment wrappers cost over the raw environments (goal: ≤ 10 %).

For each task and copy count the raw environments (built exactly as the plugin builds them) and the wrapper
(`api.task(name).make_env(n, seed)`) are stepped with the same actions for the same number of agent steps,
with action repeat 2 and episode resets at the same points (dm_control: 500 agent steps; Meta-World: 100,
plus the extra zero-action step after each reset). The raw loop gets actions already clipped and scaled and
keeps observations as the environment returns them; the wrapper's clipping, scaling, flattening, stacking
and tensor conversion are what the overhead measures. Each setting is measured `--repeats` times,
alternating raw and wrapped, and the fastest run of each counts (least disturbed by other load).

    python benchmarks/env_overhead.py                          # writes benchmarks/results/env_overhead.{json,md}
    python benchmarks/env_overhead.py --steps 20 --out /tmp/eo  # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pwmbench_dmc  # the plugins set MUJOCO_GL=off before they import MuJoCo
import pwmbench_mw
import torch

from pwmbench import api
from pwmbench.results.provenance import cpu_model

TASKS = ("dmc/walker-walk", "dmc/cheetah-run", "mw/reach", "mw/push")
COPIES = (1, 8)
SEED = 0
GOAL_PCT = 10.0


def raw_dmc(name: str, n: int, actions: np.ndarray) -> float:
    """Seconds for the raw dm_control loop (actions already in the action spec's units)."""
    envs = [pwmbench_dmc.load_env(name, s) for s in pwmbench_dmc.copy_seeds(SEED, n)]
    spec = envs[0].action_spec()
    scaled = spec.minimum + (actions + 1.0) * 0.5 * (spec.maximum - spec.minimum)
    for env in envs:
        env.reset()
    t = np.zeros(n, dtype=np.int64)
    start = time.perf_counter()
    for step in scaled:
        for i, env in enumerate(envs):
            reward = 0.0
            for _ in range(pwmbench_dmc.ACTION_REPEAT):
                ts = env.step(step[i])
                reward += ts.reward or 0.0
                if ts.last():
                    break
            t[i] += 1
            if ts.last() or t[i] >= pwmbench_dmc.EPISODE_LENGTH:
                t[i] = 0
                env.reset()
    return time.perf_counter() - start


def raw_mw(name: str, n: int, actions: np.ndarray) -> float:
    """Seconds for the raw Meta-World loop (reset, zero step, action repeat 2, 100 agent steps)."""
    envs = [pwmbench_mw.load_env(name, s) for s in pwmbench_mw.copy_seeds(SEED, n)]
    zero = np.zeros(pwmbench_mw.ACT_DIM, dtype=np.float32)
    for env in envs:
        env.reset()
        env.step(zero)
    t = np.zeros(n, dtype=np.int64)
    start = time.perf_counter()
    for step in actions:
        for i, env in enumerate(envs):
            reward = 0.0
            for _ in range(pwmbench_mw.ACTION_REPEAT):
                _, r, *_ = env.step(step[i])
                reward += r
            t[i] += 1
            if t[i] >= pwmbench_mw.EPISODE_LENGTH:
                t[i] = 0
                env.reset()
                env.step(zero)
    return time.perf_counter() - start


def wrapped(name: str, n: int, actions: np.ndarray) -> float:
    """Seconds for the same steps through pwmbench's batched wrapper."""
    env = api.task(name).make_env(n, SEED)
    env.reset()
    steps = torch.as_tensor(actions)
    start = time.perf_counter()
    for step in steps:
        env.step(step)
    elapsed = time.perf_counter() - start
    env.close()
    return elapsed


def measure(name: str, n: int, steps: int, repeats: int) -> dict[str, Any]:
    act_dim = api.task(name).spec.act_dim
    actions = np.random.default_rng(1).uniform(-1, 1, (steps, n, act_dim)).astype(np.float32)
    raw = raw_dmc if name.startswith("dmc/") else raw_mw
    short = name.split("/", 1)[1]
    raw_s, wrapped_s = [], []
    for _ in range(repeats):
        raw_s.append(raw(short, n, actions))
        wrapped_s.append(wrapped(name, n, actions))
    best_raw, best_wrapped = min(raw_s), min(wrapped_s)
    return {
        "task": name,
        "copies": n,
        "agent_steps_per_copy": steps,
        "raw_steps_per_s": n * steps / best_raw,
        "wrapped_steps_per_s": n * steps / best_wrapped,
        "overhead_pct": 100.0 * (best_wrapped / best_raw - 1.0),
        "raw_s": raw_s,
        "wrapped_s": wrapped_s,
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("mujoco", "dm_control", "metaworld", "gymnasium", "numpy", "torch", "pwmbench"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def markdown(result: dict[str, Any]) -> str:
    machine, v = result["machine"], result["versions"]
    lines = [
        "# Environment wrapper overhead",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['platform']}); {result['date']}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        f"Agent steps (action repeat 2) per second, summed over copies; {result['setting']['steps']} agent steps per copy,",
        f"best of {result['setting']['repeats']} alternating runs. "
        + f"Overhead = wrapped time / raw time − 1 (goal ≤ {GOAL_PCT:g} %).",
        "",
        "| task | copies | raw steps/s | wrapped steps/s | overhead |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["results"]:
        lines.append(
            f"| {row['task']} | {row['copies']} | {row['raw_steps_per_s']:.0f} | {row['wrapped_steps_per_s']:.0f} "
            f"| {row['overhead_pct']:+.1f} % |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="agent steps per copy in each run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind; the fastest counts")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output directory")
    args = parser.parse_args()
    results = []
    for name in TASKS:
        for n in COPIES:
            row = measure(name, n, args.steps, args.repeats)
            results.append(row)
            print(
                f"{name:18s} ×{n}: raw {row['raw_steps_per_s']:8.0f}/s  wrapped {row['wrapped_steps_per_s']:8.0f}/s  "
                f"overhead {row['overhead_pct']:+.1f} %",
                flush=True,
            )
    result = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "setting": {"steps": args.steps, "repeats": args.repeats, "seed": SEED, "goal_overhead_pct": GOAL_PCT},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "env_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "env_overhead.md").write_text(markdown(result))
    print(f"wrote {args.out / 'env_overhead.json'} and {args.out / 'env_overhead.md'}")


if __name__ == "__main__":
    main()

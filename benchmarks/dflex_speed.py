"""Speed of the dflex tasks on Warp (issue W3's measurements), each figure from one run on this machine.

For Ant, Humanoid and Hopper, through pwmbench's task API (`api.task("dflex/<name>").make_env`), 64 envs, each
task's own substeps and mass-matrix caching (Ant/Hopper 16/16, Humanoid 48/48), ground contact on:

- `env_steps_per_s`: batched env steps per second on the fast path (no tape), random actions in [−1, 1];
  `sim_steps_per_s`: the same through `Simulator.step` alone (the env's overhead is the ratio);
- `taped_forward_s` / `backward_s` for a 16-step differentiable rollout (Σ rewards → actions and initial
  state), their ratio (goal ≤ 1.8), and the memory the rollout's tapes hold (every Warp array and gradient they
  reference, counted exactly; the RSS growth, sampled every 2 ms, is recorded too but allocator reuse hides it);
- `compile_cold_s` / `compile_warm_s`: a fresh process that makes the env, steps once and runs one taped
  step's backward, with an empty kernel cache and then again with the filled one (this includes Python and torch
  start-up; the difference is the compile).

dflex.md's anchor: a Featherstone Ant in Warp's former `warp.sim`, 64 envs, 16 substeps: ≈ 37 batched steps/s
(goal: at least that, aim 2×). Warp runs CPU kernels on one thread. Where CUDA is present (`--device cuda`), the
same figures on the GPU.

    python benchmarks/dflex_speed.py [--device cpu|cuda] [--tasks ant hopper humanoid]
    # writes benchmarks/results/dflex_speed[_cuda].{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENVS, HORIZON = 64, 16


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the resident set size in a thread; `peak - start` is what the block added at its worst."""

    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def tape_bytes(loss) -> int:
    """Bytes of every Warp array (and its gradient) that the tapes of the differentiable steps behind `loss`
    hold — the rollout's memory on the simulator side, counted exactly (unique arrays by address)."""
    seen, total, stack, visited = set(), 0, [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        tape = getattr(node, "tape", None)
        if tape is not None:
            for launch in tape.launches:
                for arg in list(launch[3]) + list(launch[4]):
                    for arr in (arg, getattr(arg, "grad", None)):
                        if hasattr(arr, "capacity") and arr.ptr is not None and arr.ptr not in seen:
                            seen.add(arr.ptr)
                            total += arr.capacity
        stack.extend(fn for fn, _ in node.next_functions)
    return total


def actions(env, seed: int):
    import torch

    return torch.rand(env.num_envs, env.act_dim, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def measure_task(name: str, device: str, steps: int) -> dict:
    import torch

    from pwmbench import api

    task = api.task(f"dflex/{name}")
    env = task.make_env(ENVS, seed=0, device=device)
    env.reset(seed=0)
    plan = [actions(env, k).to(device) for k in range(max(steps, HORIZON))]
    env.step(plan[0])  # warm-up
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for a in plan[:steps]:
        env.step(a)
    sync()
    env_rate = steps / (time.perf_counter() - start)

    sim = env.sim
    q, qd = env.state
    tau = env.task.joint_forces(plan[0], env.model.dof_count)
    sim.step(q, qd, tau)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        q, qd = sim.step(q, qd, tau)
    sync()
    sim_rate = steps / (time.perf_counter() - start)

    def rollout(diff, plan):
        diff.reset(seed=0)
        diff.detach()
        acts = torch.stack(plan).clone().requires_grad_(True)
        total = torch.zeros((), device=device)
        for k in range(HORIZON):
            _, reward, *_ = diff.step(acts[k])
            total = total + reward.sum()
        return acts, total

    # Warm up (adjoint kernels) on a 2-env copy, so that the memory the 64-env tape takes is new to the process.
    small = task.make_env(2, seed=0, device=device, differentiable=True)
    acts, total = rollout(small, [a[:2] for a in plan[:HORIZON]])
    total.backward()
    del acts, total, small
    diff = task.make_env(ENVS, seed=0, device=device, differentiable=True)
    sync()
    with PeakRSS() as mem:
        start = time.perf_counter()
        acts, total = rollout(diff, plan[:HORIZON])
        sync()
        forward = time.perf_counter() - start
        held = tape_bytes(total)
        start = time.perf_counter()
        total.backward()
        sync()
        backward = time.perf_counter() - start
    finite = bool(torch.isfinite(acts.grad).all())
    spec = task.spec
    return {
        "task": spec.name,
        "substeps": env.task.substeps,
        "mm_caching_frequency": env.task.mm_caching_frequency,
        "envs": ENVS,
        "env_steps_per_s": env_rate,
        "sim_steps_per_s": sim_rate,
        "agent_steps_per_s": env_rate * ENVS,
        "taped_forward_s": forward,
        "backward_s": backward,
        "backward_over_forward": backward / forward,
        "taped_forward_steps_per_s": HORIZON / forward,
        "rollout_tape_MiB": held / 2**20,
        "rollout_peak_rss_extra_MiB": (mem.peak - mem.start) / 2**20,
        "gradients_finite": finite,
    }


COMPILE_SNIPPET = """
import sys, time, torch
t0 = time.perf_counter()
from pwmbench import api
env = api.task('dflex/{name}').make_env(2, 0, device='{device}', differentiable=True)
a = torch.zeros(2, env.act_dim, requires_grad=True)
env.step(a)
_, r, *_ = env.step(torch.zeros(2, env.act_dim))  # the reward reads the observation before its step
r.sum().backward()
print(time.perf_counter() - t0)
"""


def compile_times(name: str, device: str) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PWMBENCH_WARP_CACHE": cache}
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET.format(name=name, device=device)], env=env,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            runs.append(float(out.stdout.strip().splitlines()[-1]))
    return {"compile_cold_s": runs[0], "compile_warm_s": runs[1]}


def machine(device: str) -> str:
    from pwmbench.results.provenance import cpu_model, device_name

    text = f"{cpu_model()}, {os.cpu_count()} CPUs"
    return text + (f", {device_name(device)}" if device.startswith("cuda") else "")


def write(results: list[dict], device: str, out: Path) -> None:
    import torch
    import warp

    record = {"machine": machine(device), "device": device, "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "versions": {"warp": warp.__version__, "torch": torch.__version__, "python": platform.python_version()},
              "anchor_ant_batched_steps_per_s": 37.0, "results": results}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        f"# dflex tasks on Warp: speed ({device})",
        "",
        f"{record['machine']}; warp {warp.__version__}, torch {torch.__version__}; {record['date']}. "
        f"{ENVS} envs, ground contact on, each task's substeps; taped rollout = {HORIZON} env steps, Σ rewards → actions.",
        "",
        "| task | substeps | batched env steps/s | sim only | taped fwd (s) | backward (s) | bwd/fwd | tape memory MiB | compile cold / warm (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['task']} | {r['substeps']} | {r['env_steps_per_s']:.1f} | {r['sim_steps_per_s']:.1f} | {r['taped_forward_s']:.3f} | "
            f"{r['backward_s']:.3f} | {r['backward_over_forward']:.2f} | {r['rollout_tape_MiB']:.0f} | "
            f"{r.get('compile_cold_s', float('nan')):.1f} / {r.get('compile_warm_s', float('nan')):.1f} |"
        )
    lines += ["", "Anchor: ≈ 37 batched Ant steps/s (64 envs, 16 substeps, no gradients) for a Featherstone simulator on Warp (warp.sim) on a 2-core CPU."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", nargs="+", default=["ant", "humanoid", "hopper"])
    parser.add_argument("--steps", type=int, default=30, help="timed steps for the rates")
    parser.add_argument("--no-compile", action="store_true", help="skip the cold/warm compile measurement")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or HERE / "results" / ("dflex_speed" + ("" if args.device == "cpu" else "_cuda"))
    results = []
    for name in args.tasks:
        result = measure_task(name, args.device, args.steps)
        if not args.no_compile:
            result.update(compile_times(name, args.device))
        results.append(result)
        print(json.dumps(result), flush=True)
    write(results, args.device, out)


if __name__ == "__main__":
    main()

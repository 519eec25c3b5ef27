"""GPU readiness in one command (issue W6 item 7): what a researcher needs to know before sending the big
suites to GPUs, measured in one process on one device, in at most ~8 minutes on one GPU.

1. `equality`: a dflex Ant rollout (8 envs, 16 env steps, contact on, random actions) on CUDA vs CPU: max
   relative difference of the final state and of the gradient of Σ rewards w.r.t. the actions (float32 kernels
   on both sides; different summation orders make them close, not equal).
2. `ant_steps_per_s`: batched dflex Ant env steps per second (fast path, no tape) at 128 / 1024 / 4096 envs.
3. `wm_update`: one world-model update (PWM's loss, B = 256 windows of H + 1 = 17, Adam, grad clip) at
   `pwm_48M` on MT30's widths, mlp and flow (Heun K=2), with its peak GPU memory.
4. `pwm_epoch`: one PWM epoch on dflex/ant at 128 envs (actor through the world model and the real envs,
   critic, world-model block), `pwm` preset, mlp and flow, after a warm-up epoch.
5. `multitask_iteration`: one multitask policy iteration (512 imagined rollouts of H = 16 in a frozen
   `pwm_48M` world model, actor and critic updates) on a synthetic MT30-shaped dataset.
Each timing synchronises the device; peak memory is `torch.cuda.max_memory_allocated` around the block.

    python benchmarks/gpu_check.py                      # on a GPU machine: writes benchmarks/results/gpu_check.{json,md}
    python benchmarks/gpu_check.py --device cpu --quick # a few-second self-check of this script on a CPU

The script never runs in CI (no GPU there); a test runs its `--quick` CPU mode so it cannot rot.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class Device:
    """Timing and peak memory on one torch device."""

    def __init__(self, name: str) -> None:
        import torch

        self.torch, self.name = torch, name
        self.cuda = name.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def timed(self, fn: Callable[[], Any], reps: int = 1) -> tuple[float, float | None]:
        """(seconds per call, peak MiB allocated during the calls, CUDA only)."""
        self.sync()
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        self.sync()
        seconds = (time.perf_counter() - start) / reps
        peak = self.torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None
        return seconds, peak


def ant_rollout(device: str, envs: int, steps: int) -> tuple[Any, Any, Any]:
    """(final q, final qd, d Σ reward / d actions) of a taped Ant rollout with seeded random actions."""
    import torch

    from pwmbench import api

    env = api.task("dflex/ant").make_env(envs, seed=0, device=device, differentiable=True)
    env.reset(seed=0)
    acts = (torch.rand(steps, envs, env.act_dim, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    acts.requires_grad_(True)
    total = torch.zeros((), device=device)
    for k in range(steps):
        _, reward, *_ = env.step(acts[k])
        total = total + reward.sum()
    total.backward()
    q, qd = env.state
    return q.detach().cpu(), qd.detach().cpu(), acts.grad.detach().cpu()


def rel(a: Any, b: Any) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def check_equality(device: str, quick: bool) -> dict[str, Any]:
    if not device.startswith("cuda"):
        return {"skipped": "needs CUDA (compares CUDA with CPU)"}
    steps = 4 if quick else 16
    q_g, qd_g, g_g = ant_rollout(device, 8, steps)
    q_c, qd_c, g_c = ant_rollout("cpu", 8, steps)
    return {"envs": 8, "env_steps": steps, "q_rel": rel(q_g, q_c), "qd_rel": rel(qd_g, qd_c), "grad_rel": rel(g_g, g_c)}


def ant_speed(dev: Device, quick: bool) -> dict[str, Any]:
    import torch

    from pwmbench import api

    task = api.task("dflex/ant")
    out = {}
    for n in (8, 32) if quick else (128, 1024, 4096):
        env = task.make_env(n, seed=0, device=dev.name)
        env.reset(seed=0)
        a = (torch.rand(n, env.act_dim, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(dev.name)
        env.step(a)  # warm-up (compile, allocation)
        reps = 3 if quick else 20
        seconds, peak = dev.timed(lambda env=env, a=a: env.step(a), reps)
        out[str(n)] = {"batched_steps_per_s": 1 / seconds, "env_steps_per_s": n / seconds, "peak_mib": peak}
        env.close()
    return out


def wm_update(dev: Device, quick: bool) -> dict[str, Any]:
    import torch
    from torch import nn

    from pwmbench import api

    preset = "pwm" if quick else "pwm_48M"
    batch, horizon = (16, 4) if quick else (256, 16)
    obs_dim, act_dim, n_tasks, task_dim = 24, 6, 30, 64
    out = {"preset": preset, "batch": batch, "horizon": horizon}
    for name, options in (("mlp", {}), ("flow", {"integrator": "heun", "substeps": 2})):
        torch.manual_seed(0)
        wm = api.build_world_model(preset, obs_dim=obs_dim, act_dim=act_dim, dynamics=name, dynamics_options=options,
                                   n_tasks=n_tasks, task_dim=task_dim, device=dev.name)  # fmt: skip
        opt = torch.optim.Adam(wm.parameters(), lr=3e-4)
        obs = torch.randn(horizon + 1, batch, obs_dim, device=dev.name)
        act = torch.rand(horizon, batch, act_dim, device=dev.name) * 2 - 1
        rew = torch.randn(horizon, batch, device=dev.name)
        task = torch.randint(0, n_tasks, (batch,), device=dev.name)

        def step(wm=wm, opt=opt, obs=obs, act=act, rew=rew, task=task) -> None:
            loss = wm.loss(obs, act, rew, task).wm_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(wm.parameters(), 20.0)
            opt.step()

        step()
        seconds, peak = dev.timed(step, 2 if quick else 10)
        out[name] = {"params": api.count_parameters(wm), "seconds": seconds, "peak_mib": peak}
        del wm, opt
    out["flow_over_mlp"] = out["flow"]["seconds"] / out["mlp"]["seconds"]
    return out


def pwm_epoch(dev: Device, quick: bool) -> dict[str, Any]:
    from pwmbench import api
    from pwmbench.pwm.config import resolve_config
    from pwmbench.pwm.trainer import PWMTrainer

    envs = 8 if quick else 128
    out: dict[str, Any] = {"task": "dflex/ant", "num_envs": envs}
    for name, options in (("mlp", {}), ("flow", {"integrator": "heun", "substeps": 2})):
        overrides = {"dynamics": name, "dynamics_options": options, "num_envs": envs, "device": dev.name,
                     "initial_wm_iterations": 2, "eval_every": 0, "esnr_every": 0, "diagnostics_windows": 0,
                     "max_epochs": 1000}  # fmt: skip
        if quick:
            overrides.update(world_model={"units": [64, 64], "encoder_units": [32], "latent_dim": 32}, horizon=4, wm_batch_size=16)
        trainer = PWMTrainer(api.task("dflex/ant"), resolve_config(overrides), seed=0)
        # collect until an episode has finished (PWM's start), then one warm-up training epoch
        while not trainer.buffer.can_sample(trainer.cfg.horizon) and trainer.epoch < (200 if quick else 100):
            trainer.train_epoch()
        if not trainer.buffer.can_sample(trainer.cfg.horizon):
            out[name] = {"skipped": "no episode finished during collection"}
            continue
        trainer.train_epoch()
        seconds, peak = dev.timed(trainer.train_epoch)
        out[name] = {"seconds": seconds, "peak_mib": peak, "fps": trainer.curves[-1]["fps"] if trainer.curves else None}
    return out


def multitask_iteration(dev: Device, quick: bool) -> dict[str, Any]:
    import torch

    from pwmbench import api
    from pwmbench.data.chunks import write_chunk
    from pwmbench.data.dataset import OfflineDataset
    from pwmbench.pwm.config import resolve_config
    from pwmbench.pwm.multitask import OfflineWorldModel, TaskPolicy

    taskset = api.task("mt30")
    spec = taskset.spec
    episodes, length = 8, 33
    with tempfile.TemporaryDirectory() as tmp:
        gen = torch.Generator().manual_seed(0)
        obs = torch.randn(episodes, length, spec.obs_dim, generator=gen)
        act = torch.rand(episodes, length, spec.act_dim, generator=gen) * 2 - 1
        rew = torch.rand(episodes, length, generator=gen)
        act[:, 0], rew[:, 0] = float("nan"), float("nan")
        write_chunk(Path(tmp) / "chunk_0.pt", obs, act, rew, torch.zeros(episodes, length, dtype=torch.int32))
        dataset = OfflineDataset(tmp)
        overrides = {"preset": "pwm" if quick else "pwm_48M", "device": dev.name, "eval_every": 0, "diagnostics_windows": 0,
                     "policy_batch_size": 32 if quick else 512, "max_epochs": 100}  # fmt: skip
        cfg = resolve_config(overrides)
        owm = OfflineWorldModel(taskset, dataset, cfg, seed=0)
        policy = TaskPolicy(taskset, 0, owm.wm, dataset, cfg, seed=0)
        policy.train_iteration()
        seconds, peak = dev.timed(policy.train_iteration, 2 if quick else 5)
    return {"preset": overrides["preset"], "batch": overrides["policy_batch_size"], "seconds": seconds, "peak_mib": peak}


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# GPU check ({results['device_name']})", "", f"Run {results['date']} with `{results['command']}`.", ""]
    for key, value in results["checks"].items():
        lines += [f"## {key}", "", "```json", json.dumps(value, indent=2), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --quick: a self-check)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs, measures nothing")
    parser.add_argument("--out", type=Path, default=None, help="where to write gpu_check.{json,md} (default benchmarks/results)")
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine, "
              "or pass --device cpu --quick to self-check the script", file=sys.stderr)  # fmt: skip
        return 2
    dev = Device(args.device)
    checks: dict[str, Any] = {}
    for name, fn in (("equality", lambda: check_equality(args.device, args.quick)), ("ant_steps_per_s", lambda: ant_speed(dev, args.quick)),
                     ("wm_update", lambda: wm_update(dev, args.quick)), ("pwm_epoch", lambda: pwm_epoch(dev, args.quick)),
                     ("multitask_iteration", lambda: multitask_iteration(dev, args.quick))):  # fmt: skip
        start = time.perf_counter()
        try:
            checks[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one failing check must not hide the others' figures
            checks[name] = {"error": f"{type(exc).__name__}: {exc}"}
        checks[name]["wall_s"] = time.perf_counter() - start
        print(f"{name}: {json.dumps(checks[name])}", flush=True)
    results = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if dev.cuda else platform.processor() or "cpu",
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "torch": torch.__version__,
        "checks": checks,
    }
    out = args.out or (HERE / "results")
    if not args.quick or args.out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(results, indent=2))
        (out / "gpu_check.md").write_text(markdown(results))
    failed = [k for k, v in checks.items() if "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

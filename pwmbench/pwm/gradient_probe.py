"""Gradient quality: the actor gradient a world model gives, held against the differentiable simulator's own.

From the same real start states and the same actor noise (a shared reparameterisation ε), two rollouts of `h` steps
give the actor loss PWM trains on — −(Σ_t γ^t r_t + γ^h V(z_h)) / scale — and its gradient in the actor's parameters:
- through the world model, exactly as training computes it (`model_step` from the encoded start state, model rewards);
- through the simulator (an env made with `differentiable=True`, loaded with the training env's state), with its true
  rewards on the model's reward scale (the same normaliser) and the same critic on the encoded true states.
Both rollouts stop where the simulator's episode ends: at a termination with no bootstrap, at a truncation with one.
The comparison: cosine and relative error ‖g_wm − g_sim‖ / ‖g_sim‖, both norms, both ESNR definitions of each gradient
over micro-batches of envs, and the variance of the simulator's gradient estimate (contact makes it noisy:
`grad_sim_rel_std` = its standard deviation over its norm says how much of the relative error noise alone explains).

The probe never changes training: it runs on a copy of the env state, draws ε from its own generator, restores the
global RNG, updates no normaliser and steps no optimiser (a test checks curves with and without it are identical).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pwmbench.analysis.stats import late_half_median
from pwmbench.pwm.esnr import microbatch_gradients, snr_of

PROBE_METRICS = (
    "probe_horizon", "grad_sim_cosine", "grad_sim_rel_error", "grad_wm_norm", "grad_sim_norm",
    "grad_wm_esnr_global", "grad_wm_esnr_pwm", "grad_sim_esnr_global", "grad_sim_esnr_pwm",
    "grad_sim_var", "grad_sim_rel_std", "time_probe",
)  # fmt: skip


@dataclass
class ProbeParts:
    """What both rollouts share: the actor, the critic's bootstrap, the encoder (observation → latent, with the
    observation normaliser), the model's step (z, a) → (z', r̂), the true reward → model scale map, γ, whether the
    actor sees detached latents, and the loss divisor training uses (return std, or the horizon)."""

    actor: nn.Module
    value: Callable[[Tensor], Tensor]
    encode: Callable[[Tensor], Tensor]
    model_step: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
    reward_scale: Callable[[Tensor], Tensor]
    gamma: float
    detach: bool
    loss_scale: float | None = None  # None → divide by the probe's horizon


def _act(parts: ProbeParts, z: Tensor, noise: Tensor) -> Tensor:
    return parts.actor.act(z.detach() if parts.detach else z, noise=noise)


def simulator_loss(parts: ProbeParts, env: Any, obs0: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-env actor loss through the simulator; also where each env's episode ended (step index, h = not) and whether
    that end was a termination. `env` is already in the start state whose observation is `obs0`."""
    h, n = noise.shape[0], obs0.shape[0]
    z = parts.encode(obs0)
    acc = torch.zeros(n, device=obs0.device)
    alive = torch.ones(n, dtype=torch.bool, device=obs0.device)
    end = torch.full((n,), h, dtype=torch.long, device=obs0.device)
    terminal = torch.zeros(n, dtype=torch.bool, device=obs0.device)
    for i in range(h):
        action = _act(parts, z, noise[i])
        obs, reward, terminated, truncated, info = env.step(action)
        acc = acc + torch.where(alive, parts.gamma**i * parts.reward_scale(reward), torch.zeros_like(acc))
        done = (terminated | truncated) & alive
        if bool(done.any()):
            final = parts.value(parts.encode(info["obs_before_reset"]))
            boot = torch.where(terminated, torch.zeros_like(final), parts.gamma ** (i + 1) * final)
            acc = acc + torch.where(done, boot, torch.zeros_like(acc))
            end = torch.where(done, torch.full_like(end, i), end)
            terminal = terminal | (done & terminated)
            alive = alive & ~done
        z = parts.encode(obs)
    acc = acc + torch.where(alive, parts.gamma**h * parts.value(z), torch.zeros_like(acc))
    return -acc / (parts.loss_scale or h), end, terminal


def model_loss(parts: ProbeParts, obs0: Tensor, noise: Tensor, end: Tensor, terminal: Tensor) -> Tensor:
    """Per-env actor loss through the world model, cut where the simulator's episode ended."""
    h = noise.shape[0]
    z = parts.encode(obs0)
    acc = torch.zeros(obs0.shape[0], device=obs0.device)
    for i in range(h):
        action = _act(parts, z, noise[i])
        z, r_hat = parts.model_step(z, action)
        live = end >= i
        acc = acc + torch.where(live, parts.gamma**i * r_hat, torch.zeros_like(acc))
        stop = (end == i) & ~terminal
        if bool(stop.any()):
            acc = acc + torch.where(stop, parts.gamma ** (i + 1) * parts.value(z), torch.zeros_like(acc))
    acc = acc + torch.where(end == h, parts.gamma**h * parts.value(z), torch.zeros_like(acc))
    return -acc / (parts.loss_scale or h)


def compare(g_wm: Tensor, g_sim: Tensor) -> dict[str, float]:
    """Cosine, relative error and norms of two flat gradients."""
    g_wm, g_sim = g_wm.double(), g_sim.double()
    n_wm, n_sim = float(g_wm.norm()), float(g_sim.norm())
    cosine = float(g_wm @ g_sim) / (n_wm * n_sim) if n_wm > 0 and n_sim > 0 else math.nan
    rel = float((g_wm - g_sim).norm()) / n_sim if n_sim > 0 else math.nan
    return {"grad_sim_cosine": cosine, "grad_sim_rel_error": rel, "grad_wm_norm": n_wm, "grad_sim_norm": n_sim}


def probe(parts: ProbeParts, env: Any, start_state: dict[str, Any], obs0: Tensor, horizon: int, generator: torch.Generator,
          batches: int = 8) -> dict[str, float]:  # fmt: skip
    """One probe at `horizon` steps from the state `start_state` (loaded into `env`, observation `obs0`)."""
    start = time.perf_counter()
    params = [p for p in parts.actor.parameters() if p.requires_grad]
    env.load_state_dict(start_state)
    noise = torch.randn(horizon, obs0.shape[0], _act_dim(parts.actor), generator=generator).to(obs0.device)
    sim, end, terminal = simulator_loss(parts, env, obs0, noise)
    wm = model_loss(parts, obs0, noise, end, terminal)
    g_sim = _flat(torch.autograd.grad(sim.mean(), params, retain_graph=True, allow_unused=True), params)
    g_wm = _flat(torch.autograd.grad(wm.mean(), params, retain_graph=True, allow_unused=True), params)
    out = {"probe_horizon": float(horizon), **compare(g_wm, g_sim)}
    mb_sim, mb_wm = microbatch_gradients(sim, params, batches), microbatch_gradients(wm, params, batches)
    out.update({f"grad_sim_{k}": v for k, v in snr_of(mb_sim).items()})
    out.update({f"grad_wm_{k}": v for k, v in snr_of(mb_wm).items()})
    # variance of the full-batch simulator gradient, from the spread of its micro-batch means (M groups)
    spread = float((mb_sim - mb_sim.mean(0)).pow(2).sum(1).mean()) / max(mb_sim.shape[0] - 1, 1)
    out["grad_sim_var"] = spread
    out["grad_sim_rel_std"] = math.sqrt(spread) / out["grad_sim_norm"] if out["grad_sim_norm"] > 0 else math.nan
    out["time_probe"] = time.perf_counter() - start
    return out


def _act_dim(actor: nn.Module) -> int:
    return int(actor.logstd.shape[0])


def _flat(grads: Sequence[Tensor | None], params: Sequence[nn.Parameter]) -> Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


class GradientProbe:
    """The probe as a trainer runs it: a differentiable copy of the task's env (made once), the horizons, the seed."""

    def __init__(self, task: Any, num_envs: int, seed: int, device: str, horizons: Sequence[int], batches: int) -> None:
        self.horizons, self.batches, self.seed = tuple(horizons), batches, seed
        self.env: Any = None
        self.unavailable: str | None = None
        try:
            self.env = task.make_env(num_envs, seed, device=device, differentiable=True)
        except (ValueError, NotImplementedError, TypeError, ImportError) as exc:
            self.unavailable = f"{task.spec.name} has no differentiable env: {exc}"
        else:
            if not getattr(self.env, "differentiable", True) or not hasattr(self.env, "load_state_dict"):
                self.unavailable = f"{task.spec.name}'s env cannot be differentiated from a saved state"

    def run(self, parts: ProbeParts, start_state: dict[str, Any], obs0: Tensor, epoch: int, env_steps: int) -> list[dict[str, Any]]:
        """One row per horizon (curves phase "probe"); nothing when the task has no differentiable env."""
        if self.unavailable is not None:
            return []
        rows = []
        devices = [obs0.device.index or 0] if obs0.is_cuda else []
        with torch.random.fork_rng(devices=devices):  # whatever a model draws from the global RNG is given back
            for h in self.horizons:
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 101 + h)
                rows.append({"epoch": epoch, "env_steps": env_steps, **probe(parts, self.env, start_state, obs0, h, generator, self.batches)})
        return rows


def probe_summary(rows: Sequence[dict[str, Any]], horizon: int) -> dict[str, Any]:
    """Run-row summaries of the probes at `horizon` (the training horizon, else the first probed): medians over the
    run's last half of probes, the probe's mean time."""
    if not rows:
        return {}
    horizons = sorted({int(r["probe_horizon"]) for r in rows})
    h = horizon if horizon in horizons else horizons[0]
    mine = [r for r in rows if int(r["probe_horizon"]) == h]

    return {
        "grad_probe_horizon": h,
        **{f"{k}_median": late_half_median(mine, k) for k in ("grad_sim_cosine", "grad_sim_rel_error", "grad_wm_esnr_global", "grad_sim_esnr_global", "grad_sim_rel_std")},
        "time_probe_mean": sum(r["time_probe"] for r in rows) / len(rows),
    }

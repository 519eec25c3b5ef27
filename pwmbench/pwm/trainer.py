"""PWM, single task, environment in the loop (Georgiev et al. 2025; reference/pwm.md).

One epoch, read top to bottom in `train_epoch`:

1. Actor (first-order policy gradient through the world model). From the real envs' current states,
   z_0 = E(o). For i < H: a_i = tanh(π(sg z_i)), (z_{i+1}, r̂_i) = W(z_i, a_i); the real envs take the same
   a_i (no grad) and their data goes to the replay buffer. Per env
       L = −(Σ_i γ^i r̂_i + γ^{i+1}·(1 − term)·min_k V_k(z_{i+1}))        closed at a done step i, or
       L = −(Σ_i γ^i r̂_i + γ·γ^H·min_k V_k(z_H))                        at the window's end (PWM's extra γ),
   envs that finish restart their sums and are re-encoded from the real post-reset observation.
   L is divided by the running std of L (ret_rms) or by H, averaged over envs, clipped to actor_grad_norm.
2. Critic: TD(λ) targets from the model rewards and the min-over-critics values of the window; every
   critic regresses them, critic_iterations passes over critic_batches contiguous minibatches.
3. World model: wm_iterations steps of the shell's rollout loss on replayed (H+1)-step windows (in the
   first training epoch, an initial block of `initial_wm_iterations`, PWM's episode_length steps).
Learning starts once the buffer holds one finished episode (before, epochs only collect data, as in PWM).

Departures from PWM's code, all fixes of its known bugs: `episode_lengths` is measured; an env that
finishes on the window's last step keeps that segment's rewards; evaluation runs the deterministic actor
in the real environment.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pwmbench.errors import ConfigError
from pwmbench.nn.reward import symlog
from pwmbench.nn.world_model import build_world_model, count_parameters
from pwmbench.plugin.interfaces import Task
from pwmbench.pwm.buffer import SequenceBuffer
from pwmbench.pwm.config import INVOCATION_KEYS, PWMConfig, check_device
from pwmbench.pwm.critic import update_critic
from pwmbench.pwm.diagnostics import EpisodeRecorder, diagnose, window_generator
from pwmbench.pwm.episodes import EpisodeStats
from pwmbench.pwm.esnr import gradient_snr
from pwmbench.pwm.gradient_probe import GradientProbe, ProbeParts
from pwmbench.pwm.networks import Actor, CriticEnsemble
from pwmbench.pwm.normalizers import RunningMeanStd
from pwmbench.pwm.pretrain import Pretraining

DEFAULT_NUM_ENVS = 64


class Diverged(RuntimeError):
    """A loss, gradient or parameter became NaN/Inf: the run stops with status `diverged`."""

    def __init__(self, epoch: int, quantity: str, value: float) -> None:
        super().__init__(f"{quantity} became {value} at epoch {epoch}")
        self.epoch, self.quantity, self.value = epoch, quantity, value


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _grad_norm(params: Any) -> float:
    grads = [p.grad.detach().flatten() for p in params if p.grad is not None]
    return float(torch.cat(grads).norm()) if grads else 0.0


@dataclass
class _Window:
    """What one imagined window leaves for the critic."""

    latents: Tensor  # [H, B, L], detached
    rewards: Tensor  # [H, B] model rewards
    next_values: Tensor  # [H, B] min-critic values after each step (0 after a termination)
    dones: Tensor  # [H, B]


class PWMTrainer:
    """Trains one (task, dynamics, seed) cell. `train_epoch()` runs one epoch and returns its metrics."""

    def __init__(self, task: Task, cfg: PWMConfig, seed: int) -> None:
        self.task, self.cfg, self.seed = task, cfg, seed
        spec = task.spec
        check_device(cfg.device)
        self.device = torch.device(cfg.device)
        seed_everything(seed)
        self.num_envs = cfg.num_envs or spec.num_envs or DEFAULT_NUM_ENVS
        self.env = task.make_env(self.num_envs, seed, device=cfg.device)
        self.wm = build_world_model(
            cfg.preset,
            obs_dim=spec.obs_dim,
            act_dim=spec.act_dim,
            dynamics=cfg.dynamics,
            dynamics_options=cfg.dynamics_options,
            device=self.device,
            **cfg.world_model,
        )
        latent = self.wm.config.latent_dim
        self.actor = Actor(latent, spec.act_dim, cfg.actor_units, cfg.init_logstd, cfg.min_logstd).to(self.device)
        self.critic = CriticEnsemble(latent, cfg.critic_units, cfg.num_critics).to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, betas=cfg.betas)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, betas=cfg.betas)
        self.wm_opt = torch.optim.Adam(self.wm.parameters(), lr=cfg.model_lr)
        self.ret_rms = RunningMeanStd(device=self.device) if cfg.ret_rms else None
        self.rew_rms = RunningMeanStd(device=self.device) if cfg.rew_rms else None
        self.obs_rms = RunningMeanStd((spec.obs_dim,), device=self.device) if cfg.obs_rms else None
        self.buffer = SequenceBuffer(self.num_envs, cfg.wm_buffer_size, spec.obs_dim, spec.act_dim, self.device)
        self.episodes = EpisodeStats(self.num_envs, cfg.gamma)
        self.obs = self.env.reset(seed=seed)
        self.buffer.start(self.obs)
        self.epoch = 0
        self.env_steps = 0
        self.wall_s = 0.0
        self.wm_bootstrapped = False
        self.curves: list[dict[str, Any]] = []
        self._eval_env: Any = None
        # PWM's single-task pretraining (pwm/pretrain.py): data checked and a checkpoint loaded here, before training
        self.pretraining = Pretraining(self) if (cfg.pretrain_data or cfg.pretrain_checkpoint) else None
        # gradient quality against the simulator (pwm/gradient_probe.py): rows of curves phase "probe"
        self.probe_curves: list[dict[str, Any]] = []
        self.grad_probe = (GradientProbe(task, self.num_envs, seed, cfg.device, cfg.grad_probe_horizons or (cfg.horizon,), cfg.grad_probe_batches)
                           if cfg.grad_probe_every else None)  # fmt: skip

    # ------------------------------------------------------------------ pieces
    def _norm_obs(self, obs: Tensor) -> Tensor:
        return self.obs_rms.normalize(obs) if self.obs_rms is not None else obs

    def parameter_counts(self) -> dict[str, int]:
        return {
            **{f"wm_{k}": v for k, v in self.wm.component_parameters().items()},
            "wm_total": count_parameters(self.wm),
            "actor": count_parameters(self.actor),
            "critic": count_parameters(self.critic),
        }

    def _set_learning_rates(self) -> dict[str, float]:
        cfg, frac = self.cfg, self.epoch / self.cfg.max_epochs
        rates = {}
        for name, opt, lr0 in (("actor_lr", self.actor_opt, cfg.actor_lr), ("critic_lr", self.critic_opt, cfg.critic_lr), ("model_lr", self.wm_opt, cfg.model_lr)):
            lr = lr0 + (cfg.min_lr - lr0) * frac if cfg.lr_schedule == "linear" else lr0
            for group in opt.param_groups:
                group["lr"] = lr
            rates[name] = lr
        return rates

    def _check(self, quantity: str, value: Tensor | float) -> None:
        v = float(value.detach()) if isinstance(value, Tensor) else float(value)
        if not math.isfinite(v):
            raise Diverged(self.epoch, quantity, v)

    # ------------------------------------------------------------------ gradient probe
    def probe_parts(self) -> ProbeParts:
        """What the gradient probe shares with training: actor, critic, encoder, model step, reward scale, loss scale."""
        cfg = self.cfg
        return ProbeParts(
            actor=self.actor, value=self.critic.min, encode=lambda obs: self.wm.encode(self._norm_obs(obs)),
            model_step=lambda z, a: self.wm.step(z, a, reward_decode=cfg.actor_reward_decode),
            reward_scale=self._probe_reward_scale(),
            gamma=cfg.gamma, detach=cfg.detach, loss_scale=float(self.ret_rms.std()) if self.ret_rms is not None else None,
        )  # fmt: skip

    def _probe_reward_scale(self) -> Callable[[Tensor], Tensor]:
        """True rewards on the scale the actor sees the model's: rew_rms, then symlog where a two-hot head is read
        without symexp (actor_reward_decode = "pwm-code")."""
        cfg, rew_rms = self.cfg, self.rew_rms
        norm = (lambda r: rew_rms.normalize(r, clip=cfg.rew_clip)) if rew_rms is not None else (lambda r: r)
        if self.wm.reward.two_hot and cfg.actor_reward_decode == "pwm-code":
            return lambda r: symlog(norm(r))
        return norm

    def run_probe(self) -> float:
        """Probe every `grad_probe_every` epochs from the current real states; returns the seconds it took."""
        if self.grad_probe is None or self.epoch % self.cfg.grad_probe_every != 0:
            return 0.0
        start = time.perf_counter()
        self.probe_curves += self.grad_probe.run(self.probe_parts(), self.env.state_dict(), self.obs, self.epoch, self.env_steps)
        return time.perf_counter() - start

    # ------------------------------------------------------------------ 1. actor
    def imagine(self, timers: dict[str, float]) -> tuple[Tensor, _Window]:
        """H imagined steps from the real states, the real envs stepped alongside; returns per-env L and the window."""
        cfg, H, gamma = self.cfg, self.cfg.horizon, self.cfg.gamma
        B = self.num_envs
        z = self.wm.encode(self._norm_obs(self.obs))
        discount = torch.ones(B, device=self.device)
        rew_acc = torch.zeros(B, device=self.device)
        loss = torch.zeros(B, device=self.device)
        latents, rewards, next_values, dones = [], [], [], []
        for i in range(H):
            latents.append(z.detach())
            action = self.actor.act(z.detach() if cfg.detach else z)
            z_next, r_hat = self.wm.step(z, action, reward_decode=self.cfg.actor_reward_decode)

            t0 = time.perf_counter()
            obs, reward, terminated, truncated, info = self.env.step(action.detach())
            timers["time_env"] += time.perf_counter() - t0
            done = terminated | truncated
            self.buffer.add(info["obs_before_reset"], action.detach(), reward, done, obs)
            self.episodes.step(reward, terminated, truncated)
            self.env_steps += B

            rew_acc = rew_acc + discount * r_hat
            value = torch.where(terminated, torch.zeros_like(r_hat), self.critic.min(z_next))
            if i < H - 1:
                closing = done
                bootstrap = gamma * discount * value
            else:  # the window's end: PWM discounts the bootstrap by γ^(H+1) for envs still running
                closing = torch.ones_like(done)
                bootstrap = torch.where(done, gamma * discount, gamma * gamma * discount) * value
            loss = loss - torch.where(closing, rew_acc + bootstrap, torch.zeros_like(rew_acc))

            rewards.append(r_hat.detach())
            next_values.append(value.detach())
            dones.append(done.float() if i < H - 1 else torch.ones(B, device=self.device))
            discount = torch.where(done, torch.ones_like(discount), discount * gamma)
            rew_acc = torch.where(done, torch.zeros_like(rew_acc), rew_acc)
            if done.any():
                z_next = torch.where(done[:, None], self.wm.encode(self._norm_obs(obs)), z_next)
            z = z_next
            self.obs = obs
        window = _Window(torch.stack(latents), torch.stack(rewards), torch.stack(next_values), torch.stack(dones))
        return loss, window

    def update_actor(self, timers: dict[str, float]) -> tuple[dict[str, float], _Window]:
        t0 = time.perf_counter()
        env_before = timers["time_env"]
        loss, window = self.imagine(timers)
        if self.ret_rms is not None:
            self.ret_rms.update(loss.detach())
            loss = loss / self.ret_rms.std().to(loss.dtype)
        else:
            loss = loss / self.cfg.horizon
        metrics: dict[str, float] = {}
        if self.cfg.esnr_every and self.epoch % self.cfg.esnr_every == 0:
            t_esnr = time.perf_counter()
            metrics.update(gradient_snr(loss, list(self.actor.parameters()), self.cfg.esnr_batches))
            timers["time_esnr"] += time.perf_counter() - t_esnr
            t0 += time.perf_counter() - t_esnr
        loss = loss.mean()
        self._check("actor_loss", loss)
        timers["time_imagine"] += time.perf_counter() - t0 - (timers["time_env"] - env_before)
        t1 = time.perf_counter()
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _grad_norm(self.actor.parameters())
        self._check("actor_grad_norm", grad_norm)
        nn.utils.clip_grad_norm_(self.actor.parameters(), self.cfg.actor_grad_norm)
        self.actor_opt.step()
        timers["time_actor_backward"] += time.perf_counter() - t1
        # gradients of the actor loss also reached the world model and critics: they are not stepped here
        self.wm_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        return {**metrics, "actor_loss": loss.item(), "actor_grad_norm": grad_norm}, window

    # ------------------------------------------------------------------ 2. critic
    def update_critic(self, window: _Window) -> dict[str, float]:
        cfg = self.cfg
        return update_critic(
            self.critic, self.critic_opt, window.latents, window.rewards, window.next_values, window.dones,
            gamma=cfg.gamma, lam=cfg.lam, iterations=cfg.critic_iterations, batches=cfg.critic_batches,
            grad_norm=cfg.critic_grad_norm, check=self._check,
        )  # fmt: skip

    # ------------------------------------------------------------------ 3. world model
    def update_world_model(self, iterations: int) -> dict[str, float]:
        sums = {"wm_loss": 0.0, "dynamics_loss": 0.0, "reward_loss": 0.0}
        grad_norm = 0.0
        for _ in range(iterations):
            losses, grad_norm = self.world_model_step()
            for key, value in losses.items():
                sums[key] += value
        n = max(iterations, 1)
        return {**{k: v / n for k, v in sums.items()}, "wm_grad_norm": grad_norm, "wm_updates": float(iterations)}

    def world_model_step(self, generator: torch.Generator | None = None, update_rms: bool = True, label: str = "") -> tuple[dict[str, float], float]:
        """One gradient step of the shell's loss on replayed windows: (detached losses, grad norm before clipping).
        Online steps update obs/rew rms from the batch; pretraining steps (PWM's pretrain_wm) use rms fixed by the
        data and their own `generator`. `label` prefixes the quantity named when a value goes non-finite."""
        cfg = self.cfg
        obs, act, rew = self.buffer.sample(cfg.wm_batch_size, cfg.horizon, generator=generator)
        if self.obs_rms is not None:
            if update_rms:
                self.obs_rms.update(obs.reshape(-1, obs.shape[-1]))
            obs = self.obs_rms.normalize(obs)
        if self.rew_rms is not None:
            if update_rms:
                self.rew_rms.update(rew)
            rew = self.rew_rms.normalize(rew, clip=cfg.rew_clip)
        losses = self.wm.loss(obs, act, rew, rho=cfg.rho)
        self._check(f"{label}wm_loss", losses.wm_loss)
        self.wm_opt.zero_grad(set_to_none=True)
        losses.wm_loss.backward()
        grad_norm = float(nn.utils.clip_grad_norm_(self.wm.parameters(), cfg.wm_grad_norm))
        self._check(f"{label}wm_grad_norm", grad_norm)
        self.wm_opt.step()
        return losses.detached(), grad_norm

    # ------------------------------------------------------------------ 0. pretraining (PWM's general.pretrain)
    def pretrain(self, save: Any = None, every: int | None = None, on_step: Any = None) -> bool:
        """Run what is left of the pretraining phase (a no-op without `pretrain_data` / `pretrain_checkpoint`, or
        once done): data into the buffer and rms, then the world-model steps. `save()` is called every `every`
        steps (default PRETRAIN_CHECKPOINT_EVERY) and at the end (the cell checkpoints there). True when this call
        finished the phase."""
        if self.pretraining is None:
            return False
        return self.pretraining.run(self, save=save, every=every, on_step=on_step)

    # ------------------------------------------------------------------ epoch
    def train_epoch(self) -> dict[str, Any]:
        cfg = self.cfg
        start = time.perf_counter()
        timers = dict.fromkeys(("time_env", "time_imagine", "time_actor_backward", "time_critic", "time_wm", "time_esnr"), 0.0)
        metrics: dict[str, Any] = {}
        probe_s = 0.0
        if self.pretraining is not None and not self.pretraining.done:
            self.pretrain()
        if not self.buffer.can_sample(cfg.horizon):
            # PWM collects until one episode has finished (here: one long enough for an (H+1)-window) before it learns.
            with torch.no_grad():
                self.imagine(timers)
        else:
            probe_s = self.run_probe()
            metrics.update(self._set_learning_rates())
            actor_metrics, window = self.update_actor(timers)
            metrics.update(actor_metrics)
            t0 = time.perf_counter()
            metrics.update(self.update_critic(window))
            timers["time_critic"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            iterations = cfg.wm_iterations if self.wm_bootstrapped else (cfg.initial_wm_iterations or self.task.spec.episode_length)
            metrics.update(self.update_world_model(iterations))
            self.wm_bootstrapped = True
            timers["time_wm"] = time.perf_counter() - t0
            self._check_parameters()
        elapsed = time.perf_counter() - start
        self.wall_s += elapsed
        metrics.update(timers)
        metrics.update(self.episodes.metrics())
        metrics.update(
            time_epoch=elapsed,
            fps=cfg.horizon * self.num_envs / (elapsed - timers["time_esnr"] - probe_s),  # measuring is not training cost
            actor_std=float(self.actor.logstd.detach().exp().mean()),
            nfe=float(self.wm.dynamics.evals_per_next),
        )
        for name, rms in (("rew_rms", self.rew_rms), ("ret_rms", self.ret_rms)):
            if rms is not None:
                metrics[f"{name}_mean"], metrics[f"{name}_var"] = float(rms.mean), float(rms.var)
        self.epoch += 1
        if cfg.eval_every and self.epoch % cfg.eval_every == 0:
            metrics.update(self.evaluate())
        row = {"epoch": self.epoch, "env_steps": self.env_steps, "wall_s": self.wall_s, **metrics}
        if self.epoch % cfg.log_every == 0 or self.epoch == cfg.max_epochs:
            self.curves.append(row)
        return row

    def _check_parameters(self) -> None:
        for name, module in (("world model", self.wm), ("actor", self.actor), ("critic", self.critic)):
            for pname, p in module.named_parameters():
                if not torch.isfinite(p).all():
                    raise Diverged(self.epoch, f"{name} parameter {pname}", float("nan"))

    # ------------------------------------------------------------------ evaluation (real env, deterministic actor)
    def evaluate_untrained(self) -> dict[str, Any]:
        """Curves row epoch 0: the actor before any policy update (after pretraining, which trains no actor) in the
        real environment — what "learned" is measured from. Uses no random stream training draws from."""
        row = {"epoch": 0, "env_steps": self.env_steps, "wall_s": self.wall_s, **self.evaluate()}
        self.curves.append(row)
        return row

    @torch.no_grad()  # an evaluation trains nothing (a differentiable env's rewards would otherwise carry a graph)
    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        """Mean real return of `episodes` episodes (one per env copy) with the deterministic actor, and the world
        model's quality on those held-out episodes (pwm/diagnostics.py) unless `diagnostics_windows` is 0."""
        cfg = self.cfg
        n = episodes or cfg.eval_episodes
        if self._eval_env is None or self._eval_env.num_envs != n:
            self._eval_env = self.task.make_env(n, self.seed + 7919, device=cfg.device)
        env = self._eval_env
        obs = env.reset(seed=self.seed * 1_000_003 + self.epoch)
        recorder = EpisodeRecorder(obs) if cfg.diagnostics_windows else None
        returns = torch.zeros(n, dtype=torch.float64)
        lengths = torch.zeros(n)
        success = torch.zeros(n)
        running = torch.ones(n, dtype=torch.bool)
        for _ in range(self.task.spec.episode_length):
            action = self.actor.act(self.wm.encode(self._norm_obs(obs)), deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            if recorder is not None:
                recorder.add(action, reward, info.get("obs_before_reset", obs), running)
            returns += torch.where(running, reward.cpu().double(), torch.zeros(n, dtype=torch.float64))
            lengths += running.float()
            if "success" in info:
                success = torch.where(running, info["success"].float().cpu(), success)  # at the episode's end (TD-MPC2)
            running &= ~(terminated | truncated).cpu()
            if not running.any():
                break
        out = {"eval_return": float(returns.mean()), "eval_episode_length": float(lengths.mean())}
        if self.task.spec.score == "success":
            out["eval_success"] = float(success.mean())
        if recorder is not None:
            rew_rms = self.rew_rms
            out.update(diagnose(
                self.wm, recorder.finish(), horizon=cfg.horizon, windows=cfg.diagnostics_windows,
                generator=window_generator(self.seed, self.epoch), norm_obs=self._norm_obs,
                norm_rew=(lambda r: rew_rms.normalize(r, clip=cfg.rew_clip)) if rew_rms is not None else None,
            ))  # fmt: skip
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = {
            "epoch": self.epoch,
            "env_steps": self.env_steps,
            "wall_s": self.wall_s,
            "wm_bootstrapped": self.wm_bootstrapped,
            "pretrain": self.pretraining.state_dict() if self.pretraining is not None else None,
            "curves": list(self.curves),
            "probe_curves": list(self.probe_curves),
            "obs": self.obs.clone(),
            "models": {k: m.state_dict() for k, m in (("wm", self.wm), ("actor", self.actor), ("critic", self.critic))},
            "optimizers": {k: o.state_dict() for k, o in (("wm", self.wm_opt), ("actor", self.actor_opt), ("critic", self.critic_opt))},
            "rms": {k: r.state_dict() for k, r in (("ret", self.ret_rms), ("rew", self.rew_rms), ("obs", self.obs_rms)) if r is not None},
            "buffer": self.buffer.state_dict(),
            "episodes": self.episodes.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "config": self.cfg.to_dict(),
        }
        if hasattr(self.env, "state_dict"):
            state["env"] = self.env.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved, mine = ({k: v for k, v in c.items() if k not in INVOCATION_KEYS} for c in (state["config"], self.cfg.to_dict()))
        if saved != mine:
            changed = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
            raise ConfigError(f"the checkpoint was written with a different config ({', '.join(changed)} changed); pass --restart to train from scratch")
        if not hasattr(self.env, "load_state_dict") or "env" not in state:
            raise ConfigError("this task's environments cannot save and restore their state, so the run cannot resume; pass --restart")
        self.epoch, self.env_steps, self.wall_s = state["epoch"], state["env_steps"], state["wall_s"]
        self.wm_bootstrapped, self.curves, self.obs = state["wm_bootstrapped"], list(state["curves"]), state["obs"].clone()
        self.probe_curves = list(state.get("probe_curves", []))
        for key, module in (("wm", self.wm), ("actor", self.actor), ("critic", self.critic)):
            module.load_state_dict(state["models"][key])
        for key, opt in (("wm", self.wm_opt), ("actor", self.actor_opt), ("critic", self.critic_opt)):
            opt.load_state_dict(state["optimizers"][key])
        for key, rms in (("ret", self.ret_rms), ("rew", self.rew_rms), ("obs", self.obs_rms)):
            if rms is not None:
                rms.load_state_dict(state["rms"][key])
        self.buffer.load_state_dict(state["buffer"])
        self.episodes.load_state_dict(state["episodes"])
        self.env.load_state_dict(state["env"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if self.pretraining is not None and state.get("pretrain") is not None:
            self.pretraining.load_state_dict(state["pretrain"])


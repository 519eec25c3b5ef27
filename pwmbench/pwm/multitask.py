"""PWM on a task set, offline (reference/pwm.md, "Policy learning (multitask, offline)").

1. World model, once per (dynamics variant, seed), `OfflineWorldModel.train`: `offline_wm_iterations` steps of
   the recipe `wm_recipe` (pwm/recipes.py: TD-MPC2's, whose world model PWM starts from, by default; or PWM's
   single-task loss) on windows of the recipe's horizon, every task mixed, the task ids feeding the embedding
   and the action masks. The windows come from a generator seeded by the cell's seed alone, so every dynamics
   variant is trained on the same data in the same order.
2. Per task id τ, `TaskPolicy`: a fresh actor and critics; the world model frozen. One iteration:
       o ~ the dataset's states of τ (policy_batch_size of them), z_0 = E(o, τ)
       a_i = tanh(π(sg z_i)) (padded width; the world model masks it),  (z_{i+1}, r̂_i) = W(z_i, a_i, τ)
       L = −(Σ_i γ^i r̂_i + γ·γ^H·min_k V_k(z_H)),  divided by the running std of L (ret_rms), mean over states
   then an actor step (clip actor_grad_norm) and the critic's update (pwm/critic.py) towards `critic_targets`:
   PWM's code offline, one-step r_i + γ·V(z_{i+1}) ("pwm-code", the default), or the paper's TD(λ)
   ("td-lambda"); learning rates decay linearly to min_lr over `max_epochs` iterations.
3. Evaluation every `eval_every` iterations: `eval_episodes` real episodes of τ, deterministic actor, observations
   zero-padded and actions sliced by the set's `task_env`; the score is the member's success rate (Meta-World)
   or its return / 1000 (DMC).

Data use is reported, not assumed: `OfflineWorldModel.usage` says how many episodes and transitions of every task
the world model's sampling touched.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor, nn

from pwmbench.data.dataset import OfflineDataset
from pwmbench.errors import ConfigError
from pwmbench.nn.world_model import WorldModel, build_world_model
from pwmbench.plugin.interfaces import TaskSet
from pwmbench.pwm.config import PWMConfig, check_device
from pwmbench.pwm.critic import update_critic
from pwmbench.pwm.diagnostics import EpisodeRecorder, diagnose, window_generator
from pwmbench.pwm.networks import Actor, CriticEnsemble
from pwmbench.pwm.normalizers import RunningMeanStd
from pwmbench.pwm.recipes import Recipe, RecipeTrainer, resolve_recipe, task_discounts
from pwmbench.pwm.trainer import Diverged, _grad_norm, seed_everything

__all__ = ["OfflineWorldModel", "TaskPolicy", "check_dataset", "member_score"]


def check_dataset(taskset: TaskSet, dataset: OfflineDataset) -> None:
    """The dataset must have the set's padded widths and only its task ids."""
    spec = taskset.spec
    if (dataset.obs_dim, dataset.act_dim) != (spec.obs_dim, spec.act_dim):
        raise ConfigError(
            f"{dataset.directory} holds obs/action widths {dataset.obs_dim}/{dataset.act_dim}, but {spec.name} pads "
            f"to {spec.obs_dim}/{spec.act_dim}: is it the right dataset?"
        )
    foreign = [t for t in dataset.task_ids if not 0 <= t < spec.n_tasks]
    if foreign:
        raise ConfigError(f"{dataset.directory} holds task ids {foreign} outside {spec.name}'s 0–{spec.n_tasks - 1}")


def member_score(taskset: TaskSet, task_id: int, episode_return: float, success: float | None) -> float:
    """TD-MPC2's per-task score: success rate for tasks that report success, else return / 1000."""
    from pwmbench.api import task as get_task

    if get_task(taskset.tasks[task_id]).spec.score == "success":
        return float(success or 0.0)
    return float(episode_return) / 1000.0


class _Checks:
    def __init__(self) -> None:
        self.step = 0

    def __call__(self, quantity: str, value: Tensor | float) -> None:
        v = float(value.detach()) if isinstance(value, Tensor) else float(value)
        if not math.isfinite(v):
            raise Diverged(self.step, quantity, v)


class OfflineWorldModel:
    """The world model of one (variant, seed) trained on a task set's dataset under `cfg.wm_recipe`
    (pwm/recipes.py: TD-MPC2's recipe by default, PWM's single-task loss on request)."""

    def __init__(self, taskset: TaskSet, dataset: OfflineDataset, cfg: PWMConfig, seed: int) -> None:
        check_dataset(taskset, dataset)
        check_device(cfg.device)
        spec = taskset.spec
        self.taskset, self.dataset, self.cfg, self.seed = taskset, dataset, cfg, seed
        self.device = torch.device(cfg.device)
        self.recipe: Recipe = resolve_recipe(cfg)
        seed_everything(seed)
        self.wm: WorldModel = build_world_model(
            cfg.preset, obs_dim=spec.obs_dim, act_dim=spec.act_dim, dynamics=cfg.dynamics,
            dynamics_options=cfg.dynamics_options, n_tasks=spec.n_tasks, task_dim=spec.task_dim,
            action_dims=spec.action_dims, device=self.device, **cfg.world_model,
        )  # fmt: skip
        discounts = task_discounts(member_episode_lengths(taskset), self.recipe) if self.recipe.auxiliary else None
        self.trainer = RecipeTrainer(self.wm, self.recipe, discounts=discounts, aux_seed=seed)
        self.rew_rms = RunningMeanStd(device=self.device) if self.recipe.rew_rms else None
        self.generator = torch.Generator().manual_seed(seed)  # the data order: the same for every variant
        self.iteration = 0
        self.wall_s = 0.0
        self.check = _Checks()

    def train(self, iterations: int, log_every: int = 100) -> list[dict[str, float]]:
        """`iterations` gradient steps; returns one row of mean metrics per `log_every` steps (wm_loss,
        dynamics_loss, reward_loss, and for TD-MPC2's recipe value_loss and the policy prior's pi_* too;
        wm_loss is the optimised total, the sum of the weighted terms)."""
        cfg, recipe, rows = self.cfg, self.recipe, []
        sums: dict[str, float] = {}
        count, start, last = 0, time.perf_counter(), {}
        for _ in range(iterations):
            w = self.dataset.sample(cfg.wm_batch_size, recipe.horizon, self.generator).to(self.device)
            obs, act, rew = w.obs.transpose(0, 1), w.action.transpose(0, 1), w.reward.transpose(0, 1)
            if self.rew_rms is not None:
                self.rew_rms.update(rew)
                rew = self.rew_rms.normalize(rew, clip=cfg.rew_clip)
            self.check.step = self.iteration
            last = self.trainer.step(obs, act, rew, w.task, self.check)
            self.iteration += 1
            for key, value in last.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            if count == log_every or self.iteration % log_every == 0:
                rows.append(self._row(sums, count, last, start))
                sums, count, start = {}, 0, time.perf_counter()
        if count:
            rows.append(self._row(sums, count, last, start))
        return rows

    def _row(self, sums: dict[str, float], count: int, last: dict[str, float], start: float) -> dict[str, float]:
        """Means over the logging window; grad norms are the last step's (as before)."""
        self.wall_s += time.perf_counter() - start
        means = {k: v / count for k, v in sums.items() if not k.endswith("grad_norm")}
        norms = {k: v for k, v in last.items() if k.endswith("grad_norm")}
        return {"epoch": self.iteration, "wall_s": self.wall_s, **means, **norms, "wm_updates": float(count)}

    def usage(self) -> dict[int, dict[str, int]]:
        return self.dataset.usage()

    def state_dict(self) -> dict[str, Any]:
        """Everything later steps depend on: world model, recipe state (optimisers, Q heads, target Qs, policy
        prior, Q scale), reward normaliser, data generator and torch's global RNG (dropout, flow noise, π noise)."""
        return {
            "wm": self.wm.state_dict(),
            "trainer": self.trainer.state_dict(),
            "rew_rms": self.rew_rms.state_dict() if self.rew_rms is not None else None,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "iteration": self.iteration,
            "wall_s": self.wall_s,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "trainer" not in state:
            raise ConfigError("this checkpoint's world model predates world-model recipes (wm_recipe): start the cell afresh (--restart)")
        self.wm.load_state_dict(state["wm"])
        self.trainer.load_state_dict(state["trainer"])
        if self.rew_rms is not None and state["rew_rms"] is not None:
            self.rew_rms.load_state_dict(state["rew_rms"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.iteration, self.wall_s = state["iteration"], state["wall_s"]


def member_episode_lengths(taskset: TaskSet) -> list[int]:
    """Every member's episode length in agent steps (DMC 500, Meta-World 100), for TD-MPC2's per-task discount."""
    from pwmbench.api import task as get_task

    return [get_task(name).spec.episode_length for name in taskset.tasks]


def critic_dones(critic_targets: str, horizon: int, batch: int, device: torch.device) -> Tensor:
    """The done mask the critic's targets are computed with (pwm/returns.py), [H, B].

    "pwm-code": PWM's code has no env offline and sets done_mask = 1 at every step, so each target is the
    one-step r_t + γ·V(z_{t+1}) (reference/fidelity-audit.md A3). "td-lambda": the paper's TD(λ) over the
    window, done only at its end (bootstrapped there)."""
    if critic_targets == "pwm-code":
        return torch.ones(horizon, batch, device=device)
    if critic_targets == "td-lambda":
        dones = torch.zeros(horizon, batch, device=device)
        dones[-1] = 1.0
        return dones
    raise ConfigError(f"critic_targets must be 'pwm-code' or 'td-lambda', got {critic_targets!r}")


class TaskPolicy:
    """Actor and critics for one task id of the set, trained in a frozen world model from dataset states."""

    def __init__(self, taskset: TaskSet, task_id: int, wm: WorldModel, dataset: OfflineDataset, cfg: PWMConfig, seed: int,
                 rew_rms: RunningMeanStd | None = None) -> None:
        """`rew_rms`: the world model's reward normaliser (None when it trained on raw rewards), so model-quality
        diagnostics compare rewards on the scale the model learned."""
        self.rew_rms = rew_rms
        check_device(cfg.device)
        if task_id not in dataset.task_ids:
            raise ConfigError(f"task id {task_id} ({taskset.tasks[task_id]}) has no episodes in {dataset.directory}")
        self.taskset, self.task_id, self.wm, self.dataset, self.cfg, self.seed = taskset, task_id, wm, dataset, cfg, seed
        self.device = torch.device(cfg.device)
        seed_everything(seed * 1000 + task_id)
        for p in wm.parameters():
            p.requires_grad_(False)
        latent, act_dim = wm.config.latent_dim, taskset.spec.act_dim
        self.actor = Actor(latent, act_dim, cfg.actor_units, cfg.init_logstd, cfg.min_logstd).to(self.device)
        self.critic = CriticEnsemble(latent, cfg.critic_units, cfg.num_critics).to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, betas=cfg.betas)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, betas=cfg.betas)
        self.ret_rms = RunningMeanStd(device=self.device) if cfg.ret_rms else None
        self.generator = torch.Generator().manual_seed(seed * 1000 + task_id)
        self.task = torch.full((cfg.policy_batch_size,), task_id, dtype=torch.long, device=self.device)
        self.iteration = 0
        self.wall_s = 0.0
        self.check = _Checks()
        self._eval_env: Any = None

    def _set_learning_rates(self) -> None:
        cfg, frac = self.cfg, self.iteration / self.cfg.max_epochs
        for opt, lr0 in ((self.actor_opt, cfg.actor_lr), (self.critic_opt, cfg.critic_lr)):
            lr = lr0 + (cfg.min_lr - lr0) * frac if cfg.lr_schedule == "linear" else lr0
            for group in opt.param_groups:
                group["lr"] = lr

    def train_iteration(self) -> dict[str, Any]:
        cfg, H, gamma = self.cfg, self.cfg.horizon, self.cfg.gamma
        start = time.perf_counter()
        self.check.step = self.iteration
        self._set_learning_rates()
        obs = self.dataset.start_states(cfg.policy_batch_size, self.task_id, self.generator, horizon=H).to(self.device)
        z = self.wm.encode(obs, self.task)
        total = torch.zeros(len(obs), device=self.device)
        discount = 1.0
        latents, rewards = [], []
        for _ in range(H):
            latents.append(z.detach())
            action = self.actor.act(z.detach() if cfg.detach else z)
            z, r_hat = self.wm.step(z, action, self.task, reward_decode=cfg.actor_reward_decode)
            total = total + discount * r_hat
            rewards.append(r_hat.detach())
            discount *= gamma
        value_end = self.critic.min(z)
        loss = -(total + gamma * discount * value_end)  # PWM's γ^(H+1) bootstrap at the window's end
        if self.ret_rms is not None:
            self.ret_rms.update(loss.detach())
            loss = loss / self.ret_rms.std().to(loss.dtype)
        else:
            loss = loss / H
        loss = loss.mean()
        self.check("actor_loss", loss)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        actor_norm = _grad_norm(self.actor.parameters())
        self.check("actor_grad_norm", actor_norm)
        nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.actor_grad_norm)
        self.actor_opt.step()
        self.critic_opt.zero_grad(set_to_none=True)

        latents_t = torch.stack(latents)
        with torch.no_grad():
            later = self.critic.min(latents_t[1:].flatten(0, 1)).view(H - 1, -1)  # one batched call, not H
            next_values = torch.cat((later, value_end.detach().unsqueeze(0)))
        dones = critic_dones(cfg.critic_targets, H, len(obs), self.device)
        critic_metrics = update_critic(
            self.critic, self.critic_opt, latents_t, torch.stack(rewards), next_values, dones,
            gamma=gamma, lam=cfg.lam, iterations=cfg.critic_iterations, batches=cfg.critic_batches,
            grad_norm=cfg.critic_grad_norm, check=self.check, value_loss_over="all",  # PWM's `update` logs the mean of every pass
        )  # fmt: skip
        self.iteration += 1
        elapsed = time.perf_counter() - start
        self.wall_s += elapsed
        row: dict[str, Any] = {
            "epoch": self.iteration,
            "wall_s": self.wall_s,
            "actor_loss": loss.item(),
            "actor_grad_norm": actor_norm,
            "actor_std": float(self.actor.logstd.detach().exp().mean()),
            "policy_discounted_loss": float(-(total.detach().mean())),
            "time_epoch": elapsed,
            **critic_metrics,
        }
        if cfg.eval_every and self.iteration % cfg.eval_every == 0:
            row.update(self.evaluate())
        return row

    @torch.no_grad()
    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        """`episodes` real episodes (one per env copy) of this task, deterministic actor, through the set's
        padded env; eval_return, eval_success (when reported), eval_score and eval_episode_length, and the frozen
        world model's quality on these held-out episodes with this task id (pwm/diagnostics.py). Rewards are
        normalised by `self.rew_rms` when the cell hands over the world model's (multitask_cell.py)."""
        cfg = self.cfg
        n = episodes or cfg.eval_episodes
        if self._eval_env is None or self._eval_env.num_envs != n:
            self._eval_env = self.taskset.task_env(self.task_id, n, self.seed + 7919, device=cfg.device)
        env = self._eval_env
        obs = env.reset(seed=self.seed * 1_000_003 + self.iteration)
        recorder = EpisodeRecorder(obs) if cfg.diagnostics_windows else None
        task = torch.full((n,), self.task_id, dtype=torch.long, device=self.device)
        returns = torch.zeros(n, dtype=torch.float64)
        lengths = torch.zeros(n)
        success, has_success = torch.zeros(n), False
        running = torch.ones(n, dtype=torch.bool)
        for _ in range(env.episode_length):
            action = self.actor.act(self.wm.encode(obs.to(self.device), task), deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            if recorder is not None:
                recorder.add(action, reward, info.get("obs_before_reset", obs), running)
            returns += torch.where(running, reward.cpu().double(), torch.zeros(n, dtype=torch.float64))
            lengths += running.float()
            if "success" in info:
                has_success = True
                success = torch.where(running, info["success"].float().cpu(), success)  # success at the episode's end
            running &= ~(terminated | truncated).cpu()
            if not running.any():
                break
        mean_return = float(returns.mean())
        out = {"eval_return": mean_return, "eval_episode_length": float(lengths.mean()), "eval_episodes": float(n)}
        if has_success:
            out["eval_success"] = float(success.mean())
        out["eval_score"] = member_score(self.taskset, self.task_id, mean_return, out.get("eval_success"))
        if recorder is not None:
            rew_rms = self.rew_rms
            out.update(diagnose(
                self.wm, recorder.finish(), horizon=cfg.horizon, windows=cfg.diagnostics_windows,
                generator=window_generator(self.seed, self.iteration, self.task_id), norm_obs=lambda o: o,
                norm_rew=(lambda r: rew_rms.normalize(r, clip=cfg.rew_clip)) if rew_rms is not None else None,
                task_id=self.task_id,
            ))  # fmt: skip
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "ret_rms": self.ret_rms.state_dict() if self.ret_rms is not None else None,
            "generator": self.generator.get_state(),
            "iteration": self.iteration,
            "wall_s": self.wall_s,
        }

"""The world-model shell: encoder, reward head and task embedding shared by every variant, plus one
dynamics model from a plugin. The shell owns the rollout loss, so every dynamics model is trained under
the same rules:

    z_0 = enc(o_0),  ẑ_t = enc(o_t) (no grad, t ≥ 1),  z_{t+1} = d.next(z_t, a_t)
    D = Σ_t ρ^t · mean_b step_loss_t                       (MSE for `mlp`, rectified flow for `flow`)
    R = Σ_t ρ^t · mean_b ℓ_r(R(z_t, a_t), r_t)             (squared error, or CE on two-hot(symlog r))
    dynamics_loss = c_d · D / H,   reward_loss = c_r · R / H,   wm_loss = dynamics_loss + reward_loss

PWM's weights are c_d = 1 and c_r = 1/H: its reward loss is the *mean* over steps of ρ^t·(r̂ − r)², its
dynamics loss the *sum*, and its wm_loss their sum divided by H; the logged `dynamics_loss` / `reward_loss`
are its sums divided by H (what it logs), so wm_loss = dynamics_loss + reward_loss and curves compare with
PWM's. TD-MPC2's offline recipe (pwm/recipes.py) passes its own coefficients (20 and 0.1). The coefficients
belong to the shell, never to a dynamics plugin, so every variant is weighted alike.

Sequences are time-major: obs `[H+1, B, obs_dim]`, actions `[H, B, act_dim]`, rewards `[H, B]`, and for
task sets task ids `[B]` (one task per sequence).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pwmbench.errors import ConfigError
from pwmbench.nn.layers import SimNorm, init_weights, mlp, zero_last_layer
from pwmbench.nn.presets import WorldModelPreset
from pwmbench.nn.presets import preset as get_preset
from pwmbench.nn.reward import RewardHead
from pwmbench.plugin.interfaces import DynamicsContext, DynamicsModel, join_inputs
from pwmbench.plugin.options import check_units
from pwmbench.plugin.source import registered_label

REWARD_DECODES = ("symexp", "pwm-code")  # how WorldModel.step decodes a two-hot reward head for the actor

SHARED_COMPONENTS = ("encoder", "reward", "task_embedding")


@dataclass
class WorldModelLoss:
    """The weighted terms (wm_loss = dynamics_loss + reward_loss) and the rollout latents z_0..z_H
    (`latents`, [H+1, B, L], with grad) for recipes that add terms on them (TD-MPC2's value loss)."""

    wm_loss: Tensor
    dynamics_loss: Tensor
    reward_loss: Tensor
    latents: Tensor | None = None

    def detached(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("wm_loss", "dynamics_loss", "reward_loss")}


class WorldModel(nn.Module):
    """Encoder + dynamics (plugin) + reward head (+ task embedding and action masks for task sets)."""

    def __init__(
        self,
        config: WorldModelPreset,
        obs_dim: int,
        act_dim: int,
        dynamics_cls: type[DynamicsModel],
        dynamics_options: Mapping[str, Any] | None = None,
        n_tasks: int = 1,
        task_dim: int = 0,
        action_dims: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if n_tasks > 1 and task_dim < 1:
            raise ConfigError(f"a task set of {n_tasks} tasks needs task_dim ≥ 1 (MT30 uses 64, MT80 96)")
        self.config, self.obs_dim, self.act_dim = config, obs_dim, act_dim
        self.n_tasks, self.task_dim = n_tasks, task_dim
        options = dict(dynamics_options or {})
        dyn_units = config.units
        units = options.pop("units", None)  # the dynamics network's own widths (a shell option: the parity solver sets it)
        if units is not None:
            dyn_units = check_units(units, owner=registered_label(dynamics_cls, "dynamics model"))
        self.dynamics_name = getattr(dynamics_cls, "__name__", str(dynamics_cls))

        self.task_embedding = nn.Embedding(n_tasks, task_dim, max_norm=1.0) if task_dim else None
        self.encoder = mlp(obs_dim + task_dim, config.encoder_units, config.latent_dim, out_act=SimNorm(config.simnorm_dim))
        ctx = DynamicsContext(config.latent_dim, act_dim, task_dim, dyn_units, config.simnorm_dim)
        self.dynamics = dynamics_cls.build(ctx, **options)
        self.reward = RewardHead(config.latent_dim + act_dim + task_dim, config.units, config.num_bins, config.vmin, config.vmax)
        self.apply(init_weights)
        zero_last_layer(self.reward.net)

        mask = torch.ones(n_tasks, act_dim)
        if action_dims is not None:
            if len(action_dims) != n_tasks or any(not 1 <= d <= act_dim for d in action_dims):
                raise ConfigError(f"action_dims {list(action_dims)} do not fit {n_tasks} tasks of act_dim {act_dim}")
            for i, d in enumerate(action_dims):
                mask[i, d:] = 0
        self.register_buffer("action_masks", mask)

    # ------------------------------------------------------------------ pieces
    def embed(self, task: Tensor | None) -> Tensor | None:
        """Task embedding `[B, task_dim]`, or None for a single task."""
        if self.task_embedding is None:
            return None
        if task is None:
            raise ValueError("this world model is multitask: pass task ids")
        return self.task_embedding(task)

    def mask_action(self, a: Tensor, task: Tensor | None) -> Tensor:
        return a if self.task_embedding is None else a * self.action_masks[task]

    def encode(self, obs: Tensor, task: Tensor | None = None) -> Tensor:
        emb = self.embed(task)
        if emb is not None and obs.dim() == emb.dim() + 1:
            emb = emb.expand(obs.shape[0], *emb.shape)
        return self.encoder(join_inputs(obs, emb))

    def next(self, z: Tensor, a: Tensor, task: Tensor | None = None) -> Tensor:
        return self.dynamics.next(z, self.mask_action(a, task), self.embed(task))

    def reward_out(self, z: Tensor, a: Tensor, task: Tensor | None = None) -> Tensor:
        return self.reward(join_inputs(z, self.mask_action(a, task), self.embed(task)))

    def predict_reward(self, z: Tensor, a: Tensor, task: Tensor | None = None) -> Tensor:
        return self.reward.decode(self.reward_out(z, a, task))

    def step(self, z: Tensor, a: Tensor, task: Tensor | None = None, reward_decode: str = "symexp") -> tuple[Tensor, Tensor]:
        """(z_{t+1}, r̂_t) — what the actor's imagined rollouts call, H times per update. `reward_decode`: "symexp"
        (a two-hot head's reward) or "pwm-code" (Σ softmax·bins without symexp, as PWM's actor; config key
        `actor_reward_decode`); a scalar head is the same either way."""
        if reward_decode not in REWARD_DECODES:
            raise ValueError(f"reward_decode must be one of {REWARD_DECODES}, got {reward_decode!r}")
        a = self.mask_action(a, task)
        emb = self.embed(task)
        r = self.reward.decode(self.reward(join_inputs(z, a, emb)), symexp_two_hot=reward_decode == "symexp")
        return self.dynamics.next(z, a, emb), r

    # ------------------------------------------------------------------ training loss
    def loss(
        self,
        obs: Tensor,
        act: Tensor,
        rew: Tensor,
        task: Tensor | None = None,
        rho: float = 0.99,
        *,
        dynamics_coef: float = 1.0,
        reward_coef: float | None = None,
    ) -> WorldModelLoss:
        """The rollout loss of the module docstring; `reward_coef=None` is PWM's 1/H."""
        horizon = act.shape[0]
        if obs.shape[0] != horizon + 1 or rew.shape[0] != horizon:
            raise ValueError(f"expected obs [H+1,B,·], act [H,B,·], rew [H,B]; got {tuple(obs.shape)}, {tuple(act.shape)}, {tuple(rew.shape)}")
        c_r = 1.0 / horizon if reward_coef is None else reward_coef
        emb = self.embed(task)
        with torch.no_grad():
            targets = self.encode(obs[1:], task)
        z = self.encode(obs[0], task)
        teacher = z
        latents = [z]
        dyn_sum = obs.new_zeros(())
        rew_sum = obs.new_zeros(())
        for t in range(horizon):
            a = self.mask_action(act[t], task)
            weight = rho**t
            rew_sum = rew_sum + weight * self.reward.loss(self.reward(join_inputs(z, a, emb)), rew[t]).mean()
            step_loss, z = self.dynamics.train_step(z, a, targets[t], emb, teacher=teacher)
            dyn_sum = dyn_sum + weight * step_loss.mean()
            latents.append(z)
            teacher = targets[t]
        dynamics_loss = dynamics_coef * dyn_sum / horizon
        reward_loss = c_r * rew_sum / horizon
        return WorldModelLoss(dynamics_loss + reward_loss, dynamics_loss, reward_loss, torch.stack(latents))

    # ------------------------------------------------------------------ accounting
    def component_parameters(self) -> dict[str, int]:
        """Parameter counts per component: encoder, dynamics, reward, task_embedding."""
        parts = {"encoder": self.encoder, "dynamics": self.dynamics, "reward": self.reward, "task_embedding": self.task_embedding}
        return {name: count_parameters(m) if m is not None else 0 for name, m in parts.items()}


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of parameters (works on meta-device modules, so huge presets cost no memory)."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def build_world_model(
    preset: str | WorldModelPreset = "pwm",
    *,
    obs_dim: int,
    act_dim: int,
    dynamics: str | type[DynamicsModel] = "mlp",
    dynamics_options: Mapping[str, Any] | None = None,
    n_tasks: int = 1,
    task_dim: int = 0,
    action_dims: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> WorldModel:
    """Build a world model from a preset (name or object), real task dims and a dynamics plugin name.

    `overrides` change preset fields (`latent_dim=...`, `units=[...]`, ...) for every component; to change
    only the dynamics network's width, pass `dynamics_options={"units": [...]}` instead.
    `device="meta"` builds without allocating memory (parameter counting).
    """
    cfg = get_preset(preset) if isinstance(preset, str) else preset
    if overrides:
        cfg = cfg.with_overrides(**overrides)
    if isinstance(dynamics, str):
        from pwmbench.plugin.manager import get_plugins

        dynamics_cls = get_plugins().dynamics.get(dynamics)
    else:
        dynamics_cls = dynamics
    with torch.device(device) if device is not None else contextlib.nullcontext():
        wm = WorldModel(cfg, obs_dim, act_dim, dynamics_cls, dynamics_options, n_tasks, task_dim, action_dims)
    if isinstance(dynamics, str):
        wm.dynamics_name = dynamics
    return wm

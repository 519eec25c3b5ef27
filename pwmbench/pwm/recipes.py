"""World-model training recipes for task sets (offline): how `OfflineWorldModel` turns a batch into a step.

Why two: PWM's multitask results start from a world model that **TD-MPC2** trained on the offline data
(reference/fidelity-audit.md A4), not one trained with PWM's single-task loss. `wm_recipe` picks:

- `"tdmpc2"` (the default, `wm_recipe = None`): TD-MPC2's update (its tdmpc2.py `_update`, config.yaml):
      z_0 = E(o_0), z_{t+1} = d(z_t, a_t)  (the shell's rollout, `WorldModel.loss`, ρ = 0.5, H = 3)
      L = 20·D/H + 0.1·R/H + 0.1·Σ_t ρ^t Σ_k CE(Q_k(z_t, a_t), two-hot(symlog y_t)) / (H·K)
      y_t = r_t + γ_τ · Q̄_min2(E(o_{t+1}), π(E(o_{t+1})))   (target Qs, min of two random heads)
  K = 5 Q heads (first layer dropout 0.01, last weight zeroed), target Qs by Polyak averaging τ = 0.01;
  Adam lr 3e-4 constant with the encoder at 0.3×, one clip of 20 over world model + Q heads; then the policy
  prior π (tanh-Gaussian, log-std in [−10, 2], masked to the task's action dims) takes its own Adam step
  (eps 1e-5, clip 20) on mean_t ρ^t·mean_b −(1e-4·scaled entropy + Q_avg2/S) over the detached rollout latents,
  S being TD-MPC2's running 5–95% percentile range of Q at t = 0 (≥ 1, Polyak τ). γ_τ is per task from its
  episode length L: clip((L/5 − 1)/(L/5), 0.95, 0.995) (DMC 500 → 0.99, Meta-World 100 → 0.95). No reward
  normalisation (TD-MPC2 has none). The Q heads and π are built from the preset's widths (`units`) for every
  dynamics variant alike, live outside the `WorldModel` (so its parameter count — parity — is unchanged) and
  are dropped once the world model is trained, as PWM drops them.
- `"pwm-single"`: PWM's single-task loss as pwmbench trained task sets before: `WorldModel.loss` with PWM's
  weights, `cfg.rho`, `cfg.horizon`, Adam(`model_lr`) constant (PWM pretrains before its LR decay starts),
  clip `wm_grad_norm`, and `rew_rms` when the config has it.

How the config's keys interact (the run records the recipe: `Recipe.to_dict()`, shown by the fairness audit):
`offline_wm_iterations` counts steps and `wm_batch_size` sets the batch under both recipes (PWM's default 256 is
TD-MPC2's batch, and a smaller one keeps smoke tests fast). Under "tdmpc2" the recipe fixes horizon, ρ, learning
rate, encoder scale, clip and coefficients, so `wm_rho`, `model_lr`, `wm_grad_norm` and `rew_rms` apply to
"pwm-single" only and `horizon` to the policy phase (PWM's H = 16) only. TD-MPC2's termination head is left out
(its multitask runs are not episodic), as is its MPC planner (PWM learns its own actor instead). The dynamics plugin still supplies only
`next`/`step_loss`: the shell and the recipe own every weight, so every variant is trained alike.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pwmbench.errors import ConfigError
from pwmbench.nn.layers import init_weights, mlp, zero_last_layer
from pwmbench.nn.reward import symexp, symlog, two_hot
from pwmbench.nn.world_model import WorldModel, WorldModelLoss
from pwmbench.pwm.config import PWMConfig

__all__ = [
    "TDMPC2",
    "PolicyPrior",
    "QEnsemble",
    "Recipe",
    "RecipeTrainer",
    "RunningScale",
    "recipe_summary",
    "resolve_recipe",
    "task_discounts",
    "value_loss",
]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a world-model training step besides the data."""

    name: str
    horizon: int
    rho: float
    lr: float
    enc_lr_scale: float
    grad_clip_norm: float
    dynamics_coef: float  # TD-MPC2's consistency_coef
    reward_coef: float | None  # None → PWM's 1/H
    rew_rms: bool
    value_coef: float = 0.0  # 0: no Q heads, no policy prior
    num_q: int = 0
    q_dropout: float = 0.0
    tau: float = 0.0
    entropy_coef: float = 0.0
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    discount_denom: float = 5.0
    discount_min: float = 0.95
    discount_max: float = 0.995

    @property
    def auxiliary(self) -> bool:
        """Whether the recipe trains Q heads and a policy prior next to the world model."""
        return self.value_coef > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TDMPC2 = Recipe(
    "tdmpc2", horizon=3, rho=0.5, lr=3e-4, enc_lr_scale=0.3, grad_clip_norm=20.0, dynamics_coef=20.0,
    reward_coef=0.1, rew_rms=False, value_coef=0.1, num_q=5, q_dropout=0.01, tau=0.01, entropy_coef=1e-4,
)  # fmt: skip


def resolve_recipe(cfg: PWMConfig) -> Recipe:
    """The recipe of `cfg.wm_recipe` (None → "tdmpc2"), with the cfg's values where the recipe takes them."""
    name = cfg.wm_recipe or "tdmpc2"
    if name == "tdmpc2":
        return TDMPC2
    if name == "pwm-single":
        return Recipe("pwm-single", horizon=cfg.horizon, rho=cfg.rho, lr=cfg.model_lr, enc_lr_scale=1.0,
                      grad_clip_norm=cfg.wm_grad_norm, dynamics_coef=1.0, reward_coef=None, rew_rms=bool(cfg.rew_rms))  # fmt: skip
    raise ConfigError(f"wm_recipe must be 'tdmpc2' or 'pwm-single', got {name!r}")


def recipe_summary(recipe: Mapping[str, Any]) -> str:
    """One line for `pwmbench check`: the recipe's name and the numbers that weight and drive its updates."""
    text = (f"{recipe['name']}: horizon {recipe['horizon']}, rho {recipe['rho']}, lr {recipe['lr']:g} (encoder ×{recipe['enc_lr_scale']:g}), "
            f"clip {recipe['grad_clip_norm']:g}, dynamics ×{recipe['dynamics_coef']:g}, reward ×"
            + ("1/H" if recipe["reward_coef"] is None else f"{recipe['reward_coef']:g}"))  # fmt: skip
    if recipe["value_coef"]:
        text += f", value ×{recipe['value_coef']:g} ({recipe['num_q']} Q heads, dropout {recipe['q_dropout']:g}, tau {recipe['tau']:g})"
    return text


def task_discounts(episode_lengths: Sequence[int], recipe: Recipe = TDMPC2) -> Tensor:
    """TD-MPC2's per-task discount: longer episodes look further ahead, clip((L/d − 1)/(L/d), min, max)."""
    out = []
    for length in episode_lengths:
        frac = length / recipe.discount_denom
        out.append(min(max((frac - 1) / frac, recipe.discount_min), recipe.discount_max))
    return torch.tensor(out, dtype=torch.float32)


# ------------------------------------------------------------------------------------------ auxiliary modules
class QEnsemble(nn.Module):
    """K two-hot Q heads Q_k(z, a, e) = mlp(units, dropout on the first layer) → num_bins logits; last weight 0
    (every head starts predicting 0, as TD-MPC2 inits them)."""

    def __init__(self, in_dim: int, units: Sequence[int], num_q: int, num_bins: int, vmin: float, vmax: float, dropout: float) -> None:
        super().__init__()
        self.heads = nn.ModuleList(mlp(in_dim, units, num_bins, dropout=dropout) for _ in range(num_q))
        self.apply(init_weights)
        for head in self.heads:
            zero_last_layer(head)
        self.num_bins, self.vmin, self.vmax = num_bins, vmin, vmax
        self.register_buffer("bins", torch.linspace(vmin, vmax, num_bins), persistent=False)

    def forward(self, x: Tensor, detach: bool = False) -> Tensor:
        """Logits `[K, ..., num_bins]`; `detach`: gradients reach the input only (TD-MPC2's detached Qs)."""
        if not detach:
            return torch.stack([head(x) for head in self.heads])
        outs = []
        for head in self.heads:
            params = {k: v.detach() for k, v in head.named_parameters()}
            outs.append(torch.func.functional_call(head, params, (x,)))
        return torch.stack(outs)

    def decode(self, logits: Tensor) -> Tensor:
        """Logits → values in reward space (symexp of the expected bin)."""
        return symexp((torch.softmax(logits, dim=-1) * self.bins).sum(-1))

    def pick_two(self, logits: Tensor, how: str) -> Tensor:
        """TD-MPC2's estimate: two random heads, their `min` (targets) or `avg` (policy loss)."""
        idx = torch.randperm(len(self.heads), device=logits.device)[:2]
        values = self.decode(logits[idx])
        return values.min(0).values if how == "min" else values.mean(0)


class PolicyPrior(nn.Module):
    """TD-MPC2's policy prior: π(z, e) = mlp(units) → (mean, log-std) of a tanh-Gaussian, masked to the task's
    action dims; it exists to give the TD targets (and the Q heads' training) an action."""

    def __init__(self, in_dim: int, units: Sequence[int], act_dim: int, log_std_min: float, log_std_max: float) -> None:
        super().__init__()
        self.net = mlp(in_dim, units, 2 * act_dim)
        self.apply(init_weights)
        self.act_dim, self.log_std_min, self.log_std_max = act_dim, log_std_min, log_std_max

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(action, scaled entropy); `mask` [B, act_dim] zeroes padded action dims (task sets)."""
        mean, log_std = self.net(x).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1)
        eps = torch.randn_like(mean)
        if mask is not None:
            mean, log_std, eps = mean * mask, log_std * mask, eps * mask
            dims = mask.sum(-1, keepdim=True)
        else:
            dims = torch.full_like(mean[..., :1], self.act_dim)
        log_prob = (-0.5 * eps.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1, keepdim=True)
        scaled_log_prob = log_prob * dims
        action = torch.tanh(mean + eps * log_std.exp())
        log_prob = log_prob - torch.log(F.relu(1 - action.pow(2)) + 1e-6).sum(-1, keepdim=True)
        # TD-MPC2's entropy bonus: the Gaussian log-prob scaled by the task's action count, routed through the
        # squashed log-prob exactly as it writes it (the ratio keeps its gradient path).
        scaled_entropy = -log_prob * (scaled_log_prob / (log_prob + 1e-8))
        return action, scaled_entropy.squeeze(-1)


class RunningScale:
    """TD-MPC2's running scale of Q: Polyak average (τ) of max(1, 95th − 5th percentile) over a batch."""

    def __init__(self, tau: float, device: torch.device | str = "cpu") -> None:
        self.tau = tau
        self.value = torch.ones((), device=device)

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        q = torch.quantile(x.detach().float().flatten(), torch.tensor([0.05, 0.95], device=x.device))
        self.value = torch.lerp(self.value, (q[1] - q[0]).clamp(min=1.0), self.tau)

    def state_dict(self) -> dict[str, Tensor]:
        return {"value": self.value.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.value = state["value"].clone().to(self.value.device)


def value_loss(logits: Tensor, targets: Tensor, rho: float, vmin: float, vmax: float) -> Tensor:
    """Σ_t ρ^t Σ_k mean_b CE(logits[k, t, b], two-hot(symlog targets[t, b])) / (H·K); logits [K, H, B, bins]."""
    num_q, horizon, _, num_bins = logits.shape
    target = two_hot(symlog(targets), num_bins, vmin, vmax)
    ce = -(target.unsqueeze(0) * F.log_softmax(logits, dim=-1)).sum(-1).mean(-1)  # [K, H]
    weights = rho ** torch.arange(horizon, dtype=ce.dtype, device=ce.device)
    return (ce * weights).sum() / (horizon * num_q)


# ------------------------------------------------------------------------------------------------- trainer
class RecipeTrainer:
    """One world-model gradient step per `step` under `recipe`, plus (TD-MPC2) its Q heads and policy prior.

    `discounts` [n_tasks] are the per-task TD discounts (TD-MPC2 recipe only); `aux_seed` seeds the auxiliary
    modules' init in a forked RNG, so every dynamics variant starts them identically and the global stream
    (the world model's own randomness) is untouched."""

    def __init__(self, wm: WorldModel, recipe: Recipe, *, discounts: Tensor | None = None, aux_seed: int = 0) -> None:
        self.wm, self.recipe = wm, recipe
        device = wm.action_masks.device
        groups = [
            {"name": "encoder", "params": list(wm.encoder.parameters()), "lr": recipe.lr * recipe.enc_lr_scale},
            {"name": "dynamics", "params": list(wm.dynamics.parameters())},
            {"name": "reward", "params": list(wm.reward.parameters())},
        ]
        if wm.task_embedding is not None:
            groups.append({"name": "task_embedding", "params": list(wm.task_embedding.parameters())})
        self.q: QEnsemble | None = None
        self.target_q: QEnsemble | None = None
        self.pi: PolicyPrior | None = None
        self.pi_opt: torch.optim.Optimizer | None = None
        self.scale: RunningScale | None = None
        if recipe.auxiliary:
            cfg, task_dim = wm.config, wm.task_dim
            num_bins = cfg.num_bins if cfg.num_bins > 1 else 101  # TD-MPC2's Q heads are two-hot even when r̂ is scalar
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(aux_seed)
                with torch.device(device):
                    self.q = QEnsemble(cfg.latent_dim + wm.act_dim + task_dim, cfg.units, recipe.num_q, num_bins, cfg.vmin, cfg.vmax, recipe.q_dropout)
                    self.pi = PolicyPrior(cfg.latent_dim + task_dim, cfg.units, wm.act_dim, recipe.log_std_min, recipe.log_std_max)
            self.target_q = copy.deepcopy(self.q).requires_grad_(False).eval()
            groups.insert(3, {"name": "q", "params": list(self.q.parameters())})
            self.pi_opt = torch.optim.Adam(self.pi.parameters(), lr=recipe.lr, eps=1e-5)
            self.scale = RunningScale(recipe.tau, device)
            if discounts is None:
                raise ValueError("the TD-MPC2 recipe needs per-task discounts (task_discounts)")
            self.discounts = discounts.to(device)
        self.opt = torch.optim.Adam(groups, lr=recipe.lr)

    def _params(self) -> list[nn.Parameter]:
        params = list(self.wm.parameters())
        return params + (list(self.q.parameters()) if self.q is not None else [])

    def _with_task(self, x: Tensor, task: Tensor | None) -> Tensor:
        emb = self.wm.embed(task)
        if emb is None:
            return x
        return torch.cat((x, emb.expand(*x.shape[:-1], emb.shape[-1])), dim=-1)

    @torch.no_grad()
    def td_targets(self, obs_next: Tensor, rew: Tensor, task: Tensor | None) -> Tensor:
        """y_t = r_t + γ_τ·min2 target-Q(E(o_{t+1}), π(E(o_{t+1}))), [H, B]; π and the target Qs without dropout."""
        assert self.q is not None and self.pi is not None and self.target_q is not None
        next_z = self.wm.encode(obs_next, task)
        self.pi.eval()
        action, _ = self.pi(self._with_task(next_z, task), self._mask(task, next_z))
        q = self.target_q.pick_two(self.target_q(self._with_task(torch.cat((next_z, action), -1), task)), "min")
        gamma = self.discounts[task] if task is not None else self.discounts[0]
        return rew + gamma * q

    def _mask(self, task: Tensor | None, like: Tensor) -> Tensor | None:
        if self.wm.task_embedding is None:
            return None
        return self.wm.action_masks[task].expand(*like.shape[:-1], self.wm.act_dim)

    def losses(self, obs: Tensor, act: Tensor, rew: Tensor, task: Tensor | None) -> tuple[Tensor, WorldModelLoss, dict[str, Tensor]]:
        """(total loss, the shell's terms, extra terms) for a time-major batch; no step taken."""
        r = self.recipe
        if act.shape[0] != r.horizon:
            raise ValueError(f"recipe {r.name!r} trains on windows of {r.horizon} steps, got {act.shape[0]}")
        extra: dict[str, Tensor] = {}
        targets = self.td_targets(obs[1:], rew, task) if self.q is not None else None
        wm_losses = self.wm.loss(obs, act, rew, task=task, rho=r.rho, dynamics_coef=r.dynamics_coef, reward_coef=r.reward_coef)
        total = wm_losses.wm_loss
        if self.q is not None:
            assert wm_losses.latents is not None and targets is not None
            self.q.train()
            logits = self.q(self._with_task(torch.cat((wm_losses.latents[:-1], act), -1), task))
            extra["value_loss"] = r.value_coef * value_loss(logits, targets, r.rho, self.q.vmin, self.q.vmax)
            total = total + extra["value_loss"]
        return total, wm_losses, extra

    def _update_pi(self, latents: Tensor, task: Tensor | None) -> dict[str, float]:
        """TD-MPC2's policy-prior step on the detached rollout latents [H+1, B, L]."""
        assert self.q is not None and self.pi is not None and self.pi_opt is not None and self.scale is not None
        r = self.recipe
        self.pi.train()
        action, entropy = self.pi(self._with_task(latents, task), self._mask(task, latents))
        q = self.q.pick_two(self.q(self._with_task(torch.cat((latents, action), -1), task), detach=True), "avg")
        self.scale.update(q[0])
        q = q / self.scale.value
        weights = r.rho ** torch.arange(len(q), dtype=q.dtype, device=q.device)
        loss = (-(r.entropy_coef * entropy + q).mean(-1) * weights).mean()
        self.pi_opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = float(nn.utils.clip_grad_norm_(self.pi.parameters(), r.grad_clip_norm))
        self.pi_opt.step()
        return {"pi_loss": float(loss.detach()), "pi_grad_norm": norm, "pi_entropy": float(entropy.detach().mean()),
                "pi_scale": float(self.scale.value)}  # fmt: skip

    def step(self, obs: Tensor, act: Tensor, rew: Tensor, task: Tensor | None, check: Callable[[str, Any], None]) -> dict[str, float]:
        """One update of the world model (and of the recipe's Q heads, policy prior and target Qs)."""
        total, wm_losses, extra = self.losses(obs, act, rew, task)
        check("wm_loss", total)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        norm = float(nn.utils.clip_grad_norm_(self._params(), self.recipe.grad_clip_norm))
        check("wm_grad_norm", norm)
        self.opt.step()
        metrics = {**wm_losses.detached(), "wm_loss": float(total.detach()), **{k: float(v.detach()) for k, v in extra.items()},
                   "wm_grad_norm": norm}  # fmt: skip
        if self.q is not None:
            assert wm_losses.latents is not None and self.target_q is not None
            metrics.update(self._update_pi(wm_losses.latents.detach(), task))
            with torch.no_grad():
                for target, online in zip(self.target_q.parameters(), self.q.parameters()):
                    target.lerp_(online, self.recipe.tau)
        return metrics

    # ---------------------------------------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"recipe": self.recipe.to_dict(), "opt": self.opt.state_dict()}
        if self.q is not None:
            assert self.target_q is not None and self.pi is not None and self.pi_opt is not None and self.scale is not None
            state.update(q=self.q.state_dict(), target_q=self.target_q.state_dict(), pi=self.pi.state_dict(),
                         pi_opt=self.pi_opt.state_dict(), scale=self.scale.state_dict())  # fmt: skip
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["recipe"] != self.recipe.to_dict():
            raise ConfigError(
                f"the checkpoint's world model was trained with recipe {state['recipe']['name']!r} "
                f"({state['recipe']}), this run uses {self.recipe.to_dict()}: set wm_recipe back or start the cell afresh"
            )
        self.opt.load_state_dict(state["opt"])
        if self.q is not None:
            assert self.target_q is not None and self.pi is not None and self.pi_opt is not None and self.scale is not None
            self.q.load_state_dict(state["q"])
            self.target_q.load_state_dict(state["target_q"])
            self.pi.load_state_dict(state["pi"])
            self.pi_opt.load_state_dict(state["pi_opt"])
            self.scale.load_state_dict(state["scale"])

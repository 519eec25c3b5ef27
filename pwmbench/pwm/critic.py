"""The critic update shared by single-task and multitask PWM: TD(λ) targets, then regression by every critic.

    targets = TD(λ)(model rewards, min-over-critics values after each step, dones)
    for critic_iterations passes: for each of critic_batches contiguous minibatches of the window's latents:
        loss = mean_k mean_b (V_k(z_b) − target_b)²,  one Adam step clipped to critic_grad_norm
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from pwmbench.pwm.returns import td_lambda_targets

__all__ = ["update_critic"]


def update_critic(
    critic: nn.Module,
    optimizer: torch.optim.Optimizer,
    latents: Tensor,
    rewards: Tensor,
    next_values: Tensor,
    dones: Tensor,
    *,
    gamma: float,
    lam: float,
    iterations: int,
    batches: int,
    grad_norm: float,
    check: Callable[[str, Tensor | float], None],
    value_loss_over: str = "last",
) -> dict[str, float]:
    """latents [H, B, L] (detached), rewards / next_values / dones [H, B]. Returns value_loss — the mean batch loss of
    the last pass (`value_loss_over="last"`, as PWM's single-task `train` logs it) or of every pass (`"all"`, as PWM's
    multitask `update` logs it) — and critic_grad_norm (of the last step, before clipping)."""
    if value_loss_over not in ("last", "all"):
        raise ValueError(f"value_loss_over must be 'last' or 'all', got {value_loss_over!r}")
    targets = td_lambda_targets(rewards, next_values, dones, gamma, lam).reshape(-1)
    flat = latents.reshape(-1, latents.shape[-1])
    size = math.ceil(len(flat) / batches)
    last_losses: list[float] = []
    pass_means: list[float] = []
    norm = 0.0
    for _ in range(iterations):
        last_losses = []
        for start in range(0, len(flat), size):
            z, target = flat[start : start + size], targets[start : start + size]
            loss = ((critic(z) - target) ** 2).mean()
            check("value_loss", loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = float(nn.utils.clip_grad_norm_(critic.parameters(), grad_norm))
            check("critic_grad_norm", norm)
            optimizer.step()
            last_losses.append(loss.item())
        pass_means.append(sum(last_losses) / len(last_losses))
    value = pass_means[-1] if value_loss_over == "last" else sum(pass_means) / len(pass_means)
    return {"value_loss": value, "critic_grad_norm": norm}

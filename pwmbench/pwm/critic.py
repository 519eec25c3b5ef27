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
) -> dict[str, float]:
    """latents [H, B, L] (detached), rewards / next_values / dones [H, B]. Returns value_loss (mean of the last
    pass) and critic_grad_norm (of the last step, before clipping)."""
    targets = td_lambda_targets(rewards, next_values, dones, gamma, lam).reshape(-1)
    flat = latents.reshape(-1, latents.shape[-1])
    size = math.ceil(len(flat) / batches)
    last_losses: list[float] = []
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
    return {"value_loss": sum(last_losses) / len(last_losses), "critic_grad_norm": norm}

"""Critic targets: TD(λ) over an H-step imagined window, with done masks (SHAC's recursion, as PWM).

For i = H−1 … 0 with d = done_i (the last step is always done), v = bootstrap value after step i:
    Λ ← Λ·λ·(1−d) + d
    A ← (1−d)·(λ·γ·A + γ·v + (1−Λ)/(1−λ)·r_i)
    B ← γ·(v·d + B·(1−d)) + r_i
    target_i = (1−λ)·A + Λ·B
With every d = 1 this is the one-step target r_i + γ·v_i; with λ → 1 it is the Monte-Carlo return
bootstrapped at the window's end.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def td_lambda_targets(rewards: Tensor, next_values: Tensor, dones: Tensor, gamma: float, lam: float) -> Tensor:
    """rewards, next_values, dones: [H, B] → targets [H, B]. `dones[H−1]` is treated as 1."""
    horizon = rewards.shape[0]
    d_all = dones.to(rewards.dtype).clone()
    d_all[-1] = 1.0
    targets = torch.empty_like(rewards)
    big_lam = torch.ones_like(rewards[0])
    a = torch.zeros_like(rewards[0])
    b = torch.zeros_like(rewards[0])
    for i in reversed(range(horizon)):
        d, v, r = d_all[i], next_values[i], rewards[i]
        big_lam = big_lam * lam * (1 - d) + d
        if lam < 1:
            a = (1 - d) * (lam * gamma * a + gamma * v + (1 - big_lam) / (1 - lam) * r)
        b = gamma * (v * d + b * (1 - d)) + r
        targets[i] = (1 - lam) * a + big_lam * b
    return targets

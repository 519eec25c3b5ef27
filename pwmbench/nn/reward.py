"""Reward heads: scalar (dflex `pwm` preset) and two-hot over 101 bins in symlog space (TD-MPC2 presets).

Choice, documented: PWM trained the two-hot head with an MSE on the decoded value (a bug: the decoded
mean of a softmax is not what a categorical head should regress). pwmbench trains it as TD-MPC2 does —
soft cross-entropy against two-hot(symlog r) — and decodes with symexp(Σ softmax·bins), which is the
inverse of the target transform. Both variants share this head, so the choice cannot favour either.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pwmbench.nn.layers import mlp


def symlog(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def two_hot(x: Tensor, num_bins: int, vmin: float, vmax: float) -> Tensor:
    """Two-hot encoding of `x` (already in bin space, e.g. symlog r) over `num_bins` evenly spaced bins.

    Values outside [vmin, vmax] are clamped. Returns shape `[*x.shape, num_bins]`; each row sums to 1 and
    `Σ row · bins == clamp(x)`.
    """
    bin_size = (vmax - vmin) / (num_bins - 1)
    x = x.clamp(vmin, vmax)
    pos = (x - vmin) / bin_size
    lower = pos.floor().clamp(0, num_bins - 1)
    frac = (pos - lower).unsqueeze(-1)
    lower = lower.long().unsqueeze(-1)
    upper = (lower + 1).clamp(max=num_bins - 1)
    out = torch.zeros(*x.shape, num_bins, dtype=x.dtype, device=x.device)
    out.scatter_add_(-1, lower, 1 - frac)
    out.scatter_add_(-1, upper, frac)
    return out


class RewardHead(nn.Module):
    """r̂(z, a[, e]) = mlp(units) → 1 (scalar) or `num_bins` logits (two-hot); last weight starts at 0."""

    def __init__(self, in_dim: int, units: Sequence[int], num_bins: int = 1, vmin: float = -10.0, vmax: float = 10.0):
        super().__init__()
        if num_bins < 1 or num_bins == 2:
            raise ValueError(f"num_bins must be 1 (scalar) or ≥ 3 (two-hot), got {num_bins}")
        self.num_bins, self.vmin, self.vmax = num_bins, vmin, vmax
        self.net = mlp(in_dim, units, num_bins)
        if num_bins > 1:
            self.register_buffer("bins", torch.linspace(vmin, vmax, num_bins), persistent=False)

    @property
    def two_hot(self) -> bool:
        return self.num_bins > 1

    def forward(self, x: Tensor) -> Tensor:
        """Raw head output: `[..., 1]` for scalar, `[..., num_bins]` logits for two-hot."""
        return self.net(x)

    def decode(self, out: Tensor, symexp_two_hot: bool = True) -> Tensor:
        """Head output → reward, shape `[...]`. `symexp_two_hot=False` stops a two-hot head at Σ softmax·bins — the
        symlog-space value, which is what PWM's code feeds its actor (`almost_two_hot_inv`; docs/fidelity.md)."""
        if not self.two_hot:
            return out.squeeze(-1)
        value = (torch.softmax(out, dim=-1) * self.bins).sum(-1)
        return symexp(value) if symexp_two_hot else value

    def loss(self, out: Tensor, reward: Tensor) -> Tensor:
        """Per-sample loss, shape `reward.shape`: squared error (scalar) or soft cross-entropy (two-hot)."""
        if not self.two_hot:
            return (out.squeeze(-1) - reward) ** 2
        target = two_hot(symlog(reward), self.num_bins, self.vmin, self.vmax)
        return -(target * F.log_softmax(out, dim=-1)).sum(-1)

"""PWM's actor and critics (reference/pwm.md; SHAC-style MLPs with Mish and LayerNorm).

Hidden blocks are Linear → Mish → LayerNorm (activation before the norm, as PWM's MLPs do).
- Actor: latent → [400, 200, 100] → act_dim means; a state-independent log-std parameter starting at
  `init_logstd`, floored at `min_logstd` on every forward; training samples with rsample, evaluation uses
  the mean; the caller applies tanh.
- Critics: `num_critics` independent MLPs latent → [400, 200] → 1 (orthogonal init, gain √2, zero bias);
  each regresses the same target; the minimum over them is the bootstrap value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def hidden_mlp(in_dim: int, units: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in units:
        layers += [nn.Linear(in_dim, width), nn.Mish(), nn.LayerNorm(width)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Gaussian policy over pre-tanh actions with a learned, floored, state-independent log-std."""

    def __init__(self, latent_dim: int, act_dim: int, units: Sequence[int], init_logstd: float, min_logstd: float) -> None:
        super().__init__()
        self.mu = hidden_mlp(latent_dim, units, act_dim)
        self.logstd = nn.Parameter(torch.full((act_dim,), float(init_logstd)))
        self.min_logstd = float(min_logstd)

    def forward(self, z: Tensor, deterministic: bool = False, noise: Tensor | None = None) -> Tensor:
        """Pre-tanh action: the mean, or a reparameterised sample (gradients reach the mean and log-std); `noise`
        gives the standard-normal draw instead of the global RNG (the gradient probe shares it between rollouts)."""
        with torch.no_grad():
            self.logstd.clamp_(min=self.min_logstd)
        mu = self.mu(z)
        if deterministic:
            return mu
        return mu + self.logstd.exp() * (torch.randn_like(mu) if noise is None else noise)

    def act(self, z: Tensor, deterministic: bool = False, noise: Tensor | None = None) -> Tensor:
        """tanh-squashed action in [−1, 1]."""
        return torch.tanh(self(z, deterministic, noise))


class CriticEnsemble(nn.Module):
    """`n` value functions V_k(z); `forward` gives [n, ...], `min` the ensemble minimum."""

    def __init__(self, latent_dim: int, units: Sequence[int], n: int) -> None:
        super().__init__()
        self.critics = nn.ModuleList(hidden_mlp(latent_dim, units, 1) for _ in range(n))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.orthogonal_(module.weight, gain=math.sqrt(2))
                nn.init.zeros_(module.bias)

    def forward(self, z: Tensor) -> Tensor:
        return torch.stack([c(z).squeeze(-1) for c in self.critics])

    def min(self, z: Tensor) -> Tensor:
        return self(z).min(dim=0).values

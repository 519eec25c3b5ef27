"""TD-MPC2's building blocks, as PWM uses them: NormedLinear, SimNorm, mlp, and its weight init.

- NormedLinear: Linear → LayerNorm → activation (Mish for hidden layers).
- SimNorm: split the last dim into groups of `simnorm_dim` and softmax within each group (simplicial
  normalisation keeps latents bounded, which is what makes long latent rollouts stable).
- mlp(in, units, out, out_act): hidden NormedLinear+Mish layers; the last layer is NormedLinear with
  `out_act` when given, else a plain Linear.
- init: truncated-normal(std 0.02) weights (torch's default cut at ±2, as TD-MPC2 calls it), zero biases,
  embeddings U(−0.02, 0.02).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class SimNorm(nn.Module):
    """Softmax over consecutive groups of `dim` features."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        if shape[-1] % self.dim:
            raise ValueError(f"SimNorm: last dim {shape[-1]} is not a multiple of the group size {self.dim}")
        # Softmax over a contiguous inner dim of 8 is slow on CPU (measured 1.1 ms vs 0.17 ms fwd+bwd for
        # [256, 512]); putting the groups innermost and reducing over the strided dim gives the same values.
        groups = x.reshape(-1, shape[-1] // self.dim, self.dim).transpose(1, 2).contiguous()
        return torch.softmax(groups, dim=1).transpose(1, 2).reshape(shape)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class FeatureAffine(nn.Module):
    """y = γ ⊙ x + β, per feature (γ = 1, β = 0 at init): a LayerNorm's scale and shift without the normalisation —
    the output head of dynamics models whose output is unconstrained (a velocity, a residual), which keeps their
    parameter count equal to the baseline's Linear → LayerNorm → SimNorm head."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.bias, self.weight, x)


class NormedLinear(nn.Linear):
    """Linear → (dropout) → LayerNorm → activation."""

    def __init__(self, in_features: int, out_features: int, act: nn.Module | None = None, dropout: float = 0.0) -> None:
        super().__init__(in_features, out_features)
        self.ln = nn.LayerNorm(out_features)
        self.act = act if act is not None else nn.Mish()
        self.dropout = nn.Dropout(dropout) if dropout else None

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.act(self.ln(x))


def mlp(
    in_dim: int,
    units: Sequence[int],
    out_dim: int,
    out_act: nn.Module | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """TD-MPC2's mlp: NormedLinear(Mish) hidden layers, then NormedLinear(out_act) or a plain Linear."""
    dims = [in_dim, *units]
    layers: list[nn.Module] = [
        NormedLinear(dims[i], dims[i + 1], dropout=dropout if i == 0 else 0.0) for i in range(len(units))
    ]
    layers.append(NormedLinear(dims[-1], out_dim, act=out_act) if out_act is not None else nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """TD-MPC2's init, applied with `module.apply(init_weights)`."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.uniform_(module.weight, -0.02, 0.02)


def zero_last_layer(net: nn.Sequential) -> None:
    """Zero the last Linear's weight (TD-MPC2 does this for reward and value heads: start predicting 0)."""
    last = net[-1]
    if not isinstance(last, nn.Linear):
        raise TypeError(f"last layer is {type(last).__name__}, not Linear")
    nn.init.zeros_(last.weight)

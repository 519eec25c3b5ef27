"""The baseline: PWM/TD-MPC2's MLP dynamics head trained with an MSE step loss.

z_{t+1} = SimNorm(LN(W·mlp([z_t, a_t(, e)])))  — one network evaluation per step; the step loss is
mean((z_{t+1} − enc(o_{t+1}))²) over latent dims, and the rollout continues from the prediction.

`residual = true` is the ablation that separates the flow model's parameterisation from its training objective:
z_{t+1} = z_t + γ ⊙ (W·mlp([z_t, a_t(, e)])) + β — the same hidden layers, an unconstrained output head exactly like
the flow model's velocity head (Linear → per-feature affine, no normalisation, no SimNorm: a residual must be free
to be negative), the same MSE loss. Its parameter count equals the baseline's (the LayerNorm's scale and shift
become the affine's), and it is one network evaluation per step: "is flow's gain its residual form?" is the
comparison of flow against this variant (the report's attribution paragraph).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from pwmbench.api import DynamicsContext, DynamicsModel, FeatureAffine, SimNorm, hookimpl, join_inputs, mlp

__version__ = "0.1.0"


class MLPDynamics(DynamicsModel):
    """MLP dynamics with a SimNorm output and an MSE loss (PWM's baseline); `residual`: z + an unconstrained step."""

    default_options: dict[str, Any] = {"residual": False}

    def __init__(self, ctx: DynamicsContext, residual: bool = False) -> None:
        super().__init__(ctx)
        self.residual = bool(residual)
        if self.residual:  # the same hidden layers and Linear, then an affine instead of LayerNorm → SimNorm
            self.net = nn.Sequential(*mlp(ctx.input_dim, ctx.units, ctx.latent_dim), FeatureAffine(ctx.latent_dim))
        else:
            self.net = mlp(ctx.input_dim, ctx.units, ctx.latent_dim, out_act=SimNorm(ctx.simnorm_dim))

    def options(self) -> dict[str, Any]:
        return {"residual": self.residual}

    def next(self, z: Tensor, a: Tensor, emb: Tensor | None = None) -> Tensor:
        out = self.net(join_inputs(z, a, emb))
        return z + out if self.residual else out

    def step_loss(self, z: Tensor, a: Tensor, target: Tensor, emb: Tensor | None = None, *, teacher: Tensor | None = None) -> Tensor:
        return self.train_step(z, a, target, emb)[0]

    def train_step(
        self, z: Tensor, a: Tensor, target: Tensor, emb: Tensor | None = None, *, teacher: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        z_next = self.next(z, a, emb)
        return ((z_next - target) ** 2).mean(-1), z_next


@hookimpl
def pwmbench_register_dynamics(registry: Any) -> None:
    registry.add("mlp", MLPDynamics)

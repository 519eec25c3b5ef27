"""The baseline: PWM/TD-MPC2's MLP dynamics head trained with an MSE step loss.

z_{t+1} = SimNorm(LN(W·mlp([z_t, a_t(, e)])))  — one network evaluation per step; the step loss is
mean((z_{t+1} − enc(o_{t+1}))²) over latent dims, and the rollout continues from the prediction.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from pwmbench.api import DynamicsContext, DynamicsModel, SimNorm, hookimpl, join_inputs, mlp

__version__ = "0.1.0"


class MLPDynamics(DynamicsModel):
    """MLP dynamics with a SimNorm output and an MSE loss (PWM's baseline)."""

    default_options: dict[str, Any] = {}

    def __init__(self, ctx: DynamicsContext) -> None:
        super().__init__(ctx)
        self.net = mlp(ctx.input_dim, ctx.units, ctx.latent_dim, out_act=SimNorm(ctx.simnorm_dim))

    def next(self, z: Tensor, a: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.net(join_inputs(z, a, emb))

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

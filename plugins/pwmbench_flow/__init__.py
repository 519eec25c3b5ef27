"""Flow-matching dynamics: a velocity field over τ ∈ [0, 1] trained with the rectified-flow loss.

Step loss (rectified flow, one rollout step):
    x0 = z_t (the current rollout latent, not detached; `x0 = "teacher"` uses enc(o_t) instead)
    x1 = enc(o_{t+1}) (no grad),  τ ~ U[0, 1] per sample,  z_τ = (1 − τ)·x0 + τ·x1
    ℓ = mean((v_θ(z_τ, a, τ(, e)) − (x1 − x0))²)
Prediction: z_{t+1} = integrate(v_θ(·, a, ·), z_t, τ: 0 → 1, K substeps) with a registered integrator
(default Heun, K = 2: 2K velocity evaluations per step).

The velocity output is unconstrained (pitfall 1 of reference/flow-dynamics.md: a SimNorm'd velocity can't
be negative nor have group sums ≠ 1, so it can never fit x1 − x0). The baseline's output layer is
Linear → LayerNorm → SimNorm; here the normalisation and SimNorm are gone but the LayerNorm's per-feature
scale and shift stay as a plain affine, so with the same `units` the two models differ by exactly the time
input's `units[0]` weights and parity is decided by the hidden widths alone.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import torch
from torch import Tensor, nn

from pwmbench.api import (
    ConfigError,
    DynamicsContext,
    DynamicsModel,
    FeatureAffine,
    NormedLinear,
    Range,
    check_substeps,
    hookimpl,
    join_inputs,
)
from pwmbench.api import (
    integrator as get_integrator,
)

__version__ = "0.1.0"

X0_MODES = ("rollout", "teacher")
MAX_SUBSTEPS = 1_000  # RK4 × 1000 is 4000 velocity evaluations per predicted step: more is a typo (1e9 would hang a run)


class VelocityNet(nn.Module):
    """v_θ([z_τ, a, τ(, e)]): NormedLinear(Mish) hidden layers like the baseline, unconstrained output."""

    def __init__(self, ctx: DynamicsContext) -> None:
        super().__init__()
        dims = [ctx.input_dim + 1, *ctx.units]
        self.hidden = nn.Sequential(*[NormedLinear(dims[i], dims[i + 1]) for i in range(len(ctx.units))])
        self.out = nn.Linear(dims[-1], ctx.latent_dim)
        self.out_affine = FeatureAffine(ctx.latent_dim)

    def forward(self, z_tau: Tensor, a: Tensor, tau: Any, emb: Tensor | None = None) -> Tensor:
        if isinstance(tau, Tensor):
            tau_col = tau.to(z_tau.dtype).expand(*z_tau.shape[:-1], 1) if tau.dim() == 0 else tau
        else:
            tau_col = z_tau.new_full((*z_tau.shape[:-1], 1), float(tau))
        return self.out_affine(self.out(self.hidden(join_inputs(z_tau, a, tau_col, emb))))


class FlowDynamics(DynamicsModel):
    """Rectified-flow dynamics integrated with Heun/Euler/... over K substeps."""

    default_options: dict[str, Any] = {"integrator": "heun", "substeps": 2, "x0": "rollout"}
    option_types: ClassVar[dict[str, Any]] = {"substeps": Annotated[int, Range(1, MAX_SUBSTEPS)]}

    def __init__(self, ctx: DynamicsContext, integrator: str = "heun", substeps: int = 2, x0: str = "rollout") -> None:
        super().__init__(ctx)
        if x0 not in X0_MODES:
            raise ConfigError(f"flow option x0 must be one of {X0_MODES}, got {x0!r}")
        self.integrator_name, self.substeps, self.x0_mode = integrator, check_substeps(substeps), x0
        self.integrator = get_integrator(integrator)
        self.velocity = VelocityNet(ctx)

    @property
    def evals_per_next(self) -> int:
        return self.integrator.evals(self.substeps)

    @property
    def evals_per_train_step(self) -> int:
        return self.evals_per_next + 1  # one velocity evaluation for the loss, then the rollout step

    def options(self) -> dict[str, Any]:
        return {"integrator": self.integrator_name, "substeps": self.substeps, "x0": self.x0_mode}

    def next(self, z: Tensor, a: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.integrator.integrate(lambda x, tau: self.velocity(x, a, tau, emb), z, 0.0, 1.0, self.substeps)

    def step_loss(self, z: Tensor, a: Tensor, target: Tensor, emb: Tensor | None = None, *, teacher: Tensor | None = None) -> Tensor:
        if self.x0_mode == "teacher":
            if teacher is None:
                raise ValueError("flow with x0='teacher' needs the encoded current observation (teacher=...)")
            x0 = teacher
        else:
            x0 = z
        x1 = target
        tau = torch.rand(*x0.shape[:-1], 1, dtype=x0.dtype, device=x0.device)
        z_tau = (1.0 - tau) * x0 + tau * x1
        return ((self.velocity(z_tau, a, tau, emb) - (x1 - x0)) ** 2).mean(-1)


@hookimpl
def pwmbench_register_dynamics(registry: Any) -> None:
    registry.add("flow", FlowDynamics)

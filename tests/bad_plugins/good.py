"""CONTRIBUTING.md's example plugin done right: a residual dynamics model with a typed option, and an integrator."""

from pwmbench.api import DynamicsModel, Integrator, hookimpl, join_inputs, mlp


class Residual(DynamicsModel):
    """z' = z + scale·mlp([z, a])."""

    default_options = {"scale": 1.0}

    def __init__(self, ctx, scale):
        super().__init__(ctx)
        self.scale = scale
        self.net = mlp(ctx.input_dim, ctx.units, ctx.latent_dim)

    def options(self):
        return {"scale": self.scale}

    def next(self, z, a, emb=None):
        return z + self.scale * self.net(join_inputs(z, a, emb))

    def step_loss(self, z, a, target, emb=None, *, teacher=None):
        return ((self.next(z, a, emb) - target) ** 2).mean(-1)


class Ralston(Integrator):
    """Ralston's second-order method (k2 at 2/3 of the step)."""

    name, order, evals_per_substep = "ralston", 2, 2

    def step(self, f, x, t, dt):
        k1 = f(x, t)
        k2 = f(x + (2 / 3) * dt * k1, t + (2 / 3) * dt)
        return x + dt * (0.25 * k1 + 0.75 * k2)


@hookimpl
def pwmbench_register_dynamics(registry):
    registry.add("residual", Residual)


@hookimpl
def pwmbench_register_integrators(registry):
    registry.add("ralston", Ralston)

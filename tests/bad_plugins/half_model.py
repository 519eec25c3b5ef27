"""A dynamics model that forgot step_loss, next to a correct one in the same plugin."""

from pwmbench.api import DynamicsModel, hookimpl, join_inputs, mlp


class HalfModel(DynamicsModel):
    default_options = {"scale": 1.0}

    def __init__(self, ctx, scale):
        super().__init__(ctx)
        self.net = mlp(ctx.input_dim, ctx.units, ctx.latent_dim)

    def next(self, z, a, emb=None):
        return self.net(join_inputs(z, a, emb))


class WholeModel(HalfModel):
    def step_loss(self, z, a, target, emb=None, *, teacher=None):
        return ((self.next(z, a, emb) - target) ** 2).mean(-1)


@hookimpl
def pwmbench_register_dynamics(registry):
    registry.add("half", HalfModel)
    registry.add("whole", WholeModel)

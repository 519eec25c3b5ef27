"""A dynamics model whose constructor raises for some option values (registration, with the defaults, works)."""

from pwmbench.api import DynamicsModel, hookimpl, join_inputs, mlp


class Boom(DynamicsModel):
    default_options = {"width_multiplier": 1}

    def __init__(self, ctx, width_multiplier):
        super().__init__(ctx)
        if width_multiplier > 4:
            raise ValueError(f"width_multiplier {width_multiplier} is more than this model supports (4)")
        self.net = mlp(ctx.input_dim, [u * width_multiplier for u in ctx.units], ctx.latent_dim)

    def next(self, z, a, emb=None):
        return self.net(join_inputs(z, a, emb))

    def step_loss(self, z, a, target, emb=None, *, teacher=None):
        return ((self.next(z, a, emb) - target) ** 2).mean(-1)


@hookimpl
def pwmbench_register_dynamics(registry):
    registry.add("boom", Boom)

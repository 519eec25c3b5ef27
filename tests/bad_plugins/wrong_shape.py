"""A dynamics model whose next returns the wrong width, and one whose options do not match its constructor."""

from pwmbench.api import DynamicsModel, hookimpl, join_inputs, mlp


class Shrinking(DynamicsModel):
    def __init__(self, ctx):
        super().__init__(ctx)
        self.net = mlp(ctx.input_dim, ctx.units, 4)

    def next(self, z, a, emb=None):
        return self.net(join_inputs(z, a, emb))

    def step_loss(self, z, a, target, emb=None, *, teacher=None):
        return ((self.next(z, a, emb) - target[:, :4]) ** 2).mean(-1)


class Undeclared(Shrinking):
    """Its constructor needs `width`, which default_options does not declare."""

    def __init__(self, ctx, width):
        super().__init__(ctx)


@hookimpl
def pwmbench_register_dynamics(registry):
    registry.add("shrinking", Shrinking)
    registry.add("undeclared", Undeclared)

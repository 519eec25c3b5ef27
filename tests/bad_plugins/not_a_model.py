"""Registers a plain class (not a DynamicsModel) as a dynamics model."""

from pwmbench.api import hookimpl


class NotAModel:
    def __init__(self, ctx):
        self.ctx = ctx


@hookimpl
def pwmbench_register_dynamics(registry):
    registry.add("notamodel", NotAModel)

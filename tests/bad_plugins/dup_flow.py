"""Registers its own model under the built-in name "flow" (installed as a second distribution in the tests)."""

from bad_plugins.good import Residual
from pwmbench.api import hookimpl


@hookimpl
def pwmbench_register_dynamics(registry):
    registry.add("flow", Residual)

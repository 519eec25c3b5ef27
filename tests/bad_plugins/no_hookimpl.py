"""The right hook name, but no @hookimpl: pluggy never calls it."""

from bad_plugins.good import Residual


def pwmbench_register_dynamics(registry):
    registry.add("forgotten", Residual)

"""A misspelt hook name (pwmbench_register_dynamic, without the s)."""

from bad_plugins.good import Residual
from pwmbench.api import hookimpl


@hookimpl
def pwmbench_register_dynamic(registry):
    registry.add("typo", Residual)

"""Conformance checks that any dynamics-model or integrator plugin can run against itself.

In a plugin's own test suite::

    from pwmbench.testing import check_dynamics_model, check_integrator

    def test_my_dynamics():
        check_dynamics_model("mine")                 # a registered name, the class, or an instance
        check_dynamics_model(MyDynamics, {"scale": 2.0})

    def test_my_integrator():
        check_integrator("my_rk")                    # a registered name, the class, or an instance

Every `check_*` — the whole suites and each single check — takes the same arguments: a registered name, a class or
an instance, then the options (a dict) to build it with. Each raises AssertionError with a message that says what the
plugin got wrong. The individual checks are exported too (`DYNAMICS_CHECKS`, `INTEGRATOR_CHECKS`) so a test suite can
parametrise over them.
"""

from pwmbench.testing.dynamics_checks import DYNAMICS_CHECKS, check_dynamics_model, resolve_dynamics, small_context
from pwmbench.testing.integrator_checks import INTEGRATOR_CHECKS, check_integrator, observed_order, resolve_integrator

__all__ = [
    "DYNAMICS_CHECKS",
    "INTEGRATOR_CHECKS",
    "check_dynamics_model",
    "check_integrator",
    "observed_order",
    "resolve_dynamics",
    "resolve_integrator",
    "small_context",
]

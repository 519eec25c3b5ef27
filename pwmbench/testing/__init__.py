"""Conformance checks that any dynamics-model or integrator plugin can run against itself.

In a plugin's own test suite::

    from pwmbench.testing import check_dynamics_model, check_integrator

    def test_my_dynamics():
        check_dynamics_model(MyDynamics)            # or a registered name: check_dynamics_model("mine")

    def test_my_integrator():
        check_integrator(MyIntegrator())

Each check raises AssertionError with a message that says what the plugin got wrong. The individual
checks are exported too (`DYNAMICS_CHECKS`, `INTEGRATOR_CHECKS`) so a test suite can parametrise over them.
"""

from pwmbench.testing.dynamics_checks import DYNAMICS_CHECKS, check_dynamics_model, small_context
from pwmbench.testing.integrator_checks import INTEGRATOR_CHECKS, check_integrator, observed_order

__all__ = [
    "DYNAMICS_CHECKS",
    "INTEGRATOR_CHECKS",
    "check_dynamics_model",
    "check_integrator",
    "observed_order",
    "small_context",
]

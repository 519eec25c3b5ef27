"""Built-in fixed-step integrators for flow dynamics: euler, midpoint, heun, rk4.

Each integrates dx/dt = f(x, t) over one step of size dt; `Integrator.integrate` chains K of them over
[t0, t1]. All are explicit Runge–Kutta methods, so they are exact for fields polynomial in t up to their
order (for fields independent of x) and differentiable through autograd.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from pwmbench.api import Integrator, VelocityFn, hookimpl

__version__ = "0.1.0"


def euler_step(f: VelocityFn, x: Tensor, t: Any, dt: Any) -> Tensor:
    """x + dt·f(x, t)."""
    return x + dt * f(x, t)


def midpoint_step(f: VelocityFn, x: Tensor, t: Any, dt: Any) -> Tensor:
    """x + dt·f(x + dt/2·f(x, t), t + dt/2)."""
    return x + dt * f(x + 0.5 * dt * f(x, t), t + 0.5 * dt)


def heun_step(f: VelocityFn, x: Tensor, t: Any, dt: Any) -> Tensor:
    """Explicit trapezoid: k1 = f(x, t), k2 = f(x + dt·k1, t + dt), x + dt/2·(k1 + k2)."""
    k1 = f(x, t)
    k2 = f(x + dt * k1, t + dt)
    return x + 0.5 * dt * (k1 + k2)


def rk4_step(f: VelocityFn, x: Tensor, t: Any, dt: Any) -> Tensor:
    """Classical fourth-order Runge–Kutta."""
    half = 0.5 * dt
    k1 = f(x, t)
    k2 = f(x + half * k1, t + half)
    k3 = f(x + half * k2, t + half)
    k4 = f(x + dt * k3, t + dt)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


class Euler(Integrator):
    """Forward Euler: first order, one evaluation per substep."""

    name, order, evals_per_substep = "euler", 1, 1
    step = staticmethod(euler_step)


class Midpoint(Integrator):
    """Explicit midpoint: second order, two evaluations per substep."""

    name, order, evals_per_substep = "midpoint", 2, 2
    step = staticmethod(midpoint_step)


class Heun(Integrator):
    """Heun (explicit trapezoid): second order, two evaluations per substep; the flow model's default."""

    name, order, evals_per_substep = "heun", 2, 2
    step = staticmethod(heun_step)


class RK4(Integrator):
    """Classical Runge–Kutta: fourth order, four evaluations per substep."""

    name, order, evals_per_substep = "rk4", 4, 4
    step = staticmethod(rk4_step)


@hookimpl
def pwmbench_register_integrators(registry: Any) -> None:
    for cls in (Euler, Midpoint, Heun, RK4):
        registry.add(cls.name, cls)

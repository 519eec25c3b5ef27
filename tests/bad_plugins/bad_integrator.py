"""An integrator that forgot step and declares order 0; a sloppy Euler that computes in float32 (a dtype bug)."""

import torch

from pwmbench.api import Integrator, hookimpl


class NoStep(Integrator):
    name, order, evals_per_substep = "nostep", 0, 1


class SloppyEuler(Integrator):
    """Forward Euler through a float32 accumulator: float64 input comes back as float32."""

    name, order, evals_per_substep = "sloppy_euler", 1, 1

    def step(self, f, x, t, dt):
        out = torch.zeros(x.shape)
        out += x + dt * f(x, t)
        return out


@hookimpl
def pwmbench_register_integrators(registry):
    registry.add("nostep", NoStep)
    registry.add("sloppy_euler", SloppyEuler)

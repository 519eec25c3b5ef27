"""The torch autograd bridge: one env step of a `Simulator`, recorded on a `wp.Tape`, as a torch function.

Why per env step: a trainer or a gradient study wants `loss(obs_T).backward()` to reach the actions and the initial
state through every substep of every step, while the rest of its graph (rewards, observations, resets) is plain
torch. Each call of `sim_step(sim, q, qd, act)` records the `substeps` substeps of one step on its own tape, keeps
the tape for backward, and returns fresh (q', q̇') tensors; torch chains the steps. Backward seeds the tape with the
incoming gradients, runs Warp's adjoint kernels and hands back dL/dq, dL/dq̇, dL/dact.

The two gradient traps (reference/dflex.md) are avoided by the simulator: with `requires_grad=True` every substep
writes into fresh q/q̇ and intermediate arrays, and every mass-matrix rebuild allocates fresh H/L arrays; arrays that
many substeps read (the cached factor, the actions) accumulate their adjoints, which is what reading twice means.

The fast path for data collection is `Simulator.step` (no tape, no gradient arrays); use `sim_step` only when a
gradient is wanted. The simulator must be built with `requires_grad=True`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .sim import Simulator

__all__ = ["sim_step"]


def _to_warp(wp, x: torch.Tensor, device):
    """A float32 Warp array with a gradient, holding a private copy of `x` (the tape must not alias torch memory
    that the caller may change before backward)."""
    x = x.detach().to(dtype=torch.float32).contiguous().clone()
    return wp.from_torch(x, dtype=wp.float32, requires_grad=True)


class _SimStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, qd: torch.Tensor, act: torch.Tensor, sim: Simulator):
        wp = sim.wp
        q_in, qd_in, act_in = (_to_warp(wp, x, sim.device) for x in (q, qd, act))
        tape = wp.Tape()
        with tape:
            q_w, qd_w = q_in, qd_in
            for k in range(sim.substeps):
                q_w, qd_w = sim.substep(q_w, qd_w, act_in, sim._f_ext, rebuild=k % sim.mm_caching_frequency == 0)
        ctx.tape, ctx.inputs, ctx.outputs, ctx.sim = tape, (q_in, qd_in, act_in), (q_w, qd_w), sim
        return wp.to_torch(q_w).clone(), wp.to_torch(qd_w).clone()

    @staticmethod
    def backward(ctx, grad_q: torch.Tensor | None, grad_qd: torch.Tensor | None):
        wp, tape = ctx.sim.wp, ctx.tape
        q_out, qd_out = ctx.outputs
        _zero(tape, ctx.inputs, ctx.outputs)  # a retained step may be differentiated again: start from clean adjoints
        seeds = {}
        for out, grad in ((q_out, grad_q), (qd_out, grad_qd)):
            g = torch.zeros(out.shape, dtype=torch.float32, device=wp.device_to_torch(out.device)) if grad is None else grad
            seeds[out] = wp.from_torch(g.detach().to(torch.float32).contiguous().clone(), dtype=wp.float32)
        tape.backward(grads=seeds)
        grads = tuple(wp.to_torch(x.grad).clone() for x in ctx.inputs)
        # the tape and its arrays live as long as torch's graph holds this step (freed with it): a graph kept with
        # retain_graph=True can be differentiated again, e.g. by micro-batch (the gradient probe, ESNR)
        return (*grads, None)


def _zero(tape, inputs, outputs) -> None:
    tape.zero()
    for array in (*inputs, *outputs):
        if array.grad is not None:
            array.grad.zero_()


def sim_step(sim: Simulator, q: torch.Tensor, qd: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One differentiable env step: (q', q̇') = step(q, q̇, act) with gradients to all three inputs.

    q [num_envs, coord_count], q̇ and act [num_envs, dof_count], float32 torch tensors on the simulator's device.
    With `retain_graph=True` the step can be differentiated again (its tape is kept until torch frees the graph)."""
    if not sim.requires_grad:
        raise ValueError("sim_step needs a Simulator built with requires_grad=True (use Simulator.step without gradients)")
    expected = {"q": sim.model.coord_count, "qd": sim.model.dof_count, "act": sim.model.dof_count}
    for name, x in (("q", q), ("qd", qd), ("act", act)):
        if tuple(x.shape) != (sim.num_envs, expected[name]):
            raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {(sim.num_envs, expected[name])}")
    return _SimStep.apply(q, qd, act, sim)

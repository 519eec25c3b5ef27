"""Gradients of the dflex-equivalent simulator through the torch bridge (plugins/pwmbench_dflex/bridge.py).

reference/dflex.md's check: autograd against central finite differences over 1, 16 and 16×T substeps, with and
without ground contact, with mass-matrix caching, agreeing within 2% (float32, relative error of the gradient
vector). The differences use the fast path (`Simulator.step`, no tape), so they also check that the two paths
compute the same function.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pwmbench_dflex.bridge import sim_step
from pwmbench_dflex.contact import ContactParams
from pwmbench_dflex.mjcf import gymnasium_asset, load_mjcf, parse_mjcf
from pwmbench_dflex.model import Model, default_q
from pwmbench_dflex.sim import Simulator

pytestmark = pytest.mark.slow  # compiles the adjoint kernels on a cold cache

IDENTITY = (np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
ANT_CONTACT = ContactParams(ke=4e4, kd=1e4, kf=3e3, mu=0.75)
ANT_JOINTS = [0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0]

CHAIN = """<mujoco><worldbody>
  <body name="a"><joint name="j0" type="hinge" axis="0 1 0"/><geom type="capsule" fromto="0 0 0 0.5 0 0" size="0.05"/>
    <body name="b" pos="0.5 0 0"><joint name="j1" type="hinge" axis="0 1 0"/><geom type="capsule" fromto="0 0 0 0.4 0 0.1" size="0.04"/>
      <body name="c" pos="0.4 0 0.1"><joint name="j2" type="hinge" axis="0 0 1"/><geom type="sphere" size="0.08"/></body>
    </body>
  </body>
</worldbody></mujoco>"""


def ant_pair(substeps: int, mm: int, contact: bool):
    """(taped simulator, fast simulator) for one Ant with dflex's constants."""
    art = load_mjcf(gymnasium_asset("ant"), density=1000.0, stiffness=0.0, damping=1.0, armature=0.05)
    model = Model.from_articulation(art, root_frame=IDENTITY, joint_target=[0.0] * 6 + ANT_JOINTS)
    kwargs = dict(substeps=substeps, mm_caching_frequency=mm, limit_ke=1e3, limit_kd=10.0, contact=ANT_CONTACT if contact else None)
    return Simulator(model, 1, requires_grad=True, **kwargs), Simulator(model, 1, **kwargs)


def ant_state(model, height: float):
    q = torch.tensor(default_q(model, 1))
    q[:, :3] = torch.tensor([0.0, height, 0.0])
    q[:, 3:7] = torch.tensor([-math.sin(math.pi / 4), 0.0, 0.0, math.cos(math.pi / 4)])
    q[:, 7:] = torch.tensor(ANT_JOINTS)
    return q, torch.zeros(1, model.dof_count)


def settle(fast: Simulator, q, qd, steps: int):
    for _ in range(steps):
        q, qd = fast.step(q, qd)
    return q, qd


def check_gradients(taped: Simulator, fast: Simulator, q, qd, act, steps: int, eps: float, act_dofs, q_coords=(), tol=0.02,
                    eps_q: float = 1e-4, eps_qd: float = 1e-3):
    """d loss / d(act[act_dofs], q[q_coords], qd) by autograd vs central differences; loss = a fixed random
    linear functional of the final (q, q̇). The steps are small for the state (stiff contact and limit springs bend
    the function within 1e-3 of a joint angle) and larger for the actions (torques of tens of N·m)."""
    gen = torch.Generator().manual_seed(7)
    wq, wqd = torch.randn(q.shape, generator=gen), torch.randn(qd.shape, generator=gen)

    def loss_fast(q0, qd0, a):
        for _ in range(steps):
            q0, qd0 = fast.step(q0, qd0, a)
        return float((q0 * wq).sum() + (qd0 * wqd).sum())

    q_in, qd_in, a_in = (x.clone().requires_grad_(True) for x in (q, qd, act))
    x, v = q_in, qd_in
    for _ in range(steps):
        x, v = sim_step(taped, x, v, a_in)
    ((x * wq).sum() + (v * wqd).sum()).backward()

    auto, numeric = [], []
    for tensor, grad, indices, h in ((act, a_in.grad, act_dofs, eps), (q, q_in.grad, q_coords, eps_q), (qd, qd_in.grad, range(qd.shape[1]), eps_qd)):
        for i in indices:
            up, down = tensor.clone(), tensor.clone()
            up[0, i] += h
            down[0, i] -= h
            args_up = [up if tensor is t else t for t in (q, qd, act)]
            args_down = [down if tensor is t else t for t in (q, qd, act)]
            numeric.append((loss_fast(*args_up) - loss_fast(*args_down)) / (2 * h))
            auto.append(float(grad[0, i]))
    auto, numeric = np.array(auto), np.array(numeric)
    error = np.linalg.norm(auto - numeric) / np.linalg.norm(numeric)
    print("gradient relative error", error)
    assert error < tol, (error, auto, numeric)
    return error


@pytest.mark.parametrize("substeps, steps", [(1, 1), (16, 1), (16, 4)], ids=["1", "16", "16x4"])
def test_gradients_without_contact_match_finite_differences(substeps, steps):
    """A three-link hinge chain swinging under gravity with joint torques; mass matrix once per 16 substeps."""
    art = parse_mjcf(CHAIN, damping=0.1, armature=0.01)
    model = Model.from_articulation(art)
    kwargs = dict(dt=substeps / 960.0, substeps=substeps, mm_caching_frequency=substeps)
    taped, fast = Simulator(model, 1, requires_grad=True, **kwargs), Simulator(model, 1, **kwargs)
    q = torch.tensor([[0.3, -0.5, 0.8]])
    qd = torch.tensor([[0.5, -1.0, 2.0]])
    act = torch.tensor([[1.0, -0.5, 0.2]])
    check_gradients(taped, fast, q, qd, act, steps, eps=1e-2, act_dofs=range(3), q_coords=range(3))


@pytest.mark.parametrize("substeps, steps", [(1, 1), (16, 1), (16, 4)], ids=["1", "16", "16x4"])
def test_ant_gradients_with_ground_contact_match_finite_differences(substeps, steps):
    """dflex's Ant standing on the ground (contact, limits, mass matrix cached over 16 substeps), random torques."""
    taped, fast = ant_pair(16, 16, contact=True)
    q, qd = settle(fast, *ant_state(fast.model, 0.75), steps=180)
    assert fast.contact_wrenches(q, qd)[0, :, 4].sum() > 0  # the legs are on the ground
    if substeps == 1:
        taped, fast = (Simulator(fast.model, 1, dt=1 / 960, substeps=1, limit_ke=1e3, limit_kd=10.0, contact=ANT_CONTACT, requires_grad=rg)
                       for rg in (True, False))  # fmt: skip
    act = torch.zeros(1, 14)
    act[:, 6:] = 25.0 * (torch.rand(1, 8, generator=torch.Generator().manual_seed(1)) - 0.5)
    check_gradients(taped, fast, q, qd, act, steps, eps=0.1, act_dofs=range(6, 14), q_coords=range(7, 14))


def test_ant_gradients_in_the_air_with_mass_matrix_caching():
    """No contact (the Ant in free fall, joints swinging), 16 substeps with the mass matrix every 4."""
    taped, fast = ant_pair(16, 4, contact=False)
    q, qd = ant_state(taped.model, 2.0)
    qd[:, 6:] = torch.linspace(-2, 2, 8)
    act = torch.zeros(1, 14)
    act[:, 6:] = torch.linspace(-30, 30, 8)
    check_gradients(taped, fast, q, qd, act, 2, eps=0.1, act_dofs=range(6, 14), q_coords=range(7, 14))


def test_bridge_forward_equals_fast_path_and_refuses_misuse():
    taped, fast = ant_pair(16, 16, contact=True)
    q, qd = ant_state(fast.model, 0.5)
    act = torch.full((1, 14), 3.0)
    a, b = sim_step(taped, q, qd, act)
    c, d = fast.step(q, qd, act)
    torch.testing.assert_close(a, c, rtol=0, atol=0)
    torch.testing.assert_close(b, d, rtol=0, atol=0)
    with pytest.raises(ValueError, match="requires_grad=True"):
        sim_step(fast, q, qd, act)
    with pytest.raises(ValueError, match="expected"):
        sim_step(taped, q[:, :5], qd, act)

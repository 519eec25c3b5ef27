"""The root-following frame (plugins/pwmbench_dflex/frame.py) and SHAC's CartPole (tasks.py).

Frame: an Ant placed 300 m away (exactly, in float64) must step, observe and differentiate as the same Ant at the
origin, because the physics is translation invariant and the env re-centres every step; without the frame the
world-frame float32 simulator visibly departs from that (the reason the frame exists). CartPole: SHAC's constants
(as PWM's dflex fork builds them) and its stochastic initial states.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pwmbench_dflex.frame import RootFrame
from pwmbench_dflex.tasks import TASKS, CartPole

from pwmbench import api

pytestmark = pytest.mark.slow  # builds simulators (kernels compile once per cache)

FAR = (300.0, 0.0, -200.0)  # a horizontal displacement (y is up)


def make(name, n=2, seed=0, **kwargs):
    return api.task(f"dflex/{name}").make_env(n, seed, **kwargs)


def actions(n, act_dim, seed):
    return torch.rand(n, act_dim, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def settled_ant(n=2, steps=8):
    """An Ant env after a few random steps: its feet are on the ground (contact active)."""
    env = make("ant", n=n, seed=3)
    for k in range(steps):
        env.step(actions(n, 8, k))
    return env


def moved(frame: RootFrame, q, qd, delta):
    """The world-frame state `delta` further away, exactly (float64)."""
    d = torch.as_tensor(delta, dtype=torch.float64).expand(q.shape[0], 3)
    return frame.to_world(q, qd, d)


def test_frame_kinds_follow_the_translation_invariant_roots():
    kinds = {name: RootFrame.of(TASKS[name]().model()) for name in TASKS}
    assert kinds["ant"].kind == kinds["humanoid"].kind == "free"
    assert kinds["hopper"].kind == kinds["cheetah"].kind == "slide"
    assert kinds["hopper"].axis == (1.0, 0.0, 0.0)
    assert kinds["cartpole"].kind == "none"  # the cart's rail is limited: not invariant


def test_recentring_keeps_the_observation_and_moves_only_the_origin():
    env = settled_ant()
    q, qd, origin = env.local_state
    assert torch.all(q[:, [0, 2]] == 0) and torch.all(origin[:, 1] == 0)
    world_q, world_qd = env.frame.to_world(q, qd, origin)
    again_q, again_qd, again_origin = env.frame.from_world(world_q, world_qd)
    torch.testing.assert_close(again_q, q, rtol=0, atol=1e-7)
    torch.testing.assert_close(again_qd, qd, rtol=0, atol=1e-6)
    torch.testing.assert_close(again_origin, origin, rtol=0, atol=1e-12)
    # the torso's own linear velocity (obs 5:8) is frame independent: v + ω × p in the world = local
    torso_world = world_qd[:, 3:6] + torch.linalg.cross(world_qd[:, 0:3], world_q[:, 0:3], dim=-1)
    torch.testing.assert_close(torso_world.float(), env.obs[:, 5:8], rtol=0, atol=1e-6)
    same = env.frame.recentre(q, qd, origin)  # a centred state passes through bit for bit
    assert all(torch.equal(a, b) for a, b in zip(same, (q, qd, origin)))


def test_an_ant_300_m_away_steps_as_at_the_origin():
    """Same state, once at the origin and once 300 m away: after 6 env steps (96 substeps with contact) q, q̇ and
    the observations agree to 1e-5; the world-frame simulator without re-centring does not."""
    home = settled_ant()
    q, qd, origin = (x.clone() for x in home.local_state)
    far = make("ant", n=2, seed=3)
    world_q, world_qd = moved(home.frame, q, qd, origin + torch.tensor(FAR, dtype=torch.float64))
    far.set_state(world_q, world_qd)  # float64 in: placed exactly
    home.set_state(*home.frame.to_world(q, qd, origin))
    bare_q, bare_qd = world_q.float(), world_qd.float()  # what a world-frame simulator would step
    for k in range(6):
        act = actions(2, 8, 100 + k)
        obs_home = home.step(act)[0]
        obs_far = far.step(act)[0]
        bare_q, bare_qd = home.sim.step(bare_q, bare_qd, home.task.joint_forces(act, home.model.dof_count))
    q_home, qd_home, o_home = home.local_state
    q_far, qd_far, o_far = far.local_state
    assert (q_far - q_home).abs().max() <= 1e-5 and (qd_far - qd_home).abs().max() <= 1e-5
    torch.testing.assert_close(o_far - o_home, torch.tensor(FAR, dtype=torch.float64).expand(2, 3), rtol=0, atol=1e-9)
    keep = [i for i in range(37) if i != 28]  # obs 28 is the direction to a fixed far target: it depends on place
    assert (obs_far[:, keep] - obs_home[:, keep]).abs().max() <= 1e-5
    # obs 28 from the absolute position: heading · direction to (10000, ·, 0)
    world_pos = far.frame.world_position(q_far[:, 0:3], o_far)
    to_target = torch.stack((10000.0 - world_pos[:, 0], torch.zeros(2, dtype=torch.float64), -world_pos[:, 2]), -1)
    direction = (to_target / to_target.norm(dim=-1, keepdim=True)).float()
    assert (obs_far[:, 28] - (direction * _heading(far, q_far)).sum(-1)).abs().max() <= 1e-6
    # the reason for the frame: the float32 world-frame simulator 300 m out departs (or blows up) within 6 steps
    bare_local_q, bare_local_qd, _ = home.frame.from_world(bare_q.double(), bare_qd.double())
    assert not torch.allclose(bare_local_qd, qd_home, rtol=0, atol=1e-3)


def _heading(env, q):
    from pwmbench_dflex.rotations import quat_conjugate, quat_mul, quat_rotate
    from pwmbench_dflex.tasks import Z_UP_TO_Y_UP

    torso = quat_mul(q[:, 3:7], quat_conjugate(torch.as_tensor(Z_UP_TO_Y_UP, dtype=q.dtype)))
    return quat_rotate(torso, torch.tensor([1.0, 0.0, 0.0]))


def test_joint_accelerations_300_m_away_are_at_the_origins_precision():
    """World-frame float32 at 300 m: joint q̈ off by >1% of its size; after re-centring: equal to the origin's."""
    env = settled_ant(n=4)
    q, qd, origin = env.local_state
    tau = env.task.joint_forces(actions(4, 8, 7), env.model.dof_count)
    at_origin = env.sim.accelerations(q, qd, tau)[:, 6:]
    world_q, world_qd = moved(env.frame, q, qd, torch.tensor(FAR, dtype=torch.float64))
    world = env.sim.accelerations(world_q.float(), world_qd.float(), tau)[:, 6:]
    local_q, local_qd, _ = env.frame.from_world(world_q, world_qd)
    followed = env.sim.accelerations(local_q, local_qd, tau)[:, 6:]
    size = np.linalg.norm(at_origin, axis=-1)
    assert np.median(np.linalg.norm(world - at_origin, axis=-1) / size) > 1e-2
    assert np.max(np.linalg.norm(followed - at_origin, axis=-1) / size) <= 1e-6


def test_gradients_through_the_env_do_not_depend_on_where_the_ant_is():
    """d(Σ observations over 3 steps)/d(first action) by autograd, at the origin and 300 m away: equal to float32
    precision (the shift is a constant, so it commutes with the chain rule). Obs 28 (direction to a fixed target)
    is left out: it really depends on where the Ant is."""
    base = settled_ant(steps=4)
    q, qd, origin = (x.clone() for x in base.local_state)
    grads = []
    for delta in ((0.0, 0.0, 0.0), FAR):
        env = make("ant", n=2, seed=3, differentiable=True)
        env.set_state(*moved(env.frame, q, qd, origin + torch.tensor(delta, dtype=torch.float64)))
        first = actions(2, 8, 50).requires_grad_(True)
        total = torch.zeros(())
        for k in range(3):
            obs, _, terminated, truncated, _ = env.step(first if k == 0 else actions(2, 8, 51 + k))
            assert not (terminated.any() or truncated.any())
            total = total + obs[:, :28].sum() + 10.0 * obs[:, 5].sum()
        total.backward()
        grads.append(first.grad.clone())
    assert grads[0].abs().max() > 1e-3
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-4)


def test_state_dict_carries_the_origin_and_reads_old_world_frame_states():
    a = make("hopper", n=2, seed=1)
    for k in range(4):
        a.step(actions(2, 3, k))
    saved = a.state_dict()
    assert "origin" in saved and saved["origin"].dtype == torch.float64
    b = make("hopper", n=2, seed=9)
    b.load_state_dict(saved)
    old = dict(saved)
    world_q, world_qd = a.state
    old.pop("origin")
    old["q"], old["qd"] = world_q, world_qd  # a checkpoint written before the frame: world coordinates
    c = make("hopper", n=2, seed=9)
    c.load_state_dict(old)
    torch.testing.assert_close(c.origin, a.origin, rtol=0, atol=1e-6)
    for k in range(10):
        act = actions(2, 3, 20 + k)
        out_a, out_b, out_c = a.step(act), b.step(act), c.step(act)
        for x, y in zip(out_a[:4], out_b[:4]):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        torch.testing.assert_close(out_c[0], out_a[0], rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------------------- CartPole
def test_cartpole_constants_are_shacs():
    task = CartPole()
    model = task.model()
    np.testing.assert_allclose(model.mass, [50.0, 2.5])  # boxes 0.5×0.5×0.2 and 0.05×0.05×1 at density 1000
    np.testing.assert_allclose(model.com[1], [0.0, 0.0, 0.5])
    np.testing.assert_allclose(model.armature, [0.1, 0.1])
    np.testing.assert_allclose(model.stiffness, 0.0)
    np.testing.assert_allclose(model.damping, 0.0)
    assert (model.lower[0], model.upper[0]) == (-4.0, 4.0)
    assert (task.limit_ke, task.limit_kd) == (1.0e2, 1.0)
    assert model.contact_link.size == 0  # no ground, no contact points
    env = make("cartpole", n=1)
    H = env.sim.mass_matrix(np.zeros((1, 2), dtype=np.float32))[0]
    pole_about_hinge = 2.5 / 12 * (0.05**2 + 1.0) + 2.5 * 0.5**2
    np.testing.assert_allclose(H, [[52.6, 1.25], [1.25, pole_about_hinge + 0.1]], rtol=1e-5)  # θ = 0: pole up
    tau = task.joint_forces(torch.ones(1, 1), 2)
    assert tau.tolist() == [[1000.0, 0.0]]


def test_cartpole_hangs_at_rest_and_falls_from_upright():
    env = make("cartpole", n=2)
    q = np.array([[0.0, -math.pi], [0.0, 0.05]], dtype=np.float32)
    qdd = env.sim.accelerations(q, np.zeros((2, 2), dtype=np.float32))
    assert abs(qdd[0, 1]) < 1e-4  # hanging: equilibrium
    # tipped 0.05 rad toward +x from upright, cart free: θ̈ = H₀₀·τ_g / det H, τ_g = m g l sin θ (falls further)
    h00, h01, h11 = 52.6, 1.25 * math.cos(0.05), 2.5 / 12 * (0.05**2 + 1.0) + 2.5 * 0.25 + 0.1
    expected = h00 * 2.5 * 9.81 * 0.5 * math.sin(0.05) / (h00 * h11 - h01 * h01)
    assert qdd[1, 1] == pytest.approx(expected, rel=1e-3)


def test_cartpole_initial_states_are_shacs_distribution():
    """(x, θ) = (0, −π) + π·U(−0.5, 0.5), (ẋ, θ̇) = 0.5·U(−0.5, 0.5): bounds and spread over 4000 draws, and the env's
    resets draw from it."""
    task, model = CartPole(), CartPole().model()
    q, qd = task.initial_state(model, 4000, torch.Generator().manual_seed(0))
    offset = q - torch.tensor([0.0, -math.pi])
    assert offset.abs().max() <= math.pi / 2 + 1e-6 and offset.abs().amax(0).min() > 0.98 * math.pi / 2
    assert qd.abs().max() <= 0.25 + 1e-7 and qd.abs().amax(0).min() > 0.245
    torch.testing.assert_close(offset.mean(0), torch.zeros(2), rtol=0, atol=0.05)
    torch.testing.assert_close(offset.std(0), torch.full((2,), math.pi / math.sqrt(12)), rtol=0.03, atol=0)
    env = make("cartpole", n=64, seed=5)
    for _ in range(3):
        obs = env.reset()
        assert obs[:, 0].abs().max() <= math.pi / 2 + 1e-6  # the cart starts anywhere on ±π/2 m
        assert (obs[:, 3] <= 1e-6).all()  # cos θ ≤ 0: the pole starts in the lower half

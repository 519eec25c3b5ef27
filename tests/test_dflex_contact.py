"""Penalty ground contact of the dflex-equivalent simulator (plugins/pwmbench_dflex/contact.py, `Simulator(contact=)`).

The wrench formula is checked against a float64 numpy reference at random states; the rest is physics that must
hold with dflex's Ant constants (ke 4e4, kd 1e4, kf 3e3, mu 0.75): a resting sphere sits at depth m·g/ke, a dropped
one bounces and comes to rest without tunnelling, a sliding capsule stops where Coulomb friction says, the Ant
lands and settles, and envs in a batch stay independent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import warp  # the dflex extra installs it
from pwmbench_dflex.contact import ContactParams
from pwmbench_dflex.mjcf import gymnasium_asset, load_mjcf, parse_mjcf, quat_to_matrix
from pwmbench_dflex.model import Model, default_q
from pwmbench_dflex.sim import Simulator

pytestmark = pytest.mark.slow  # the first run compiles the kernels (cached in .warp_cache)

G = 9.81
ANT_CONTACT = ContactParams(ke=4e4, kd=1e4, kf=3e3, mu=0.75)
IDENTITY = (np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))  # root frame: q[0:3] is the world position (y-up)
RADIUS = 0.1

SPHERE = f"""<mujoco><worldbody><body name="ball">
  <freejoint name="root"/><geom type="sphere" size="{RADIUS}"/>
</body></worldbody></mujoco>"""

ROD = """<mujoco><worldbody><body name="rod">
  <freejoint name="root"/><geom type="capsule" fromto="-0.2 0 0 0.2 0 0" size="0.05"/>
</body></worldbody></mujoco>"""

FREE_BODY = """<mujoco><worldbody><body name="body">
  <freejoint name="root"/>
  <geom type="capsule" fromto="-0.3 0 0 0.4 0 0" size="0.05"/>
  <geom type="sphere" pos="0.1 0.1 0.2" size="0.07"/>
</body></worldbody></mujoco>"""


def body_sim(xml, num_envs=1, contact=ANT_CONTACT, **kwargs):
    art = parse_mjcf(xml)
    return art, Simulator(art, num_envs, contact=contact, root_frame=IDENTITY, **kwargs)


def reference_wrench(art, q, qd, c: ContactParams) -> np.ndarray:
    """float64 ground wrench [n; F] about the world origin on a single free body (link 0)."""
    R, x = quat_to_matrix(q[3:7]), q[:3]
    w, v = qd[:3], qd[3:]
    total = np.zeros(6)
    link, position, radius = art.contact_arrays()
    for point, r in zip(position[link == 0], radius[link == 0]):
        centre = x + R @ point
        depth = r - centre[1]
        if depth <= 0:
            continue
        p = centre - np.array([0.0, r, 0.0])
        vp = v + np.cross(w, p)
        vn = vp[1]
        vt = vp - np.array([0.0, vn, 0.0])
        F = np.array([0.0, c.ke * depth + c.kd * depth * max(-vn, 0.0), 0.0])
        speed = np.linalg.norm(vt)
        if speed > 0:
            F -= vt / speed * min(c.kf * speed, c.mu * c.ke * depth)
        total += np.concatenate([np.cross(p, F), F])
    return total


# ----------------------------------------------------------------------------------------------- the wrench


def test_contact_wrench_matches_reference_and_is_zero_off_the_ground():
    art, sim = body_sim(FREE_BODY, num_envs=8)
    rng = np.random.default_rng(0)
    q = np.zeros((8, 7), dtype=np.float32)
    q[:, :3] = rng.uniform(-0.3, 0.3, (8, 3))
    q[:, 1] = rng.uniform(0.0, 0.1, 8)  # some points below y = 0, some above
    q[0, 1] = 1.0  # one env off the ground
    quat = rng.normal(size=(8, 4))
    q[:, 3:] = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    qd = rng.uniform(-1.0, 1.0, (8, 6)).astype(np.float32)
    got = sim.contact_wrenches(q, qd)
    assert got.shape == (8, 1, 6)
    touching = 0
    for e in range(8):
        ref = reference_wrench(art, q[e].astype(np.float64), qd[e].astype(np.float64), ANT_CONTACT)
        touching += np.any(ref != 0)
        np.testing.assert_allclose(got[e, 0], ref, rtol=2e-4, atol=2e-5 * max(1.0, np.abs(ref).max()))
    assert 0 < touching < 8

    high = q.copy()
    high[:, 1] = 2.0
    np.testing.assert_array_equal(sim.contact_wrenches(high, qd), 0.0)
    _, plain = body_sim(FREE_BODY, num_envs=8, contact=None)
    np.testing.assert_array_equal(plain.contact_wrenches(q, qd), 0.0)  # contact off: f_ext stays zero


def test_contact_params_and_ranges():
    with pytest.raises(ValueError):
        ContactParams(-1.0, 0.0, 0.0, 0.0)
    with pytest.raises(TypeError):
        Simulator(parse_mjcf(SPHERE), 1, contact=(4e4, 1e4, 3e3, 0.75))
    art = load_mjcf(gymnasium_asset("ant"))
    model = Model.from_articulation(art)
    order, start, count = model.contact_ranges()
    assert count.sum() == model.contact_link.size and count.size == model.link_count
    np.testing.assert_array_equal(np.repeat(np.arange(model.link_count), count), model.contact_link[order])
    np.testing.assert_array_equal(start, np.concatenate([[0], np.cumsum(count)[:-1]]))


# ------------------------------------------------------------------------------------------- single bodies


def test_resting_sphere_settles_at_depth_mg_over_ke():
    """Released touching the ground at rest, it oscillates about and settles to depth m·g/ke (1.03 mm here): the
    mean depth over the second second is within 3% of it. The damping (kd·depth, only while moving in: dflex's) is
    weak at this depth, so the oscillation (±~1 mm at ~16 Hz at first) dies out slowly: it only has to shrink."""
    art, sim = body_sim(SPHERE)
    q = sim.default_q()
    q[0, 1] = RADIUS
    qs, qds = sim.rollout(q, np.zeros((1, 6), dtype=np.float32), steps=120)
    expected = art.total_mass * G / ANT_CONTACT.ke
    depth = RADIUS - qs[1:, 0, 1]
    assert abs(depth[60:].mean() - expected) < 0.03 * expected, (depth[60:].mean(), expected)
    assert np.all(depth > 0) and np.all(depth < 2.5 * expected)  # never leaves the ground, never sinks far
    assert depth[-30:].std() < 0.6 * depth[:30].std()  # decaying (≈ 0.4 over these 1.5 s)
    assert np.abs(qds[-10:, 0]).max() < 0.05
    np.testing.assert_allclose(qs[:, 0, [0, 2]], 0.0, atol=1e-6)  # straight down: no sideways force


def test_dropped_sphere_bounces_and_comes_to_rest_without_tunnelling():
    """Dropped from 0.5 m: the impact (≈ 2.8 m/s) compresses it well under one radius, it bounces back up (the
    penalty spring is only damped while moving in), and over 5 s the bounces die down: in the last half second it
    stays within 0.1·radius of its resting height (so above y = −0.1·radius: no sinking) with small hops left
    (dflex's depth-scaled, one-sided damping dissipates little per bounce)."""
    _, sim = body_sim(SPHERE)
    q = sim.default_q()
    q[0, 1] = 0.5
    qs, qds = sim.rollout(q, np.zeros((1, 6), dtype=np.float32), steps=300)
    y = qs[:, 0, 1]
    assert np.all(np.isfinite(qs)) and np.all(np.isfinite(qds))
    assert y.min() > 0.0  # the centre never goes below the ground: no tunnelling
    first_low = int(np.argmin(y[:40]))
    assert y[first_low : first_low + 30].max() > RADIUS + 0.05  # it bounced
    assert y[-30:].min() - RADIUS > -0.1 * RADIUS
    rest = RADIUS - parse_mjcf(SPHERE).total_mass * G / ANT_CONTACT.ke
    assert np.abs(y[-30:] - rest).max() < 0.1 * RADIUS
    assert np.abs(y[-30:] - rest).max() < 0.5 * np.abs(y[150:180] - rest).max()  # still decaying
    np.testing.assert_allclose(qs[:, 0, [0, 2]], 0.0, atol=1e-6)


def test_sliding_capsule_stops_where_coulomb_friction_says():
    """A capsule lying along x slides at 2 m/s: friction caps at mu·(normal force), so it decelerates at ≈ mu·g and
    stops after ≈ v²/(2 mu g) = 0.272 m, then stays put."""
    _, sim = body_sim(ROD)
    q = sim.default_q()
    q[0, 1] = 0.05
    qd = np.zeros((1, 6), dtype=np.float32)
    qd[0, 3] = 2.0
    qs, qds = sim.rollout(q, qd, steps=60)
    vx = qds[:, 0, 3]
    assert vx[6] < 2.0 - 0.5 * ANT_CONTACT.mu * G * 0.1  # decelerating within the first 0.1 s
    expected = 2.0**2 / (2 * ANT_CONTACT.mu * G)
    assert abs(qs[-1, 0, 0] - expected) < 0.1 * expected, (qs[-1, 0, 0], expected)
    assert np.abs(vx[-15:]).max() < 0.05  # stopped (a residual rocking of a few mm/s)
    assert np.abs(qs[-15:, 0, 0] - qs[-1, 0, 0]).max() < 5e-3
    assert np.all(np.isfinite(qs))


# ----------------------------------------------------------------------------------------------------- the Ant


def ant_model():
    """dflex's Ant: density 1000, stiffness 0, damping 1, armature 0.05; identity root frame, so q[0:3] is the world
    position and the −π/2 rotation about x (MJCF z-up → y-up) goes into the start quaternion, as dflex does."""
    art = load_mjcf(gymnasium_asset("ant"), density=1000.0, stiffness=0.0, damping=1.0, armature=0.05)
    joints = [0, 1, 0, -1, 0, -1, 0, 1]
    return Model.from_articulation(art, root_frame=IDENTITY, joint_target=[0] * 6 + joints), joints


def ant_start(model, joints, num_envs):
    q = default_q(model, num_envs)
    q[:, :3] = [0.0, 0.75, 0.0]
    q[:, 3:7] = [-math.sin(math.pi / 4), 0.0, 0.0, math.cos(math.pi / 4)]
    q[:, 7:] = joints
    return q, np.zeros((num_envs, model.dof_count), dtype=np.float32)


def ant_sim(model, num_envs, substeps=16):
    return Simulator(model, num_envs, substeps=substeps, mm_caching_frequency=substeps, limit_ke=1e3,
                     limit_kd=10.0, contact=ANT_CONTACT)  # fmt: skip


def test_ant_dropped_lands_and_settles():
    """Dropped from torso height 0.75 with zero action: finite throughout, torso height in [0.2, 0.9] at 2 s, and
    settled by 3 s with the ground carrying the weight. Stiffness is 0 in dflex's Ant, so the targets do not hold
    the legs; the 65 kg torso (density 1000, radius 0.25) pushes the ankles ~0.2 rad past their limits against the
    soft limit spring (1e3), and the torso ends resting on the ground at ≈ 0.249, the legs carrying most of it."""
    model, joints = ant_model()
    q, qd = ant_start(model, joints, 1)
    sim = ant_sim(model, 1)
    qs, qds = sim.rollout(q, qd, steps=180)
    assert np.all(np.isfinite(qs)) and np.all(np.isfinite(qds))
    height = qs[:, 0, 1]
    assert 0.2 < height[120] < 0.9, height[120]
    assert height.min() > 0.2  # the torso never sinks through the ground
    assert 0.24 < height[-1] < 0.9, height[-1]
    assert np.abs(height[-15:] - height[-1]).max() < 5e-3  # settled
    assert np.abs(qds[-1, 0]).max() < 0.1
    wrench = sim.contact_wrenches(qs[-1], qds[-1])
    assert wrench[0, :, 4].sum() > 0.5 * model.mass.sum() * G  # the ground carries the ant's weight


def test_contact_envs_in_a_batch_are_independent():
    model, joints = ant_model()
    rng = np.random.default_rng(3)
    q, qd = ant_start(model, joints, 3)
    q[:, 1] += rng.uniform(-0.3, 0.0, 3)
    q[:, 7:] += rng.uniform(-0.2, 0.2, (3, 8))
    qd += rng.uniform(-0.5, 0.5, qd.shape).astype(np.float32)
    act = (rng.uniform(-1, 1, (3, model.dof_count)) * 20.0).astype(np.float32)
    act[:, :6] = 0.0
    batch = ant_sim(model, 3, substeps=8)
    qb, qdb = batch.rollout(q, qd, act, steps=20)
    single = ant_sim(model, 1, substeps=8)
    for e in range(3):
        qs, qds = single.rollout(q[e : e + 1], qd[e : e + 1], act[e : e + 1], steps=20)
        np.testing.assert_allclose(qb[:, e], qs[:, 0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(qdb[:, e], qds[:, 0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(qb[-1, 0], qb[-1, 1])
    assert np.abs(batch.contact_wrenches(qb[-1], qdb[-1])).max() > 0  # contact was actually in play


def test_gradient_through_contact_substeps_matches_finite_differences():
    """A sphere pressed into the ground and sliding: d(x + v_x)/d(y0, v_x0) through 4 recorded substeps (contact
    wrenches on the tape, h = 1/960 s as in the tasks) agrees with central differences. Over many substeps the viscous-friction branch with
    dflex's kf = 3e3 overshoots each substep for a body this light (kf·h/m_eff ≈ 2.6 > 2), so stick-slip chatter makes
    longer horizons chaotic; 4 substeps stay before it."""
    art = parse_mjcf(SPHERE)
    sim = Simulator(art, 1, contact=ANT_CONTACT, root_frame=IDENTITY, substeps=16, requires_grad=True)  # h = 1/960
    q0 = sim.default_q()
    q0[0, 1] = 0.095
    qd0 = np.zeros((1, 6), dtype=np.float32)
    qd0[0, 3:5] = [1.0, -0.5]

    def run(q, qd, tape=None):
        q_w = warp.array(q, dtype=float, requires_grad=True)
        qd_w = warp.array(qd, dtype=float, requires_grad=True)
        act = warp.zeros((1, 6), dtype=float, requires_grad=True)
        tape = tape or warp.Tape()
        with tape:
            a, b = q_w, qd_w
            for k in range(4):
                a, b = sim.substep(a, b, act, None, rebuild=k == 0)
        return q_w, qd_w, a, b, tape

    q_w, qd_w, a, b, tape = run(q0, qd0)
    seed_q, seed_qd = np.zeros((1, 7), dtype=np.float32), np.zeros((1, 6), dtype=np.float32)
    seed_q[0, 0], seed_qd[0, 3] = 1.0, 1.0
    tape.backward(grads={a: warp.array(seed_q, dtype=float), b: warp.array(seed_qd, dtype=float)})
    grads = {"y0": q_w.grad.numpy()[0, 1], "vx0": qd_w.grad.numpy()[0, 3]}

    def loss(q, qd):
        *_, a, b, _ = run(q, qd)
        return float(a.numpy()[0, 0]) + float(b.numpy()[0, 3])

    eps = 1e-3
    up_q, down_q = q0.copy(), q0.copy()
    up_q[0, 1] += eps
    down_q[0, 1] -= eps
    up_qd, down_qd = qd0.copy(), qd0.copy()
    up_qd[0, 3] += eps
    down_qd[0, 3] -= eps
    fd = {
        "y0": (loss(up_q, qd0) - loss(down_q, qd0)) / (2 * eps),
        "vx0": (loss(q0, up_qd) - loss(q0, down_qd)) / (2 * eps),
    }
    for key, grad in grads.items():
        assert abs(grad - fd[key]) < 0.02 * abs(fd[key]) + 1e-3, (key, grad, fd[key])
    assert abs(fd["y0"]) > 1.0  # the contact force really enters the loss

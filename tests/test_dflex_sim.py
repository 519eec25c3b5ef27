"""The dflex-equivalent Warp simulator core (plugins/pwmbench_dflex/{model,kernels,sim}.py): physics that must hold.

References are float64 numpy written here from textbook mechanics, independent of the kernels' spatial algebra:
forward kinematics by composing frames, mass matrices as Σ_links m·Jcᵀ·Jc + Jωᵀ·I·Jω with Jacobians from finite
differences (or from the geometry of hinge axes), and Lagrange's equations for the bias forces. The simulator
runs in float32, so tolerances are float32-sized.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import warp  # noqa: F401  (the dflex extra installs it)
from pwmbench_dflex.mjcf import FromMJCF, dm_control_asset, gymnasium_asset, load_mjcf, parse_mjcf, quat_to_matrix
from pwmbench_dflex.model import Model, default_q
from pwmbench_dflex.sim import Simulator

pytestmark = pytest.mark.slow  # the first run compiles the kernels (a few seconds; cached in .warp_cache)

G = 9.81


# ------------------------------------------------------------------------------------------------------ models


def ant():
    return load_mjcf(gymnasium_asset("ant"), stiffness=0.0, damping=1.0, armature=0.05)


def humanoid():
    return load_mjcf(
        dm_control_asset("humanoid"), stiffness=FromMJCF(5.0), damping=FromMJCF(0.1), armature=FromMJCF(0.007)
    )


FREE_BODY = """
<mujoco><worldbody>
  <body name="body" pos="0.2 -0.1 1.0" euler="10 20 30">
    <freejoint name="root"/>
    <geom type="capsule" fromto="-0.3 0 0 0.4 0 0" size="0.05"/>
    <geom type="capsule" fromto="0 -0.15 0.05 0 0.15 0.05" size="0.03"/>
    <geom type="sphere" pos="0.1 0.1 0.2" size="0.07"/>
  </body>
</worldbody></mujoco>"""

# a 3-link hinge chain with non-parallel axes (a 3-D pendulum), no gains and no limits
CHAIN = """
<mujoco><compiler angle="radian"/><worldbody>
  <body name="a" pos="0 0 2">
    <joint name="j0" axis="0 1 0"/>
    <geom type="capsule" fromto="0 0 0 0.5 0 0" size="0.05"/>
    <body name="b" pos="0.5 0 0">
      <joint name="j1" axis="0 1 0.5"/>
      <geom type="capsule" fromto="0 0 0 0.4 0 0.1" size="0.04"/>
      <body name="c" pos="0.4 0 0.1">
        <joint name="j2" axis="1 0.3 0"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03"/>
        <geom type="sphere" pos="0.3 0 0" size="0.06"/>
      </body>
    </body>
  </body>
</worldbody></mujoco>"""


# ---------------------------------------------------------------------------------------- float64 references


def rotation(axis, angle):
    """Rodrigues: R = 1 + sin θ [a]× + (1 − cos θ) [a]×²."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def reference_fk(art, q):
    """World (origin, rotation matrix) of every link: X_i = X_parent · X_pj · X_joint(q)."""
    frames, k = [], 0
    for link in art.links:
        if link.joint_type == "free":
            quat = np.asarray(q[k + 3 : k + 7], float)
            p_j, R_j = np.asarray(q[k : k + 3], float), quat_to_matrix(quat / np.linalg.norm(quat))
            k += 7
        elif link.joint_type == "hinge":
            p_j, R_j = np.zeros(3), rotation(link.joint_axis, q[k])
            k += 1
        else:
            p_j, R_j = link.joint_axis * q[k], np.eye(3)
            k += 1
        R_pj = quat_to_matrix(link.orientation)
        P_p, R_p = (np.zeros(3), np.eye(3)) if link.parent < 0 else frames[link.parent]
        frames.append((P_p + R_p @ (link.position + R_pj @ p_j), R_p @ R_pj @ R_j))
    return frames


def coms_and_inertias(art, frames):
    """World COM and world inertia about the COM of every link."""
    return [(P + R @ link.com, R @ link.inertia @ R.T) for link, (P, R) in zip(art.links, frames)]


def skew(v):
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def unskew(S):
    return np.array([S[2, 1] - S[1, 2], S[0, 2] - S[2, 0], S[1, 0] - S[0, 1]]) / 2


def jacobians_fd(art, q, eps=1e-6):
    """Per link (Jc, Jω), 3×dofs each: COM velocity and angular velocity per unit q̇.

    Free root dofs are a twist [ω; v] at the world origin (ċ = v + ω×c, angular velocity ω); hinge/slide columns
    come from central differences of `reference_fk`."""
    frames = reference_fk(art, q)
    coms = [c for c, _ in coms_and_inertias(art, frames)]
    n_links, n_dof = len(art.links), art.dof_count
    Jc, Jw = np.zeros((n_links, 3, n_dof)), np.zeros((n_links, 3, n_dof))
    q_start, d_start = art.coord_start, art.dof_start
    for j, link in enumerate(art.links):
        d = d_start[j]
        if link.joint_type == "free":
            for i in range(n_links):  # the root's twist moves every link rigidly
                Jw[i, :, d : d + 3] = np.eye(3)
                Jc[i, :, d : d + 3] = -skew(coms[i])
                Jc[i, :, d + 3 : d + 6] = np.eye(3)
            continue
        plus, minus = np.array(q, float), np.array(q, float)
        plus[q_start[j]] += eps
        minus[q_start[j]] -= eps
        fp, fm = reference_fk(art, plus), reference_fk(art, minus)
        cp, cm = coms_and_inertias(art, fp), coms_and_inertias(art, fm)
        for i in range(n_links):
            Jc[i, :, d] = (cp[i][0] - cm[i][0]) / (2 * eps)
            Jw[i, :, d] = unskew((fp[i][1] - fm[i][1]) / (2 * eps) @ frames[i][1].T)
    return Jc, Jw


def jacobians_geometric(art, q):
    """Same as `jacobians_fd` for hinge-only trees, from geometry: ω column = a, ċ column = a × (c − P_joint)."""
    frames = reference_fk(art, q)
    coms = [c for c, _ in coms_and_inertias(art, frames)]
    n_links = len(art.links)
    Jc, Jw = np.zeros((n_links, 3, art.dof_count)), np.zeros((n_links, 3, art.dof_count))
    for i in range(n_links):
        j = i
        while j >= 0:
            link = art.links[j]
            assert link.joint_type == "hinge"
            P, R = frames[j]
            a = R @ link.joint_axis
            Jw[i, :, art.dof_start[j]] = a
            Jc[i, :, art.dof_start[j]] = np.cross(a, coms[i] - P)
            j = link.parent
    return Jc, Jw


def reference_mass_matrix(art, q, jacobians=jacobians_fd):
    """H = Σ_links m Jcᵀ Jc + Jωᵀ I_world Jω + diag(armature on hinge/slide dofs)."""
    frames = reference_fk(art, q)
    Jc, Jw = jacobians(art, q)
    H = np.zeros((art.dof_count, art.dof_count))
    for i, (link, (_, I_w)) in enumerate(zip(art.links, coms_and_inertias(art, frames))):
        H += link.mass * Jc[i].T @ Jc[i] + Jw[i].T @ I_w @ Jw[i]
    for link, d in zip(art.links, art.dof_start):
        if link.joint_type != "free":
            H[d, d] += link.armature
    return H


def potential(art, q, gravity):
    """V = −Σ m g·c."""
    frames = reference_fk(art, q)
    return -sum(link.mass * np.dot(gravity, c) for link, (c, _) in zip(art.links, coms_and_inertias(art, frames)))


def random_q(art, rng, joint_scale=0.8, position_scale=0.5):
    q = []
    for link in art.links:
        if link.joint_type == "free":
            quat = rng.normal(size=4)
            q.extend([*rng.uniform(-position_scale, position_scale, 3), *(quat / np.linalg.norm(quat))])
        else:
            q.append(rng.uniform(-joint_scale, joint_scale))
    return np.array(q)


def sim_for(art, num_envs=1, **kwargs):
    return Simulator(art, num_envs, **kwargs)


# --------------------------------------------------------------------------------------------- kinematics


@pytest.mark.parametrize("make", [ant, humanoid])
def test_forward_kinematics_at_model_pose_is_the_loaders_world_frames(make):
    art = make()
    sim = sim_for(art)
    positions, quats = sim.forward_kinematics(sim.default_q())
    for i, (p, quat) in enumerate(art.world_frames()):
        np.testing.assert_allclose(positions[0, i], p, atol=1e-6)
        np.testing.assert_allclose(quat_to_matrix(quats[0, i]), quat_to_matrix(quat), atol=1e-6)


@pytest.mark.parametrize("make", [ant, humanoid])
def test_forward_kinematics_and_twists_at_random_q(make):
    """Link frames match the float64 reference; link twists [ω; v] at the world origin match the frames'
    finite-difference velocities (ω from Ṙ Rᵀ, v = ṗ − ω × p) for a random q̇."""
    art, rng = make(), np.random.default_rng(1)
    q = np.stack([random_q(art, rng) for _ in range(3)])
    qd = rng.normal(size=(3, art.dof_count))
    sim = sim_for(art, 3)
    positions, quats = sim.forward_kinematics(q)
    twists = sim.link_twists(q, qd)
    for e in range(3):
        frames = reference_fk(art, q[e])
        for i, (P, R) in enumerate(frames):
            np.testing.assert_allclose(positions[e, i], P, atol=2e-6)
            np.testing.assert_allclose(quat_to_matrix(quats[e, i]), R, atol=2e-6)
        Jc, Jw = jacobians_fd(art, q[e])
        coms = [c for c, _ in coms_and_inertias(art, frames)]
        for i in range(len(art.links)):
            omega, v_com = Jw[i] @ qd[e], Jc[i] @ qd[e]
            v_origin = v_com - np.cross(omega, coms[i])  # velocity of the material point at the world origin
            np.testing.assert_allclose(twists[e, i, :3], omega, atol=2e-5)
            np.testing.assert_allclose(twists[e, i, 3:], v_origin, atol=5e-5)


# -------------------------------------------------------------------------------------------------- mass matrix


@pytest.mark.parametrize("make", [ant, humanoid])
def test_mass_matrix_matches_brute_force_and_is_spd_with_armature(make):
    art, rng = make(), np.random.default_rng(2)
    q = np.stack([random_q(art, rng) for _ in range(2)])
    H = sim_for(art, 2).mass_matrix(q)
    for e in range(2):
        ref = reference_mass_matrix(art, q[e])
        np.testing.assert_allclose(H[e], ref, atol=2e-5 * np.abs(ref).max())
        np.testing.assert_allclose(H[e], H[e].T, atol=1e-6 * np.abs(ref).max())
        assert np.linalg.eigvalsh(H[e].astype(np.float64)).min() > 0
    # armature sits on the diagonal of the hinge dofs, nowhere else (the free root gets none)
    bare = sim_for(art, 2, armature=0.0).mass_matrix(q)
    model = Model.from_articulation(art)
    expected = np.diag(model.armature)
    assert model.armature[model.dof_coord < 0].sum() == 0 and model.armature[model.dof_coord >= 0].min() > 0
    np.testing.assert_allclose(H - bare, np.broadcast_to(expected, H.shape), atol=2e-5 * np.abs(H).max())


# ------------------------------------------------------------------------------------------------ dynamics


def test_free_fall_is_the_semi_implicit_euler_sequence_and_close_to_analytic():
    """H rebuilt every substep: with the twist at the world origin, a free body's H depends on where it is, so a
    cached H goes stale as the body moves (see `test_cached_mass_matrix_is_stale_for_a_moving_free_body`)."""
    art = parse_mjcf(FREE_BODY)
    substeps, steps, dt = 32, 60, 1.0 / 60.0
    sim = sim_for(art, 1, dt=dt, substeps=substeps, mm_caching_frequency=1,
                  root_frame=(np.zeros(3), np.array([0, 0, 0, 1.0])))  # fmt: skip
    p0, v0 = np.array([0.3, 2.0, -0.4]), np.array([1.0, 2.0, 0.5])
    quat = np.array([0.1, -0.3, 0.2, 0.9]) / np.linalg.norm([0.1, -0.3, 0.2, 0.9])
    q = np.concatenate([p0, quat])[None]
    qd = np.concatenate([np.zeros(3), v0])[None]  # ω = 0: the twist's v is every point's velocity
    q_traj, qd_traj = sim.rollout(q, qd, steps=steps)

    h, g = dt / substeps, np.array([0.0, -G, 0.0])
    p, v = p0.copy(), v0.copy()
    for k in range(steps):
        for _ in range(substeps):
            v = v + h * g
            p = p + h * v
        np.testing.assert_allclose(q_traj[k + 1, 0, :3], p, atol=2e-4)
        np.testing.assert_allclose(qd_traj[k + 1, 0, 3:], v, atol=1e-4)
    np.testing.assert_allclose(qd_traj[:, 0, :3], 0.0, atol=1e-5)  # no spin appears
    np.testing.assert_allclose(q_traj[-1, 0, 3:], quat, atol=1e-6)
    t = steps * dt
    analytic = p0 + v0 * t + 0.5 * g * t * t
    displacement = np.linalg.norm(analytic - p0)
    assert np.linalg.norm(q_traj[-1, 0, :3] - analytic) < 1e-3 * displacement


def body_momentum(art, sim, q, qd):
    """(linear, angular about the world origin) momentum of a single free body from the simulator's frames."""
    positions, quats = sim.forward_kinematics(q)
    link = art.links[0]
    R = quat_to_matrix(quats[0, 0])
    c = positions[0, 0] + R @ link.com
    omega, v = qd[0, :3], qd[0, 3:]
    linear = link.mass * (v + np.cross(omega, c))
    return linear, R @ link.inertia @ R.T @ omega + np.cross(c, linear)


def test_cached_mass_matrix_is_stale_for_a_moving_free_body():
    """A known trait of caching H with twists at the world origin (dflex's formulation, kept): a free body's H
    depends on its position, so within one caching window a falling body is solved with the H of where it was and
    picks up a spurious spin; rebuilding every substep removes it."""
    art = parse_mjcf(FREE_BODY)
    q = default_q(Model.from_articulation(art), 1)
    qd = np.array([[0.0, 0.0, 0.0, 1.0, 2.0, 0.5]])
    spin = {
        k: np.abs(sim_for(art, 1, substeps=32, mm_caching_frequency=k).step(q, qd)[1][0, :3]).max() for k in (1, 32)
    }
    assert spin[1] < 1e-4
    assert spin[32] > 1e-2


def momentum_drift(art, substeps, steps):
    """Largest relative change of (linear, angular) momentum of the tumbling free body over `steps` env steps."""
    sim = sim_for(art, 1, substeps=substeps, mm_caching_frequency=1, gravity=(0.0, 0.0, 0.0))
    q = default_q(sim.model, 1)
    qd = np.array([[0.4, 3.0, -0.8, 0.1, 0.0, 0.2]])
    lin0, ang0 = body_momentum(art, sim, q, qd)
    q_traj, qd_traj = sim.rollout(q, qd, steps=steps)
    drift = np.zeros(2)
    for q_k, qd_k in zip(q_traj[1:], qd_traj[1:]):
        lin, ang = body_momentum(art, sim, q_k, qd_k)
        drift = np.maximum(drift, [np.linalg.norm(lin - lin0) / np.linalg.norm(lin0),
                                   np.linalg.norm(ang - ang0) / np.linalg.norm(ang0)])  # fmt: skip
    assert not np.allclose(qd_traj[-1, 0, :3], qd[0, :3], atol=0.1)  # it really tumbles (ω changes direction)
    return drift


def test_spinning_asymmetric_body_conserves_momentum():
    """No gravity, no forces: an asymmetric body (off-origin COM, three different principal moments) tumbling for
    2 s keeps its linear momentum and its angular momentum about the world origin to 1 % at 32 substeps, and the
    drift is the integrator's first-order error: it halves when the substep halves (H rebuilt every substep: a
    tumbling body's world-frame H changes as it turns). Measured: 0.7 % / 1.7 % at 32 substeps."""
    art = parse_mjcf(FREE_BODY)
    inertia = np.linalg.eigvalsh(art.links[0].inertia)
    assert np.min(np.diff(inertia)) > 0.05 * inertia.max()  # really asymmetric
    coarse, fine = momentum_drift(art, 16, 120), momentum_drift(art, 32, 120)
    assert np.all(fine < [0.01, 0.025]), fine
    np.testing.assert_allclose(coarse / fine, 2.0, rtol=0.15)


def chain_energy(art, sim, q, qd, gravity):
    H = sim.mass_matrix(q)
    return np.array([0.5 * qd[e] @ H[e] @ qd[e] + potential(art, q[e], gravity) for e in range(q.shape[0])])


def test_undamped_pendulum_chain_conserves_energy():
    """3 s of a free-swinging 3-D 3-link chain (no gains, no limits, no armature), 64 substeps per 1/60 s with H
    rebuilt every substep: the energy stays within 0.5 % of its swing scale (the largest kinetic energy).

    With H cached for a whole env step (dflex's setting) energy is not conserved this well: H lags the pose by up
    to 1/60 s, and this chain loses 7–15 % of its swing energy over the 3 s."""
    art = parse_mjcf(CHAIN)
    gravity = np.array([0.0, 0.0, -G])  # the MJCF is z-up
    sim = sim_for(art, 2, substeps=64, mm_caching_frequency=1, gravity=gravity)
    q = np.array([[0.3, -0.5, 0.8], [1.2, 0.4, -0.3]])
    qd = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]])
    e0 = chain_energy(art, sim, q, qd, gravity)
    q_traj, qd_traj = sim.rollout(q, qd, steps=180)
    energies = np.array([chain_energy(art, sim, q_k, qd_k, gravity) for q_k, qd_k in zip(q_traj[::10], qd_traj[::10])])
    kinetic_scale = np.array([max(0.5 * qd_k[e] @ sim.mass_matrix(q_k)[e] @ qd_k[e] for q_k, qd_k in
                                  zip(q_traj[::10], qd_traj[::10])) for e in range(2)])  # fmt: skip
    assert np.all(kinetic_scale > 1.0)  # it swings
    assert np.all(np.abs(energies - e0).max(axis=0) < 5e-3 * kinetic_scale), (energies - e0).max(axis=0)


def test_accelerations_match_lagranges_equations():
    """q̈ = H⁻¹ (τ − C) with C = Ḣ q̇ − ½ ∂(q̇ᵀ H q̇)/∂q + ∂V/∂q (Lagrange), all from float64 references."""
    art = parse_mjcf(CHAIN, stiffness=3.0, damping=0.7, armature=0.02)
    gravity = np.array([0.0, -2.0, -G])
    sim = sim_for(art, 2, gravity=gravity, joint_target=[0.1, -0.2, 0.3])
    rng = np.random.default_rng(4)
    q, qd, act = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)) * 2, rng.normal(size=(2, 3)) * 5
    qdd = sim.accelerations(q, qd, act)
    tau = sim.joint_forces(q, qd, act)
    eps = 1e-5

    def H(x):
        return reference_mass_matrix(art, x, jacobians_geometric)

    for e in range(2):
        dH = [(H(q[e] + eps * np.eye(3)[k]) - H(q[e] - eps * np.eye(3)[k])) / (2 * eps) for k in range(3)]
        H_dot = sum(dH[k] * qd[e, k] for k in range(3))
        dV = [(potential(art, q[e] + eps * np.eye(3)[k], gravity) - potential(art, q[e] - eps * np.eye(3)[k], gravity))
              / (2 * eps) for k in range(3)]  # fmt: skip
        C = H_dot @ qd[e] - 0.5 * np.array([qd[e] @ dH[k] @ qd[e] for k in range(3)]) + np.array(dV)
        expected = np.linalg.solve(H(q[e]), tau[e] - C)
        np.testing.assert_allclose(qdd[e], expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


# ------------------------------------------------------------------------------------------------ joint forces


def test_joint_forces_pd_limit_spring_and_always_on_limit_damping():
    art = ant()
    ke, kd, limit_ke, limit_kd = 2.0, 0.5, 100.0, 3.0
    target = np.linspace(-0.2, 0.3, art.dof_count)
    sim = sim_for(art, 1, stiffness=ke, damping=kd, joint_target=target, limit_ke=limit_ke, limit_kd=limit_kd)
    model = sim.model
    hinge = np.flatnonzero(model.dof_coord >= 0)
    lower, upper = model.lower[hinge], model.upper[hinge]
    q = default_q(model, 1)[0]
    angles = np.where(np.arange(hinge.size) % 3 == 0, lower - 0.1,  # below the range
                      np.where(np.arange(hinge.size) % 3 == 1, upper + 0.2, (lower + upper) / 2))  # fmt: skip
    q[model.dof_coord[hinge]] = angles
    rng = np.random.default_rng(5)
    qd, act = rng.normal(size=art.dof_count), rng.normal(size=art.dof_count)
    tau = sim.joint_forces(q[None], qd[None], act[None])[0]

    expected = act.copy()  # free-joint dofs: the actuation only
    limit = np.where(
        angles < lower, limit_ke * (lower - angles), np.where(angles > upper, limit_ke * (upper - angles), 0)
    )
    expected[hinge] = act[hinge] - ke * (angles - target[hinge]) - kd * qd[hinge] + limit - limit_kd * qd[hinge]
    np.testing.assert_allclose(tau, expected, rtol=1e-5, atol=1e-4)
    assert np.all(limit[::3] > 0) and np.all(limit[1::3] < 0) and np.all(limit[2::3] == 0)


# -------------------------------------------------------------------------------------- caching and batching


def ant_start(num_envs, rng):
    """The ant lying in the y-up world as dflex starts it, with joints inside their ranges and some spread."""
    art = ant()
    root = (np.zeros(3), np.array([-math.sin(math.pi / 4), 0.0, 0.0, math.cos(math.pi / 4)]))  # about x by −π/2
    model = Model.from_articulation(art, root_frame=root, joint_target=[0, 0, 0, 0, 0, 0, 0, 1, 0, -1, 0, -1, 0, 1])
    q = default_q(model, num_envs)
    q[:, :3] = [0.0, 0.75, 0.0]
    q[:, 7:] = np.array([0, 1, 0, -1, 0, -1, 0, 1]) + rng.uniform(-0.2, 0.2, (num_envs, 8))
    qd = rng.uniform(-0.25, 0.25, (num_envs, model.dof_count))
    act = rng.uniform(-1, 1, (num_envs, model.dof_count)) * 20.0
    act[:, :6] = 0.0
    return model, q.astype(np.float32), qd.astype(np.float32), act.astype(np.float32)


def test_mass_matrix_cache_is_rebuilt_every_k_substeps_from_that_substeps_state():
    """Caching K=4 over 8 substeps rebuilds at substeps 0 and 4, each from the state it finds: it equals two steps of
    a 4-substep simulator with the same substep length, and its cached H is H(q after 4 substeps). Rebuilding every
    substep gives a nearby, not identical, trajectory."""
    model, q, qd, act = ant_start(2, np.random.default_rng(6))
    common = {"limit_ke": 1e3, "limit_kd": 10.0}
    eight = Simulator(model, 2, dt=1 / 60, substeps=8, mm_caching_frequency=4, **common)
    four = Simulator(model, 2, dt=1 / 120, substeps=4, mm_caching_frequency=4, **common)
    every = Simulator(model, 2, dt=1 / 60, substeps=8, mm_caching_frequency=1, **common)

    q8, qd8 = eight.step(q, qd, act)
    assert eight.rebuild_count == 2
    q4, qd4 = four.step(q, qd, act)
    np.testing.assert_allclose(eight.cached_mass_matrix(), four.mass_matrix(q4), rtol=1e-6, atol=1e-6)
    q44, qd44 = four.step(q4, qd4, act)
    np.testing.assert_allclose(q8, q44, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(qd8, qd44, rtol=1e-6, atol=1e-6)

    qe, qde = every.step(q, qd, act)
    assert every.rebuild_count == 8
    assert not np.array_equal(qde, qd8)
    np.testing.assert_allclose(qe, q8, atol=1e-3)
    np.testing.assert_allclose(qde, qd8, atol=0.05 * np.abs(qde).max())

    uneven = Simulator(model, 2, substeps=8, mm_caching_frequency=3, **common)
    uneven.step(q, qd, act)
    uneven.step(q, qd, act)
    assert uneven.rebuild_count == 6  # substeps 0, 3, 6 of every step: the count restarts with each step


def test_envs_in_a_batch_are_independent():
    model, q, qd, act = ant_start(3, np.random.default_rng(7))
    batch = Simulator(model, 3, substeps=8, limit_ke=1e3, limit_kd=10.0)
    qb, qdb = batch.rollout(q, qd, act, steps=5)
    single = Simulator(model, 1, substeps=8, limit_ke=1e3, limit_kd=10.0)
    for e in range(3):
        qs, qds = single.rollout(q[e : e + 1], qd[e : e + 1], act[e : e + 1], steps=5)
        np.testing.assert_allclose(qb[:, e], qs[:, 0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(qdb[:, e], qds[:, 0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(qb[-1, 0], qb[-1, 1])


def test_torch_in_torch_out_and_inputs_untouched():
    import torch
    model, q, qd, act = ant_start(2, np.random.default_rng(8))
    sim = Simulator(model, 2, substeps=4)
    q_t, qd_t = torch.tensor(q), torch.tensor(qd)
    q1, qd1 = sim.step(q_t, qd_t, torch.tensor(act))
    assert isinstance(q1, torch.Tensor) and q1.shape == q_t.shape and qd1.dtype == torch.float32
    q2, _ = sim.step(q, qd, act)
    np.testing.assert_array_equal(q1.numpy(), q2)
    np.testing.assert_array_equal(q_t.numpy(), q)  # inputs are not modified
    q3, _ = sim.step(q, qd, act)
    np.testing.assert_array_equal(q1.numpy(), q3)  # an earlier result is not overwritten by later steps
    with pytest.raises(ValueError, match="shape"):
        sim.step(q[:1], qd, act)


def test_warp_cache_dir_choice(tmp_path, monkeypatch):
    from pwmbench_dflex import warp_setup

    monkeypatch.setenv("PWMBENCH_WARP_CACHE", str(tmp_path / "kernels"))
    assert warp_setup.cache_dir() == tmp_path / "kernels" and (tmp_path / "kernels").is_dir()
    monkeypatch.delenv("PWMBENCH_WARP_CACHE")
    repo = warp_setup.Path(warp_setup.__file__).resolve().parents[2]
    assert warp_setup.cache_dir() in (repo / ".warp_cache", None)  # None only where the checkout is read-only


def test_cuda_matches_cpu():
    """The same kernels on a GPU (skipped without one): float32 on both, so equal to rounding."""
    import warp as wp

    if wp.get_cuda_device_count() == 0:
        pytest.skip("no CUDA device")
    model, q, qd, act = ant_start(4, np.random.default_rng(10))
    cpu = Simulator(model, 4, substeps=8, limit_ke=1e3, limit_kd=10.0)
    gpu = Simulator(model, 4, substeps=8, limit_ke=1e3, limit_kd=10.0, device="cuda:0")
    qc, qdc = cpu.rollout(q, qd, act, steps=5)
    qg, qdg = gpu.rollout(q, qd, act, steps=5)
    np.testing.assert_allclose(qg, qc, atol=1e-4)
    np.testing.assert_allclose(qdg, qdc, atol=1e-3 * np.abs(qdc).max())

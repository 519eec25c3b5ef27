"""The dflex single tasks, one definition each: model, actuation, observation, reward, termination, initial states.

Every number here is reference/dflex.md's (SHAC's tasks as PWM's fork runs them) unless a comment says it is our
choice where that reference is silent. The definitions are pure torch on (q, q̇) — the batched env (env.py) owns
the simulator, the episode bookkeeping and the resets — so the same code serves the fast path and the
differentiable one. Nothing here imports Warp: building the model needs only the MJCF loader (numpy).

Conventions: y is up; a free root's q is [world position, world quaternion xyzw] (identity root frame) and its q̇ a
twist [ω, v] at the world origin, so the torso's own linear velocity is v − p × ω. Observations are computed after
every step; the reward uses the observation from **before** the step (PWM's fork) and the action of the step.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from .mjcf import Articulation, FromMJCF, Geom, Link, dm_control_asset, gymnasium_asset, load_mjcf
from .model import Model
from .rotations import quat_conjugate, quat_from_axis_angle, quat_mul, quat_rotate

__all__ = ["TASKS", "Ant", "CartPole", "Cheetah", "DflexTask", "Hopper", "Humanoid"]

IDENTITY_FRAME = (np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
# MJCF is z-up, dflex y-up: a rotation by −π/2 about x takes z to y.
Z_UP_TO_Y_UP = np.array([-math.sin(math.pi / 4), 0.0, 0.0, math.cos(math.pi / 4)])
INVALID_STATE = 1.0e6  # |q| or |q̇| beyond this counts as a blown-up state


def _uniform(gen: torch.Generator, shape: tuple[int, ...], half_width: float) -> torch.Tensor:
    return (torch.rand(shape, generator=gen, dtype=torch.float32) * 2.0 - 1.0) * half_width


class DflexTask:
    """One dflex task. Subclasses set the class attributes and the five methods below."""

    name: ClassVar[str]
    obs_dim: ClassVar[int]
    act_dim: ClassVar[int]
    episode_length: ClassVar[int] = 1000
    substeps: ClassVar[int] = 16
    mm_caching_frequency: ClassVar[int] = 16
    num_envs: ClassVar[int] = 64  # PWM's env count for the task
    pretrain_wm_iterations: ClassVar[int | None] = None  # PWM's world-model pretraining steps (README), where it gives them
    ppo_reference: ClassVar[float | None] = None  # PPO's best return, PWM's normalisation (plugin.PPO_SOURCE), where known
    contact: ClassVar[tuple[float, float, float, float] | None] = None  # (ke, kd, kf, mu)
    limit_ke: ClassVar[float] = 1.0e3
    limit_kd: ClassVar[float] = 10.0
    dt: ClassVar[float] = 1.0 / 60.0
    description: ClassVar[str] = ""

    def model(self) -> Model:
        raise NotImplementedError

    def initial_state(self, model: Model, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n stochastic initial states (q, q̇), float32 on the CPU, drawn from `gen` only."""
        raise NotImplementedError

    def joint_forces(self, actions: torch.Tensor, dof_count: int) -> torch.Tensor:
        """Actions in [−1, 1] → generalised forces [n, dof_count] (zeros on unactuated dofs)."""
        raise NotImplementedError

    def observe(
        self, q: torch.Tensor, qd: torch.Tensor, prev_actions: torch.Tensor, origin: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The observation of (q, q̇), a state in the env's root-following frame (frame.py) whose horizontal origin
        is `origin` ([n, 3] float64; None = the world origin). Only quantities fixed in the world (a far target) need
        `origin`; everything else is relative and reads q, q̇ directly."""
        raise NotImplementedError

    def reward(self, obs_before: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def terminated(self, obs: torch.Tensor, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        """Early termination from the post-step observation (every task also ends an env whose state is no
        longer finite; see `invalid_state`)."""
        return torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)

    @staticmethod
    def invalid_state(q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        """Non-finite or beyond ±1e6 anywhere in q or q̇ (dflex's Humanoid test, applied to every task so that a
        blown-up env is reset instead of feeding NaNs to the trainer)."""
        bad_q = ~torch.isfinite(q).all(-1) | (q.abs() > INVALID_STATE).any(-1)
        return bad_q | ~torch.isfinite(qd).all(-1) | (qd.abs() > INVALID_STATE).any(-1)


def _actuated(actions: torch.Tensor, dof_count: int, scale: torch.Tensor | float) -> torch.Tensor:
    """Root dofs get no force; the last act_dim dofs get scale · a."""
    root = torch.zeros(actions.shape[0], dof_count - actions.shape[1], dtype=actions.dtype, device=actions.device)
    return torch.cat((root, actions * scale), dim=-1)


# --------------------------------------------------------------------------------------- Ant and Humanoid
class _Walker(DflexTask):
    """A free-root walker heading to a far target along +x (Ant, Humanoid): torso observations as SHAC's."""

    start_height: ClassVar[float]
    target_x: ClassVar[float]
    joint_start: ClassVar[tuple[float, ...]]
    termination_height: ClassVar[float]

    def start_q(self, model: Model, n: int) -> torch.Tensor:
        q = torch.zeros(n, model.coord_count)
        q[:, 1] = self.start_height
        q[:, 3:7] = torch.as_tensor(Z_UP_TO_Y_UP, dtype=torch.float32)
        q[:, 7:] = torch.as_tensor(self.joint_start, dtype=torch.float32)
        return q

    def initial_state(self, model, n, gen):
        """Position ±0.1, rotation about a random axis by U(−π/24, π/24), joints ±0.2, velocities U(−0.25, 0.25)."""
        q = self.start_q(model, n)
        q[:, 0:3] += _uniform(gen, (n, 3), 0.1)
        angle = _uniform(gen, (n,), math.pi / 24)
        axis = torch.nn.functional.normalize(_uniform(gen, (n, 3), 0.5), dim=-1)
        q[:, 3:7] = quat_mul(q[:, 3:7], quat_from_axis_angle(axis, angle))
        q[:, 7:] += _uniform(gen, (n, model.coord_count - 7), 0.2)
        qd = _uniform(gen, (n, model.dof_count), 0.25)
        return q, qd

    def observe(self, q, qd, prev_actions, origin=None):
        pos, rot = q[:, 0:3], q[:, 3:7]
        ang_vel = qd[:, 0:3]
        lin_vel = qd[:, 3:6] - torch.linalg.cross(pos, ang_vel, dim=-1)  # the torso origin's velocity
        # the target (target_x, ·, 0), fixed in the world, seen from the env's local origin (in float64, then the
        # local position, small, is taken off in float32)
        target = torch.zeros(q.shape[0], 3, dtype=torch.float64, device=q.device)
        target[:, 0] = self.target_x
        if origin is not None:
            target = target - origin.to(device=q.device, dtype=torch.float64)
        target = target.to(q.dtype)
        to_target = torch.stack(
            (target[:, 0] - pos[:, 0], torch.zeros_like(pos[:, 1]), target[:, 2] - pos[:, 2]), dim=-1
        )  # on the ground plane
        target_dir = torch.nn.functional.normalize(to_target, dim=-1)
        torso = quat_mul(rot, quat_conjugate(torch.as_tensor(Z_UP_TO_Y_UP, dtype=q.dtype, device=q.device)))
        up = quat_rotate(torso, torch.tensor([0.0, 1.0, 0.0], device=q.device))
        heading = quat_rotate(torso, torch.tensor([1.0, 0.0, 0.0], device=q.device))
        return torch.cat(
            (
                pos[:, 1:2],  # torso height
                rot,
                lin_vel,
                ang_vel,
                q[:, 7:],
                0.1 * qd[:, 6:],
                up[:, 1:2],
                (heading * target_dir).sum(-1, keepdim=True),
                prev_actions,
            ),
            dim=-1,
        )

    def terminated(self, obs, q, qd):
        return obs[:, 0] < self.termination_height


class Ant(_Walker):
    name = "ant"
    obs_dim, act_dim = 37, 8
    num_envs = 128
    pretrain_wm_iterations = 100_000
    ppo_reference = 6604.66
    contact = (4.0e4, 1.0e4, 3.0e3, 0.75)
    start_height = 0.75
    target_x = 10000.0
    joint_start = (0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0)
    termination_height = 0.27
    description = "dflex Ant (gymnasium's ant geometry), 8 hinges, 200·a torques, run along +x"

    def model(self):
        art = load_mjcf(gymnasium_asset("ant"), density=1000.0, stiffness=0.0, damping=1.0, armature=0.05)
        return Model.from_articulation(art, root_frame=IDENTITY_FRAME, joint_target=[0.0] * 6 + list(self.joint_start))

    def joint_forces(self, actions, dof_count):
        return _actuated(actions, dof_count, 200.0)

    def reward(self, obs_before, actions):
        p = obs_before
        return p[:, 5] + 0.1 * p[:, 27] + p[:, 28] + (p[:, 0] - self.termination_height)


HUMANOID_STRENGTH = (200, 200, 200, 200, 200, 600, 400, 100, 100, 200, 200, 600, 400, 100, 100, 100, 100, 200, 100, 100, 200)


class Humanoid(_Walker):
    name = "humanoid"
    obs_dim, act_dim = 76, 21
    pretrain_wm_iterations = 200_000
    ppo_reference = 7292.79
    substeps = mm_caching_frequency = 48
    contact = (2.0e4, 2.0e3, 1.0e3, 0.75)  # kd: PWM's fork (SHAC: 5e3)
    start_height = 1.35
    target_x = 200.0
    joint_start = (0.0,) * 21
    termination_height = 0.74
    description = "dflex Humanoid (DeepMind's 21-hinge humanoid), 0.35·strength·a torques, run along +x"

    def model(self):
        art = load_mjcf(
            dm_control_asset("humanoid"),
            density=1000.0,
            stiffness=FromMJCF(5.0),
            damping=FromMJCF(0.1),
            armature=FromMJCF(0.007),
        )
        return Model.from_articulation(art, root_frame=IDENTITY_FRAME)

    def joint_forces(self, actions, dof_count):
        strength = torch.as_tensor(HUMANOID_STRENGTH, dtype=actions.dtype, device=actions.device)
        return _actuated(actions, dof_count, 0.35 * strength)

    def reward(self, obs_before, actions):
        p = obs_before
        d = torch.clamp(p[:, 0] - 0.84, -1.0, 0.1)
        height = torch.where(d < 0.0, -200.0 * d * d, 10.0 * d)
        return p[:, 5] + 0.1 * p[:, 53] + p[:, 54] + height - 0.002 * (actions**2).sum(-1)
    # dflex's extra Humanoid test (non-finite or |q|, |q̇| > 1e6) is `invalid_state`, which the env applies to
    # every task: no override of `terminated` needed here.


# ------------------------------------------------------------------------------------------- planar tasks
def _y_up(art) -> Model:
    """A planar model whose root frame (MJCF, z up) is turned to y up, keeping its own position and orientation."""
    root = art.links[0]
    frame = (_rotate(Z_UP_TO_Y_UP, np.asarray(root.position)), _quat_mul_np(Z_UP_TO_Y_UP, np.asarray(root.orientation)))
    return Model.from_articulation(art, root_frame=frame)


class Hopper(DflexTask):
    """Root slide x, slide z, hinge y (pitch), then thigh, leg, foot: q 6, q̇ 6; observation q[1:] and q̇."""

    name = "hopper"
    obs_dim, act_dim = 11, 3
    pretrain_wm_iterations = 50_000
    ppo_reference = 4742.30
    contact = (2.0e4, 2.0e3, 1.0e3, 0.9)  # kd: PWM's fork (SHAC: 1e3)
    description = "dflex Hopper (gymnasium's hopper geometry), 3 hinges, 200·a torques, hop along +x"

    def model(self):
        # The file's own angle unit (degrees) is kept: reading those ranges as radians would leave them ±150 rad.
        return _y_up(load_mjcf(gymnasium_asset("hopper"), density=1000.0, stiffness=0.0, damping=2.0, armature=1.0))

    def initial_state(self, model, n, gen):
        """Position ±0.05 (x, z), pitch ±0.05, joints ±0.05, velocities ±0.05."""
        q = _uniform(gen, (n, model.coord_count), 0.05)
        qd = _uniform(gen, (n, model.dof_count), 0.05)
        return q, qd

    def joint_forces(self, actions, dof_count):
        return _actuated(actions, dof_count, 200.0)

    def observe(self, q, qd, prev_actions, origin=None):
        return torch.cat((q[:, 1:], qd), dim=-1)  # x (q[0]) is not observed: no origin needed

    def reward(self, obs_before, actions):
        p = obs_before
        d = torch.clamp(p[:, 0] + 0.30, -1.0, 0.3)
        height = torch.where(d < 0.0, -200.0 * d * d, d)
        angle = 1.0 - p[:, 1] ** 2 / (math.pi / 6) ** 2
        return p[:, 5] + height + angle - 0.1 * (actions**2).sum(-1)

    def terminated(self, obs, q, qd):
        return obs[:, 0] < -0.45


class Cheetah(DflexTask):
    """Half-cheetah: root slide x, slide z, hinge y, then 6 hinges (q 9, q̇ 9); observation q[1:] and q̇.

    reference/dflex.md gives only its sizes, actuation and (no) termination; the rest is our choice, stated here:
    Hopper's constants (density 1000, damping 2, armature 1.0 → 0.1, contact 2e4/2e3/1e3/0.9), its initial-state
    noise, and SHAC's reward, the forward velocity of the root (obs[8] = ẋ)."""

    name = "cheetah"
    obs_dim, act_dim = 17, 6
    contact = (2.0e4, 2.0e3, 1.0e3, 0.9)
    description = "half-cheetah (gymnasium's geometry), 6 hinges, 200·a torques, run along +x (constants: our choice)"

    def model(self):
        return _y_up(load_mjcf(gymnasium_asset("half_cheetah"), density=1000.0, stiffness=0.0, damping=2.0, armature=0.1))

    initial_state = Hopper.initial_state
    joint_forces = Hopper.joint_forces
    observe = Hopper.observe

    def reward(self, obs_before, actions):
        return obs_before[:, 8]


# --------------------------------------------------------------------------------------------- CartPole
# SHAC's cartpole (the URDF that PWM's dflex fork loads, with dflex's loader rules: masses from the collision boxes
# at dflex's default density 1000, URDF <inertial> ignored). z up here; the root frame turns it to y up.
CARTPOLE_DENSITY = 1000.0
CARTPOLE_CART_BOX = (0.5, 0.5, 0.2)  # full sizes (x, y, z): 50 kg
CARTPOLE_POLE_BOX = (0.05, 0.05, 1.0)  # centred 0.5 m up the pole from the hinge: 2.5 kg
CARTPOLE_RAIL = 4.0  # the slider's URDF limit, ±4 m
CARTPOLE_POLE_RANGE = 1.0e3  # a continuous joint: dflex's loader gives it ±1e3
CARTPOLE_ARMATURE = 0.1
CARTPOLE_ROOT = (np.array([0.0, 2.5, 0.0]), Z_UP_TO_Y_UP)  # the rail 2.5 m up (no ground: only for the record)


def box_geom(name: str, size, position, density: float) -> Geom:
    """A solid box (full sizes along x, y, z) as a massive geom without contact points (dflex's box inertia
    m/12·(h² + d², w² + d², w² + h²)). The MJCF loader still rejects boxes; only code-built models use them."""
    w, h, d = (float(v) for v in size)
    mass = density * w * h * d
    inertia = np.diag([mass / 12.0 * (h * h + d * d), mass / 12.0 * (w * w + d * d), mass / 12.0 * (w * w + h * h)])
    return Geom(name, "box", 0.0, 0.0, np.asarray(position, float), np.array([0.0, 0.0, 0.0, 1.0]), mass, inertia)


def cartpole_articulation() -> Articulation:
    """Cart (slide along x, ±4 m) and pole (hinge about y at the cart's origin; q = 0 is the pole straight up)."""
    identity = np.array([0.0, 0.0, 0.0, 1.0])
    gains = {"ref": 0.0, "stiffness": 0.0, "damping": 0.0, "armature": CARTPOLE_ARMATURE}
    cart_box = box_geom("cart", CARTPOLE_CART_BOX, np.zeros(3), CARTPOLE_DENSITY)
    pole_box = box_geom("pole", CARTPOLE_POLE_BOX, np.array([0.0, 0.0, 0.5]), CARTPOLE_DENSITY)
    cart = Link("cart", "slider_to_cart", -1, "slide", np.array([1.0, 0.0, 0.0]), np.zeros(3), identity,
                -CARTPOLE_RAIL, CARTPOLE_RAIL, geoms=(cart_box,), **gains)  # fmt: skip
    pole = Link("pole", "cart_to_pole", 0, "hinge", np.array([0.0, 1.0, 0.0]), np.zeros(3), identity,
                -CARTPOLE_POLE_RANGE, CARTPOLE_POLE_RANGE, geoms=(pole_box,), **gains)  # fmt: skip
    return Articulation("cartpole", (cart, pole))


class CartPole(DflexTask):
    """Swing-up on SHAC's cartpole (PWM's dflex fork): a 50 kg cart on a ±4 m rail and a 2.5 kg, 1 m pole, pushed
    with 1000·a N.

    SHAC's (facts from PWM's dflex fork, `CartPoleSwingUpEnv` and its `cartpole.urdf`): the geometry and the masses
    (boxes at density 1000), armature 0.1 on both joints, joint stiffness and damping 0, joint limit ke 1e2 and kd
    1.0 (dflex's limit damping acts always), the ±4 m rail, 4 substeps, 1000·a on the cart, the observation, the
    reward, and the stochastic init: π·U(−0.5, 0.5) added to both joint coordinates (the cart's too) and
    0.5·U(−0.5, 0.5) to both velocities. Our choice, where the sources disagree: the base angle θ = −π (hanging;
    reference/dflex.md; SHAC's original env sets q_pole = −π), whereas PWM's fork defaults to start_state = 0 with
    θ = 0 the pole up (its docstring), i.e. it starts within ±90° of upright — `start_theta` names the choice. (The
    fidelity audit quotes limit kd 1e1; PWM's fork and SHAC's original env both pass 1.0.)"""

    name = "cartpole"
    obs_dim, act_dim = 5, 1
    episode_length = 240
    substeps = mm_caching_frequency = 4
    num_envs = 1024
    limit_ke, limit_kd = 1.0e2, 1.0
    start_theta = -math.pi
    description = "dflex CartPole swing-up (SHAC's cartpole: 50 kg cart, ±4 m rail, 2.5 kg 1 m pole), 1000·a N on the cart"

    def model(self):
        return Model.from_articulation(cartpole_articulation(), root_frame=CARTPOLE_ROOT)

    def initial_state(self, model, n, gen):
        """(x, θ) = (0, −π) + π·U(−0.5, 0.5) each, (ẋ, θ̇) = 0.5·U(−0.5, 0.5) each (SHAC's stochastic init)."""
        q = torch.tensor([0.0, self.start_theta]) + _uniform(gen, (n, 2), 0.5 * math.pi)
        qd = _uniform(gen, (n, 2), 0.25)
        return q, qd

    def joint_forces(self, actions, dof_count):
        return torch.cat((1000.0 * actions, torch.zeros_like(actions)), dim=-1)

    def observe(self, q, qd, prev_actions, origin=None):
        x, theta = q[:, 0], q[:, 1]  # the cart is on a fixed rail: no root following, x is absolute
        return torch.stack((x, qd[:, 0], torch.sin(theta), torch.cos(theta), qd[:, 1]), dim=-1)

    def reward(self, obs_before, actions):
        x, x_dot, sin, cos, theta_dot = obs_before.unbind(-1)
        theta = torch.atan2(sin, cos)  # normalised to (−π, π]
        return -(theta**2) - 0.1 * theta_dot**2 - 0.05 * x**2 - 0.1 * x_dot**2


TASKS: dict[str, type[DflexTask]] = {cls.name: cls for cls in (CartPole, Hopper, Ant, Humanoid, Cheetah)}


# ------------------------------------------------------------------------------------------ numpy helpers
def _quat_mul_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return quat_mul(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)).numpy()


def _rotate(qt: np.ndarray, v: np.ndarray) -> np.ndarray:
    return quat_rotate(torch.tensor(qt, dtype=torch.float64), torch.tensor(v, dtype=torch.float64)).numpy()

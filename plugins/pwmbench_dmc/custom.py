"""TD-MPC2's 11 custom DeepMind Control tasks (the last 11 of MT30), re-created from reference/multitask.md.

Each task reuses its domain's dm_control physics and task class and changes only what TD-MPC2 changed: the
reward, for cup-spin the initial state, for reacher-three the arm (a 3-link model below), and for the walker and
cheetah tasks a longer ground plane, made by editing dm_control's own model XML when it is loaded (the standard
tasks keep theirs). Time limits and control timesteps are the domain's own, so every episode is dm_control's
1000 steps (500 agent steps at action repeat 2).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "off")  # state only: never load a GL backend

import xml.etree.ElementTree as ET
from collections.abc import Callable
from types import ModuleType

import numpy as np
from dm_control.rl import control
from dm_control.suite import ball_in_cup, base, cheetah, common, hopper, pendulum, reacher, walker
from dm_control.utils import rewards

INF = float("inf")
Random = int | np.random.RandomState | None  # what `task_kwargs={"random": ...}` accepts

# Ground-plane half-lengths (x) of the walker and cheetah custom tasks: twice dm_control's 250 and 100, so a
# policy moving backwards (towards −x, where the standard floors end 2 m behind the start) stays on the floor.
WALKER_FLOOR_HALF_LENGTH = 500.0
CHEETAH_FLOOR_HALF_LENGTH = 200.0

# Heights and speeds of the custom cheetah rewards.
CHEETAH_UP_HEIGHT = 1.2  # torso / raised foot / their mean above which a height term is 1
CHEETAH_STILL_SPEED = 0.5  # |speed| within which the jump task's stillness term is 1
CHEETAH_BACKWARDS_SPEED = 0.8 * cheetah._RUN_SPEED  # 8
CHEETAH_ONE_FOOT_SPEED = 0.6 * cheetah._RUN_SPEED  # 6

CUP_SPIN_DISTANCE = 0.5  # ball–target distance above which the distance term is 1
CUP_SPIN_SPEED = 6.0  # ball speed above which the speed term is 1
CUP_START_OUTSIDE_PROB = 0.1  # otherwise an episode starts with the ball resting in the cup

PENDULUM_SPIN_SPEED = 9.0  # |angular velocity| above which the reward is 1

REACHER_BIG_TARGET = 0.05  # target radius of reacher-three-easy
REACHER_SMALL_TARGET = 0.015  # ... and of reacher-three-hard

# A planar reacher with three hinges and three motors, written in the style of dm_control's reacher.xml: the
# same arena, joint damping, motor gear and materials; three links of 9 cm (reach 27 cm), the first joint
# unlimited, the other two limited to ±80°. Geom names "finger" and "target" are the ones reacher.Physics reads.
REACHER_THREE_XML = """
<mujoco model="three-link planar reacher">
  <include file="./common/skybox.xml"/>
  <include file="./common/visual.xml"/>
  <include file="./common/materials.xml"/>

  <option timestep="0.02">
    <flag contact="disable"/>
  </option>

  <default>
    <joint type="hinge" axis="0 0 1" damping="0.01"/>
    <motor gear=".05" ctrlrange="-1 1" ctrllimited="true"/>
  </default>

  <worldbody>
    <light name="light" pos="0 0 1"/>
    <camera name="fixed" pos="0 0 .75" quat="1 0 0 0"/>
    <geom name="ground" type="plane" pos="0 0 0" size=".3 .3 10" material="grid"/>
    <geom name="wall_x" type="plane" pos="-.3 0 .02" zaxis="1 0 0" size=".02 .3 .02" material="decoration"/>
    <geom name="wall_y" type="plane" pos="0 -.3 .02" zaxis="0 1 0" size=".3 .02 .02" material="decoration"/>
    <geom name="wall_neg_x" type="plane" pos=".3 0 .02" zaxis="-1 0 0" size=".02 .3 .02" material="decoration"/>
    <geom name="wall_neg_y" type="plane" pos="0 .3 .02" zaxis="0 -1 0" size=".3 .02 .02" material="decoration"/>

    <geom name="root" type="cylinder" fromto="0 0 0 0 0 0.02" size=".011" material="decoration"/>
    <body name="upper_arm" pos="0 0 .01">
      <joint name="shoulder"/>
      <geom name="upper_arm" type="capsule" fromto="0 0 0 .09 0 0" size=".01" material="self"/>
      <body name="forearm" pos=".09 0 0">
        <joint name="elbow" limited="true" range="-80 80"/>
        <geom name="forearm" type="capsule" fromto="0 0 0 .09 0 0" size=".01" material="self"/>
        <body name="hand" pos=".09 0 0">
          <joint name="wrist" limited="true" range="-80 80"/>
          <geom name="hand" type="capsule" fromto="0 0 0 .1 0 0" size=".01" material="self"/>
          <body name="finger" pos=".09 0 0">
            <camera name="hand" pos="0 0 .2" mode="track"/>
            <geom name="finger" type="sphere" size=".01" material="effector"/>
          </body>
        </body>
      </body>
    </body>
    <geom name="target" type="sphere" pos="0 0 .01" size=".05" material="target"/>
  </worldbody>

  <actuator>
    <motor name="shoulder" joint="shoulder"/>
    <motor name="elbow" joint="elbow"/>
    <motor name="wrist" joint="wrist"/>
  </actuator>
</mujoco>
"""


def linear_tolerance(x: float, bounds: tuple[float, float], margin: float, value_at_margin: float) -> float:
    """dm_control's tolerance with a linear fall-off, as all of TD-MPC2's speed and distance terms use it."""
    return float(rewards.tolerance(x, bounds=bounds, margin=margin, value_at_margin=value_at_margin, sigmoid="linear"))


# ---------------------------------------------------------------------------------------------------------------
# Models


def with_longer_floor(xml: bytes | str, geom_name: str, half_length: float) -> str:
    """The model XML with plane `geom_name` stretched to `half_length` along x (its position left as is)."""
    root = ET.fromstring(xml)
    planes = [g for g in root.iter("geom") if g.get("name") == geom_name]
    if len(planes) != 1:
        raise ValueError(f"expected one geom named {geom_name!r} in the model, found {len(planes)}")
    size = planes[0].get("size", "").split()
    planes[0].set("size", " ".join([repr(float(half_length)), *size[1:]]))
    return ET.tostring(root, encoding="unicode")


def physics_with_longer_floor(domain: ModuleType, geom_name: str, half_length: float) -> control.Physics:
    """The domain's own model (from the installed dm_control) with a longer ground plane."""
    xml, assets = domain.get_model_and_assets()
    return domain.Physics.from_xml_string(with_longer_floor(xml, geom_name, half_length), assets)


def walker_physics() -> walker.Physics:
    return physics_with_longer_floor(walker, "floor", WALKER_FLOOR_HALF_LENGTH)


def cheetah_physics() -> cheetah.Physics:
    return physics_with_longer_floor(cheetah, "ground", CHEETAH_FLOOR_HALF_LENGTH)


def reacher_three_physics() -> reacher.Physics:
    return reacher.Physics.from_xml_string(REACHER_THREE_XML, common.ASSETS)


# ---------------------------------------------------------------------------------------------------------------
# Tasks


class BackwardsWalker(walker.PlanarWalker):
    """walker-walk/run-backwards: the original stand and upright terms, speed rewarded towards −x."""

    def get_reward(self, physics: walker.Physics) -> float:
        standing = rewards.tolerance(
            physics.torso_height(), bounds=(walker._STAND_HEIGHT, INF), margin=walker._STAND_HEIGHT / 2
        )
        upright = (1 + physics.torso_upright()) / 2
        stand = (3 * standing + upright) / 4
        speed = self._move_speed
        move = linear_tolerance(physics.horizontal_velocity(), (-INF, -speed), margin=speed / 2, value_at_margin=0.5)
        return float(stand * (5 * move + 1) / 6)


def cheetah_height_reward(height: float) -> float:
    """1 at or above the jump height, a gaussian fall-off (0.1 at 0.6 m below it) otherwise."""
    return float(rewards.tolerance(height, bounds=(CHEETAH_UP_HEIGHT, INF), margin=CHEETAH_UP_HEIGHT / 2))


def body_height(physics: control.Physics, body: str) -> float:
    return float(physics.named.data.xpos[body, "z"])


class CheetahRunBackwards(cheetah.Cheetah):
    """cheetah-run-backwards: the run reward mirrored, full at 8 m/s towards −x."""

    def get_reward(self, physics: cheetah.Physics) -> float:
        s = CHEETAH_BACKWARDS_SPEED
        return linear_tolerance(physics.speed(), (-INF, -s), margin=s, value_at_margin=0.0)


class CheetahRunOneFoot(cheetah.Cheetah):
    """cheetah-run-front (back foot raised) and cheetah-run-back (front foot raised): run forwards on one end."""

    def __init__(self, raised_foot: str, random: Random = None) -> None:
        if raised_foot not in ("bfoot", "ffoot"):
            raise ValueError(f"raised_foot must be 'bfoot' or 'ffoot', got {raised_foot!r}")
        self._raised_foot = raised_foot
        super().__init__(random=random)

    def get_reward(self, physics: cheetah.Physics) -> float:
        foot_up = cheetah_height_reward(body_height(physics, self._raised_foot))
        torso_up = cheetah_height_reward(body_height(physics, "torso"))
        up = (3 * foot_up + 2 * torso_up) / 5
        s = CHEETAH_ONE_FOOT_SPEED
        run = linear_tolerance(physics.speed(), (s, INF), margin=s, value_at_margin=0.0)
        return up * (5 * run + 1) / 6


class CheetahJump(cheetah.Cheetah):
    """cheetah-jump: the mean of standing still on the front feet and on the back feet, i.e. getting high."""

    def stand_on_one_end(self, physics: cheetah.Physics, raised_foot: str) -> float:
        height = (body_height(physics, "torso") + body_height(physics, raised_foot)) / 2
        s = CHEETAH_STILL_SPEED
        still = linear_tolerance(physics.speed(), (-s, s), margin=s, value_at_margin=0.0)
        return (5 * cheetah_height_reward(height) + still) / 6

    def get_reward(self, physics: cheetah.Physics) -> float:
        return (self.stand_on_one_end(physics, "bfoot") + self.stand_on_one_end(physics, "ffoot")) / 2


class HopperHopBackwards(hopper.Hopper):
    """hopper-hop-backwards: the hop reward with the speed term mirrored (full at 1 m/s towards −x)."""

    def __init__(self, random: Random = None) -> None:
        super().__init__(hopping=True, random=random)

    def get_reward(self, physics: hopper.Physics) -> float:
        standing = rewards.tolerance(physics.height(), (hopper._STAND_HEIGHT, 2))
        s = hopper._HOP_SPEED / 2
        hopping = linear_tolerance(physics.speed(), (-INF, -s), margin=s / 2, value_at_margin=0.5)
        return float(standing * hopping)


class CupSpin(ball_in_cup.BallInCup):
    """cup-spin: swing the ball fast and far around the cup; nothing while it sits in the cup.

    Episodes start with the ball resting in the cup, except a tenth of them that start anywhere, so the task
    is to throw the ball out and keep it circling.
    """

    def initialize_episode(self, physics: ball_in_cup.Physics) -> None:
        anywhere = self.random.uniform() < CUP_START_OUTSIDE_PROB
        while True:
            physics.named.data.qpos["ball_x"] = self.random.uniform(-0.2, 0.2)
            physics.named.data.qpos["ball_z"] = self.random.uniform(0.2, 0.5)
            physics.after_reset()
            if physics.data.ncon == 0 and (anywhere or physics.in_target()):
                break
        # Skip BallInCup.initialize_episode (it would draw a new ball position); base.Task's part still runs.
        base.Task.initialize_episode(self, physics)

    def get_reward(self, physics: ball_in_cup.Physics) -> float:
        distance = np.linalg.norm(physics.ball_to_target())
        speed = np.linalg.norm(physics.named.data.qvel[["ball_x", "ball_z"]])
        far = linear_tolerance(distance, (CUP_SPIN_DISTANCE, INF), margin=CUP_SPIN_DISTANCE / 2, value_at_margin=0.5)
        fast = linear_tolerance(speed, (CUP_SPIN_SPEED, INF), margin=CUP_SPIN_SPEED / 2, value_at_margin=0.5)
        return (1 - physics.in_target()) * (far + 2 * fast) / 3


class PendulumSpin(pendulum.SwingUp):
    """pendulum-spin: spin the pole in either direction at ≥ 9 rad/s (swing-up's start and observation)."""

    def get_reward(self, physics: pendulum.Physics) -> float:
        s = PENDULUM_SPIN_SPEED
        spin = float(np.linalg.norm(physics.angular_velocity()))
        return linear_tolerance(spin, (s, INF), margin=s / 2, value_at_margin=0.5)


# ---------------------------------------------------------------------------------------------------------------
# Environments: (physics, task, time limit, control timestep) as the domain's standard tasks use them.


def environment(physics: control.Physics, task: base.Task, domain: ModuleType) -> control.Environment:
    """An environment with the domain's standard time limit and control timestep (where it sets one)."""
    timestep = getattr(domain, "_CONTROL_TIMESTEP", None)
    kwargs = {} if timestep is None else {"control_timestep": timestep}
    return control.Environment(physics, task, time_limit=domain._DEFAULT_TIME_LIMIT, **kwargs)


def walker_walk_backwards(random: Random = None) -> control.Environment:
    return environment(walker_physics(), BackwardsWalker(move_speed=walker._WALK_SPEED, random=random), walker)


def walker_run_backwards(random: Random = None) -> control.Environment:
    return environment(walker_physics(), BackwardsWalker(move_speed=walker._RUN_SPEED, random=random), walker)


def cheetah_run_backwards(random: Random = None) -> control.Environment:
    return environment(cheetah_physics(), CheetahRunBackwards(random=random), cheetah)


def cheetah_run_front(random: Random = None) -> control.Environment:
    return environment(cheetah_physics(), CheetahRunOneFoot("bfoot", random=random), cheetah)


def cheetah_run_back(random: Random = None) -> control.Environment:
    return environment(cheetah_physics(), CheetahRunOneFoot("ffoot", random=random), cheetah)


def cheetah_jump(random: Random = None) -> control.Environment:
    return environment(cheetah_physics(), CheetahJump(random=random), cheetah)


def hopper_hop_backwards(random: Random = None) -> control.Environment:
    physics = hopper.Physics.from_xml_string(*hopper.get_model_and_assets())
    return environment(physics, HopperHopBackwards(random=random), hopper)


def reacher_three_easy(random: Random = None) -> control.Environment:
    return environment(reacher_three_physics(), reacher.Reacher(REACHER_BIG_TARGET, random=random), reacher)


def reacher_three_hard(random: Random = None) -> control.Environment:
    return environment(reacher_three_physics(), reacher.Reacher(REACHER_SMALL_TARGET, random=random), reacher)


def cup_spin(random: Random = None) -> control.Environment:
    physics = ball_in_cup.Physics.from_xml_string(*ball_in_cup.get_model_and_assets())
    return environment(physics, CupSpin(random=random), ball_in_cup)


def pendulum_spin(random: Random = None) -> control.Environment:
    physics = pendulum.Physics.from_xml_string(*pendulum.get_model_and_assets())
    return environment(physics, PendulumSpin(random=random), pendulum)


# MT30 order (task ids 19–29).
BUILDERS: dict[str, Callable[[Random], control.Environment]] = {
    "walker-walk-backwards": walker_walk_backwards,
    "walker-run-backwards": walker_run_backwards,
    "cheetah-run-backwards": cheetah_run_backwards,
    "cheetah-run-front": cheetah_run_front,
    "cheetah-run-back": cheetah_run_back,
    "cheetah-jump": cheetah_jump,
    "hopper-hop-backwards": hopper_hop_backwards,
    "reacher-three-easy": reacher_three_easy,
    "reacher-three-hard": reacher_three_hard,
    "cup-spin": cup_spin,
    "pendulum-spin": pendulum_spin,
}


def load(name: str, seed: int | None) -> control.Environment:
    """One custom task, its RNG seeded as `suite.load(..., task_kwargs={"random": seed})` seeds the standard ones."""
    try:
        build = BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown custom DMC task {name!r}; known: {', '.join(BUILDERS)}") from None
    return build(seed)

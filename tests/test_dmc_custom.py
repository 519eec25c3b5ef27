"""TD-MPC2's 11 custom DMC tasks: registration in MT30 order, dims, episode length, seeding, state restore,
longer floors, and each reward at hand-set physics states against the formula of reference/multitask.md."""

import copy
import math

import numpy as np
import pwmbench_dmc
import pytest
import torch
from pwmbench_dmc import custom

from pwmbench import api

CUSTOM = [
    "walker-walk-backwards",
    "walker-run-backwards",
    "cheetah-run-backwards",
    "cheetah-run-front",
    "cheetah-run-back",
    "cheetah-jump",
    "hopper-hop-backwards",
    "reacher-three-easy",
    "reacher-three-hard",
    "cup-spin",
    "pendulum-spin",
]

# MT30 dims of reference/multitask.md, in task-id order.
MT30_OBS = [24, 24, 24, 17, 6, 6, 6, 3, 5, 5, 5, 5, 8, 9, 12, 12, 24, 15, 15, 24, 24, 17, 17, 17, 17, 15, 8, 8, 8, 3]
MT30_ACT = [6, 6, 6, 6, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 5, 4, 4, 6, 6, 6, 6, 6, 6, 4, 3, 3, 2, 1]

# The standard task of each custom task's domain, whose time limit and control timestep it must share.
STANDARD_OF_DOMAIN = {"walker": "walk", "cheetah": "run", "hopper": "hop", "reacher": "easy",
                      "ball_in_cup": "catch", "pendulum": "swingup"}


# ---------------------------------------------------------------------------------------------------------------
# Registration, dims, seeding, episodes


def test_the_11_custom_tasks_follow_the_19_standard_ones_in_mt30_order():
    names = list(pwmbench_dmc.TASKS)
    assert names[:19] == list(pwmbench_dmc.STANDARD_TASKS) and names[19:] == CUSTOM
    assert list(custom.BUILDERS) == CUSTOM == list(pwmbench_dmc.CUSTOM_TASKS)
    assert [pwmbench_dmc.TASKS[n] for n in names] == list(zip(MT30_OBS, MT30_ACT))
    registered = set(api.get_plugins().tasks.names())
    assert {f"dmc/{n}" for n in CUSTOM} <= registered


@pytest.mark.parametrize("name", CUSTOM)
def test_builds_steps_and_is_deterministic_per_seed(name):
    task = api.task(f"dmc/{name}")
    obs_dim, act_dim = pwmbench_dmc.CUSTOM_TASKS[name]
    assert (task.spec.obs_dim, task.spec.act_dim) == (obs_dim, act_dim) and "custom" in task.spec.description

    def rollout(seed):
        env = task.make_env(2, seed)
        assert (env.obs_dim, env.act_dim) == (obs_dim, act_dim)
        gen = torch.Generator().manual_seed(0)
        steps = [(env.reset(), None)]
        for _ in range(3):
            obs, rew, term, trunc, _ = env.step(torch.rand(2, act_dim, generator=gen) * 2 - 1)
            assert not term.any() and not trunc.any()
            steps.append((obs, rew))
        obs = torch.stack([o for o, _ in steps])
        rew = torch.stack([r for _, r in steps[1:]])
        assert obs.shape == (4, 2, obs_dim) and obs.dtype == torch.float32 and rew.shape == (3, 2)
        assert torch.isfinite(obs).all() and torch.isfinite(rew).all() and (rew >= 0).all() and (rew <= 2).all()
        return obs, rew

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("name", CUSTOM)
def test_episode_is_the_domains_1000_physics_steps(name):
    from dm_control import suite

    env = pwmbench_dmc.load_env(name, 0)
    domain, _ = pwmbench_dmc.domain_and_task(name)
    standard = suite.load(domain, STANDARD_OF_DOMAIN[domain], task_kwargs={"random": 0})
    assert env.control_timestep() == standard.control_timestep()
    assert env._step_limit == standard._step_limit == 1000


def test_custom_episode_ends_after_500_agent_steps():
    env = api.task("dmc/pendulum-spin").make_env(1, seed=0)
    env.reset()
    for t in range(1, 501):
        _, _, term, trunc, _ = env.step(torch.zeros(1, 1))
        assert not term.any() and bool(trunc.all()) == (t == 500)


@pytest.mark.parametrize("name", CUSTOM)
def test_state_dict_restores_the_rollout_and_the_next_reset(name):
    task = api.task(f"dmc/{name}")
    act = torch.rand(6, 2, task.spec.act_dim, generator=torch.Generator().manual_seed(1)) * 2 - 1

    def continue_from(env):
        out = [env.step(a)[:2] for a in act[3:]]
        out.append((env.reset(), torch.zeros(2)))  # the next episode's start comes from the restored RNG
        return torch.stack([o for o, _ in out]), torch.stack([r for _, r in out])

    source = task.make_env(2, seed=5)
    source.reset()
    for a in act[:3]:
        source.step(a)
    saved = copy.deepcopy(source.state_dict())
    expected = continue_from(source)

    target = task.make_env(2, seed=6)  # other seed: other initial states, targets and RNG streams
    target.reset()
    target.load_state_dict(saved)
    restored = continue_from(target)
    assert torch.equal(expected[0], restored[0]) and torch.equal(expected[1], restored[1])


# ---------------------------------------------------------------------------------------------------------------
# Models


@pytest.mark.parametrize(
    "name, geom, half_length, centre",
    [("walker-walk-backwards", "floor", 500, 248), ("walker-run-backwards", "floor", 500, 248),
     ("cheetah-run-backwards", "ground", 200, 98), ("cheetah-run-front", "ground", 200, 98),
     ("cheetah-run-back", "ground", 200, 98), ("cheetah-jump", "ground", 200, 98),
     ("walker-walk", "floor", 250, 248), ("cheetah-run", "ground", 100, 98)],  # standard tasks unchanged
)
def test_backwards_walker_and_cheetah_tasks_have_longer_floors(name, geom, half_length, centre):
    model = pwmbench_dmc.load_env(name, 0).physics.named.model
    assert model.geom_size[geom, 0] == half_length and model.geom_pos[geom, 0] == centre


def test_reacher_three_is_a_three_hinge_three_motor_planar_arm():
    physics = pwmbench_dmc.load_env("reacher-three-easy", 0).physics
    model = physics.model
    assert model.njnt == model.nq == model.nu == 3 and list(model.jnt_type) == [3, 3, 3]  # mjJNT_HINGE
    assert np.allclose(model.jnt_axis, [0, 0, 1]) and list(model.jnt_limited) == [0, 1, 1]
    with physics.reset_context():
        physics.data.qpos[:] = 0
    assert physics.named.data.geom_xpos["finger", "x"] == pytest.approx(0.27)  # three 9 cm links


@pytest.mark.parametrize("name, size", [("reacher-three-easy", 0.05), ("reacher-three-hard", 0.015)])
def test_reacher_three_target_sizes(name, size):
    env = pwmbench_dmc.load_env(name, 0)
    env.reset()
    assert env.physics.named.model.geom_size["target", 0] == pytest.approx(size)


def test_cup_spin_episodes_mostly_start_with_the_ball_in_the_cup():
    env = pwmbench_dmc.load_env("cup-spin", 0)
    starts = []
    for _ in range(30):
        env.reset()
        starts.append(env.physics.in_target())
        assert env.physics.data.ncon == 0
    assert 20 <= sum(starts) < 30  # nine in ten start inside, the rest anywhere


# ---------------------------------------------------------------------------------------------------------------
# Rewards at hand-set states


def reward_at(env, qpos=None, qvel=None, model_geom_pos=None):
    """The task's reward with the named joints set (all others zero), after MuJoCo's forward pass."""
    physics = env.physics
    with physics.reset_context():
        physics.data.qpos[:] = 0
        physics.data.qvel[:] = 0
        for joint, value in (qpos or {}).items():
            physics.named.data.qpos[joint] = value
        for joint, value in (qvel or {}).items():
            physics.named.data.qvel[joint] = value
        for geom, xy in (model_geom_pos or {}).items():
            physics.named.model.geom_pos[geom, ["x", "y"]] = xy
    return float(env.task.get_reward(physics))


def reset_env(name):
    env = pwmbench_dmc.load_env(name, 0)
    env.reset()
    return env


def gaussian_up(height, bound=1.2, margin=0.6):
    """tolerance(h, (bound, inf), margin) with the default gaussian: 1 above, 0.1 one margin below."""
    return 1.0 if height >= bound else 0.1 ** (((bound - height) / margin) ** 2)


@pytest.mark.parametrize(
    "name, vx, expected",
    [
        # at rest upright: stand = 1, move = 0 → 1/6
        ("walker-walk-backwards", 0.0, 1 / 6),
        ("walker-walk-backwards", -1.0, 1.0),
        ("walker-walk-backwards", -0.75, (5 * 0.75 + 1) / 6),  # 0.25 short, margin 0.5, 0.5 at margin → 0.75
        ("walker-walk-backwards", 1.0, 1 / 6),  # forwards earns nothing for moving
        ("walker-run-backwards", 0.0, 1 / 6),  # 8 short = 2 margins: the linear term reaches 0
        ("walker-run-backwards", -1.0, (5 * 0.125 + 1) / 6),  # 7 short = 1.75 margins → 1 − 1.75·0.5
        ("walker-run-backwards", -8.0, 1.0),
        ("walker-run-backwards", -6.0, (5 * 0.75 + 1) / 6),  # 2 short, margin 4 → 0.75
    ],
)
def test_walker_backwards_rewards(name, vx, expected):
    env = reset_env(name)  # qpos 0 is standing upright with the torso at 1.3 m (≥ 1.2)
    assert reward_at(env, qvel={"rootx": vx}) == pytest.approx(expected)


def test_walker_backwards_upside_down_loses_the_upright_quarter():
    env = reset_env("walker-walk-backwards")
    # torso still at 1.3 m (standing = 1) but upright = (1 + cos π)/2 = 0 → stand = 3/4, move = 1
    assert reward_at(env, qpos={"rooty": math.pi}, qvel={"rootx": -1.0}) == pytest.approx(0.75)


@pytest.mark.parametrize("speed, expected", [(-8.0, 1.0), (-10.0, 1.0), (0.0, 0.0), (-4.0, 0.5), (8.0, 0.0)])
def test_cheetah_run_backwards_reward(speed, expected):
    assert reward_at(reset_env("cheetah-run-backwards"), qvel={"rootx": speed}) == pytest.approx(expected)


def run_one_foot(physics, raised_foot, speed):
    """(3·up(foot) + 2·up(torso))/5 · (5·linear(speed ≥ 6, margin 6) + 1)/6, by hand."""
    z = physics.named.data.xpos
    up = (3 * gaussian_up(z[raised_foot, "z"]) + 2 * gaussian_up(z["torso", "z"])) / 5
    run = min(1.0, max(0.0, 1 - (6 - speed) / 6))
    return up * (5 * run + 1) / 6


@pytest.mark.parametrize("name, raised_foot", [("cheetah-run-front", "bfoot"), ("cheetah-run-back", "ffoot")])
def test_cheetah_run_on_one_end_rewards(name, raised_foot):
    env = reset_env(name)
    # lifted 3 m: every height term is 1, so only the speed term is left
    assert reward_at(env, qpos={"rootz": 3.0}, qvel={"rootx": 6.0}) == pytest.approx(1.0)
    assert reward_at(env, qpos={"rootz": 3.0}, qvel={"rootx": 3.0}) == pytest.approx((5 * 0.5 + 1) / 6)
    assert reward_at(env, qpos={"rootz": 3.0}) == pytest.approx(1 / 6)
    # on the ground and tilted: gaussian height terms of the real body heights
    for pitch in (0.0, 0.5, -0.5):
        got = reward_at(env, qpos={"rooty": pitch}, qvel={"rootx": 2.0})
        assert got == pytest.approx(run_one_foot(env.physics, raised_foot, 2.0))
        assert 0 < got < 1


def test_cheetah_run_front_raises_the_back_foot():
    front, back = reset_env("cheetah-run-front"), reset_env("cheetah-run-back")
    # pitched by +0.5 rad about y the nose goes down and the back foot up: run-front pays more, run-back less
    tail_up = {"rooty": 0.5, "rootz": 0.5}
    nose_up = {"rooty": -0.5, "rootz": 0.5}
    assert reward_at(front, qpos=tail_up) > reward_at(back, qpos=tail_up)
    assert reward_at(back, qpos=nose_up) > reward_at(front, qpos=nose_up)


def test_cheetah_jump_reward():
    env = reset_env("cheetah-jump")
    assert reward_at(env, qpos={"rootz": 3.0}) == pytest.approx(1.0)
    # |speed| 0.75: 0.25 past the ±0.5 band with margin 0.5 → still = 0.5 for both feet
    assert reward_at(env, qpos={"rootz": 3.0}, qvel={"rootx": -0.75}) == pytest.approx((5 + 0.5) / 6)
    assert reward_at(env, qpos={"rootz": 3.0}, qvel={"rootx": 1.0}) == pytest.approx(5 / 6)
    got = reward_at(env, qpos={"rooty": 0.3})
    z = env.physics.named.data.xpos
    by_hand = np.mean([(5 * gaussian_up((z["torso", "z"] + z[foot, "z"]) / 2) + 1) / 6 for foot in ("bfoot", "ffoot")])
    assert got == pytest.approx(by_hand) and got < 1


@pytest.mark.parametrize(
    "qpos, vx, expected",
    [
        ({}, -1.0, 1.0),  # standing (torso 0.97 m above the foot, within [0.6, 2]) and hopping back at 1 m/s
        ({}, -2.0, 1.0),
        ({}, 0.0, 0.0),  # 1 short of −1 with margin 0.5: past the margin, linear → 0
        ({}, -0.75, 0.75),
        ({}, 1.0, 0.0),
        ({"rooty": math.pi}, -1.0, 0.0),  # upside down: torso below the foot, standing = 0
    ],
)
def test_hopper_hop_backwards_reward(qpos, vx, expected):
    env = reset_env("hopper-hop-backwards")
    assert reward_at(env, qpos=qpos, qvel={"rootx": vx}) == pytest.approx(expected)
    if not qpos:
        assert 0.6 <= env.physics.height() <= 2


@pytest.mark.parametrize("name, radius", [("reacher-three-easy", 0.05), ("reacher-three-hard", 0.015)])
def test_reacher_three_reward_is_one_within_target_plus_finger_radius(name, radius):
    env = reset_env(name)
    joints = {"shoulder": 0.4, "elbow": -0.7, "wrist": 0.9}
    reward_at(env, qpos=joints)
    finger = env.physics.named.data.geom_xpos["finger", :2].copy()
    reach = radius + 0.01  # target radius + finger radius
    for offset, expected in [(0.0, 1.0), (0.9 * reach, 1.0), (1.1 * reach, 0.0), (0.1, 0.0)]:
        target = finger + offset * np.array([0.6, 0.8])
        assert reward_at(env, qpos=joints, model_geom_pos={"target": target}) == expected
        assert np.allclose(env.task.get_observation(env.physics)["to_target"], target - finger)


@pytest.mark.parametrize(
    "ball, velocity, expected",
    [
        ((0.0, 0.35), (10.0, 0.0), 0.0),  # resting in the cup (the target at x 0, z 0.55): nothing, however fast
        ((0.6, 0.35), (6.0, 0.0), 1.0),  # 0.6 from the target (≥ 0.5) at 6 m/s
        ((0.375, 0.35), (2.7, 3.6), (0.75 + 2 * 0.75) / 3),  # 0.125 and 1.5 short (margins 0.25, 3): 0.75 each
        ((0.0, 0.1), (0.0, 0.0), 0.5 / 3),  # 0.25 below the target: far = 0.5, still: fast = 0
    ],
)
def test_cup_spin_reward(ball, velocity, expected):
    env = reset_env("cup-spin")
    got = reward_at(env, qpos=dict(zip(("ball_x", "ball_z"), ball)), qvel=dict(zip(("ball_x", "ball_z"), velocity)))
    assert got == pytest.approx(expected)
    assert env.physics.in_target() == (expected == 0.0)


@pytest.mark.parametrize("omega, expected", [(9.0, 1.0), (-9.0, 1.0), (12.0, 1.0), (4.5, 0.5), (-6.75, 0.75), (0.0, 0.0)])
def test_pendulum_spin_reward(omega, expected):
    assert reward_at(reset_env("pendulum-spin"), qpos={"hinge": 1.0}, qvel={"hinge": omega}) == pytest.approx(expected)

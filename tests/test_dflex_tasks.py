"""The dflex tasks through pwmbench's task API (plugins/pwmbench_dflex/tasks.py, env.py, plugin.py).

Checked against reference/dflex.md: dims and episode lengths, the observation layout at hand-set states, rewards
computed on the pre-step observation, early termination, truncation and immediate reset with `obs_before_reset`,
seeding, resume state, differentiable rewards (autograd vs finite differences through the env), and PWM's trainer
running a few epochs on `dflex/cartpole` and `dflex/hopper`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pwmbench_dflex.tasks import HUMANOID_STRENGTH, TASKS, Ant, CartPole, Hopper, Humanoid

from pwmbench import api

pytestmark = pytest.mark.slow  # builds simulators (kernels compile once per cache)

DIMS = {"cartpole": (5, 1, 240), "hopper": (11, 3, 1000), "ant": (37, 8, 1000), "humanoid": (76, 21, 1000), "cheetah": (17, 6, 1000)}


def make(name, n=3, seed=0, **kwargs):
    return api.task(f"dflex/{name}").make_env(n, seed, **kwargs)


def random_actions(env, seed=0):
    return torch.rand(env.num_envs, env.act_dim, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", sorted(DIMS))
def test_spec_dims_and_one_step(name):
    obs_dim, act_dim, length = DIMS[name]
    spec = api.task(f"dflex/{name}").spec
    assert (spec.obs_dim, spec.act_dim, spec.episode_length) == (obs_dim, act_dim, length)
    assert spec.num_envs == TASKS[name].num_envs
    env = make(name)
    obs = env.reset(seed=1)
    assert obs.shape == (3, obs_dim) and obs.dtype == torch.float32
    obs, reward, terminated, truncated, info = env.step(random_actions(env))
    assert obs.shape == (3, obs_dim) and reward.shape == (3,)
    assert terminated.dtype == truncated.dtype == torch.bool
    assert info["obs_before_reset"].shape == (3, obs_dim)
    assert torch.isfinite(obs).all() and torch.isfinite(reward).all()


def test_same_seed_same_episodes_other_seed_other_start():
    a, b, c = make("hopper", seed=5), make("hopper", seed=5), make("hopper", seed=6)
    torch.testing.assert_close(a.reset(seed=5), b.reset(seed=5), rtol=0, atol=0)
    assert not torch.equal(a.reset(seed=5), c.reset(seed=6))
    for k in range(10):
        act = random_actions(a, k)
        for x, y in zip(a.step(act)[:4], b.step(act)[:4]):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    first = a.reset(seed=9)
    a.step(random_actions(a))
    torch.testing.assert_close(a.reset(seed=9), first, rtol=0, atol=0)  # reset(seed) replays the initial states


def test_initial_state_noise_is_as_documented():
    """Ant: position ±0.1 around (0, 0.75, 0), rotation within π/24 of the start, joints ±0.2, velocities ±0.25."""
    task, model = Ant(), Ant().model()
    q, qd = task.initial_state(model, 500, torch.Generator().manual_seed(0))
    start = task.start_q(model, 1)[0]
    assert (q[:, :3] - start[:3]).abs().max() <= 0.1 + 1e-6
    assert (q[:, 7:] - start[7:]).abs().max() <= 0.2 + 1e-6 and (q[:, 7:] - start[7:]).abs().max() > 0.15
    assert qd.abs().max() <= 0.25 + 1e-6
    angle = 2 * torch.acos((q[:, 3:7] * start[3:7]).sum(-1).abs().clamp(max=1.0))
    assert angle.max() <= math.pi / 24 + 1e-4 and torch.allclose(q[:, 3:7].norm(dim=-1), torch.ones(500))


def test_ant_observation_layout_at_a_hand_set_state():
    env = make("ant", n=1)
    q = Ant().start_q(env.model, 1)
    q[0, 0:3] = torch.tensor([1.0, 0.6, 0.5])
    qd = torch.zeros(1, 14)
    qd[0, 0:3] = torch.tensor([0.1, 0.2, 0.3])  # ω
    qd[0, 3:6] = torch.tensor([1.0, 0.0, 0.0])  # v at the world origin
    qd[0, 6:] = torch.arange(8.0)
    obs = env.set_state(q, qd)[0]
    assert obs[0] == pytest.approx(0.6)
    torch.testing.assert_close(obs[1:5], q[0, 3:7])
    torch.testing.assert_close(obs[5:8], qd[0, 3:6] - torch.linalg.cross(q[0, 0:3], qd[0, 0:3]))
    torch.testing.assert_close(obs[8:11], qd[0, 0:3])
    torch.testing.assert_close(obs[11:19], q[0, 7:])
    torch.testing.assert_close(obs[19:27], 0.1 * qd[0, 6:])
    assert obs[27] == pytest.approx(1.0, abs=1e-6)  # upright
    to_target = torch.tensor([10000.0 - 1.0, 0.0, -0.5])
    assert obs[28] == pytest.approx(float(to_target[0] / to_target.norm()), abs=1e-6)  # heading · direction
    assert torch.all(obs[29:] == 0)  # no previous action yet


def test_rewards_use_the_observation_before_the_step():
    for name in ("ant", "hopper", "humanoid", "cartpole"):
        env = make(name, n=2, seed=3)
        before = env.reset(seed=3)
        act = random_actions(env, 1)
        obs, reward, terminated, truncated, _ = env.step(act)
        torch.testing.assert_close(reward, env.task.reward(before, act))
        assert not torch.allclose(reward, env.task.reward(obs, act))
        if name == "ant":
            torch.testing.assert_close(obs[:, 29:], act)  # the action enters the next observation


def test_reward_formulas_at_hand_set_observations():
    hop = torch.zeros(2, 11)
    hop[:, 0] = torch.tensor([-0.5, 0.1])  # height 0.5 below the start: d = −0.2; 0.1 above: d = 0.3 (clipped)
    hop[:, 1] = torch.tensor([0.0, math.pi / 12])
    hop[:, 5] = 2.0
    act = torch.full((2, 3), 0.5)
    expected = torch.tensor([2.0 - 200 * 0.04 + 1.0 - 0.075, 2.0 + 0.3 + 0.75 - 0.075])
    torch.testing.assert_close(Hopper().reward(hop, act), expected)

    cart = torch.tensor([[1.0, 2.0, math.sin(3.0), math.cos(3.0), 0.5], [0.0, 0.0, math.sin(-3.5), math.cos(-3.5), 0.0]])
    theta = torch.tensor([3.0, 2 * math.pi - 3.5])  # −3.5 wraps to 2π − 3.5
    expected = -(theta**2) - 0.1 * cart[:, 4] ** 2 - 0.05 * cart[:, 0] ** 2 - 0.1 * cart[:, 1] ** 2
    torch.testing.assert_close(CartPole().reward(cart, torch.zeros(2, 1)), expected)

    hum = torch.zeros(3, 76)
    hum[:, 0] = torch.tensor([0.64, 0.90, 1.20])  # d = −0.2, 0.06, 0.1 (clipped)
    hum[:, 5], hum[:, 53], hum[:, 54] = 1.0, 0.5, 0.25
    a = torch.ones(3, 21)
    base = 1.0 + 0.05 + 0.25 - 0.002 * 21
    torch.testing.assert_close(Humanoid().reward(hum, a), torch.tensor([base - 8.0, base + 0.6, base + 1.0]))


def test_humanoid_strength_follows_the_joint_tree_order():
    model = Humanoid().model()
    assert model.dof_count == 27 and len(HUMANOID_STRENGTH) == 21
    tau = Humanoid().joint_forces(torch.ones(1, 21), 27)[0]
    assert torch.all(tau[:6] == 0)
    torch.testing.assert_close(tau[6:], 0.35 * torch.tensor(HUMANOID_STRENGTH, dtype=torch.float32))


def test_early_termination_resets_at_once_and_keeps_the_final_observation():
    env = make("ant", n=2, seed=0)
    env.reset(seed=0)
    q, qd = env.state
    q = q.clone()
    q[0, 1] = 0.1  # env 0 below the termination height (0.27); env 1 untouched
    env.set_state(q, qd)
    obs, reward, terminated, truncated, info = env.step(torch.zeros(2, 8))
    assert terminated.tolist() == [True, False] and truncated.tolist() == [False, False]
    assert info["obs_before_reset"][0, 0] < 0.27
    assert obs[0, 0] > 0.6  # the next episode's first observation
    assert env.t.tolist() == [0, 1]
    torch.testing.assert_close(obs[1], info["obs_before_reset"][1])


def test_truncation_at_the_episode_length():
    env = make("cartpole", n=2, seed=0)
    env.reset(seed=0)
    for k in range(240):
        obs, reward, terminated, truncated, info = env.step(torch.zeros(2, 1))
        assert not terminated.any()
        assert truncated.all() == (k == 239) and truncated.any() == (k == 239)
    assert env.t.tolist() == [0, 0]
    assert not torch.equal(obs, info["obs_before_reset"])


def test_a_blown_up_state_terminates_with_a_finite_final_observation():
    env = make("hopper", n=2, seed=0)
    q, qd = env.state
    qd = qd.clone()
    qd[1, 0] = float("nan")
    env.set_state(q, qd)
    obs, reward, terminated, truncated, info = env.step(torch.zeros(2, 3))
    assert terminated.tolist() == [False, True] and info["invalid_state"].tolist() == [False, True]
    assert torch.isfinite(obs).all() and torch.isfinite(info["obs_before_reset"]).all()


def test_state_dict_resumes_the_same_episodes():
    a = make("hopper", n=3, seed=2)
    for k in range(5):
        a.step(random_actions(a, k))
    saved = a.state_dict()
    b = make("hopper", n=3, seed=99)
    b.load_state_dict(saved)
    for k in range(40):  # long enough for resets, which draw from the restored generator
        act = random_actions(a, 100 + k)
        for x, y in zip(a.step(act)[:4], b.step(act)[:4]):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_differentiable_rewards_match_finite_differences_through_the_env():
    """Σ rewards over 6 steps of the Hopper (ground contact, 16 substeps each) by autograd through the env, against
    central differences of the same sum on the fast path, for every action of the first step."""
    steps = 6
    env = make("hopper", n=1, seed=4, differentiable=True)
    fast = make("hopper", n=1, seed=4)
    q0, qd0 = fast.state
    q0, qd0 = q0.clone(), qd0.clone()
    q0[0, 1] -= 0.2  # start low enough for the foot to touch down during the window
    plan = (torch.rand(steps, 1, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.5

    def total(first_action: torch.Tensor, e) -> torch.Tensor:
        e.set_state(q0, qd0)
        out = torch.zeros(())
        for k in range(steps):
            _, reward, terminated, truncated, _ = e.step(first_action if k == 0 else plan[k])
            assert not (terminated.any() or truncated.any())
            out = out + reward.sum()
        return out

    a = plan[0].clone().requires_grad_(True)
    total(a, env).backward()
    numeric = []
    for i in range(3):
        up, down = plan[0].clone(), plan[0].clone()
        up[0, i] += 1e-2
        down[0, i] -= 1e-2
        numeric.append((float(total(up, fast)) - float(total(down, fast))) / 2e-2)
    numeric = np.array(numeric)
    error = np.linalg.norm(a.grad[0].numpy() - numeric) / np.linalg.norm(numeric)
    assert error < 0.02, (a.grad, numeric)
    assert np.abs(numeric).max() > 1e-2  # the actions matter
    env.detach()
    assert not env.q.requires_grad


def test_fast_and_differentiable_envs_step_identically():
    fast, diff = make("ant", n=2, seed=1), make("ant", n=2, seed=1, differentiable=True)
    for k in range(5):
        act = random_actions(fast, k)
        with torch.no_grad():
            for x, y in zip(fast.step(act)[:4], diff.step(act)[:4]):
                torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_bad_actions_and_devices_are_clear_errors():
    env = make("cartpole", n=2)
    with pytest.raises(ValueError, match=r"actions must have shape \(2, 1\)"):
        env.step(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="cpu"):
        api.task("dflex/cartpole").make_env(1, 0, device="meta")


@pytest.mark.parametrize("task", ["dflex/cartpole", "dflex/hopper"])
def test_pwm_trains_a_few_epochs_on_a_dflex_task(task, tmp_path):
    from toy_task import SMALL

    from pwmbench.pwm.cell import train_cell
    from pwmbench.pwm.config import resolve_config

    cfg = resolve_config({**SMALL, "horizon": 8, "num_envs": 4, "max_epochs": 8, "eval_every": 4, "eval_episodes": 2,
                          "initial_wm_iterations": 4, "checkpoint_every": 4})  # fmt: skip
    result = train_cell(task, cfg, 42, tmp_path / "cell")
    assert result.status == "ok", result.row.get("reason")
    assert result.row["env_steps"] == 8 * 8 * 4
    assert result.row["final_return"] is not None and math.isfinite(result.row["final_return"])

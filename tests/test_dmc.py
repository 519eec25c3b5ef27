"""DeepMind Control tasks: dims of all 19, TD-MPC2 conventions (action repeat, 500 steps, [-1,1]), seeding."""

import numpy as np
import pwmbench_dmc
import pytest
import torch

from pwmbench import api

NAMES = sorted(pwmbench_dmc.STANDARD_TASKS)  # the 11 custom tasks: test_dmc_custom.py


def test_all_19_standard_mt30_tasks_are_registered():
    names = [n for n in api.get_plugins().tasks.names() if n.startswith("dmc/")]
    assert len(set(pwmbench_dmc.STANDARD_TASKS)) == 19 and set(names) >= {f"dmc/{n}" for n in pwmbench_dmc.TASKS}
    assert list(pwmbench_dmc.TASKS)[:19] == list(pwmbench_dmc.STANDARD_TASKS)  # MT30 order: standard tasks first


@pytest.mark.parametrize("name", NAMES)
def test_dims_match_the_real_environment_and_one_step_works(name):
    task = api.task(f"dmc/{name}")
    env = task.make_env(2, seed=0)
    obs = env.reset()
    assert obs.shape == (2, task.spec.obs_dim) and obs.dtype == torch.float32
    assert env.act_dim == task.spec.act_dim
    obs, rew, term, trunc, info = env.step(torch.zeros(2, env.act_dim))
    assert obs.shape == (2, task.spec.obs_dim) and rew.shape == (2,) and not term.any() and not trunc.any()
    assert torch.equal(info["obs_before_reset"], obs)


def test_action_repeat_two_and_500_agent_steps_then_reset():
    env = api.task("dmc/cartpole-swingup").make_env(2, seed=1)
    env.reset()
    physics = env.envs[0].physics
    dt = env.envs[0].control_timestep()
    for t in range(1, 501):
        obs, rew, term, trunc, info = env.step(torch.zeros(2, 1))
        if t == 1:
            assert physics.data.time == pytest.approx(2 * dt)
        if t < 500:
            assert not trunc.any()
    assert trunc.all() and not term.any()
    assert not torch.equal(obs, info["obs_before_reset"])  # post-reset observation returned, final one in info
    assert physics.data.time == pytest.approx(0.0)


def test_actions_are_clipped_and_rescaled_to_the_spec():
    env = api.task("dmc/cartpole-swingup").make_env(1, seed=1)
    env.reset()
    env.step(torch.tensor([[5.0]]))
    assert env.envs[0].physics.data.ctrl[0] == pytest.approx(1.0)


def run(seed, steps=20, reset_seed=None):
    env = api.task("dmc/walker-walk").make_env(3, seed=seed)
    obs = [env.reset(seed=reset_seed)]
    gen = torch.Generator().manual_seed(0)
    rewards = []
    for _ in range(steps):
        o, r, *_ = env.step(torch.rand(3, 6, generator=gen) * 2 - 1)
        obs.append(o)
        rewards.append(r)
    return torch.stack(obs), torch.stack(rewards)


def test_same_seed_same_rollout_and_copies_differ():
    a, ra = run(42)
    b, rb = run(42)
    c, _ = run(123)
    assert torch.equal(a, b) and torch.equal(ra, rb)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0, 0], a[0, 1])  # each copy has its own seed


def test_reset_with_a_seed_reproduces_initial_states():
    a, _ = run(1, steps=1, reset_seed=7)
    b, _ = run(2, steps=1, reset_seed=7)
    assert torch.equal(a[0], b[0])


def test_mujoco_gives_no_gradients():
    with pytest.raises(ValueError, match="no gradients"):
        api.task("dmc/cartpole-swingup").make_env(1, 0, differentiable=True)


def test_domain_names():
    assert pwmbench_dmc.domain_and_task("cup-catch") == ("ball_in_cup", "catch")
    assert pwmbench_dmc.domain_and_task("cartpole-balance-sparse") == ("cartpole", "balance_sparse")
    assert len(set(pwmbench_dmc.copy_seeds(42, 64))) == 64 and np.all(np.array(pwmbench_dmc.copy_seeds(42, 3)) >= 0)

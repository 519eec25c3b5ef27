"""Meta-World tasks of MT80: all 50 build and step, TD-MPC2 conventions (extra zero step after reset, action repeat 2,
100 agent steps, success), seeding and independence of copies, exact state restore."""

import io
import warnings

import numpy as np
import pwmbench_mw
import pytest
import torch

from pwmbench import api

# multitask.md's MT80 list, ids 30–79, without the "mw-" prefix
MT80_MW = [
    "assembly",
    "basketball",
    "button-press-topdown",
    "button-press-topdown-wall",
    "button-press",
    "button-press-wall",
    "coffee-button",
    "coffee-pull",
    "coffee-push",
    "dial-turn",
    "disassemble",
    "door-open",
    "door-close",
    "drawer-close",
    "drawer-open",
    "faucet-open",
    "faucet-close",
    "hammer",
    "handle-press-side",
    "handle-press",
    "handle-pull-side",
    "handle-pull",
    "lever-pull",
    "peg-insert-side",
    "peg-unplug-side",
    "pick-out-of-hole",
    "pick-place",
    "pick-place-wall",
    "plate-slide",
    "plate-slide-side",
    "plate-slide-back",
    "plate-slide-back-side",
    "push-back",
    "push",
    "push-wall",
    "reach",
    "reach-wall",
    "shelf-place",
    "soccer",
    "stick-push",
    "stick-pull",
    "sweep-into",
    "sweep",
    "window-open",
    "window-close",
    "bin-picking",
    "box-close",
    "door-lock",
    "door-unlock",
    "hand-insert",
]

GOAL = slice(36, 39)  # goal-observable envs end their observation with the goal position


def test_the_50_mt80_tasks_are_registered_in_order_with_their_spec():
    assert pwmbench_mw.TASKS == tuple(MT80_MW) and len(set(MT80_MW)) == 50
    names = [n for n in api.get_plugins().tasks.names() if n.startswith("mw/")]
    assert set(names) == {f"mw/{n}" for n in MT80_MW}
    spec = api.task("mw/push").spec
    assert (spec.obs_dim, spec.act_dim, spec.episode_length, spec.score) == (39, 4, 100, "success")


def test_all_50_tasks_build_and_step_once():
    for name in MT80_MW:
        env = api.task(f"mw/{name}").make_env(1, seed=0)
        obs = env.reset()
        assert obs.shape == (1, 39) and obs.dtype == torch.float32 and env.act_dim == 4, name
        obs, rew, term, trunc, info = env.step(torch.zeros(1, 4))
        assert obs.shape == (1, 39) and rew.shape == (1,) and not term.any() and not trunc.any(), name
        assert torch.isfinite(obs).all() and torch.equal(info["obs_before_reset"], obs), name
        assert info["success"].shape == (1,), name
        env.close()


def test_reset_returns_the_observation_from_before_the_extra_zero_step_and_actions_repeat_twice():
    env = api.task("mw/push").make_env(1, seed=5)
    obs = env.reset()
    raw = pwmbench_mw.load_env("push", pwmbench_mw.copy_seeds(5, 1)[0])  # the same seeded copy, rebuilt
    raw_obs, _ = raw.reset()
    assert torch.equal(obs[0], torch.as_tensor(raw_obs, dtype=torch.float32))
    after_zero, *_ = raw.step(np.zeros(4, dtype=np.float32))
    assert not np.array_equal(after_zero, raw_obs)  # the zero step happened, and its observation was not returned
    assert env.envs[0].curr_path_length == raw.curr_path_length == 1
    assert np.array_equal(env.envs[0].data.qpos, raw.data.qpos)

    action = torch.tensor([[0.3, -0.5, 0.8, -1.0]])
    obs, rew, _, _, info = env.step(action)
    raw_rewards = []
    for _ in range(2):
        raw_obs, r, _, _, raw_info = raw.step(action[0].numpy())
        raw_rewards.append(r)
    assert torch.equal(obs[0], torch.as_tensor(raw_obs, dtype=torch.float32))
    assert rew[0].item() == float(np.float32(sum(raw_rewards)))
    assert info["success"][0].item() == float(raw_info["success"])
    assert env.envs[0].curr_path_length == 3


def test_100_agent_steps_then_truncation_reset_and_a_new_goal():
    env = api.task("mw/reach").make_env(2, seed=1)
    first = env.reset()
    gen = torch.Generator().manual_seed(0)
    for t in range(1, 252):  # past Meta-World's 500 simulator steps, which would raise without the resets
        obs, _, term, trunc, info = env.step(torch.rand(2, 4, generator=gen) * 2 - 1)
        assert not term.any()
        if t % 100:
            assert not trunc.any() and env.envs[1].curr_path_length == 1 + 2 * (t % 100)
        else:
            assert trunc.all() and env.envs[1].curr_path_length == 1  # reset and its zero step
            assert not torch.equal(obs, info["obs_before_reset"])
            assert not torch.equal(obs[:, GOAL], info["obs_before_reset"][:, GOAL])  # goal re-drawn at each reset
            if t == 100:
                assert not torch.equal(obs[:, GOAL], first[:, GOAL])


def test_actions_are_clipped_to_the_unit_box():
    a, b = (api.task("mw/reach").make_env(1, seed=2) for _ in range(2))
    a.reset(), b.reset()
    big = torch.tensor([[5.0, -7.0, 3.0, 9.0]])
    assert torch.equal(a.step(big)[0], b.step(big.clamp(-1, 1))[0])


def test_success_is_reported_per_copy_at_the_end_of_each_step():
    from metaworld.policies import SawyerReachV3Policy

    env = api.task("mw/reach").make_env(3, seed=0)
    obs = env.reset()
    policy = SawyerReachV3Policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the scripted policy warns that its gains saturate
        for _ in range(100):
            action = np.stack([policy.get_action(o.double().numpy()) for o in obs])
            obs, _, _, trunc, info = env.step(torch.as_tensor(action, dtype=torch.float32))
            assert info["success"].shape == (3,) and set(info["success"].tolist()) <= {0.0, 1.0}
    assert trunc.all() and info["success"].all()  # the scripted expert succeeds; reported for the final step


def rollout(name, seed, n=3, steps=8, reset_seed=None):
    """Observations and rewards of n copies under fixed random actions (copy i's actions do not depend on n)."""
    env = api.task(f"mw/{name}").make_env(n, seed=seed)
    obs = [env.reset(seed=reset_seed)]
    gen = torch.Generator().manual_seed(0)
    rewards = []
    for _ in range(steps):
        o, r, *_ = env.step(torch.rand(8, 4, generator=gen)[:n] * 2 - 1)
        obs.append(o)
        rewards.append(r)
    return torch.stack(obs), torch.stack(rewards)


def test_same_seed_same_rollout_whatever_the_global_numpy_rng_and_different_seeds_differ():
    np.random.seed(0)
    a, ra = rollout("push", 42)
    np.random.seed(1)
    before = np.random.get_state()[1].copy()
    b, rb = rollout("push", 42)
    assert np.array_equal(np.random.get_state()[1], before)  # the envs leave the global RNG alone
    c, _ = rollout("push", 123)
    assert torch.equal(a, b) and torch.equal(ra, rb)
    assert not torch.equal(a[0, :, GOAL], c[0, :, GOAL])  # different seeds → different goals
    assert len({tuple(g.tolist()) for g in a[0, :, GOAL]}) == 3  # each copy has its own goal


def test_reset_with_a_seed_reproduces_initial_states():
    a, _ = rollout("pick-place", 1, steps=1, reset_seed=7)
    b, _ = rollout("pick-place", 2, steps=1, reset_seed=7)
    assert torch.equal(a, b)


def test_copies_are_independent():
    three, r3 = rollout("push", 9, n=3)
    two, r2 = rollout("push", 9, n=2)  # the same first two copies with the same actions, no third copy
    assert torch.equal(three[:, :2], two) and torch.equal(r3[:, :2], r2)


# live views into MuJoCo memory (basketball/bin-picking goal, door-lock object), bodies moved at reset
# (peg-insert-side, stick-pull): the cases that a naive save of qpos/qvel misses
@pytest.mark.parametrize("name", ["peg-insert-side", "basketball", "bin-picking", "door-lock", "stick-pull"])
def test_state_restore_continues_bit_identically_across_a_reset(name):
    env = api.task(f"mw/{name}").make_env(2, seed=3)
    env.reset()
    gen = torch.Generator().manual_seed(1)
    actions = [torch.rand(2, 4, generator=gen) * 2 - 1 for _ in range(103)]
    for a in actions[:97]:
        env.step(a)
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)  # as a checkpoint stores it
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    reference = [env.step(a) for a in actions[97:]]
    assert reference[2][3].all()  # the continuation crosses an episode boundary

    fresh = api.task(f"mw/{name}").make_env(2, seed=99)  # another seed: everything must come from the state
    fresh.reset()
    fresh.load_state_dict(state)
    env.load_state_dict(state)  # and the same env can go back
    for restored in (fresh, env):
        for a, ref in zip(actions[97:], reference):
            out = restored.step(a)
            assert all(torch.equal(x, y) for x, y in zip(out[:4], ref[:4]))
            assert all(torch.equal(out[4][k], ref[4][k]) for k in ref[4])


def test_state_of_another_task_is_refused():
    state = api.task("mw/reach").make_env(1, seed=0).state_dict()
    with pytest.raises(ValueError, match="cannot be loaded"):
        api.task("mw/push").make_env(1, seed=0).load_state_dict(state)


def test_mujoco_gives_no_gradients():
    with pytest.raises(ValueError, match="no gradients"):
        api.task("mw/reach").make_env(1, 0, differentiable=True)


def test_a_meta_world_cell_records_its_untrained_and_final_success(tmp_path):
    """Success-scored tasks are checked for learning on their success rate (analysis/learning_check.py): the run row
    carries the epoch-0 evaluation's success as untrained_success and the last evaluation's as final_success."""
    from pwmbench.pwm.cell import train_cell
    from pwmbench.pwm.config import resolve_config

    small = {"world_model": {"units": [32, 32], "encoder_units": [32], "latent_dim": 16}, "horizon": 4, "num_envs": 2, "max_epochs": 2,
             "eval_every": 2, "eval_episodes": 1, "initial_wm_iterations": 2, "wm_batch_size": 8, "diagnostics_windows": 0}  # fmt: skip
    row = train_cell("mw/button-press", resolve_config(small), 42, tmp_path / "c").row
    assert row["score_kind"] == "success"
    assert row["untrained_success"] in (0.0, 1.0) and row["final_success"] in (0.0, 1.0)
    assert row["untrained_return"] is not None and row["final_return"] is not None

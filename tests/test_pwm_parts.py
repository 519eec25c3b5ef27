"""PWM's parts against hand-computed cases: TD(λ), actor, critics, normalisers, config, replay windows."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pwmbench.errors import ConfigError
from pwmbench.pwm.buffer import SequenceBuffer
from pwmbench.pwm.config import KEYS, parse_set, resolve_config
from pwmbench.pwm.networks import Actor, CriticEnsemble
from pwmbench.pwm.normalizers import RunningMeanStd
from pwmbench.pwm.returns import td_lambda_targets


def test_td_lambda_two_step_case_by_hand():
    # G1 = 1 + 0.5·10 = 6, G2 = 1 + 0.5·2 + 0.25·20 = 7, λ-return = 0.5·6 + 0.5·7 = 6.5; last step: 2 + 0.5·20 = 12
    out = td_lambda_targets(torch.tensor([[1.0], [2.0]]), torch.tensor([[10.0], [20.0]]), torch.tensor([[0.0], [0.0]]), 0.5, 0.5)
    torch.testing.assert_close(out, torch.tensor([[6.5], [12.0]]))


@given(h=st.integers(1, 8), seed=st.integers(0, 1000))
def test_td_lambda_limits(h, seed):
    g = torch.Generator().manual_seed(seed)
    r, v = torch.randn(h, 3, generator=g, dtype=torch.float64), torch.randn(h, 3, generator=g, dtype=torch.float64)
    gamma = 0.9
    # λ = 0: one-step targets
    torch.testing.assert_close(td_lambda_targets(r, v, torch.zeros(h, 3), gamma, 0.0), r + gamma * v)
    # every step done: one-step targets whatever λ
    torch.testing.assert_close(td_lambda_targets(r, v, torch.ones(h, 3), gamma, 0.7), r + gamma * v)
    # λ = 1: discounted return to the window's end, bootstrapped there
    mc = torch.stack([sum(gamma ** (j - i) * r[j] for j in range(i, h)) + gamma ** (h - i) * v[-1] for i in range(h)])
    torch.testing.assert_close(td_lambda_targets(r, v, torch.zeros(h, 3), gamma, 1.0), mc)


def test_td_lambda_done_cuts_the_recursion():
    r, v = torch.tensor([[1.0], [5.0], [7.0]]), torch.tensor([[2.0], [3.0], [4.0]])
    out = td_lambda_targets(r, v, torch.tensor([[0.0], [1.0], [0.0]]), 0.9, 0.95)
    assert out[1, 0] == pytest.approx(5.0 + 0.9 * 3.0)  # step 1 is done: bootstrap there, ignore what follows


def test_actor_floor_mean_and_sampling():
    torch.manual_seed(0)
    actor = Actor(8, 3, [16, 16], init_logstd=-1.0, min_logstd=-1.427)
    z = torch.randn(5, 8)
    with torch.no_grad():
        actor.logstd.fill_(-5.0)
    actor(z)
    assert torch.allclose(actor.logstd, torch.full((3,), -1.427))
    torch.testing.assert_close(actor(z, deterministic=True), actor.mu(z))
    a = actor.act(z)
    assert a.abs().max() <= 1 and not torch.equal(a, actor.act(z))
    loss = actor.act(z).sum()
    loss.backward()
    assert actor.logstd.grad is not None and actor.mu[0].weight.grad is not None


def test_actor_layers_are_linear_mish_layernorm():
    actor = Actor(8, 3, [400, 200, 100], -1.0, -1.427)
    kinds = [type(m).__name__ for m in actor.mu]
    assert kinds == ["Linear", "Mish", "LayerNorm"] * 3 + ["Linear"]


def test_critic_ensemble_min_and_independent_members():
    torch.manual_seed(0)
    critics = CriticEnsemble(8, [16], 3)
    z = torch.randn(6, 8)
    values = critics(z)
    assert values.shape == (3, 6) and not torch.equal(values[0], values[1])
    torch.testing.assert_close(critics.min(z), values.min(0).values)


@given(st.lists(st.lists(st.floats(-100, 100), min_size=1, max_size=20), min_size=1, max_size=6))
def test_running_mean_std_matches_numpy(batches):
    rms = RunningMeanStd(epsilon=1e-12)  # PWM's prior (count 1e-4 at mean 0, var 1) would show at this precision
    for b in batches:
        rms.update(torch.tensor(b))
    everything = np.concatenate(batches)
    assert float(rms.mean) == pytest.approx(everything.mean(), rel=1e-6, abs=1e-6)
    assert float(rms.var) == pytest.approx(everything.var(), rel=1e-4, abs=1e-6)


def test_config_defaults_are_pwms_and_errors_name_the_key():
    cfg = resolve_config()
    assert (cfg.horizon, cfg.gamma, cfg.lam, cfg.actor_lr, cfg.critic_lr, cfg.model_lr) == (16, 0.99, 0.95, 5e-4, 5e-4, 3e-4)
    assert (cfg.critic_iterations, cfg.critic_batches, cfg.wm_iterations, cfg.wm_batch_size, cfg.wm_grad_norm) == (8, 4, 8, 256, 20.0)
    assert (cfg.actor_grad_norm, cfg.critic_grad_norm, cfg.num_critics, cfg.betas, cfg.max_epochs) == (1.0, 100.0, 3, (0.7, 0.95), 15000)
    assert cfg.rew_rms is True and resolve_config({"preset": "pwm_48M"}).rew_rms is False
    with pytest.raises(ConfigError, match="did you mean 'wm_iterations'"):
        resolve_config({"wm_iteration": 16})
    with pytest.raises(ConfigError, match="did you mean 'horizon'"):
        parse_set(["horizn=4"])
    with pytest.raises(ConfigError, match="expects int"):
        resolve_config({"horizon": 2.5})
    with pytest.raises(ConfigError, match="did you mean 'latent_dim'"):
        resolve_config({"world_model": {"latent": 64}})
    assert parse_set(["betas=[0.9,0.99]", "lr_schedule=constant", "num_envs=none"]) == {"betas": [0.9, 0.99], "lr_schedule": "constant", "num_envs": None}
    assert {"horizon", "num_envs", "wm_iterations", "wm_batch_size", "model_lr", "actor_lr", "critic_lr", "lam", "gamma", "max_epochs", "wm_grad_norm", "initial_wm_iterations"} <= set(KEYS)


@given(seed=st.integers(0, 10_000), horizon=st.integers(1, 5))
def test_replay_windows_never_cross_an_episode(seed, horizon):
    g = np.random.default_rng(seed)
    buf = SequenceBuffer(num_envs=3, capacity=150, obs_dim=2, act_dim=1)
    episode = np.zeros(3, dtype=int)
    step = np.zeros(3, dtype=int)
    buf.start(torch.tensor(np.stack([episode, step], 1), dtype=torch.float32))
    for _ in range(80):
        done = g.random(3) < 0.15
        step += 1
        final = torch.tensor(np.stack([episode, step], 1), dtype=torch.float32)
        episode = np.where(done, episode + 10, episode)
        step = np.where(done, 0, step)
        reset = torch.tensor(np.stack([episode, step], 1), dtype=torch.float32)
        buf.add(final, final[:, 1:] * 1.0, final[:, 1] * 2.0, torch.tensor(done), reset)
    try:
        obs, act, rew = buf.sample(32, horizon)
    except RuntimeError:
        return  # no episode long enough yet: a clear error, not a wrong window
    assert (obs[:, :, 0] == obs[:1, :, 0]).all()  # one episode per window
    assert (obs[1:, :, 1] - obs[:-1, :, 1] == 1).all()  # consecutive steps
    torch.testing.assert_close(act[..., 0], obs[1:, :, 1])  # the action stored with the step it led to
    torch.testing.assert_close(rew, 2 * obs[1:, :, 1])


def test_gradient_snr_hand_worked():
    from pwmbench.pwm.esnr import gradient_snr

    w = torch.nn.Parameter(torch.tensor([0.5, -0.5]))
    per_env = torch.stack([w @ torch.tensor([1.0, 0.0]), w @ torch.tensor([3.0, 0.0])])  # micro-batch grads [1,0] and [3,0]
    out = gradient_snr(per_env, [w], groups=2)
    assert out["esnr_global"] == pytest.approx(4.0)  # ‖[2,0]‖² / ((1 + 9)/2 − 4)
    assert out["esnr_pwm"] == pytest.approx(2.0)  # mean of 2²/1 and 0²/(0+ε)
    assert w.grad is None  # measuring does not touch the training gradient

"""The world-model shell: exact parameter counts, the rollout loss, multitask pieces, and that it learns."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pwmbench import api
from pwmbench.nn import PRESETS


def test_pwm_preset_on_ant_has_exactly_pwms_parameter_count():
    wm = api.build_world_model("pwm", obs_dim=37, act_dim=8, dynamics="mlp")
    assert api.count_parameters(wm) == 1_469_953
    assert wm.component_parameters() == {"encoder": 142_848, "dynamics": 795_136, "reward": 531_969, "task_embedding": 0}


def test_pwm_48m_on_mt30_is_19m():
    wm = api.build_world_model("pwm_48M", obs_dim=24, act_dim=6, n_tasks=30, task_dim=64, device="meta")
    assert round(api.count_parameters(wm) / 1e6, 2) == 18.98


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_flow_differs_from_mlp_by_exactly_the_time_input(preset):
    kw = dict(obs_dim=24, act_dim=6, n_tasks=30, task_dim=64, device="meta")
    mlp = api.build_world_model(preset, dynamics="mlp", **kw)
    flow = api.build_world_model(preset, dynamics="flow", **kw)
    assert api.count_parameters(flow) - api.count_parameters(mlp) == PRESETS[preset].units[0]


@given(
    obs=st.integers(1, 80),
    act=st.integers(1, 21),
    units=st.lists(st.integers(8, 96), min_size=1, max_size=3),
    latent_groups=st.integers(1, 8),
    task_dim=st.sampled_from([0, 16]),
)
def test_flow_minus_mlp_is_units0_for_any_shape(obs, act, units, latent_groups, task_dim):
    kw = dict(obs_dim=obs, act_dim=act, n_tasks=4 if task_dim else 1, task_dim=task_dim, device="meta", units=units, latent_dim=8 * latent_groups)
    diff = api.count_parameters(api.build_world_model("pwm", dynamics="flow", **kw)) - api.count_parameters(api.build_world_model("pwm", dynamics="mlp", **kw))
    assert diff == units[0]


def test_unknown_preset_and_override_are_named():
    with pytest.raises(api.ConfigError, match="did you mean 'pwm_48M'"):
        api.build_world_model("pwm_48m", obs_dim=3, act_dim=1)
    with pytest.raises(api.ConfigError, match="did you mean 'latent_dim'"):
        api.build_world_model("pwm", obs_dim=3, act_dim=1, latent_dims=64)
    with pytest.raises(api.ConfigError, match="did you mean 'substeps'"):
        api.build_world_model("pwm", obs_dim=3, act_dim=1, dynamics="flow", dynamics_options={"substep": 4})


def _batch(obs_dim=11, act_dim=3, horizon=4, batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(horizon + 1, batch, obs_dim, generator=g),
        torch.rand(horizon, batch, act_dim, generator=g) * 2 - 1,
        torch.randn(horizon, batch, generator=g),
    )


def small(dynamics, **kw):
    torch.manual_seed(0)
    return api.build_world_model("pwm", obs_dim=11, act_dim=3, dynamics=dynamics, units=[64, 64], encoder_units=[32], latent_dim=32, **kw)


def test_mlp_rollout_loss_is_pwms_formula():
    """PWM: dynamics = Σ_t ρ^t·MSE_t; reward = mean over (t, b) of ρ^t·(r̂ − r)² (a mean over steps, not a sum);
    wm_loss = (dynamics + reward) / H; logged dynamics_loss and reward_loss are each divided by H."""
    wm = small("mlp")
    obs, act, rew = _batch()
    rho, H = 0.9, 4
    out = wm.loss(obs, act, rew, rho=rho)
    with torch.no_grad():
        z = wm.encode(obs[0])
        dyn, sq_errors = 0.0, []
        for t in range(H):
            sq_errors.append((wm.predict_reward(z, act[t]) - rew[t]) ** 2)
            z = wm.next(z, act[t])
            dyn += rho**t * ((z - wm.encode(obs[t + 1])) ** 2).mean()
        weights = torch.tensor([rho**t for t in range(H)])[:, None]
        rew_pwm = (weights * torch.stack(sq_errors)).mean()  # PWM's reward_loss: mean over [H, B]
    torch.testing.assert_close(out.wm_loss.detach(), (dyn + rew_pwm) / H)
    torch.testing.assert_close(out.dynamics_loss.detach(), torch.as_tensor(dyn) / H)
    torch.testing.assert_close(out.reward_loss.detach(), rew_pwm / H)
    # the two logged terms add up to wm_loss; dynamics : reward weight is H : 1, as in PWM
    torch.testing.assert_close(out.wm_loss.detach(), out.dynamics_loss.detach() + out.reward_loss.detach())


def test_loss_coefficients_weight_the_terms_and_latents_are_the_rollout():
    wm = small("mlp")
    obs, act, rew = _batch()
    base = wm.loss(obs, act, rew, rho=0.5)
    weighted = wm.loss(obs, act, rew, rho=0.5, dynamics_coef=20.0, reward_coef=0.1)
    torch.testing.assert_close(weighted.dynamics_loss.detach(), 20 * base.dynamics_loss.detach())
    torch.testing.assert_close(weighted.reward_loss.detach(), 0.1 * 4 * base.reward_loss.detach())
    assert weighted.latents.shape == (5, obs.shape[1], 32)
    with torch.no_grad():
        torch.testing.assert_close(weighted.latents[2], wm.next(wm.next(wm.encode(obs[0]), act[0]), act[1]))


def test_targets_carry_no_gradient_to_the_encoder_but_z0_does():
    wm = small("mlp")
    obs, act, rew = _batch()
    obs = obs.clone().requires_grad_(True)
    wm.loss(obs, act, rew).dynamics_loss.backward()
    assert obs.grad[0].abs().sum() > 0
    assert obs.grad[1:].abs().sum() == 0


@pytest.mark.parametrize("dynamics,options", [("mlp", {}), ("flow", {}), ("flow", {"x0": "teacher"}), ("flow", {"integrator": "euler", "substeps": 1})])
def test_both_models_learn_a_fixed_batch(dynamics, options):
    wm = small(dynamics, dynamics_options=options)
    obs, act, rew = _batch(batch=32)
    opt = torch.optim.Adam(wm.parameters(), lr=3e-4)
    losses = []
    for _ in range(60):
        torch.manual_seed(1)  # same τ draws each step: the loss is then a fixed function of the weights
        loss = wm.loss(obs, act, rew).wm_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wm.parameters(), 20.0)
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_multitask_embedding_max_norm_and_action_masks():
    torch.manual_seed(0)
    wm = api.build_world_model("pwm", obs_dim=6, act_dim=4, n_tasks=3, task_dim=8, action_dims=[4, 2, 1], units=[32], encoder_units=[16], latent_dim=16)
    task = torch.tensor([0, 1, 2])
    with torch.no_grad():
        wm.task_embedding.weight.mul_(100)
    assert (wm.embed(task).norm(dim=-1) <= 1 + 1e-5).all()
    a = torch.randn(3, 4, requires_grad=True)
    z = wm.encode(torch.randn(3, 6), task)
    # a weighted sum: a plain sum of SimNorm's output is constant (each group sums to 1), so its gradient is 0 up to
    # rounding — exactly 0 on some CPUs' summation order, which made this test depend on the machine
    weights = torch.linspace(-1.0, 1.0, z.shape[-1])
    (wm.next(z, a, task) * weights).sum().backward()
    assert (a.grad[1, 2:] == 0).all() and (a.grad[2, 1:] == 0).all() and (a.grad[0] != 0).all()
    obs, act, rew = torch.randn(3, 3, 6), torch.randn(2, 3, 4), torch.randn(2, 3)
    assert torch.isfinite(wm.loss(obs, act, rew, task).wm_loss)


def test_multitask_needs_task_ids_and_a_task_dim():
    with pytest.raises(api.ConfigError, match="task_dim"):
        api.build_world_model("pwm", obs_dim=6, act_dim=4, n_tasks=3)
    wm = api.build_world_model("pwm", obs_dim=6, act_dim=4, n_tasks=3, task_dim=8, units=[16], encoder_units=[16], latent_dim=16)
    with pytest.raises(ValueError, match="task ids"):
        wm.encode(torch.randn(2, 6))


def test_two_hot_world_model_trains_reward_with_cross_entropy():
    torch.manual_seed(0)
    wm = api.build_world_model("pwm_5M", obs_dim=5, act_dim=2, units=[32], encoder_units=[16], latent_dim=16)
    obs, act, rew = torch.randn(3, 16, 5), torch.rand(2, 16, 2), torch.full((2, 16), 2.5)
    first = wm.loss(obs, act, rew).reward_loss.item()
    opt = torch.optim.Adam(wm.parameters(), lr=3e-3)
    for _ in range(100):
        opt.zero_grad()
        wm.loss(obs, act, rew).wm_loss.backward()
        opt.step()
    z = wm.encode(obs[0])
    assert wm.loss(obs, act, rew).reward_loss.item() < 0.5 * first
    assert (wm.predict_reward(z, act[0]) - 2.5).abs().max() < 0.3


def test_step_returns_next_latent_and_reward():
    wm = small("flow")
    z = wm.encode(torch.randn(5, 11))
    nxt, r = wm.step(z, torch.zeros(5, 3))
    assert nxt.shape == (5, 32) and r.shape == (5,)
    assert wm.dynamics.evals_per_next == 4 and wm.dynamics.evals_per_train_step == 5

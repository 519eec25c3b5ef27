"""W12: where PWM's code does something the paper does not say, pwmbench follows the code by default and pins it here
with hand-computed values — the actor's two-hot reward decode (D1), multitask start states (D5), the multitask
value_loss that is logged (D7). docs/fidelity.md has a row for each."""

import math

import pytest
import torch
from torch import nn

from pwmbench import api
from pwmbench.nn.reward import symexp
from pwmbench.pwm.config import resolve_config
from pwmbench.pwm.critic import update_critic

TINY = {"preset": "pwm_5M", "world_model": {"units": [32, 32], "encoder_units": [32], "latent_dim": 16}, "horizon": 3}


def test_actor_reward_decode_is_pwms_code_by_default_and_symexp_one_key_away():
    assert resolve_config({}).actor_reward_decode == "pwm-code"
    with pytest.raises(Exception, match="actor_reward_decode must be one of 'pwm-code', 'symexp'"):
        resolve_config({"actor_reward_decode": "softmax"})
    torch.manual_seed(0)
    wm = api.build_world_model("pwm_5M", obs_dim=5, act_dim=2, units=[16], encoder_units=[16], latent_dim=16)
    z, a = wm.encode(torch.randn(4, 5)), torch.rand(4, 2) * 2 - 1
    logits = wm.reward_out(z, a)
    bins = torch.linspace(wm.reward.vmin, wm.reward.vmax, wm.reward.num_bins)
    by_hand = (torch.softmax(logits, -1) * bins).sum(-1)  # PWM's almost_two_hot_inv: no symexp
    _, r_code = wm.step(z, a, reward_decode="pwm-code")
    _, r_symexp = wm.step(z, a, reward_decode="symexp")
    assert torch.allclose(r_code, by_hand, atol=1e-6) and torch.allclose(r_symexp, symexp(by_hand), atol=1e-6)
    assert torch.equal(wm.step(z, a)[1], r_symexp)  # the plain decode stays the reward (diagnostics, probes' truth)
    with pytest.raises(ValueError, match="reward_decode"):
        wm.step(z, a, reward_decode="raw")
    scalar = api.build_world_model("pwm", obs_dim=5, act_dim=2, units=[16], encoder_units=[16], latent_dim=16)
    zs = scalar.encode(torch.randn(4, 5))
    assert torch.equal(scalar.step(zs, a, reward_decode="pwm-code")[1], scalar.step(zs, a, reward_decode="symexp")[1])


def _critic_by_hand(w0: float, z: torch.Tensor, target: torch.Tensor, lr: float, passes: int) -> list[float]:
    """The per-pass loss of a one-weight critic v(z) = w·z under plain SGD, one batch per pass."""
    w, out = w0, []
    for _ in range(passes):
        residual = w * z - target
        out.append(float((residual**2).mean()))
        w -= lr * float((2 * residual * z).mean())
    return out


@pytest.mark.parametrize("over", ["last", "all"])
def test_value_loss_is_the_last_pass_single_task_and_the_mean_of_all_passes_multitask(over):
    class OneWeight(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor(0.5))

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.w * z.squeeze(-1)

    critic = OneWeight()
    opt = torch.optim.SGD(critic.parameters(), lr=0.1)
    latents = torch.tensor([[[1.0], [2.0]], [[0.5], [-1.0]]])  # [H=2, B=2, 1]
    rewards, next_values, dones = torch.tensor([[1.0, 0.0], [0.5, 1.0]]), torch.zeros(2, 2), torch.ones(2, 2)
    metrics = update_critic(critic, opt, latents, rewards, next_values, dones, gamma=0.9, lam=0.95,
                            iterations=3, batches=1, grad_norm=1e9, check=lambda *a: None, value_loss_over=over)  # fmt: skip
    # dones = 1 everywhere: the targets are the rewards themselves (one-step, no bootstrap)
    losses = _critic_by_hand(0.5, latents.reshape(-1), rewards.reshape(-1), 0.1, 3)
    expected = losses[-1] if over == "last" else sum(losses) / 3
    assert metrics["value_loss"] == pytest.approx(expected, rel=1e-6)
    assert not math.isclose(losses[-1], sum(losses) / 3)  # the two reports differ here: the test tells them apart


@pytest.mark.slow
def test_multitask_policy_uses_pwms_start_states_decode_and_value_loss(tmp_path, monkeypatch):
    from pwmbench.data.collect import collect
    from pwmbench.data.dataset import OfflineDataset
    from pwmbench.pwm import critic as critic_module
    from pwmbench.pwm import multitask
    from pwmbench.pwm.multitask import OfflineWorldModel, TaskPolicy

    collect("mt30", 1, tmp_path, task_ids=[29], num_envs=1, seed=3)
    data = OfflineDataset(tmp_path)
    cfg = resolve_config({**TINY, "policy_batch_size": 64, "critic_iterations": 2, "eval_every": 0, "offline_wm_iterations": 1})
    mt30 = api.task("mt30")
    owm = OfflineWorldModel(mt30, data, cfg, 1)
    policy = TaskPolicy(mt30, 29, owm.wm, data, cfg, 1)
    seen = {}
    step, starts, update = owm.wm.step, data.start_states, critic_module.update_critic
    monkeypatch.setattr(owm.wm, "step", lambda *a, **kw: (seen.setdefault("decode", kw.get("reward_decode")), step(*a, **kw))[1])
    monkeypatch.setattr(data, "start_states", lambda *a, **kw: (seen.setdefault("horizon", kw.get("horizon")), starts(*a, **kw))[1])
    monkeypatch.setattr(multitask, "update_critic", lambda *a, **kw: (seen.setdefault("over", kw.get("value_loss_over")), update(*a, **kw))[1])
    policy.train_iteration()
    assert seen == {"decode": "pwm-code", "horizon": 3, "over": "all"}
    # start states are obs[0] of (H+1)-entry windows: the same draw as a world-model window's first entry
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(starts(256, 29, g1, horizon=3), data.sample(256, 3, g2, task=29, track=False).obs[:, 0])
    # ... so no start state is one of an episode's last H entries (the dataset's episodes are one full length here)
    episode = next(data.episode_blocks())[0][0]  # [L, D]
    tail = episode[-3:]
    assert not any(torch.equal(s, t) for s in starts(512, 29, torch.Generator().manual_seed(9), horizon=3) for t in tail)


@pytest.mark.slow
def test_the_policy_priors_gradient_never_reaches_the_next_world_model_step(tmp_path):
    """D2: TD-MPC2 zeroes the world model's gradients after its step, so the policy prior's gradient on the task
    embedding (pi_loss.backward()) is added into the next world-model step; pwmbench zeroes them before each step."""
    from pwmbench.data.collect import collect
    from pwmbench.data.dataset import OfflineDataset
    from pwmbench.pwm.multitask import OfflineWorldModel

    collect("mt30", 1, tmp_path, task_ids=[8, 29], num_envs=1, seed=3)
    data = OfflineDataset(tmp_path)
    cfg = resolve_config({**TINY, "wm_batch_size": 16})
    straight, cleared = (OfflineWorldModel(api.task("mt30"), data, cfg, 4) for _ in range(2))
    torch.manual_seed(0)
    straight.train(2)
    torch.manual_seed(0)
    cleared.train(1)
    embedding = cleared.wm.task_embedding.weight
    assert embedding.grad is not None and embedding.grad.abs().sum() > 0  # gradients stay on it after a step (the prior's last) ...
    for p in cleared.wm.parameters():
        p.grad = None
    cleared.train(1)  # ... and clearing it by hand changes nothing: the next step never used it
    for (name, a), b in zip(straight.wm.state_dict().items(), cleared.wm.state_dict().values()):
        assert torch.equal(a, b), name

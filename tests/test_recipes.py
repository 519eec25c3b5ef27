"""World-model recipes for task sets (pwm/recipes.py) and the offline critic targets (pwm/multitask.py).

TD-MPC2's recipe: its coefficients on the shell's terms and its value term, by hand; the same optimiser groups
(encoder at 0.3× lr, measured by Adam's first step) and auxiliary modules for every dynamics variant, outside
the world model's parameter count; exact resume; per-task discounts; the fairness audit showing the recipe. The
critic targets "pwm-code" (one-step) and "td-lambda" on a 3-step case by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from pwmbench import api
from pwmbench.data.chunks import write_chunk
from pwmbench.data.dataset import OfflineDataset
from pwmbench.nn.reward import symlog, two_hot
from pwmbench.nn.world_model import build_world_model, count_parameters
from pwmbench.pwm.config import resolve_config
from pwmbench.pwm.multitask import OfflineWorldModel, TaskPolicy, critic_dones
from pwmbench.pwm.recipes import TDMPC2, RecipeTrainer, recipe_summary, resolve_recipe, task_discounts, value_loss
from pwmbench.pwm.returns import td_lambda_targets

TINY_WM = {"units": [32, 32], "encoder_units": [32], "latent_dim": 16}
TINY = {"world_model": TINY_WM, "preset": "pwm_5M", "actor_units": [16], "critic_units": [16], "horizon": 4,
        "wm_batch_size": 8, "policy_batch_size": 8, "critic_iterations": 1, "eval_every": 0, "diagnostics_windows": 0}  # fmt: skip
FLOW = {"dynamics": "flow", "dynamics_options": {"integrator": "heun", "substeps": 2}}


def tiny_wm(dynamics: str = "mlp", seed: int = 0, **options):
    torch.manual_seed(seed)
    return build_world_model("pwm_5M", obs_dim=5, act_dim=3, dynamics=dynamics, dynamics_options=options, n_tasks=3,
                             task_dim=4, action_dims=[3, 2, 1], **TINY_WM)  # fmt: skip


def batch(h: int = 3, b: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(h + 1, b, 5, generator=g), torch.rand(h, b, 3, generator=g) * 2 - 1,
            torch.randn(h, b, generator=g), torch.randint(3, (b,), generator=g))  # fmt: skip


def no_check(name, value):
    assert math.isfinite(float(value.detach()) if isinstance(value, torch.Tensor) else float(value)), name


@pytest.fixture(scope="module")
def mt30_synthetic(tmp_path_factory):
    """4 short episodes of MT30 tasks 8 and 29 in TD-MPC2's format (entry 0: NaN action and reward)."""
    out = tmp_path_factory.mktemp("mt30syn")
    g = torch.Generator().manual_seed(0)
    n, length = 4, 12
    obs = torch.randn(n, length, 24, generator=g)
    action = torch.zeros(n, length, 6)
    action[..., 0] = torch.rand(n, length, generator=g) * 2 - 1  # both tasks have one action dim
    reward = torch.rand(n, length, generator=g)
    action[:, 0], reward[:, 0] = float("nan"), float("nan")
    task = torch.tensor([8, 8, 29, 29]).unsqueeze(1).expand(n, length)
    write_chunk(out / "chunk_0.pt", obs, action, reward, task)
    return OfflineDataset(out)


# ------------------------------------------------------------------------------------------------ recipe facts
def test_recipes_resolve_and_tdmpc2_is_the_default():
    assert resolve_recipe(resolve_config({})) is TDMPC2
    r = TDMPC2
    assert (r.horizon, r.rho, r.lr, r.enc_lr_scale, r.grad_clip_norm) == (3, 0.5, 3e-4, 0.3, 20.0)
    assert (r.dynamics_coef, r.reward_coef, r.value_coef, r.num_q, r.q_dropout, r.tau, r.entropy_coef) == (20.0, 0.1, 0.1, 5, 0.01, 0.01, 1e-4)
    single = resolve_recipe(resolve_config({"wm_recipe": "pwm-single", "wm_rho": 0.9, "model_lr": 1e-3, "horizon": 8}))
    assert (single.horizon, single.rho, single.lr, single.enc_lr_scale, single.reward_coef, single.auxiliary) == (8, 0.9, 1e-3, 1.0, None, False)
    assert "value ×0.1 (5 Q heads" in recipe_summary(TDMPC2.to_dict()) and "reward ×1/H" in recipe_summary(single.to_dict())


def test_per_task_discount_from_episode_length():
    # DMC 500 agent steps → 0.99, Meta-World 100 → 0.95; clipped to [0.95, 0.995]
    assert task_discounts([500, 100, 1000, 10]).tolist() == pytest.approx([0.99, 0.95, 0.995, 0.95])


def test_value_loss_by_hand():
    logits = torch.tensor([[[[0.0, 1.0, 2.0]], [[1.0, 0.0, 0.0]]], [[[0.5, 0.5, 0.0]], [[0.0, 0.0, 3.0]]]])  # [K=2, H=2, B=1, 3]
    targets = torch.tensor([[math.expm1(0.5)], [-1.0]])  # symlog → 0.5 and −log 2
    expected = 0.0
    for k in range(2):
        for t in range(2):
            tgt = two_hot(symlog(targets[t]), 3, -1.0, 1.0)[0]
            ce = -(tgt * torch.log_softmax(logits[k, t, 0], -1)).sum()
            expected += 0.5**t * float(ce)
    assert float(value_loss(logits, targets, 0.5, -1.0, 1.0)) == pytest.approx(expected / (2 * 2))


def test_tdmpc2_loss_is_its_weighted_sum_on_a_hand_batch():
    wm = tiny_wm()
    trainer = RecipeTrainer(wm, TDMPC2, discounts=task_discounts([500, 100, 500]))
    obs, act, rew, task = batch()
    total, terms, extra = trainer.losses(obs, act, rew, task)
    raw = wm.loss(obs, act, rew, task=task, rho=0.5, dynamics_coef=1.0, reward_coef=1.0)  # D/H and R/H
    terms, raw = terms.detached(), raw.detached()
    assert terms["dynamics_loss"] == pytest.approx(20 * raw["dynamics_loss"], rel=1e-5)
    assert terms["reward_loss"] == pytest.approx(0.1 * raw["reward_loss"], rel=1e-5)
    # fresh Q heads and target Qs predict 0 (last weights zero): y = r, every head's CE = log(101)
    assert float(extra["value_loss"].detach()) == pytest.approx(0.1 * math.log(101) * (1 + 0.5 + 0.25) / 3, rel=1e-5)
    assert float(total.detach()) == pytest.approx(terms["dynamics_loss"] + terms["reward_loss"] + float(extra["value_loss"].detach()), rel=1e-6)


def test_td_targets_use_the_task_discount_and_the_target_heads():
    wm = tiny_wm()
    trainer = RecipeTrainer(wm, TDMPC2, discounts=torch.tensor([0.9, 0.5, 0.99]))
    value = 2.0  # every target head predicts exactly 2 (logits = log two-hot(symlog 2))
    logits = torch.log(two_hot(symlog(torch.tensor(value)), 101, -10.0, 10.0))
    for head in trainer.target_q.heads:
        head[-1].bias.data.copy_(logits)
    obs, _, rew, task = batch()
    y = trainer.td_targets(obs[1:], rew, task)
    gamma = torch.tensor([0.9, 0.5, 0.99])[task]
    assert torch.allclose(y, rew + gamma * value, atol=1e-5)


# ------------------------------------------------------------------------------------- fairness across variants
def test_every_variant_gets_the_same_recipe_groups_and_auxiliary_modules():
    trainers = [RecipeTrainer(wm, TDMPC2, discounts=task_discounts([500] * 3), aux_seed=7)
                for wm in (tiny_wm("mlp"), tiny_wm("flow", integrator="heun", substeps=2))]  # fmt: skip
    groups = [[(g["name"], g["lr"]) for g in t.opt.param_groups] for t in trainers]
    assert groups[0] == groups[1] == [("encoder", 3e-4 * 0.3), ("dynamics", 3e-4), ("reward", 3e-4), ("q", 3e-4), ("task_embedding", 3e-4)]
    for a, b in zip(trainers[0].q.state_dict().values(), trainers[1].q.state_dict().values()):
        assert torch.equal(a, b)  # the same init for every variant
    for a, b in zip(trainers[0].pi.state_dict().values(), trainers[1].pi.state_dict().values()):
        assert torch.equal(a, b)
    t = trainers[0]
    assert len(t.q.heads) == 5 and t.q.heads[0][0].dropout.p == 0.01 and t.q.heads[0][1].dropout is None
    assert all(not h[-1].weight.detach().any() for h in t.q.heads)
    # the auxiliary modules are not the world model's: its parameter count (parity) is the recipe-free one
    wm_ids = {id(p) for p in t.wm.parameters()}
    assert not wm_ids & {id(p) for p in [*t.q.parameters(), *t.pi.parameters(), *t.target_q.parameters()]}
    assert count_parameters(t.wm) == count_parameters(tiny_wm("mlp"))


def test_the_encoder_learns_at_a_third_of_the_rate():
    """Adam's first step moves every parameter with a gradient by ≈ its group's lr: measure it."""
    wm = tiny_wm()
    trainer = RecipeTrainer(wm, TDMPC2, discounts=task_discounts([500] * 3))
    before = {n: p.detach().clone() for n, p in wm.named_parameters()}
    trainer.step(*batch(), no_check)
    moved = {part: max(float((p.detach() - before[n]).abs().max()) for n, p in wm.named_parameters() if n.startswith(part))
             for part in ("encoder", "dynamics", "reward")}  # fmt: skip
    assert moved["encoder"] == pytest.approx(0.3 * 3e-4, rel=0.02)
    assert moved["dynamics"] == pytest.approx(3e-4, rel=0.02) and moved["reward"] == pytest.approx(3e-4, rel=0.02)


# ---------------------------------------------------------------------------------------- the offline world model
@pytest.mark.parametrize("recipe", ["tdmpc2", "pwm-single"])
def test_offline_world_model_resumes_exactly(recipe, mt30_synthetic, tmp_path):
    from pwmbench.pwm.checkpoint import load_checkpoint, save_checkpoint

    mt30 = api.task("mt30")
    cfg = resolve_config({**TINY, **FLOW, "wm_recipe": recipe})  # flow draws noise from torch's global RNG
    straight = OfflineWorldModel(mt30, mt30_synthetic, cfg, 3)
    straight.train(2, log_every=2)
    save_checkpoint(straight.state_dict(), tmp_path / "wm.pt")  # as the cell does
    rows = straight.train(2, log_every=2)
    resumed = OfflineWorldModel(mt30, mt30_synthetic, cfg, 3)
    torch.manual_seed(99)  # a fresh process: the global RNG elsewhere
    resumed.load_state_dict(load_checkpoint(tmp_path / "wm.pt"))
    again = resumed.train(2, log_every=2)
    assert [r["wm_loss"] for r in rows] == [r["wm_loss"] for r in again]
    for a, b in zip(straight.state_dict()["wm"].values(), resumed.state_dict()["wm"].values()):
        assert torch.equal(a, b)
    if recipe == "tdmpc2":
        expected = {"wm_loss", "dynamics_loss", "reward_loss", "value_loss", "pi_loss", "pi_scale", "wm_grad_norm", "pi_grad_norm"}
        assert expected <= set(rows[0]) and straight.rew_rms is None
        for key in ("q", "target_q", "pi"):
            for a, b in zip(straight.trainer.state_dict()[key].values(), resumed.trainer.state_dict()[key].values()):
                assert torch.equal(a, b)
        assert rows[0]["wm_loss"] == pytest.approx(rows[0]["dynamics_loss"] + rows[0]["reward_loss"] + rows[0]["value_loss"], rel=1e-5)
        assert straight.trainer.discounts.tolist()[8] == pytest.approx(0.99)  # cartpole-balance: 500 steps
    else:
        assert "value_loss" not in rows[0] and straight.trainer.q is None


def test_a_checkpoint_of_another_recipe_is_refused(mt30_synthetic):
    from pwmbench.errors import ConfigError

    mt30 = api.task("mt30")
    owm = OfflineWorldModel(mt30, mt30_synthetic, resolve_config({**TINY, "wm_recipe": "pwm-single"}), 0)
    other = OfflineWorldModel(mt30, mt30_synthetic, resolve_config(TINY), 0)
    with pytest.raises(ConfigError, match="recipe 'pwm-single'"):
        other.load_state_dict(owm.state_dict())


# --------------------------------------------------------------------------------------------- critic targets
def test_critic_targets_by_hand_on_three_steps():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    next_values = torch.tensor([[10.0], [20.0], [30.0]])
    gamma, lam = 0.5, 0.5
    one_step = td_lambda_targets(rewards, next_values, critic_dones("pwm-code", 3, 1, torch.device("cpu")), gamma, lam)
    assert one_step.squeeze(1).tolist() == pytest.approx([1 + 0.5 * 10, 2 + 0.5 * 20, 3 + 0.5 * 30])
    # TD(λ): G_2 = r_2 + γv_2 = 18; G_1 = r_1 + γ((1−λ)v_1 + λG_2) = 11.5; G_0 = 1 + 0.5·(5 + 5.75) = 6.375
    lam_targets = td_lambda_targets(rewards, next_values, critic_dones("td-lambda", 3, 1, torch.device("cpu")), gamma, lam)
    assert lam_targets.squeeze(1).tolist() == pytest.approx([6.375, 11.5, 18.0])


@pytest.mark.parametrize("targets,expected", [("pwm-code", 1.0), ("td-lambda", 0.0)])
def test_task_policy_uses_the_configured_critic_targets(targets, expected, mt30_synthetic, monkeypatch):
    import pwmbench.pwm.multitask as multitask

    seen = {}

    def spy(*args, **kwargs):
        seen["dones"] = args[5]
        return {"value_loss": 0.0, "critic_grad_norm": 0.0}

    monkeypatch.setattr(multitask, "update_critic", spy)
    cfg = resolve_config({**TINY, "critic_targets": targets})
    wm = OfflineWorldModel(api.task("mt30"), mt30_synthetic, cfg, 0).wm
    TaskPolicy(api.task("mt30"), 29, wm, mt30_synthetic, cfg, 0).train_iteration()
    dones = seen["dones"]
    assert dones.shape == (4, 8) and torch.all(dones[:-1] == expected) and torch.all(dones[-1] == 1)


# ---------------------------------------------------------------------------------------------- fairness audit
def test_fairness_audit_shows_the_task_set_recipe_for_every_variant(tmp_path):
    from pwmbench.suite.spec import parse_suite, prepare

    data = {"name": "r", "tasks": ["mt30"], "seeds": [1], "base": {**TINY, "data_dir": str(tmp_path)},
            "variants": {"mlp": {"dynamics": "mlp"}, "flow": {"dynamics": "flow", "integrator": "heun", "substeps": 2}}}  # fmt: skip
    suite = prepare(parse_suite(data))
    recipes = suite.audit["wm_recipes"]["mt30"]
    assert set(recipes) == {"mlp", "flow"} and recipes["mlp"] == recipes["flow"] == TDMPC2.to_dict()

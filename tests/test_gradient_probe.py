"""The gradient probe (pwm/gradient_probe.py): an exact model gives the simulator's gradient, a scaled one the expected
error, the simulator gradient matches finite differences on dflex/cartpole, and probing never changes training."""

import math

import pytest
import torch

from pwmbench.pwm.gradient_probe import ProbeParts, model_loss, probe, probe_summary, simulator_loss
from pwmbench.pwm.networks import Actor

A = torch.tensor([[1.0, 0.1], [-0.2, 0.95]])
B = torch.tensor([[0.0], [0.3]])


def reward(z, a):
    return -(z**2).sum(-1) - 0.1 * (a**2).sum(-1)


class LinearEnv:
    """s' = A s + B a, r = −|s|² − 0.1|a|², episodes of `length` steps (then truncated and reset to s0): a
    differentiable env with the VecEnv interface and state_dict/load_state_dict, whose exact model the test knows."""

    differentiable = True

    def __init__(self, n, length=100):
        self.n, self.length = n, length
        self.s0 = torch.linspace(-1, 1, 2 * n).reshape(n, 2)
        self.s, self.t = self.s0.clone(), torch.zeros(n, dtype=torch.long)

    def step(self, a):
        r = reward(self.s, a)
        s = self.s @ A.T + a @ B.T
        self.t = self.t + 1
        truncated = self.t >= self.length
        terminated = torch.zeros(self.n, dtype=torch.bool)
        info = {"obs_before_reset": s}
        self.s = torch.where(truncated[:, None], self.s0, s)
        self.t = torch.where(truncated, torch.zeros_like(self.t), self.t)
        return self.s, r, terminated, truncated, info

    def state_dict(self):
        return {"s": self.s.detach().clone(), "t": self.t.clone()}

    def load_state_dict(self, state):
        self.s, self.t = state["s"].clone(), state["t"].clone()


def parts(actor, reward_factor=1.0, value_factor=1.0):
    return ProbeParts(
        actor=actor, value=lambda z: -value_factor * (z**2).sum(-1), encode=lambda obs: obs,
        model_step=lambda z, a: (z @ A.T + a @ B.T, reward_factor * reward(z, a)), reward_scale=lambda r: r,
        gamma=0.99, detach=False,
    )  # fmt: skip


@pytest.mark.parametrize("length", [100, 3])  # no episode end in the window / a truncation inside it (bootstrapped)
def test_an_exact_model_gives_the_simulators_gradient(length):
    torch.manual_seed(0)
    actor = Actor(2, 1, [16], init_logstd=-1.0, min_logstd=-5.0)
    env = LinearEnv(8, length)
    env.t[:] = torch.arange(8) % max(length, 1)  # staggered episode clocks
    out = probe(parts(actor), env, env.state_dict(), env.s.clone(), 5, torch.Generator().manual_seed(1), batches=4)
    assert out["grad_sim_cosine"] == pytest.approx(1.0, abs=1e-6) and out["grad_sim_rel_error"] < 1e-5
    assert out["grad_wm_norm"] == pytest.approx(out["grad_sim_norm"], rel=1e-5) and out["grad_sim_norm"] > 0
    assert out["grad_wm_esnr_global"] == pytest.approx(out["grad_sim_esnr_global"], rel=1e-4)
    assert out["probe_horizon"] == 5 and out["grad_sim_var"] >= 0 and math.isfinite(out["grad_sim_rel_std"])


def test_a_model_whose_gradient_is_scaled_gives_the_expected_error():
    torch.manual_seed(0)
    actor = Actor(2, 1, [16], init_logstd=-1.0, min_logstd=-5.0)
    env = LinearEnv(8)
    # the critic is shared by both rollouts: with no bootstrap the model's gradient is exactly 3 × the simulator's
    out = probe(parts(actor, reward_factor=3.0, value_factor=0.0), env, env.state_dict(), env.s.clone(), 4, torch.Generator().manual_seed(2))
    assert out["grad_sim_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert out["grad_sim_rel_error"] == pytest.approx(2.0, rel=1e-5)  # ‖3g − g‖ / ‖g‖
    assert out["grad_wm_norm"] == pytest.approx(3 * out["grad_sim_norm"], rel=1e-5)


def test_both_rollouts_stop_where_the_simulators_episode_ends():
    actor = Actor(2, 1, [8], init_logstd=-1.0, min_logstd=-5.0)
    env = LinearEnv(4, length=2)
    noise = torch.zeros(5, 4, 1)
    sim, end, terminal = simulator_loss(parts(actor), env, env.s.clone(), noise)
    assert end.tolist() == [1, 1, 1, 1] and not terminal.any()
    env.load_state_dict({"s": env.s0.clone(), "t": torch.zeros(4, dtype=torch.long)})
    assert torch.allclose(model_loss(parts(actor), env.s0.clone(), noise, end, terminal), sim)


def test_run_row_summaries_take_the_last_half_at_the_training_horizon():
    rows = [{"probe_horizon": h, "grad_sim_cosine": c, "grad_sim_rel_error": 1 - c, "grad_wm_esnr_global": 1.0, "grad_sim_esnr_global": 2.0,
             "grad_sim_rel_std": 0.5, "time_probe": 0.1} for c in (0.0, 0.2, 0.6, 0.8) for h in (1, 4)]  # fmt: skip
    summary = probe_summary(rows, horizon=4)
    assert summary["grad_probe_horizon"] == 4 and summary["grad_sim_cosine_median"] == pytest.approx(0.7)
    assert probe_summary(rows, horizon=16)["grad_probe_horizon"] == 1 and probe_summary([], 4) == {}


@pytest.mark.slow
def test_the_simulator_gradient_matches_finite_differences_on_dflex_cartpole():
    pytest.importorskip("warp")
    from pwmbench.api import task

    torch.manual_seed(0)
    env = task("dflex/cartpole").make_env(4, 3, differentiable=True)
    actor = Actor(5, 1, [16], init_logstd=-1.5, min_logstd=-5.0)
    p = ProbeParts(actor=actor, value=lambda z: torch.zeros(z.shape[0]), encode=lambda obs: obs, model_step=None,
                   reward_scale=lambda r: r, gamma=0.99, detach=False)  # fmt: skip
    state, obs0 = env.state_dict(), env.obs.detach().clone()
    noise = torch.randn(6, 4, 1, generator=torch.Generator().manual_seed(4))
    params = list(actor.parameters())

    def loss() -> torch.Tensor:
        env.load_state_dict(state)
        return simulator_loss(p, env, obs0, noise)[0].mean()

    grads = torch.autograd.grad(loss(), params)
    direction = [torch.randn_like(q) for q in params]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction))
    eps = 1e-2
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            for q, d in zip(params, direction):
                q.add_(sign * eps * d)
            values.append(float(loss()))
            for q, d in zip(params, direction):
                q.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=0.03), (analytic, numeric)


TINY = {
    "num_envs": 8, "horizon": 8, "max_epochs": 36, "world_model": {"units": [32, 32], "encoder_units": [32], "latent_dim": 16},
    "actor_units": [32, 32], "critic_units": [32, 32], "wm_batch_size": 8, "wm_iterations": 2, "initial_wm_iterations": 4,
    "critic_iterations": 2, "eval_every": 0, "esnr_every": 5, "wm_buffer_size": 4000,
}  # fmt: skip
TIMING = ("wall_s", "fps", "time_epoch", "time_env", "time_imagine", "time_actor_backward", "time_critic", "time_wm", "time_esnr")


@pytest.mark.slow
@pytest.mark.parametrize("dynamics", ["mlp", "flow"])
def test_probing_never_changes_training(dynamics):
    pytest.importorskip("warp")
    from pwmbench.api import task
    from pwmbench.pwm.config import resolve_config
    from pwmbench.pwm.trainer import PWMTrainer

    runs = {}
    for every in (0, 4):
        cfg = resolve_config({**TINY, "dynamics": dynamics, "grad_probe_every": every, "grad_probe_horizons": [1, 8]})
        trainer = PWMTrainer(task("dflex/cartpole"), cfg, 3)
        for _ in range(cfg.max_epochs):
            trainer.train_epoch()
        runs[every] = trainer
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(runs[0].curves) == strip(runs[4].curves)
    probes = runs[4].probe_curves
    assert probes and {r["probe_horizon"] for r in probes} == {1.0, 8.0} and not runs[0].probe_curves
    assert all(math.isfinite(r["grad_sim_cosine"]) and -1 <= r["grad_sim_cosine"] <= 1 for r in probes)
    assert {r["epoch"] % 4 for r in probes} == {0}


def test_score_and_report_show_gradient_quality(tmp_path):
    from results_factory import write_results

    from pwmbench.analysis.report import build_report
    from pwmbench.analysis.scoring import compare, load_results

    returns = {("dmc/a", "mlp"): [1, 2, 3], ("dmc/a", "flow"): [2, 3, 4], ("dmc/b", "mlp"): [1, 2, 3], ("dmc/b", "flow"): [2, 3, 4]}
    probe = {("dmc/a", "mlp"): [0.2, 0.3, 0.4], ("dmc/a", "flow"): [0.5, 0.6, 0.7], ("dmc/b", "mlp"): [0.1, 0.1, 0.1], ("dmc/b", "flow"): [0.3, 0.3, 0.3]}
    root = write_results(tmp_path / "r", returns, probe=probe)
    runs, suite, curves = load_results(root, curves=True)
    crit = {c.name: c for c in compare(runs, suite, reps=500, curves=curves).criteria}
    gq = crit["policy gradient of flow closer to the simulator's than mlp's (cosine at horizon 4)"]
    assert gq.passed and not gq.required and gq.value.startswith("0.450 vs 0.200, Δ +0.250 [")
    text = build_report(root, tmp_path / "out", reps=200).read_text()
    assert "## Gradient quality" in text and "| dmc/a | flow | 4 | 3 | 0.6 ± 0.1 |" in text
    assert (tmp_path / "out" / "gradient_cosine.png").stat().st_size > 0 and "![gradient_rel_error.png]" in text

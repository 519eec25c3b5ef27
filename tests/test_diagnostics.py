"""Model-quality diagnostics (pwm/diagnostics.py): the figures against hand values, an exact world model scoring
zero through the trainer's real evaluation, windows that never cross an episode's end, short episodes, the run
row, the documented columns and the report's section."""

import math

import pytest
import torch
from click.testing import CliRunner
from results_factory import write_results
from torch import nn
from toy_task import SMALL

from pwmbench import api
from pwmbench.cli import main
from pwmbench.nn.world_model import build_world_model
from pwmbench.plugin.interfaces import DynamicsModel, Task, TaskSpec, VecEnv
from pwmbench.pwm.cell import train_cell
from pwmbench.pwm.config import resolve_config
from pwmbench.pwm.diagnostics import (
    FINAL_COLUMNS,
    METRICS,
    EpisodeRecord,
    EpisodeRecorder,
    diagnose,
    final_model_quality,
    model_quality,
    sample_windows,
    window_generator,
)  # fmt: skip
from pwmbench.pwm.normalizers import RunningMeanStd
from pwmbench.pwm.trainer import PWMTrainer
from pwmbench.results.tables import CURVE_METRICS, RUNS_SCHEMA, read_table, run_table, write_table_atomic

D, A = 8, 2  # obs = latent width of the exact linear world
GEN = torch.Generator().manual_seed(0)
MAT_A = torch.eye(D) * 0.9 + 0.05 * torch.randn(D, D, generator=GEN)
MAT_B = 0.3 * torch.randn(D, A, generator=GEN)


def linear_next(x, a):
    return x @ MAT_A.T + a @ MAT_B.T


def linear_reward(x, a):
    return -(x**2).sum(-1) * 0.01 + a.sum(-1)


class LinearEnv(VecEnv):
    """Deterministic x' = A x + B a; copy b terminates after ENDS[b] steps and restarts far away (at 50 + b), so
    a window across an end would give the exact model a large error."""

    ENDS = (3, 7, 12, 5)

    def __init__(self, num_envs):
        self.num_envs, self.obs_dim, self.act_dim, self.episode_length = num_envs, D, A, 12
        self.t = torch.zeros(num_envs, dtype=torch.long)

    def _start(self, seed):
        return torch.linspace(-1, 1, D).repeat(self.num_envs, 1) * (1 + torch.arange(self.num_envs)[:, None]) * 0.3

    def reset(self, seed=None):
        self.t.zero_()
        self.x = self._start(seed)
        return self.x.clone()

    def step(self, actions):
        reward = linear_reward(self.x, actions)
        self.x = linear_next(self.x, actions)
        self.t += 1
        ends = torch.tensor([self.ENDS[b % len(self.ENDS)] for b in range(self.num_envs)])
        terminated = self.t == ends
        final = self.x.clone()
        if terminated.any():
            self.x = torch.where(terminated[:, None], 50.0 + torch.arange(self.num_envs, dtype=torch.float32)[:, None], self.x)
            self.t = torch.where(terminated, torch.zeros_like(self.t), self.t)
        return self.x.clone(), reward, terminated, torch.zeros_like(terminated), {"obs_before_reset": final}


class LinearTask(Task):
    spec = TaskSpec(name="test/linear", obs_dim=D, act_dim=A, episode_length=12, num_envs=4)

    def make_env(self, num_envs, seed, device="cpu", differentiable=False):
        return LinearEnv(num_envs)


class LinearDynamics(DynamicsModel):
    """The true dynamics of LinearEnv: an exact world model once the encoder is the identity."""

    def next(self, z, a, emb=None):
        return linear_next(z, a)

    def step_loss(self, z, a, target, emb=None, *, teacher=None):
        return ((self.next(z, a) - target) ** 2).mean(-1)


def exact_world_model(wm):
    wm.encoder = nn.Identity()
    wm.dynamics = LinearDynamics(wm.dynamics.ctx)
    wm.predict_reward = lambda z, a, task=None: linear_reward(z, a)
    return wm


CFG = {**SMALL, "world_model": {"units": [16], "encoder_units": [16], "latent_dim": D}, "eval_episodes": 4, "rew_rms": False}


def test_exact_world_model_scores_zero_in_the_trainers_evaluation():
    trainer = PWMTrainer(LinearTask(), resolve_config(CFG), seed=0)
    exact_world_model(trainer.wm)
    out = trainer.evaluate()
    H = trainer.cfg.horizon
    assert out["model_windows"] == sum(max(e - H + 1, 0) for e in LinearEnv.ENDS)  # 0 + 4 + 9 + 2: every window, no more
    assert out["model_error_1"] == pytest.approx(0.0, abs=1e-10)
    assert out["model_error_H"] == pytest.approx(0.0, abs=1e-10)  # a window across a reset (to 50) would be ~1e3
    assert out["model_reward_error_H"] == pytest.approx(0.0, abs=1e-10)
    assert out["model_error_copy"] > 1e-3 and out["model_error_copy_H"] > out["model_error_copy"]
    assert out["model_error_ratio_copy"] == pytest.approx(0.0, abs=1e-6)


def test_a_wrong_model_is_worse_than_no_change_and_off_means_off():
    trainer = PWMTrainer(LinearTask(), resolve_config(CFG), seed=0)
    exact_world_model(trainer.wm).dynamics.next = lambda z, a, emb=None: -3.0 * z  # far from the truth
    out = trainer.evaluate()
    assert out["model_error_ratio_copy"] > 1 and out["model_error_ratio_copy_H"] > 1
    off = PWMTrainer(LinearTask(), resolve_config({**CFG, "diagnostics_windows": 0}), seed=0)
    assert not any(k.startswith("model_") for k in off.evaluate())


def identity_world_model():
    return exact_world_model(build_world_model("pwm", obs_dim=D, act_dim=A, units=[16], encoder_units=[16], latent_dim=D))


def test_copy_error_is_the_mse_of_consecutive_latents_on_a_hand_batch():
    obs = torch.zeros(3, 2, D)  # H = 2, two windows; only dim 0 moves: by 1 per step in window 0, by 2 in window 1
    obs[:, 0, 0] = torch.tensor([0.0, 1.0, 2.0])
    obs[:, 1, 0] = torch.tensor([0.0, 2.0, 4.0])
    act = torch.zeros(2, 2, A)
    out = model_quality(identity_world_model(), obs, act, torch.zeros(2, 2))
    assert out["model_error_copy"] == pytest.approx((1 + 4) / 2 / D)
    assert out["model_error_copy_H"] == pytest.approx((4 + 16) / 2 / D)
    assert out["model_windows"] == 2


def numbered_record(lengths, T=12):
    """obs value = 100·copy + step, so a window's source indices can be read back from its values."""
    n = len(lengths)
    obs = (100.0 * torch.arange(n)[None, :, None] + torch.arange(T + 1)[:, None, None]).expand(T + 1, n, 1).clone()
    return EpisodeRecord(obs, torch.zeros(T, n, 1), torch.zeros(T, n), torch.tensor(lengths))


def test_windows_stay_inside_each_copys_first_episode():
    H = 2
    record = numbered_record([5, 2, 0, 3])
    obs, act, rew = sample_windows(record, H, 100, torch.Generator().manual_seed(0))
    assert obs.shape == (H + 1, 4 + 1 + 0 + 2, 1) and act.shape[:2] == (H, 7) and rew.shape == (H, 7)
    copy, step = (obs[..., 0] // 100).long(), (obs[..., 0] % 100).long()
    assert (copy == copy[0]).all() and (step[1:] - step[:-1] == 1).all()
    for b, length in enumerate(record.lengths.tolist()):
        assert (step[-1][copy[0] == b] <= length).all()
    few = sample_windows(record, H, 3, torch.Generator().manual_seed(1))[0]
    again = sample_windows(record, H, 3, torch.Generator().manual_seed(1))[0]
    assert few.shape[1] == 3 and torch.equal(few, again)
    assert len({tuple(few[:, i, 0].tolist()) for i in range(3)}) == 3  # without replacement


def test_short_episodes_give_no_windows_and_no_crash():
    record = numbered_record([1, 2, 0], T=3)
    wm = identity_world_model()
    assert sample_windows(record, 4, 10, window_generator(0, 1)) is None
    out = diagnose(wm, record, horizon=4, windows=10, generator=window_generator(0, 1), norm_obs=lambda o: o)
    assert out == {"model_windows": 0.0}
    assert diagnose(wm, record, horizon=2, windows=0, generator=window_generator(0, 1), norm_obs=lambda o: o) == {}
    assert set(final_model_quality([{"eval_return": 1.0, **out}]).values()) == {None}


def test_recorder_keeps_final_observations_and_counts_only_first_episodes():
    rec = EpisodeRecorder(torch.zeros(2, 1))
    running = torch.tensor([True, True])
    rec.add(torch.zeros(2, 1), torch.ones(2), torch.tensor([[1.0], [1.0]]), running)
    running &= torch.tensor([True, False])  # copy 1 ended at step 1
    rec.add(torch.zeros(2, 1), torch.ones(2), torch.tensor([[2.0], [9.0]]), running)
    record = rec.finish()
    assert record.lengths.tolist() == [2, 1] and record.obs.shape == (3, 2, 1)


def test_final_columns_take_the_last_evaluation():
    rows = [{"eval_return": 1.0, "model_error_1": 0.5}, {"actor_loss": 1.0}, {"eval_return": 2.0, "model_error_1": 0.25, "model_error_ratio_copy": math.nan}]
    final = final_model_quality(rows)
    assert final["model_error_1_final"] == 0.25 and final["model_error_ratio_copy_final"] is None


@pytest.mark.usefixtures("toy_plugins")
def test_cell_writes_model_quality_curves_and_run_row(tmp_path):
    cfg = resolve_config({**SMALL, "max_epochs": 5, "eval_every": 5})
    result = train_cell("toy/point", cfg, 0, tmp_path / "cell")
    assert result.status == "ok"
    curves = read_table(tmp_path / "cell" / "curves.arrow").to_pylist()
    last = [r for r in curves if r["eval_return"] is not None][-1]
    assert last["model_windows"] > 0 and math.isfinite(last["model_error_1"]) and last["model_error_copy"] > 0
    run = read_table(tmp_path / "cell" / "run.arrow").to_pylist()[0]
    for column in FINAL_COLUMNS:
        assert run[column] == pytest.approx(last[column[: -len("_final")]])


@pytest.mark.usefixtures("toy_plugins")
def test_diagnostics_leave_training_unchanged():
    def losses(windows):
        trainer = PWMTrainer(api.task("toy/point"), resolve_config({**SMALL, "max_epochs": 7, "eval_every": 2, "diagnostics_windows": windows}), 0)
        return [(r.get("wm_loss"), r.get("actor_loss"), r.get("eval_return")) for r in (trainer.train_epoch() for _ in range(7))]

    assert losses(0) == losses(256)


def test_report_has_a_model_quality_section(tmp_path):
    root = write_results(tmp_path / "r", {("dmc/a", "mlp"): [100, 110, 120], ("dmc/a", "flow"): [150, 160, 170]})
    for path in root.rglob("run.arrow"):
        row = read_table(path).to_pylist()[0]
        worse = row["variant"] == "mlp"
        row.update(model_error_1_final=1.5e-2 if worse else 1e-4, model_error_copy_final=1.2e-2, model_error_ratio_copy_final=1.24 if worse else 0.008,
                   model_error_H_final=0.3, model_error_copy_H_final=0.5, model_error_ratio_copy_H_final=1.6 if worse else 0.6, model_reward_error_H_final=0.4,
                   model_reward_error_mean_H_final=0.25 if worse else 0.8, model_reward_ratio_mean_H_final=1.6 if worse else 0.5)  # fmt: skip
        write_table_atomic(run_table(row), path)
    result = CliRunner().invoke(main, ["report", str(root), "--out", str(tmp_path / "out"), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Model quality" in text
    mlp = next(line for line in text.splitlines() if line.startswith("| dmc/a | mlp | 3 |"))
    flow = next(line for line in text.splitlines() if line.startswith("| dmc/a | flow | 3 |"))
    assert "1.24 ± 0" in mlp and "**fails**: reward error along the rollout / mean-reward predictor = 1.6" in mlp
    assert flow.endswith("| passes |")
    assert "not 'non-inferior': the model-quality gate fails — mlp on dmc/a: reward error" in text


def test_result_schemas_hold_every_figure():
    assert set(METRICS) <= set(CURVE_METRICS) and set(FINAL_COLUMNS) <= set(RUNS_SCHEMA.names)


def test_task_set_member_measures_its_own_task_with_the_world_models_reward_scale(tmp_path):
    from pwmbench.data.collect import collect
    from pwmbench.data.dataset import OfflineDataset
    from pwmbench.pwm.multitask import OfflineWorldModel, TaskPolicy

    collect("mt30", 1, tmp_path, task_ids=[29], num_envs=1, seed=3)  # pendulum-spin: obs 3 padded to 24
    data = OfflineDataset(tmp_path)
    tiny = {"world_model": {"units": [32], "encoder_units": [32], "latent_dim": 16}, "actor_units": [32], "critic_units": [32],
            "preset": "pwm_5M", "horizon": 4, "wm_batch_size": 8, "policy_batch_size": 8, "task_ids": [29]}  # fmt: skip
    cfg = resolve_config(tiny)
    owm = OfflineWorldModel(api.task("mt30"), data, cfg, 0)
    owm.train(2, log_every=2)
    policy = TaskPolicy(api.task("mt30"), 29, owm.wm, data, cfg, 0)
    raw = policy.evaluate(1)
    assert raw["model_windows"] == 256 and all(math.isfinite(raw[k]) for k in raw)  # 497 windows in 500 steps, 256 drawn
    policy.rew_rms = RunningMeanStd()  # the cell hands over the world model's normaliser (None under TD-MPC2's recipe)
    policy.rew_rms.mean.fill_(100.0)
    scaled = policy.evaluate(1)
    assert scaled["model_error_1"] == raw["model_error_1"] and scaled["model_reward_error_H"] != raw["model_reward_error_H"]

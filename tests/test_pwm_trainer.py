"""The PWM trainer: the actor loss against a hand-written reference, gradient paths, determinism, resume,
the divergence guard, and whole cells for both dynamics models."""

import math

import pytest
import torch
from click.testing import CliRunner
from pyarrow import ipc
from toy_task import SMALL

from pwmbench import api
from pwmbench.cli import main
from pwmbench.pwm.cell import train_cell
from pwmbench.pwm.config import resolve_config
from pwmbench.pwm.trainer import PWMTrainer

pytestmark = pytest.mark.usefixtures("toy_plugins")
TIMING = {"wall_s", "fps", "time_env", "time_imagine", "time_actor_backward", "time_critic", "time_wm", "time_esnr", "time_epoch"}


def make(seed=0, **overrides):
    return PWMTrainer(api.task("toy/point"), resolve_config({**SMALL, **overrides}), seed)


class ScriptedEnv:
    """Terminations and truncations on a script; observations and rewards are zeros."""

    def __init__(self, term, trunc):
        self.term, self.trunc, self.i = term, trunc, 0
        self.num_envs = term.shape[1]

    def step(self, actions):
        assert not actions.requires_grad, "the real env must get actions without a graph"
        t, tr = self.term[self.i], self.trunc[self.i]
        self.i += 1
        zeros = torch.zeros(self.num_envs, 2)
        return zeros, torch.zeros(self.num_envs), t, tr, {"obs_before_reset": zeros}


def reference_loss(term, trunc, gamma, horizon):
    """PWM's per-env actor loss written plainly: model reward r_i = z_i + 1 with z counting imagined steps since
    the last (re)encoding, value V(z) = 10·z, bootstrap zero after termination, γ^(H+1) at the window's end."""
    out = []
    for b in range(term.shape[1]):
        z, disc, acc, loss = 0.0, 1.0, 0.0, 0.0
        for i in range(horizon):
            r, z_next = z + 1, z + 1
            acc += disc * r
            v = 0.0 if term[i, b] else 10.0 * z_next
            done = bool(term[i, b] or trunc[i, b])
            if done:
                loss -= acc + gamma * disc * v
            elif i == horizon - 1:
                loss -= acc + gamma * gamma * disc * v
            disc *= gamma
            if done:
                z, disc, acc = 0.0, 1.0, 0.0
            else:
                z = z_next
        out.append(loss)
    return torch.tensor(out)


def test_actor_loss_matches_the_written_out_formula():
    trainer = make(horizon=5, num_envs=4)
    term = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    trunc = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)
    trainer.env = ScriptedEnv(term, trunc)
    latent = trainer.wm.config.latent_dim
    trainer.wm.encode = lambda obs: torch.zeros(obs.shape[0], latent)
    trainer.wm.step = lambda z, a, **kw: (z + 1, z[:, 0] + 1 + 0 * a.sum(-1))
    trainer.critic.min = lambda z: 10 * z[:, 0]
    timers = dict.fromkeys(("time_env",), 0.0)
    loss, window = trainer.imagine(timers)
    torch.testing.assert_close(loss.detach(), reference_loss(term, trunc, 0.99, 5))
    assert window.dones[-1].eq(1).all() and window.dones[1, 1] == 1 and window.dones[1, 0] == 0
    assert window.next_values[1, 1] == 0  # terminated: no bootstrap
    assert window.next_values[1, 2] == 20  # only truncated: bootstrapped


def _actor_grads(trainer):
    trainer.actor_opt.zero_grad()
    loss, _ = trainer.imagine({"time_env": 0.0})
    loss.mean().backward()
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in trainer.actor.parameters()])


def test_the_actor_learns_only_through_the_world_model():
    trainer = make()
    assert _actor_grads(trainer).abs().sum() > 0
    trainer = make()
    step = trainer.wm.step
    trainer.wm.step = lambda z, a, **kw: step(z, a.detach(), **kw)  # cut the model's path from actions
    grads = _actor_grads(trainer)
    assert grads.abs().sum() == 0  # no other path: the real env step and the critic's inputs carry none


def test_min_over_critics_is_the_bootstrap():
    trainer = make()
    calls = []
    original = trainer.critic.min
    trainer.critic.min = lambda z: calls.append(1) or original(z)
    trainer.imagine({"time_env": 0.0})
    assert len(calls) == trainer.cfg.horizon


def curves(path):
    table = ipc.open_file(path / "curves.arrow").read_all()
    return table.drop([c for c in table.column_names if c in TIMING]).to_pylist()


def run(tmp_path, name, seed=42, **overrides):
    cfg = resolve_config({**SMALL, **overrides})
    return train_cell("toy/point", cfg, seed, tmp_path / name)


def test_same_seed_gives_identical_curves_and_other_seeds_do_not(tmp_path):
    a, b, c = run(tmp_path, "a"), run(tmp_path, "b"), run(tmp_path, "c", seed=123)
    assert a.status == b.status == c.status == "ok"
    assert curves(tmp_path / "a") == curves(tmp_path / "b")
    assert curves(tmp_path / "a") != curves(tmp_path / "c")


@pytest.mark.parametrize("dynamics", ["mlp", "flow"])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, dynamics):
    run(tmp_path, "straight", dynamics=dynamics, checkpoint_every=3)

    class HardKill(BaseException):
        """Not caught by the cell: like kill -9, only what was on disk survives."""

    def die(trainer, row):
        if trainer.epoch == 8:
            raise HardKill

    cfg = resolve_config({**SMALL, "dynamics": dynamics, "checkpoint_every": 3})
    with pytest.raises(HardKill):
        train_cell("toy/point", cfg, 42, tmp_path / "killed", on_epoch=die)
    assert (tmp_path / "killed" / "checkpoint.pt").exists() and not (tmp_path / "killed" / "run.arrow").exists()
    resumed = train_cell("toy/point", cfg, 42, tmp_path / "killed")
    assert resumed.status == "ok"
    assert curves(tmp_path / "killed") == curves(tmp_path / "straight")


def test_ctrl_c_checkpoints_and_resumes(tmp_path):
    run(tmp_path, "straight")

    def interrupt(trainer, row):
        if trainer.epoch == 7:
            raise KeyboardInterrupt

    cfg = resolve_config(SMALL)
    with pytest.raises(KeyboardInterrupt):
        train_cell("toy/point", cfg, 42, tmp_path / "stopped", on_epoch=interrupt)
    assert train_cell("toy/point", cfg, 42, tmp_path / "stopped").status == "ok"
    assert curves(tmp_path / "stopped") == curves(tmp_path / "straight")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_training_at_the_epoch_boundary_and_the_resumed_run_is_exact(tmp_path, sig):
    import os
    import signal

    from pwmbench.pwm.checkpoint import load_checkpoint

    run(tmp_path, "straight")

    def signal_mid_run(trainer, row):
        if trainer.epoch == 5:
            os.kill(os.getpid(), getattr(signal, sig))  # the handler only asks: epoch 6 never starts

    cfg = resolve_config({**SMALL, "checkpoint_every": 0})  # no periodic checkpoint: the stop writes the only one
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # SIG_IGN when started in the background
    with pytest.raises(KeyboardInterrupt):
        train_cell("toy/point", cfg, 42, tmp_path / "stopped", on_epoch=signal_mid_run)
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["epoch"] == 5
    assert {s: signal.getsignal(s) for s in before} == before  # the handlers are given back
    assert train_cell("toy/point", cfg, 42, tmp_path / "stopped").status == "ok"
    assert curves(tmp_path / "stopped") == curves(tmp_path / "straight")


def test_a_stop_on_a_checkpoint_epoch_writes_the_checkpoint_once(tmp_path, monkeypatch):
    import os
    import signal

    import pwmbench.pwm.cell as cell

    writes = []
    original = cell.save_checkpoint
    monkeypatch.setattr(cell, "save_checkpoint", lambda state, path: (writes.append(state["epoch"]), original(state, path)))

    def signal_on_checkpoint_epoch(trainer, row):
        if trainer.epoch == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    cfg = resolve_config({**SMALL, "checkpoint_every": 2})
    with pytest.raises(KeyboardInterrupt):
        train_cell("toy/point", cfg, 42, tmp_path / "stopped", on_epoch=signal_on_checkpoint_epoch)
    assert writes == [2, 4]  # the periodic one at epoch 4 is the stop's checkpoint: not written a second time


def test_a_nan_stops_the_run_as_diverged_and_keeps_what_was_done(tmp_path, monkeypatch):
    original = PWMTrainer.update_world_model

    def poisoned(self, iterations):
        if self.epoch >= 6:
            with torch.no_grad():
                next(self.wm.dynamics.parameters()).fill_(float("nan"))
        return original(self, iterations)

    monkeypatch.setattr(PWMTrainer, "update_world_model", poisoned)
    result = run(tmp_path, "nan")
    assert result.status == "diverged"
    row = ipc.open_file(tmp_path / "nan" / "run.arrow").read_all().to_pylist()[0]
    assert row["status"] == "diverged" and row["diverged_epoch"] == 6 and row["diverged_quantity"] == "wm_loss"
    assert "wm_loss became nan at epoch 6" in row["reason"]
    assert len(curves(tmp_path / "nan")) == 1 + 6  # the untrained evaluation (epoch 0), then epochs 1–6


def test_a_crash_is_recorded_as_failed(tmp_path, monkeypatch):
    def boom(self, window):
        raise RuntimeError("critic exploded")

    monkeypatch.setattr(PWMTrainer, "update_critic", boom)
    result = run(tmp_path, "crash")
    assert result.status == "failed" and "critic exploded" in result.row["reason"] and result.row["traceback"]
    text = (tmp_path / "crash" / "traceback.txt").read_text()  # the full traceback, next to run.arrow
    assert text.startswith("Traceback (most recent call last)") and text.rstrip().endswith("RuntimeError: critic exploded")


def test_a_failed_cell_is_retried_from_its_checkpoint(tmp_path, monkeypatch):
    original = PWMTrainer.update_critic

    def boom(self, window):
        if self.epoch >= 6:  # in epoch 7, after the epoch-5 checkpoint
            raise RuntimeError("critic exploded")
        return original(self, window)

    monkeypatch.setattr(PWMTrainer, "update_critic", boom)
    assert run(tmp_path, "cell", checkpoint_every=5).status == "failed"
    failed = ipc.open_file(tmp_path / "cell" / "curves.arrow").read_all().to_pylist()
    assert len(failed) == 1 + 6 and (tmp_path / "cell" / "checkpoint.pt").exists()  # epoch 0: the untrained evaluation
    monkeypatch.setattr(PWMTrainer, "update_critic", original)  # the cause is gone

    retried = run(tmp_path, "cell", checkpoint_every=5)  # no CellAlreadyDone: a failed run is no result
    assert retried.status == "ok" and retried.row["traceback"] is None and not (tmp_path / "cell" / "traceback.txt").exists()
    assert ipc.open_file(tmp_path / "cell" / "curves.arrow").read_all().to_pylist()[:5] == failed[:5]  # resumed: timings too
    assert run(tmp_path, "clean", checkpoint_every=5).status == "ok"
    assert curves(tmp_path / "cell") == curves(tmp_path / "clean")  # the same result as a run that never failed


def test_a_diverged_run_is_a_result_that_only_restart_replaces(tmp_path):
    from pwmbench.results.tables import run_table, write_table_atomic

    write_table_atomic(run_table({"task": "toy/point", "status": "diverged", "reason": "wm_loss became nan at epoch 3"}), tmp_path / "d" / "run.arrow")
    with pytest.raises(api.PwmbenchError, match="status diverged.*--restart"):
        run(tmp_path, "d")


def test_finished_runs_are_not_overwritten_silently(tmp_path):
    run(tmp_path, "done")
    with pytest.raises(api.PwmbenchError, match="--restart"):
        run(tmp_path, "done")
    cfg = resolve_config(SMALL)
    assert train_cell("toy/point", cfg, 42, tmp_path / "done", restart=True).status == "ok"


def test_metrics_have_pwms_names_and_real_episode_lengths(tmp_path):
    run(tmp_path, "m")
    rows = curves(tmp_path / "m")
    last = rows[-1]
    for key in ("rewards", "policy_loss", "episode_lengths", "wm_loss", "dynamics_loss", "reward_loss", "actor_grad_norm", "critic_grad_norm", "wm_grad_norm", "value_loss", "actor_std", "env_steps", "eval_return"):
        assert last[key] is not None and math.isfinite(last[key]), key
    assert 1 <= last["episode_lengths"] <= 12
    esnr = [r for r in rows if r["esnr_global"] is not None]
    assert [r["epoch"] for r in esnr] == [11] and esnr[0]["esnr_global"] > 0 and esnr[0]["esnr_pwm"] > 0  # measured at epoch index 10
    assert last["policy_loss"] == -last["rewards"]
    assert [r["epoch"] for r in rows if r["eval_return"] is not None][:3] == [0, 5, 10]  # the untrained actor, then every 5 epochs
    table = ipc.open_file(tmp_path / "m" / "curves.arrow").read_all()
    assert {"time_env", "time_imagine", "time_actor_backward", "time_critic", "time_wm", "fps", "wall_s"} <= set(table.column_names)


@pytest.mark.parametrize("dynamics", ["mlp", "flow"])
def test_train_command_writes_both_tables(tmp_path, dynamics):
    out = tmp_path / dynamics
    sets = [f"--set={k}={v}" for k, v in SMALL.items() if k not in ("world_model", "actor_units", "critic_units")]
    sets += ['--set=world_model={"units":[32,32],"encoder_units":[32],"latent_dim":16}', "--set=actor_units=[32,32]", "--set=critic_units=[32,32]"]
    extra = ["--integrator", "euler", "--substeps", "2"] if dynamics == "flow" else []
    result = CliRunner().invoke(main, ["train", "--task", "toy/point", "--dynamics", dynamics, *extra, "--seed", "42", "--out", str(out), "--no-progress", *sets])
    assert result.exit_code == 0, result.output
    row = ipc.open_file(out / "run.arrow").read_all().to_pylist()[0]
    assert row["status"] == "ok" and row["task"] == "toy/point" and row["dynamics"] == dynamics and row["seed"] == 42
    assert row["final_return"] is not None and row["params_total"] > 0 and row["torch_version"] and row["config_hash"]
    assert row["nfe_per_step"] == (2 if dynamics == "flow" else 1)


def test_train_command_rejects_a_wrong_key():
    result = CliRunner().invoke(main, ["train", "--task", "toy/point", "--out", "x", "--set", "horizn=4"])
    assert result.exit_code == 2 and "did you mean 'horizon'" in result.output


@pytest.mark.slow
def test_pwm_trains_on_a_dmc_task(tmp_path):
    cfg = resolve_config({**SMALL, "horizon": 16, "num_envs": 2, "max_epochs": 36, "eval_every": 0, "initial_wm_iterations": 4})
    result = train_cell("dmc/cartpole-swingup", cfg, 42, tmp_path / "dmc")
    assert result.status == "ok" and result.row["env_steps"] == 36 * 16 * 2
    assert result.row["final_return"] is not None and result.row["final_rewards"] is not None


def test_resuming_with_another_config_is_refused_by_name(tmp_path):
    def stop(trainer, row):
        if trainer.epoch == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_cell("toy/point", resolve_config({**SMALL, "checkpoint_every": 2}), 42, tmp_path / "c", on_epoch=stop)
    with pytest.raises(api.ConfigError, match=r"different config \(horizon changed\).*--restart"):
        train_cell("toy/point", resolve_config({**SMALL, "checkpoint_every": 2, "horizon": 5}), 42, tmp_path / "c")


def test_the_threshold_counts_only_evaluations_after_learning_started(tmp_path):
    """W15 friction 10: an untrained actor crossing the return threshold (an evaluation before the first learning
    epoch) is no sample efficiency of the dynamics model: steps_to_threshold starts at the first learning epoch."""
    train_cell("toy/point", resolve_config({**SMALL, "max_epochs": 12, "eval_every": 2}), 1, tmp_path / "c", threshold=-1e9)
    curves = ipc.open_file(tmp_path / "c" / "curves.arrow").read_all().to_pylist()
    evals = [r for r in curves if r.get("eval_return") is not None]
    assert evals[0].get("wm_updates") is None  # the first evaluation came before learning started: the case in point
    first_learning = next(r["env_steps"] for r in evals if r.get("wm_updates"))
    row = ipc.open_file(tmp_path / "c" / "run.arrow").read_all().to_pylist()[0]
    assert row["steps_to_threshold"] == first_learning > evals[0]["env_steps"]


def test_the_untrained_actor_is_evaluated_once_before_learning_and_changes_nothing_else(tmp_path):
    """W15 item 1: curves row epoch 0 is the actor before any policy update (the level "has it learned?" is measured
    from), recorded as the run row's `untrained_return` and left out of best_return; it draws on no random stream
    training uses, so every other row is what a run without it gives."""
    with_it = run(tmp_path, "with", max_epochs=6, eval_every=3)
    without = run(tmp_path, "without", max_epochs=6, eval_every=3, eval_untrained=False)
    rows, plain = curves(tmp_path / "with"), curves(tmp_path / "without")
    assert rows[0]["epoch"] == 0 and rows[0]["env_steps"] == 0 and rows[0].get("wm_updates") is None
    assert with_it.row["untrained_return"] == rows[0]["eval_return"] and without.row["untrained_return"] is None
    assert [{k: v for k, v in r.items() if k != "wall_s"} for r in rows[1:]] == [{k: v for k, v in r.items() if k != "wall_s"} for r in plain]
    trained = [r["eval_return"] for r in plain if r.get("eval_return") is not None]
    assert with_it.row["best_return"] == max(trained) == without.row["best_return"]
    assert {k: v for k, v in with_it.row.items() if k in ("final_return", "env_steps", "epochs")} == {k: v for k, v in without.row.items() if k in ("final_return", "env_steps", "epochs")}

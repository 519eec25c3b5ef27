"""Single-task world-model pretraining (PWM's `general.pretrain`): data with early ends, the phase, resume, suites."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from toy_task import SMALL

from pwmbench.cli import main
from pwmbench.data.chunks import check_chunk, read_chunk, write_chunk
from pwmbench.data.collect import _episodes_of_one_task, collect_task
from pwmbench.data.dataset import OfflineDataset
from pwmbench.data.inspect import inspect_dataset
from pwmbench.errors import ConfigError
from pwmbench.pwm.cell import train_cell
from pwmbench.pwm.config import resolve_config
from pwmbench.pwm.pretrain import PRETRAINED_WM_FILE, pretrain_iterations
from pwmbench.pwm.trainer import PWMTrainer
from pwmbench.results.tables import read_table


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one torch thread is ~20× faster than many on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_data(tmp_path, toy_plugins):
    collect_task("toy/point", 12, tmp_path / "toy", num_envs=3, seed=0)
    return tmp_path / "toy"


def _cfg(data, **extra):
    return resolve_config({**SMALL, "max_epochs": 2, "eval_every": 0, "pretrain_data": str(data), "pretrain_wm_iterations": 30, **extra})


# ------------------------------------------------------------------------------------------------ data
def _padded(n=6, length=9, obs=3, act=2, ends=(9, 5, 9, 2, 7, 3)):
    """Episodes whose entry t of episode e holds obs e·100 + t; episode e has ends[e] valid entries."""
    t = torch.arange(length).float()
    o = (torch.arange(n).float()[:, None] * 100 + t).unsqueeze(-1).repeat(1, 1, obs)
    a = -o[..., :act].clone()
    r = o[..., 0] / 10
    a[:, 0], r[:, 0] = float("nan"), float("nan")
    term = torch.zeros(n, length)
    for e, end in enumerate(ends):
        for x in (o, a, r):
            x[e, end:] = float("nan")
        if end < length:
            term[e, end - 1] = 1.0
    return o, a, r, torch.zeros(n, length, dtype=torch.int32), term


def test_padded_episodes_read_back_and_windows_never_pass_an_end(tmp_path):
    write_chunk(tmp_path / "chunk_0.pt", *_padded())
    chunk = read_chunk(tmp_path / "chunk_0.pt", scan_values=True)
    assert chunk.problems == [] and "terminated" in chunk.tensors
    data = OfflineDataset(tmp_path)
    assert data.lengths.tolist() == [9, 5, 9, 2, 7, 3] and data.transitions() == 8 + 4 + 8 + 1 + 6 + 2
    report = inspect_dataset(tmp_path)
    assert report["malformed"] == [] and report["ended_early"] == 4 and report["transitions"] == 29
    H = 3
    w = data.sample(500, H, torch.Generator().manual_seed(0))
    assert torch.isfinite(w.obs).all() and torch.isfinite(w.action).all() and torch.isfinite(w.reward).all()
    episode = (w.obs[:, 0, 0] // 100).long()
    assert set(episode.tolist()) == {0, 1, 2, 4}  # episodes 3 (2 entries) and 5 (3 entries) hold no 4-entry window
    ends = torch.tensor([9, 5, 9, 2, 7, 3])[episode]
    assert bool(((w.obs[:, -1, 0] % 100) < ends).all())  # the last entry of every window is inside its episode
    assert {int(s) for s in w.obs[episode == 1, 0, 0] % 100} == {0, 1}  # every valid start of episode 1 is drawn
    blocks = list(data.episode_blocks(block=4))
    assert [b[0].shape[0] for b in blocks] == [4, 2] and torch.cat([b[3] for b in blocks]).tolist() == [9, 5, 9, 2, 7, 3]
    full = data.sample(50, 8, torch.Generator().manual_seed(1))  # only the two full episodes hold 9 entries
    assert set((full.obs[:, 0, 0] // 100).long().tolist()) == {0, 2} and torch.isfinite(full.reward).all()


def test_padding_that_is_not_nan_is_malformed(tmp_path):
    o, a, r, task, term = _padded()
    o[1, 6] = 1.0  # a finite obs after episode 1's end → its length reads 5, and this entry is bad padding
    r[3, 4] = 0.5
    write_chunk(tmp_path / "chunk_0.pt", o, a, r, task, term)
    problems = check_chunk(read_chunk(tmp_path / "chunk_0.pt"), scan_values=True)
    assert any("padding after an episode's end must be NaN" in p and "(2 episode(s))" in p for p in problems)


def test_collector_writes_early_ending_hopper_episodes_that_read_back_exactly(tmp_path):
    pytest.importorskip("warp")
    meta = collect_task("dflex/hopper", 4, tmp_path, num_envs=2, seed=3)
    assert meta["task"] == "dflex/hopper" and meta["ended_early"] == 4 and meta["task_ids"] == [0]
    chunk = read_chunk(tmp_path / "chunk_0.pt", scan_values=True)
    assert chunk.problems == []
    again = _episodes_of_one_task("dflex/hopper", 4, 2, 3, 11, 3, allow_termination=True)  # the collector's own tensors
    for key in ("obs", "action", "reward", "terminated"):
        assert torch.equal(chunk.tensors[key].nan_to_num(7.0), again[key].nan_to_num(7.0)), key
    data = OfflineDataset(tmp_path)
    lengths = data.lengths
    assert bool((lengths < 1001).all())
    term = chunk.tensors["terminated"]
    assert torch.equal(term.sum(1), torch.ones(4)) and torch.equal(term.argmax(1), lengths - 1)
    obs, act, rew, got = next(data.episode_blocks())
    assert torch.equal(got, lengths) and torch.equal(obs.nan_to_num(7.0), chunk.tensors["obs"].nan_to_num(7.0))
    assert torch.isnan(obs[0, int(lengths[0]) :]).all() and torch.isfinite(obs[0, : int(lengths[0])]).all()


def test_cli_collects_a_single_task(tmp_path, toy_plugins):
    runner = CliRunner()
    result = runner.invoke(main, ["data", "collect", "--task", "toy/point", "--episodes", "3", "--num-envs", "2", "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d" / "metadata.json").read_text())["task"] == "toy/point"
    result = runner.invoke(main, ["data", "collect", "--task", "toy/point", "--taskset", "mt30", "--episodes", "3", "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "exactly one of --taskset" in result.output


# ------------------------------------------------------------------------------------------------ the phase
def test_every_variant_pretrains_on_the_same_windows(toy_data):
    from pwmbench import api

    seen = {}
    for dynamics in ("mlp", "flow"):
        trainer = PWMTrainer(api.task("toy/point"), _cfg(toy_data, dynamics=dynamics, pretrain_wm_iterations=12), seed=5)
        drawn: list = []
        trainer.buffer.sample = _recording(trainer.buffer, drawn)
        assert trainer.pretrain() and trainer.wm_bootstrapped and trainer.pretraining.step == 12
        seen[dynamics] = torch.stack(drawn)
    assert seen["mlp"].shape == (12, SMALL["horizon"] + 1, SMALL["wm_batch_size"], 2)
    assert torch.equal(seen["mlp"], seen["flow"])


def _recording(buffer, drawn):
    sample = buffer.sample

    def record(*args, **kwargs):
        out = sample(*args, **kwargs)
        drawn.append(out[0].clone())
        return out

    return record


def test_pretraining_loads_data_and_rms_as_pwm(toy_data):
    from pwmbench import api

    cfg = _cfg(toy_data, pretrain_wm_iterations=0, obs_rms=True, rew_rms=True)
    trainer = PWMTrainer(api.task("toy/point"), cfg, seed=0)
    before = [p.clone() for p in trainer.wm.parameters()]
    assert trainer.pretrain()
    data = OfflineDataset(toy_data)
    assert trainer.buffer.stored_episodes == 12 and len(trainer.buffer) == int(data.lengths.sum())
    obs, _, rew, lengths = next(data.episode_blocks())
    valid = torch.arange(obs.shape[1])[None] < lengths[:, None]
    torch.testing.assert_close(trainer.rew_rms.mean, rew[valid].nan_to_num().double().mean(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(trainer.obs_rms.mean, obs[valid].double().mean(0), atol=1e-6, rtol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.wm.parameters()))  # 0 steps: untouched
    assert trainer.wm_bootstrapped and not trainer.pretrain()  # once only


def test_pretrain_iterations_default_to_the_tasks_number():
    from pwmbench import api

    cfg = resolve_config({})
    assert pretrain_iterations(cfg, api.task("dflex/hopper").spec) == 50_000
    assert pretrain_iterations(cfg, api.task("dflex/humanoid").spec) == 200_000
    assert pretrain_iterations(cfg, api.task("dmc/cartpole-swingup").spec) == 50_000
    assert pretrain_iterations(resolve_config({"pretrain_wm_iterations": 7}), api.task("dflex/ant").spec) == 7


def test_bad_pretrain_data_is_a_clear_error_before_training(tmp_path, toy_plugins):
    with pytest.raises(ConfigError, match=r"pretrain_data '.*nowhere'.*no such data directory.*pwmbench data collect --task toy/point"):
        train_cell("toy/point", _cfg(tmp_path / "nowhere"), 0, tmp_path / "cell")
    assert not (tmp_path / "cell" / "curves.arrow").exists() and not (tmp_path / "cell" / "checkpoint.pt").exists()
    (tmp_path / "wide").mkdir()
    write_chunk(tmp_path / "wide" / "chunk_0.pt", *_padded()[:4])  # obs width 3, toy/point has 2
    with pytest.raises(ConfigError, match=r"widths \(3, 2\) are not toy/point's \(2, 2\)"):
        train_cell("toy/point", _cfg(tmp_path / "wide"), 0, tmp_path / "cell")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "chunk_0.pt").write_bytes(b"not torch")
    with pytest.raises(ConfigError, match="chunk_0.pt: cannot be read"):
        train_cell("toy/point", _cfg(tmp_path / "broken"), 0, tmp_path / "cell")
    collect_task("toy/point", 2, tmp_path / "named", num_envs=2)
    meta = json.loads((tmp_path / "named" / "metadata.json").read_text())
    (tmp_path / "named" / "metadata.json").write_text(json.dumps({**meta, "task": "dflex/hopper"}))
    with pytest.raises(ConfigError, match="holds data of 'dflex/hopper', not 'toy/point'"):
        train_cell("toy/point", _cfg(tmp_path / "named"), 0, tmp_path / "cell")


# ------------------------------------------------------------------------------------------------ cells
class _Killed(BaseException):
    """Stands in for kill -9: nothing in the cell catches it, so only the periodic checkpoints survive."""


def _numbers(path):
    rows = read_table(path).to_pylist()
    return [{k: v for k, v in r.items() if k != "wall_s" and not k.startswith("time_") and k not in ("fps",)} for r in rows]


def test_a_cell_killed_mid_pretraining_resumes_bit_identically(toy_data, tmp_path, monkeypatch):
    import pwmbench.pwm.pretrain as pretrain

    monkeypatch.setattr(pretrain, "PRETRAIN_CHECKPOINT_EVERY", 10)
    monkeypatch.setattr(pretrain, "PRETRAIN_LOG_EVERY", 4)
    cfg = _cfg(toy_data, dynamics="flow", checkpoint_every=1, diagnostics_windows=0)
    whole = train_cell("toy/point", cfg, 3, tmp_path / "whole")
    assert whole.status == "ok"

    def kill(trainer, step):
        if step == 17:
            raise _Killed

    with pytest.raises(_Killed):
        train_cell("toy/point", cfg, 3, tmp_path / "killed", on_pretrain_step=kill)
    assert (tmp_path / "killed" / "checkpoint.pt").exists() and not (tmp_path / "killed" / PRETRAINED_WM_FILE).exists()
    resumed = train_cell("toy/point", cfg, 3, tmp_path / "killed")  # from step 10's checkpoint
    assert resumed.status == "ok"
    assert _numbers(tmp_path / "whole" / "curves.arrow") == _numbers(tmp_path / "killed" / "curves.arrow")
    a, b = (torch.load(tmp_path / d / "policy.pt", weights_only=True) for d in ("whole", "killed"))
    assert all(torch.equal(a["wm"][k], b["wm"][k]) for k in a["wm"]) and all(torch.equal(a["actor"][k], b["actor"][k]) for k in a["actor"])
    rows = read_table(tmp_path / "whole" / "curves.arrow").to_pylist()
    assert [(r["phase"], r["epoch"]) for r in rows] == [("pretrain", s) for s in (4, 8, 12, 16, 20, 24, 28, 30)] + [("train", 1), ("train", 2)]
    assert rows[0]["env_steps"] == 0 and rows[0]["wm_updates"] == 4 and rows[0]["model_lr"] == cfg.model_lr
    assert rows[-1]["wm_updates"] == cfg.wm_iterations  # bootstrapped: no initial block after pretraining


def test_a_pretrained_world_model_loads_as_pretrain_checkpoint(toy_data, tmp_path):
    from pwmbench import api

    cfg = _cfg(toy_data, max_epochs=1, diagnostics_windows=0)
    assert train_cell("toy/point", cfg, 0, tmp_path / "first").status == "ok"
    saved = torch.load(tmp_path / "first" / PRETRAINED_WM_FILE, weights_only=True)
    assert saved["iterations"] == 30 and saved["task"] == "toy/point"
    for source in (tmp_path / "first" / PRETRAINED_WM_FILE, tmp_path / "first" / "policy.pt"):
        trainer = PWMTrainer(api.task("toy/point"), _cfg("", pretrain_data=None, pretrain_checkpoint=str(source)), seed=1)
        assert trainer.wm_bootstrapped and trainer.pretraining.total == 0
    trainer = PWMTrainer(api.task("toy/point"), _cfg("", pretrain_data=None, pretrain_checkpoint=str(tmp_path / "first" / PRETRAINED_WM_FILE)), seed=1)
    assert all(torch.equal(v, trainer.wm.state_dict()[k]) for k, v in saved["wm"].items())
    with pytest.raises(ConfigError, match="another world model.*dynamics: file 'mlp', this cell 'flow'"):
        PWMTrainer(api.task("toy/point"), _cfg("", pretrain_data=None, dynamics="flow", pretrain_checkpoint=str(tmp_path / "first" / "policy.pt")), seed=1)
    with pytest.raises(ConfigError, match="no such file"):
        PWMTrainer(api.task("toy/point"), _cfg("", pretrain_data=None, pretrain_checkpoint=str(tmp_path / "none.pt")), seed=1)


def test_pretrain_checkpoint_restores_the_agent_as_pwms_checkpoint_does(toy_data, tmp_path):
    """W12 D6: PWM's `general.checkpoint` restores the world model's optimiser, the actor, the critic, ret_rms and
    every optimiser with its learning rate, not the world model alone: the first online step from a loaded checkpoint
    must move the parameters exactly as the trainer that wrote it would (a fresh Adam moved them 9.9× further)."""
    from pwmbench import api
    from pwmbench.pwm.policy_file import save_policy
    from pwmbench.pwm.pretrain import AGENT_PARTS, save_pretrained_wm

    original = PWMTrainer(api.task("toy/point"), _cfg(toy_data), seed=0)
    original.pretraining.run(original)
    original.train_epoch()  # the actor, critic, their optimisers and ret_rms have moved too
    for name, save in (("wm.pt", lambda p: save_pretrained_wm(original, p)), ("policy.pt", lambda p: save_policy(original, "toy/point", p))):
        save(tmp_path / name)
        assert set(AGENT_PARTS) <= set(torch.load(tmp_path / name, weights_only=True))
        loaded = PWMTrainer(api.task("toy/point"), _cfg("", pretrain_data=None, pretrain_checkpoint=str(tmp_path / name)), seed=1)
        for part in ("wm", "actor", "critic"):
            mine, theirs = getattr(loaded, part).state_dict(), getattr(original, part).state_dict()
            assert all(torch.equal(mine[k], theirs[k]) for k in theirs), (name, part)
        for opt in ("wm_opt", "actor_opt", "critic_opt"):
            mine, theirs = getattr(loaded, opt).state_dict(), getattr(original, opt).state_dict()
            assert [g["lr"] for g in mine["param_groups"]] == [g["lr"] for g in theirs["param_groups"]], (name, opt)
            assert all(torch.equal(mine["state"][i]["exp_avg_sq"], theirs["state"][i]["exp_avg_sq"]) for i in theirs["state"]), (name, opt)
        assert torch.equal(loaded.ret_rms.state_dict()["mean"], original.ret_rms.state_dict()["mean"])
        # one world-model step on the same batch: the loaded trainer moves exactly as the one that wrote the file
        loaded.buffer = original.buffer
        start = {k: v.clone() for k, v in loaded.wm.state_dict().items()}
        for trainer in (loaded, original):
            trainer.world_model_step(generator=torch.Generator().manual_seed(3), update_rms=False)
        assert all(torch.equal(v, original.wm.state_dict()[k]) for k, v in loaded.wm.state_dict().items()), name
        fresh = PWMTrainer(api.task("toy/point"), _cfg("", pretrain_data=None, pretrain_checkpoint=str(tmp_path / name)), seed=1)
        fresh.wm_opt = torch.optim.Adam(fresh.wm.parameters(), lr=fresh.cfg.model_lr)  # what pwmbench did before: a fresh Adam
        fresh.buffer = original.buffer
        fresh.world_model_step(generator=torch.Generator().manual_seed(3), update_rms=False)
        moved_fresh = sum(float((fresh.wm.state_dict()[k] - start[k]).norm()) for k in start)
        moved_loaded = sum(float((loaded.wm.state_dict()[k] - start[k]).norm()) for k in start)
        assert moved_fresh > 1.5 * moved_loaded, (moved_fresh, moved_loaded)  # the restored Adam state is in use


# ------------------------------------------------------------------------------------------------ suites
def _suite(pretrain, base=None):
    from pwmbench.suite.spec import parse_suite

    return parse_suite({"tasks": ["toy/point"], "seeds": [1], "base": {**SMALL, **(base or {})}, "pretrain": pretrain,
                        "variants": {"mlp": {"dynamics": "mlp"}, "flow": {"dynamics": "flow", "parity": "match"}}})  # fmt: skip


def test_suite_pretrain_table_is_validated():
    from pwmbench.suite.spec import SuiteError

    with pytest.raises(SuiteError, match="unknown pretrain key 'episode'.*episodes"):
        _suite({"episode": 3, "dir": "x"})
    with pytest.raises(SuiteError, match="either data"):
        _suite({"data": "x", "episodes": 3, "dir": "y"})
    with pytest.raises(SuiteError, match="needs 'dir'"):
        _suite({"episodes": 3})
    with pytest.raises(SuiteError, match="'iterations' must be an integer"):
        _suite({"data": "x", "iterations": -1})
    with pytest.raises(SuiteError, match="base also sets"):
        _suite({"data": "x"}, base={"pretrain_data": "x"})


def test_suite_collects_pretraining_data_and_sets_every_variant(tmp_path, toy_plugins):
    from pwmbench.data.jobs import check_suite_data, pretrain_data_job
    from pwmbench.suite.spec import SuiteError, prepare

    suite = prepare(_suite({"episodes": 3, "dir": str(tmp_path / "pre" / "{task}"), "num_envs": 2, "iterations": 5}))
    configs = [suite.configs[("toy/point", v)] for v in ("mlp", "flow")]
    assert {(c.pretrain_data, c.pretrain_wm_iterations) for c in configs} == {(str(tmp_path / "pre" / "toy/point"), 5)}
    check_suite_data(suite, 4)  # to be collected: nothing to check yet
    job = pretrain_data_job(suite, "toy/point", 4)
    assert job.kind == "pretrain_data" and job.key == f"pretrain_data|{tmp_path / 'pre' / 'toy' / 'point'}"
    assert job.fn(**job.kwargs)["collected"]
    assert OfflineDataset(tmp_path / "pre" / "toy" / "point").num_episodes == 3
    assert pretrain_data_job(suite, "toy/point", 4) is None  # present: not collected again
    check_suite_data(suite, 4)
    missing = prepare(_suite({"data": str(tmp_path / "absent")}))
    with pytest.raises(SuiteError, match=r"\[pretrain\].*no such data directory"):
        check_suite_data(missing, 4)


def test_check_reports_the_pretraining_data_or_the_fix(tmp_path, toy_plugins):
    from pwmbench.data.jobs import pretrain_data_job
    from pwmbench.suite.checklist import preflight
    from pwmbench.suite.spec import load_suite, prepare

    def suite_file(pretrain: str) -> Path:
        path = tmp_path / "s.toml"
        path.write_text(
            'tasks = ["toy/point"]\nseeds = [1]\n[base]\nmax_epochs = 2\nhorizon = 4\n'
            f"[pretrain]\n{pretrain}\n"
            '[variants.mlp]\ndynamics = "mlp"\n[variants.flow]\ndynamics = "flow"\nparity = "match"\n'
        )
        return path

    absent = {name: (ok, detail) for name, ok, detail in preflight(suite_file(f'data = "{tmp_path / "absent"}"'), tmp_path / "out")}
    ok, detail = absent["task toy/point: world-model pretraining data"]
    assert not ok and "pwmbench data collect --task toy/point" in detail
    spec = f'episodes = 3\ndir = "{tmp_path / "pre" / "{task}"}"\nnum_envs = 2\niterations = 5'
    planned = {name: (ok, detail) for name, ok, detail in preflight(suite_file(spec), tmp_path / "out")}
    assert planned["task toy/point: world-model pretraining data"] == (True, f"{tmp_path / 'pre' / 'toy/point'} is empty: `pwmbench run` will collect 3 episodes first; 5 pretraining steps")
    job = pretrain_data_job(prepare(load_suite(suite_file(spec))), "toy/point", 4)
    job.fn(**job.kwargs)  # what the run's pretrain_data job does
    ok, detail = {name: (ok, detail) for name, ok, detail in preflight(suite_file(spec), tmp_path / "out")}["task toy/point: world-model pretraining data"]
    assert ok and "3 episodes" in detail and "5 pretraining steps" in detail

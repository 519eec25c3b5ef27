"""Task sets MT30/MT80 (plugins/pwmbench_mt) and multitask PWM offline (pwmbench/pwm/multitask.py).

Ids and padded dims of both sets, the multitask env wrapper (obs padding, action slicing), collection for a set
(MT80's 101-entry pieces), and both dynamics variants training a world model and a task policy a few iterations
on a tiny collected dataset, with real-environment evaluation (episode counts, padding, scores).
"""

from __future__ import annotations

import pytest
import torch

from pwmbench import api
from pwmbench.data.collect import collect
from pwmbench.data.dataset import OfflineDataset
from pwmbench.errors import ConfigError
from pwmbench.pwm.config import resolve_config
from pwmbench.pwm.multitask import OfflineWorldModel, TaskPolicy, member_score

TINY = {
    "world_model": {"units": [32, 32], "encoder_units": [32], "latent_dim": 16},
    "actor_units": [32, 32],
    "critic_units": [32, 32],
    "preset": "pwm_5M",
    "horizon": 4,
    "wm_batch_size": 8,
    "policy_batch_size": 16,
    "critic_iterations": 2,
    "max_epochs": 4,
    "eval_every": 4,
    "eval_episodes": 3,
}
VARIANTS = {"mlp": {"dynamics": "mlp"}, "flow": {"dynamics": "flow", "dynamics_options": {"integrator": "heun", "substeps": 2}}}


def test_task_set_ids_and_padded_dims():
    mt30, mt80 = api.task("mt30"), api.task("mt80")
    assert (mt30.spec.obs_dim, mt30.spec.act_dim, mt30.spec.n_tasks, mt30.spec.task_dim) == (24, 6, 30, 64)
    assert (mt80.spec.obs_dim, mt80.spec.act_dim, mt80.spec.n_tasks, mt80.spec.task_dim) == (39, 6, 80, 96)
    assert mt30.tasks[0] == "dmc/walker-stand" and mt30.tasks[18] == "dmc/hopper-hop" and mt30.tasks[29] == "dmc/pendulum-spin"
    assert mt80.tasks[:30] == mt30.tasks and mt80.tasks[30] == "mw/assembly" and mt80.tasks[79] == "mw/hand-insert"
    assert mt80.task_id("mw/reach") == 65
    for task_set in (mt30, mt80):
        for i, name in enumerate(task_set.tasks):  # every member is registered, with the widths the set lists
            spec = api.task(name).spec
            assert (spec.obs_dim, spec.act_dim) == (task_set.obs_dims[i], task_set.spec.action_dims[i]), name
    with pytest.raises(ValueError, match="task_env"):
        mt30.make_env(1, 0)


def test_member_env_pads_observations_and_slices_actions():
    mt30 = api.task("mt30")
    env, same = mt30.task_env(29, 2, 5), mt30.task_env(29, 2, 5)  # pendulum-spin: obs 3, act 1
    obs = env.reset(seed=5)
    assert obs.shape == (2, 24) and torch.all(obs[:, 3:] == 0) and torch.equal(obs, same.reset(seed=5))
    clean = torch.zeros(2, 6)
    clean[:, 0] = 0.5
    noisy = clean.clone()
    noisy[:, 1:] = torch.randn(2, 5)  # padded action dims are ignored
    a, b = env.step(clean), same.step(noisy)
    for x, y in zip(a[:4], b[:4]):
        assert torch.equal(x, y)
    assert a[4]["obs_before_reset"].shape == (2, 24)
    with pytest.raises(ValueError, match="width 6"):
        env.step(torch.zeros(2, 1))


@pytest.fixture(scope="module")
def mt30_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("mt30")
    collect("mt30", 2, out, task_ids=[8, 29], num_envs=2, seed=3)
    return OfflineDataset(out)


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_both_variants_train_a_world_model_and_a_policy(variant, mt30_data):
    mt30 = api.task("mt30")
    cfg = resolve_config({**TINY, **VARIANTS[variant]})
    owm = OfflineWorldModel(mt30, mt30_data, cfg, 42)
    before = sum(u["transitions_sampled"] for u in owm.usage().values())  # the dataset is shared by this module
    rows = owm.train(6, log_every=3)
    assert [r["epoch"] for r in rows] == [3, 6] and all(torch.isfinite(torch.tensor(r["wm_loss"])) for r in rows)
    usage = owm.usage()
    assert set(usage) == {8, 29} and sum(u["transitions_sampled"] for u in usage.values()) - before == 6 * 8 * owm.recipe.horizon
    frozen = {k: v.clone() for k, v in owm.wm.state_dict().items()}
    policy = TaskPolicy(mt30, 29, owm.wm, mt30_data, cfg, 42)
    for _ in range(4):
        row = policy.train_iteration()
    assert row["eval_episodes"] == 3 and row["eval_episode_length"] == 500  # DMC: 500 agent steps, no termination
    assert row["eval_score"] == pytest.approx(row["eval_return"] / 1000)
    assert all(torch.equal(v, owm.wm.state_dict()[k]) for k, v in frozen.items())  # the world model stays frozen


@pytest.mark.slow
def test_variants_see_the_same_data_in_the_same_order(mt30_data):
    mt30 = api.task("mt30")
    states = []
    for variant in VARIANTS.values():
        owm = OfflineWorldModel(mt30, mt30_data, resolve_config({**TINY, **variant}), 7)
        owm.train(3, log_every=3)
        states.append(owm.generator.get_state())
    assert torch.equal(states[0], states[1])


def test_dataset_must_fit_the_set(mt30_data):
    mt80 = api.task("mt80")
    with pytest.raises(ConfigError, match="widths 24/6"):
        OfflineWorldModel(mt80, mt30_data, resolve_config(TINY), 0)
    with pytest.raises(ConfigError, match="no episodes"):
        TaskPolicy(api.task("mt30"), 0, None, mt30_data, resolve_config(TINY), 0)


@pytest.mark.slow
def test_mt80_collection_stores_101_entry_pieces_and_meta_world_scores_success(tmp_path):
    meta = collect("mt80", 1, tmp_path, task_ids=[8, 65], num_envs=1)
    assert meta["episode_length"] == 101 and meta["segments_per_episode"] == {"dmc/cartpole-balance": 5, "mw/reach": 1}
    data = OfflineDataset(tmp_path)
    assert data.episodes(8) == 5 and data.episodes(65) == 1 and data.obs_dim == 39
    mt80 = api.task("mt80")
    owm = OfflineWorldModel(mt80, data, resolve_config(TINY), 0)
    policy = TaskPolicy(mt80, 65, owm.wm, data, resolve_config(TINY), 0)
    result = policy.evaluate(2)
    assert result["eval_episode_length"] == 100 and "eval_success" in result
    assert result["eval_score"] == result["eval_success"]
    assert member_score(mt80, 8, 750.0, None) == 0.75


# ------------------------------------------------------------------------------------- cells and suites
CELL = {**TINY, "offline_wm_iterations": 6, "max_epochs": 2, "eval_every": 2, "eval_episodes": 2, "checkpoint_every": 1}


@pytest.mark.slow
def test_a_task_set_cell_writes_one_row_per_member_and_resumes(mt30_data, tmp_path):
    from pwmbench.pwm.cell import train_cell
    from pwmbench.results.tables import read_table

    cfg = resolve_config({**CELL, "data_dir": str(mt30_data.directory)})
    result = train_cell("mt30", cfg, 42, tmp_path / "clean")
    assert result.status == "ok" and not (tmp_path / "clean" / "checkpoint.pt").exists()
    rows = read_table(tmp_path / "clean" / "run.arrow").to_pylist()
    assert [(r["task"], r["task_id"], r["taskset"]) for r in rows] == [("mt30/dmc/cartpole-balance", 8, "mt30"), ("mt30/dmc/pendulum-spin", 29, "mt30")]
    for r in rows:
        assert r["status"] == "ok" and r["final_score"] == pytest.approx(r["final_return"] / 1000)
        assert r["data_episodes"] == 2 and r["data_transitions"] == 1000 and r["data_episodes_used"] >= 1
        assert r["wm_iterations"] == 6 and r["data_dir"] == str(mt30_data.directory) and r["mujoco_version"]
    curves = read_table(tmp_path / "clean" / "curves.arrow").to_pylist()
    assert {(c["member"], c["phase"]) for c in curves} == {("", "world_model"), ("dmc/cartpole-balance", "policy"), ("dmc/pendulum-spin", "policy")}

    calls = {"n": 0}
    original = TaskPolicy.train_iteration

    def interrupt_second_member(self):
        if self.task_id == 29:
            raise KeyboardInterrupt
        calls["n"] += 1
        return original(self)

    TaskPolicy.train_iteration = interrupt_second_member
    try:
        with pytest.raises(KeyboardInterrupt):
            train_cell("mt30", cfg, 42, tmp_path / "resumed")
    finally:
        TaskPolicy.train_iteration = original
    assert (tmp_path / "resumed" / "checkpoint.pt").exists() and calls["n"] == 2
    assert train_cell("mt30", cfg, 42, tmp_path / "resumed").status == "ok"
    again = read_table(tmp_path / "resumed" / "run.arrow").to_pylist()
    for a, b in zip(rows, again):  # the world model was not retrained; both members' results are the same
        assert (a["final_return"], a["data_transitions_sampled"], a["wm_iterations"]) == (b["final_return"], b["data_transitions_sampled"], b["wm_iterations"])


def test_a_failed_member_fails_the_cell_and_is_retried_when_it_is_started_again(mt30_data, tmp_path):
    from pwmbench.pwm.cell import train_cell
    from pwmbench.results.tables import read_table

    cfg = resolve_config({**CELL, "data_dir": str(mt30_data.directory)})
    original = TaskPolicy.train_iteration

    def crash_second_member(self):
        if self.task_id == 29:
            raise RuntimeError("member crashed")
        return original(self)

    TaskPolicy.train_iteration = crash_second_member
    try:
        assert train_cell("mt30", cfg, 42, tmp_path / "cell").status == "failed"
    finally:
        TaskPolicy.train_iteration = original
    rows = read_table(tmp_path / "cell" / "run.arrow").to_pylist()
    assert [r["status"] for r in rows] == ["ok", "failed"] and "member crashed" in rows[1]["reason"]
    text = (tmp_path / "cell" / "traceback.txt").read_text()
    assert text.startswith("=== mt30/dmc/pendulum-spin: RuntimeError: member crashed") and "Traceback (most recent call last)" in text

    assert train_cell("mt30", cfg, 42, tmp_path / "cell").status == "ok"  # retried: only the failed member trains again
    again = read_table(tmp_path / "cell" / "run.arrow").to_pylist()
    assert [r["status"] for r in again] == ["ok", "ok"] and again[0]["final_return"] == rows[0]["final_return"]
    assert not (tmp_path / "cell" / "traceback.txt").exists() and not (tmp_path / "cell" / "checkpoint.pt").exists()


def test_a_task_set_without_data_is_refused_with_the_fix(tmp_path):
    from pwmbench.pwm.cell import train_cell

    with pytest.raises(ConfigError, match="pwmbench data collect --taskset mt30"):
        train_cell("mt30", resolve_config(TINY), 0, tmp_path / "a")
    with pytest.raises(ConfigError, match="does not exist"):
        train_cell("mt30", resolve_config({**TINY, "data_dir": str(tmp_path / "nowhere")}), 0, tmp_path / "b")


SUITE = """
name = "mini"
tasks = ["mt30"]
seeds = [1]
[base]
{base}
[data]
{data}
[variants.mlp]
dynamics = "mlp"
[variants.flow]
dynamics = "flow"
integrator = "heun"
substeps = 2
"""


def _suite_file(tmp_path, base: str, data: str):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(base=base, data=data))
    return path


def test_suite_data_table_is_checked(tmp_path):
    from pwmbench.suite.spec import SuiteError, load_suite

    with pytest.raises(SuiteError, match="base.data_dir, which is not set"):
        load_suite(_suite_file(tmp_path, "", 'taskset = "mt30"\nepisodes_per_task = 1'))
    with pytest.raises(SuiteError, match="did you mean 'episodes_per_task'"):
        load_suite(_suite_file(tmp_path, f'data_dir = "{tmp_path}/d"', 'taskset = "mt30"\nepisodes_per_tasks = 1'))
    path = _suite_file(tmp_path, f'data_dir = "{tmp_path}/d"', "")
    from pwmbench.jobs.runner import run_suite
    from pwmbench.suite.spec import prepare

    with pytest.raises(SuiteError, match="holds no chunk_<i>.pt files"):
        run_suite(prepare(load_suite(path)), tmp_path / "out", progress=False)


@pytest.mark.slow
def test_a_suite_collects_its_data_then_runs_both_variants(tmp_path):
    import json as _json

    from pwmbench.jobs.runner import run_suite
    from pwmbench.results.tables import read_dir
    from pwmbench.suite.spec import load_suite, prepare

    base = "\n".join(f"{k} = {_json.dumps(v)}" for k, v in {**CELL, "data_dir": str(tmp_path / "data"), "task_ids": [29]}.items() if k != "world_model")
    base += '\nworld_model = { units = [32, 32], encoder_units = [32], latent_dim = 16 }'
    path = _suite_file(tmp_path, base, 'taskset = "mt30"\nepisodes_per_task = 2\ntask_ids = [29]\nnum_envs = 2')
    summary = run_suite(prepare(load_suite(path)), tmp_path / "out", workers=1, progress=False)
    assert summary.statuses["ok"] == 2, summary
    runs = read_dir(tmp_path / "out", "run.arrow").to_pylist()
    assert sorted((r["variant"], r["task"]) for r in runs) == [("flow", "mt30/dmc/pendulum-spin"), ("mlp", "mt30/dmc/pendulum-spin")]
    assert (tmp_path / "data" / "metadata.json").exists()
    from pwmbench.analysis.report import build_report

    report = build_report(tmp_path / "out", tmp_path / "report", reps=50).read_text()
    assert "## Offline data used (task sets)" in report and "| mt30/dmc/pendulum-spin | 2 | 1,000 |" in report


@pytest.mark.slow
def test_ctrl_c_stops_the_world_model_at_a_logging_boundary_and_the_resume_is_exact(mt30_data, tmp_path):
    """A stop request (Ctrl-C, SIGTERM) ends the world-model job at the next 100-step boundary, checkpointed: the
    resumed job's model and logged rows equal an uninterrupted one's bit for bit."""
    import os
    import signal

    from pwmbench.pwm import multitask_cell as mt
    from pwmbench.pwm.checkpoint import load_checkpoint

    taskset, cfg = api.task("mt30"), resolve_config({**CELL, "offline_wm_iterations": 200, "data_dir": str(mt30_data.directory)})
    ident = {"task": "mt30", "seed": "5", "variant": "mlp"}
    assert mt.train_world_model(taskset, cfg, 5, tmp_path / "clean", ident) == "ok"

    def stop_after_the_first_block(row, _):
        if row["epoch"] == 100:
            os.kill(os.getpid(), signal.SIGINT)  # delivered mid-run, as from a terminal

    with pytest.raises(KeyboardInterrupt):
        mt.train_world_model(taskset, cfg, 5, tmp_path / "stopped", ident, progress=stop_after_the_first_block)
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["owm"]["iteration"] == 100
    assert mt.train_world_model(taskset, cfg, 5, tmp_path / "stopped", ident) == "ok"
    clean, resumed = (load_checkpoint(tmp_path / d / mt.WORLD_MODEL_FILE) for d in ("clean", "stopped"))
    untimed = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time") and k != "wall_s"} for r in rows]  # noqa: E731
    assert untimed(resumed["rows"]) == untimed(clean["rows"]) and len(clean["rows"]) == 2
    for name, tensor in clean["owm"]["wm"].items():
        assert torch.equal(tensor, resumed["owm"]["wm"][name]), name


@pytest.mark.slow
def test_a_garbled_world_model_is_caught_by_the_member_that_loads_it_and_trained_again(mt30_data, tmp_path):
    """Planning reads only a world model's status (memory-mapped, no hashing of a file that may be GBs); the member
    job that loads the weights checks the checksum, moves a garbled file aside and fails naming it; the next run
    trains the world model again and ends as a clean run."""
    from pwmbench.pwm import multitask_cell as mt
    from pwmbench.pwm.cell import train_cell
    from pwmbench.pwm.checkpoint import CorruptCheckpoint
    from pwmbench.results.tables import read_table

    cfg = resolve_config({**CELL, "data_dir": str(mt30_data.directory)})
    taskset, ident = api.task("mt30"), {"task": "mt30", "seed": "3", "variant": "mlp"}
    clean = train_cell("mt30", cfg, 3, tmp_path / "clean")
    out = tmp_path / "garbled"
    assert mt.train_world_model(taskset, cfg, 3, out, ident) == "ok"
    path = out / mt.WORLD_MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a weight tensor: the file still opens
    path.write_bytes(bytes(data))
    assert mt.world_model_status(out) == "ok"  # the peek does not read the weights
    with pytest.raises(CorruptCheckpoint, match="world_model.pt does not match its checksum.*moved aside"):
        mt.train_member(taskset, cfg, 3, out, ident, 8)
    assert not path.exists() and path.with_name("world_model.pt.corrupt").exists()
    assert mt.world_model_status(out) is None
    assert train_cell("mt30", cfg, 3, out).status == "ok"
    keep = ("task", "final_return", "wm_iterations", "data_transitions_sampled")
    rows = [[{k: r[k] for k in keep} for r in read_table(d / "run.arrow").to_pylist()] for d in (clean.out_dir, out)]
    assert rows[0] == rows[1]

"""The ray executor on a real local Ray instance: dependency order, failures as outcomes, a worker killed with
SIGKILL (retried), output capture, Ctrl-C, options, and a real suite giving the local executor's exact results.

One Ray instance per test module (per xdist worker) saves its start-up (~8 s on a busy 2-core machine): executors
with the default address use the connection this process already has and leave it running. One slow test checks
that an executor started in a fresh process starts its own instance and shuts it down."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import executor_jobs as jobs_mod
from click.testing import CliRunner
from pyarrow import ipc

from pwmbench.api import ConfigError, DependencyFailed, Job, PluginError, Resources, executor
from pwmbench.cli import main

TESTS = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """A local Ray instance whose workers import this directory's modules (job functions, the toy task)."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "PWMBENCH_PLUGINS")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), saved["PYTHONPATH"] or ""])
    os.environ["PWMBENCH_PLUGINS"] = "toy_task"
    # more CPUs than any test's workers, so that the executor's own cap on jobs in flight is what is tested
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def events(path):
    """{(key, 'start'|'end'): time} from a record() file."""
    out = {}
    for line in Path(path).read_text().splitlines():
        key, what, t = line.split()
        out[key, what] = float(t)
    return out


def test_a_graph_runs_in_dependency_order_at_most_workers_at_a_time(tmp_path):
    log = tmp_path / "order.txt"
    job = lambda key, deps=(): Job(key, jobs_mod.record, {"key": key, "path": str(log), "sleep": 0.3}, depends_on=deps)
    graph = [job("a"), job("b"), job("e"), job("c", ("a", "b")), job("d", ("c",))]
    outcomes = {j.key: o for j, o in executor("ray", workers=2).run(graph)}
    assert outcomes == {k: k for k in "abcde"}
    t = events(log)
    assert t["c", "start"] >= max(t["a", "end"], t["b", "end"]) and t["d", "start"] >= t["c", "end"]
    moments = sorted([(t[k, "start"], 1) for k in "abcde"] + [(t[k, "end"], -1) for k in "abcde"], key=lambda m: (m[0], m[1]))
    running = peak = 0
    for _, step in moments:
        running += step
        peak = max(peak, running)
    assert peak <= 2


def test_an_exception_is_the_jobs_outcome_and_its_dependents_are_not_run(tmp_path):
    log = tmp_path / "ran.txt"
    graph = [
        Job("bad", jobs_mod.fail, {"key": "bad"}),
        Job("child", jobs_mod.record, {"key": "child", "path": str(log)}, depends_on=("bad",)),
        Job("grandchild", jobs_mod.record, {"key": "grandchild", "path": str(log)}, depends_on=("child",)),
        Job("fine", jobs_mod.record, {"key": "fine", "path": str(log)}),
    ]
    outcomes = {j.key: o for j, o in executor("ray", workers=2).run(graph)}
    assert set(outcomes) == {"bad", "child", "grandchild", "fine"}
    bad = outcomes["bad"]
    assert type(bad) is ValueError and str(bad) == "bad: on purpose"
    assert "executor_jobs.py" in str(bad.__cause__) and "in fail" in str(bad.__cause__)  # the worker's traceback
    assert isinstance(outcomes["child"], DependencyFailed) and outcomes["child"].dependency == "bad"
    assert isinstance(outcomes["grandchild"], DependencyFailed) and outcomes["grandchild"].dependency == "child"
    assert outcomes["fine"] == "fine" and set(events(log)) == {("fine", "start"), ("fine", "end")}


def test_a_job_that_cannot_start_is_refused_with_its_reason(tmp_path):
    graph = [
        Job("greedy", jobs_mod.record, {"key": "greedy", "path": str(tmp_path / "g")}, kind="member", resources=Resources(gpus=64)),
        Job("after", jobs_mod.record, {"key": "after", "path": str(tmp_path / "a")}, depends_on=("greedy",)),
        Job("unpicklable", jobs_mod.record, {"key": "unpicklable", "path": threading.Lock()}),
    ]
    outcomes = {j.key: o for j, o in executor("ray", workers=2).run(graph)}
    assert isinstance(outcomes["greedy"], ConfigError) and "asks for 64 GPU" in str(outcomes["greedy"]) and "resources.member" in str(outcomes["greedy"])
    assert isinstance(outcomes["after"], DependencyFailed)
    assert isinstance(outcomes["unpicklable"], Exception) and not (tmp_path / "g").exists()


def kill_when_written(pid_file, killed):
    deadline = time.time() + 60
    while time.time() < deadline and not (pid_file.exists() and pid_file.read_text().strip()):
        time.sleep(0.05)
    pid = int(pid_file.read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    killed.append(pid)


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_retried_and_the_job_finishes(tmp_path):
    pid_file, killed = tmp_path / "pids.txt", []
    killer = threading.Thread(target=kill_when_written, args=(pid_file, killed))
    killer.start()
    graph = [Job("k", jobs_mod.sleep_once, {"key": "k", "pid_file": str(pid_file)})]
    outcomes = list(executor("ray", workers=1).run(graph))
    killer.join()
    assert [o for _, o in outcomes] == ["k finished on attempt 2"]
    pids = [int(p) for p in pid_file.read_text().split()]
    assert pids[0] == killed[0] and pids[1] != pids[0]

    # without retries, the worker's death is the job's outcome (Ray's error), not a hang
    pid_file, killed = tmp_path / "pids0.txt", []
    killer = threading.Thread(target=kill_when_written, args=(pid_file, killed))
    killer.start()
    graph = [Job("k", jobs_mod.sleep_once, {"key": "k", "pid_file": str(pid_file)}), Job("after", jobs_mod.record, {"key": "after", "path": str(tmp_path / "x")}, depends_on=("k",))]
    outcomes = {j.key: o for j, o in executor("ray", workers=1, max_retries="0").run(graph)}
    killer.join()
    assert isinstance(outcomes["k"], ray.exceptions.RayError), outcomes
    assert isinstance(outcomes["after"], DependencyFailed)


def test_a_jobs_output_goes_to_its_log_file(tmp_path):
    log = tmp_path / "logs" / "job.log"
    graph = [Job("loud", jobs_mod.shout, {"key": "loud", "text": "hello"}, log=str(log)), Job("quiet", jobs_mod.shout, {"key": "quiet", "text": "bye"}, depends_on=("loud",))]
    assert [o for _, o in executor("ray", workers=1).run(graph)] == ["loud", "quiet"]
    lines = log.read_text().splitlines()
    assert sorted(lines) == sorted(f"hello {w}" for w in ("print-stdout", "print-stderr", "fd1", "fd2"))  # and not the next job's


def test_runtime_env_reaches_the_jobs():
    graph = [Job("env", jobs_mod.getenv, {"key": "env", "name": "PWMBENCH_RAY_TEST"})]
    assert [o for _, o in executor("ray", runtime_env='{"env_vars": {"PWMBENCH_RAY_TEST": "set"}}').run(graph)] == ["set"]
    assert [o for _, o in executor("ray").run(graph)] == [None]


@pytest.mark.slow
def test_closing_the_iterator_cancels_running_jobs(tmp_path):
    pid_file = tmp_path / "pids.txt"
    graph = [Job("long", jobs_mod.sleep_once, {"key": "long", "pid_file": str(pid_file)}),
             Job("quick", jobs_mod.record, {"key": "quick", "path": str(tmp_path / "q"), "sleep": 0.5})]
    ex = executor("ray", workers=2)
    run = ex.run(graph)
    job, outcome = next(run)
    assert job.key == "quick" and outcome == "quick"
    deadline = time.time() + 60
    while time.time() < deadline and not (pid_file.exists() and pid_file.read_text().strip()):
        time.sleep(0.05)
    pid = int(pid_file.read_text().split()[0])
    run.close()  # what Ctrl-C in the caller's loop does
    deadline = time.time() + 30
    while time.time() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid), "the cancelled job's worker is still running"
    assert not ex._running and ray.is_initialized()  # the module's instance is not ours: left running


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (killed, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_options_are_checked_and_converted(monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown ray executor option 'max_retry'.*did you mean 'max_retries'"):
        executor("ray", workers=2, max_retry=1)
    ex = executor("ray", workers=2, address="local", max_retries="5", runtime_env='{"env_vars": {"A": "1"}}')
    assert (ex.address, ex.max_retries, ex.runtime_env) == (None, 5, {"env_vars": {"A": "1"}})
    assert executor("ray", address="auto").address == "auto"
    for bad in ({"max_retries": "many"}, {"max_retries": -2}, {"runtime_env": "[1]"}, {"address": 3}):
        with pytest.raises(ConfigError):
            executor("ray", **bad)
    with pytest.raises(ConfigError, match="workers"):
        executor("ray", workers=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(PluginError, match=r"pip install 'pwmbench\[ray\]'"):
        executor("ray", workers=2)


def test_the_plugin_is_listed_and_imports_no_ray():
    listed = CliRunner().invoke(main, ["plugins"])
    assert listed.exit_code == 0 and any(line.split()[:3] == ["executor", "ray", "ray"] and "built-in" in line for line in listed.output.splitlines()), listed.output
    code = "import sys, pwmbench_ray; assert 'ray' not in sys.modules, 'importing the plugin imported ray'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_an_executor_in_a_fresh_process_starts_its_own_instance_and_shuts_it_down(tmp_path):
    code = f"""
import ray
from pwmbench.api import Job, executor
import executor_jobs as m
graph = [Job(k, m.record, {{"key": k, "path": {str(tmp_path / 'r.txt')!r}}}, depends_on=d) for k, d in (("a", ()), ("b", ("a",)))]
ex = executor("ray", workers=2)
out = [(j.key, o) for j, o in ex.run(graph)]
assert out == [("a", "a"), ("b", "b")], out
assert not ray.is_initialized(), "the executor left its instance running"
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.usefixtures("toy_plugins")
def test_a_suite_run_by_ray_gives_the_local_executors_results(tmp_path):
    from test_runner import curves, write_suite

    from pwmbench.jobs.runner import run_suite
    from pwmbench.suite.spec import load_suite, prepare

    suite = prepare(load_suite(write_suite(tmp_path, seeds=(1,))))
    summaries = {name: run_suite(suite, tmp_path / name, workers=2, executor=name, progress=False) for name in ("ray", "local")}
    assert all(s.statuses == {"ok": 2} and s.ok for s in summaries.values()), summaries
    cells = sorted(p.parent.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("run.arrow"))
    assert len(cells) == 2
    for cell in cells:
        rows = [ipc.open_file(tmp_path / name / cell / "run.arrow").read_all().to_pylist()[0] for name in ("ray", "local")]
        assert [{k: r[k] for k in ("status", "final_return", "epochs", "env_steps")} for r in rows] == [{k: rows[1][k] for k in ("status", "final_return", "epochs", "env_steps")}] * 2
        assert curves(tmp_path / "ray" / cell) == curves(tmp_path / "local" / cell)


@pytest.mark.slow
def test_a_task_set_suite_runs_as_a_job_graph_on_ray_with_the_local_executors_results(tmp_path):
    """MT30 with two members: the world-model job, then the member jobs (which read its world_model.pt), then the
    collecting job — on Ray, equal to the local executor's results."""
    from test_jobs import TASKSET_SUITE

    from pwmbench.data.collect import collect
    from pwmbench.jobs.runner import run_suite
    from pwmbench.results.tables import read_table
    from pwmbench.suite.spec import load_suite, prepare

    collect("mt30", 2, tmp_path / "data", task_ids=[8, 29], num_envs=2, seed=3)
    path = tmp_path / "suite.toml"
    path.write_text(TASKSET_SUITE.format(data=tmp_path / "data"))
    suite = prepare(load_suite(path))
    for name in ("ray", "local"):
        summary = run_suite(suite, tmp_path / name, workers=2, executor=name, progress=False)
        assert summary.ok and summary.statuses == {"ok": 1}, summary
    (cell,) = suite.cells()

    def table(root, name):
        t = read_table(cell.directory(root) / name)
        return t.drop([c for c in t.column_names if c in ("wall_s", "fps") or c.startswith("time_")]).to_pylist()

    assert table(tmp_path / "ray", "curves.arrow") == table(tmp_path / "local", "curves.arrow")
    keep = ("task", "status", "final_return", "final_score", "epochs", "wm_iterations", "data_transitions_sampled")
    assert [{k: r[k] for k in keep} for r in table(tmp_path / "ray", "run.arrow")] == [{k: r[k] for k in keep} for r in table(tmp_path / "local", "run.arrow")]
    logs = sorted(p.relative_to(cell.directory(tmp_path / "ray")) for p in cell.directory(tmp_path / "ray").rglob("*.log"))
    assert [str(p) for p in logs] == ["collect.log", "job.log", "members/29/job.log", "members/8/job.log"]

"""Suites as job graphs: ordering and failure propagation, the local executor running a graph, a task-set cell as
world-model → member → collect jobs (equal to the cell trained in one process), resources from [executor], the
results-directory lock and `pwmbench status`."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from pwmbench.api import ConfigError, DependencyFailed, Job, JobGraph, Resources, order_jobs
from pwmbench.cli import main

TESTS = Path(__file__).parent


@pytest.fixture
def workers_see_the_test_modules(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PWMBENCH_PLUGINS", "toy_task")


def _noop(**_):
    return None


def test_order_jobs_checks_the_graph():
    a, b, c = Job("a", _noop), Job("b", _noop, depends_on=("a",)), Job("c", _noop, depends_on=("b", "a"))
    assert [j.key for j in order_jobs([c, b, a])] == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="share the key 'a'"):
        order_jobs([a, a])
    with pytest.raises(ConfigError, match="depends on 'x', which is not in the graph"):
        order_jobs([Job("y", _noop, depends_on=("x",))])
    with pytest.raises(ConfigError, match="cycle: p → q → p"):
        order_jobs([Job("p", _noop, depends_on=("q",)), Job("q", _noop, depends_on=("p",))])
    with pytest.raises(ConfigError, match="resources.gpus must be an int"):
        Resources(gpus=-1)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_job_graph_hands_out_jobs_after_their_dependencies_and_drops_what_a_failure_blocks(data):
    n = data.draw(st.integers(1, 9))
    jobs = [Job(f"j{i}", _noop, depends_on=tuple(f"j{d}" for d in (data.draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else ()))) for i in range(n)]
    failing = data.draw(st.sets(st.sampled_from([j.key for j in jobs])))
    graph, done, dropped = JobGraph(jobs), [], {}
    while graph:
        ready = graph.ready()
        assert ready, "a graph without cycles always has a job to start"
        for job in ready:
            assert all(d in done for d in job.depends_on)
            done.append(job.key)
            for other, error in graph.finished(job, ValueError("x") if job.key in failing else "ok"):
                assert isinstance(error, DependencyFailed)
                dropped[other.key] = error
    by_key = {j.key: j for j in jobs}

    def upstream(key):
        return {d for dep in by_key[key].depends_on for d in ({dep} | upstream(dep))}

    for job in jobs:  # dropped exactly when something upstream failed (and it was never started)
        blocked = bool(upstream(job.key) & failing & set(done))
        assert (job.key in dropped) == blocked and (job.key in done) != blocked


@pytest.mark.slow
def test_the_local_executor_runs_a_graph_in_dependency_order(tmp_path, workers_see_the_test_modules):
    import executor_jobs as m

    from pwmbench.api import executor

    log = tmp_path / "log.txt"
    jobs = [
        Job("wm", m.record, {"key": "wm", "path": str(log), "sleep": 0.3}),
        Job("m1", m.record, {"key": "m1", "path": str(log)}, depends_on=("wm",)),
        Job("m2", m.fail, {"key": "m2"}, depends_on=("wm",)),
        Job("collect", m.record, {"key": "collect", "path": str(log)}, depends_on=("m1", "m2")),
        Job("other", m.record, {"key": "other", "path": str(log)}),
    ]
    outcomes = dict((j.key, o) for j, o in executor("local", workers=2).run(jobs))
    assert outcomes["wm"] == "wm" and outcomes["m1"] == "m1" and outcomes["other"] == "other"
    assert isinstance(outcomes["m2"], ValueError) and isinstance(outcomes["collect"], DependencyFailed)
    assert "m2" in str(outcomes["collect"])
    events = {line.split()[0] + " " + line.split()[1]: float(line.split()[2]) for line in log.read_text().splitlines()}
    assert events["wm end"] <= events["m1 start"] and "collect start" not in events


def test_executor_options_and_resources_come_from_the_suite(tmp_path):
    from pwmbench.jobs.cell_kinds import job_resources
    from pwmbench.jobs.runner import executor_choice, parse_executor_settings
    from pwmbench.suite.spec import SuiteError, parse_suite

    base = {"name": "s", "tasks": ["dmc/cartpole-balance"], "variants": {"mlp": {"dynamics": "mlp"}}}
    suite = parse_suite({**base, "executor": {"name": "ray", "address": "auto", "resources": {"cell": {"cpus": 3, "gpus": 1, "time_min": 90}}}})
    assert executor_choice(suite, None, None) == ("ray", {"address": "auto"})
    assert executor_choice(suite, None, {"max_retries": 5}) == ("ray", {"address": "auto", "max_retries": 5})
    assert executor_choice(suite, "local", None) == ("local", {})  # the suite's options belong to its executor
    assert job_resources(suite, "cell") == Resources(cpus=3, gpus=1, time_min=90)
    assert job_resources(suite, "member").cpus == 1  # fixed by the suite alone (default 1), never by --workers
    with pytest.raises(SuiteError, match="did you mean 'world_model'"):
        parse_suite({**base, "executor": {"resources": {"world-model": {"cpus": 1}}}})
    with pytest.raises(SuiteError, match="did you mean 'memory_gb'"):
        parse_suite({**base, "executor": {"resources": {"cell": {"memory": 8}}}})
    assert parse_executor_settings(["executor.address=auto", "executor.max_retries=4", 'executor.extra={ qos = "low" }']) == {
        "address": "auto", "max_retries": 4, "extra": {"qos": "low"}}  # fmt: skip
    with pytest.raises(ConfigError, match="executor.KEY=VALUE"):
        parse_executor_settings(["address=auto"])
    from pwmbench.api import executor

    with pytest.raises(ConfigError, match="did you mean 'start_method'"):
        executor("local", workers=1, start_methd="fork")


def test_the_results_directory_is_locked_by_one_run(tmp_path):
    from pwmbench.jobs.lock import LOCK_FILE, ResultsLocked, results_lock

    with results_lock(tmp_path) as path:
        holder = json.loads(path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(ResultsLocked, match=f"host {socket.gethostname()}, pid {os.getpid()}"):
            with results_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_FILE).exists()
    # the kernel's lock is the truth: a lock file left behind by a process that is gone, whatever it names, is taken
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True).stdout.strip()
    for text in (json.dumps({"host": socket.gethostname(), "pid": int(dead), "started": 0}), json.dumps({"host": "elsewhere", "pid": 1}), ""):
        (tmp_path / LOCK_FILE).write_text(text)
        with results_lock(tmp_path):
            pass


def test_without_flock_the_lock_is_a_whole_file_and_a_gone_holder_is_taken_over(tmp_path, monkeypatch):
    import fcntl

    from pwmbench.jobs.lock import LOCK_FILE, ResultsLocked, results_lock

    def no_flock(*args):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with results_lock(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(ResultsLocked, match=f"pid {os.getpid()}"):
            with results_lock(tmp_path):
                pass
    assert not (tmp_path / LOCK_FILE).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead), "started": 0}))
    with results_lock(tmp_path):
        pass
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": 0}))
    with pytest.raises(ResultsLocked, match="host elsewhere, pid 1"):
        with results_lock(tmp_path):
            pass


RACER = """
import json, os, sys, time
if sys.argv[3] == "no-flock":
    import fcntl
    def no_flock(*a):
        raise OSError(37, "No locks available")
    fcntl.flock = no_flock
from pathlib import Path
from pwmbench.jobs.lock import ResultsLocked, results_lock
out, start = Path(sys.argv[1]), float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
held = 0
deadline = start + 1.0
while time.time() < deadline:
    try:
        with results_lock(out):
            t0 = time.time()
            time.sleep(0.01)
            t1 = time.time()
            with open(out / "intervals", "a") as f:
                f.write(json.dumps([os.getpid(), t0, t1]) + "\\n")
            held += 1
    except ResultsLocked:
        time.sleep(0.001)
print(held)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["flock", "no-flock"])
def test_eight_processes_racing_for_the_lock_never_hold_it_together(tmp_path, mode):
    """W14 item 4: 8 processes try to take the lock over and over for a second, from a clean directory, over a lock
    file a dead process left, and over an empty one; every holding interval is disjoint from every other."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True).stdout.strip()
    leftovers = ["", json.dumps({"host": socket.gethostname(), "pid": int(dead), "started": 0})] + ([None] if mode == "flock" else [])
    for trial, leftover in enumerate([None, *leftovers] * 2):
        out = tmp_path / f"t{trial}"
        out.mkdir()
        if leftover is not None and (mode == "flock" or leftover):  # without flock an empty lock is refused, not taken
            (out / ".pwmbench.lock").write_text(leftover)
        start = time.time() + 1.5
        racers = [subprocess.Popen([sys.executable, "-c", RACER, str(out), str(start), mode], stdout=subprocess.PIPE, text=True) for _ in range(8)]
        held = [int(r.communicate(timeout=60)[0].strip() or 0) for r in racers]
        intervals = sorted(json.loads(line)[1:] for line in (out / "intervals").read_text().splitlines())
        assert sum(held) == len(intervals) > 1, (trial, held)
        overlaps = [(a, b) for a, b in zip(intervals, intervals[1:]) if b[0] < a[1]]
        assert not overlaps, f"trial {trial} ({mode}, leftover {leftover!r}): two holders at once {overlaps[:3]}"
        assert not (out / ".pwmbench.lock").exists()


TASKSET_SUITE = """
name = "mt-jobs"
tasks = ["mt30"]
seeds = [7]
[base]
world_model = {{ units = [32, 32], encoder_units = [32], latent_dim = 16 }}
actor_units = [32, 32]
critic_units = [32, 32]
preset = "pwm_5M"
horizon = 4
wm_batch_size = 8
policy_batch_size = 16
critic_iterations = 2
offline_wm_iterations = 6
max_epochs = 2
eval_every = 2
eval_episodes = 2
data_dir = "{data}"
task_ids = [8, 29]
[variants.mlp]
dynamics = "mlp"
[executor.resources.member]
cpus = 1
"""


@pytest.mark.slow
def test_a_task_set_cell_runs_as_world_model_member_and_collect_jobs_equal_to_one_process(tmp_path, workers_see_the_test_modules):
    from pwmbench.data.collect import collect
    from pwmbench.jobs.cell_kinds import kind_for
    from pwmbench.jobs.runner import run_suite
    from pwmbench.pwm.cell import train_cell
    from pwmbench.results.tables import read_table
    from pwmbench.suite.spec import load_suite, prepare

    collect("mt30", 2, tmp_path / "data", task_ids=[8, 29], num_envs=2, seed=3)
    path = tmp_path / "suite.toml"
    path.write_text(TASKSET_SUITE.format(data=tmp_path / "data"))
    suite = prepare(load_suite(path))
    (cell,) = suite.cells()
    jobs = kind_for(cell.task).jobs(suite, cell, tmp_path / "planned", False, ())
    assert [(j.kind, j.depends_on) for j in jobs] == [
        ("world_model", ()), ("member", (f"{cell.key}|world_model",)), ("member", (f"{cell.key}|world_model",)),
        ("collect", (f"{cell.key}|world_model", f"{cell.key}|member|8", f"{cell.key}|member|29"))]  # fmt: skip
    assert jobs[1].group == jobs[2].group and jobs[1].resources.cpus == 1 and jobs[-1].key == cell.key

    summary = run_suite(suite, tmp_path / "jobs", workers=2, progress=False)
    assert summary.ok, summary.problems
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the jobs' thread count (the suite's default): float sums depend on it
    try:
        one = train_cell("mt30", cell.config, 7, tmp_path / "inline", identity={"suite": "mt-jobs", "variant": "mlp"})
    finally:
        torch.set_num_threads(threads)
    assert one.status == "ok"
    timing = {"wall_s", "time_wm", "time_policy", "time_eval", "fps"}

    def table(directory, name):
        t = read_table(directory / name)
        return t.drop([c for c in t.column_names if c in timing or c.startswith("time_")]).to_pylist()

    cell_dir = cell.directory(tmp_path / "jobs")
    assert table(cell_dir, "curves.arrow") == table(tmp_path / "inline", "curves.arrow")
    keep = ("task", "status", "final_return", "final_score", "epochs", "wm_iterations", "data_transitions_sampled", "config_hash")
    assert [{k: r[k] for k in keep} for r in table(cell_dir, "run.arrow")] == [{k: r[k] for k in keep} for r in table(tmp_path / "inline", "run.arrow")]

    status = CliRunner().invoke(main, ["status", str(tmp_path / "jobs")])
    assert status.exit_code == 0, status.output
    assert f"done      {cell.key}|world_model" in status.output and f"done      {cell.key}|member|29" in status.output
    assert status.output.strip().splitlines()[-1] == "4 done"
    # a member whose result went missing: status says queued, a re-run trains only it (the world model is kept)
    (cell_dir / "members" / "29" / "member_run.arrow").unlink()
    (cell_dir / "run.arrow").unlink()
    assert "queued    " + f"{cell.key}|member|29" in CliRunner().invoke(main, ["status", str(tmp_path / "jobs")]).output
    again = [j.key for j in kind_for(cell.task).jobs(suite, cell, tmp_path / "jobs", False, ())]
    assert again == [f"{cell.key}|member|29", cell.key]
    assert run_suite(suite, tmp_path / "jobs", workers=1, progress=False).ok
    assert table(cell_dir, "run.arrow")[1]["final_return"] == table(tmp_path / "inline", "run.arrow")[1]["final_return"]


@pytest.mark.slow
def test_a_second_run_on_the_same_results_is_refused_naming_the_first(tmp_path, workers_see_the_test_modules):
    import signal
    import time

    from test_runner import write_suite

    suite = write_suite(tmp_path, epochs=400, seeds=(1,))
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "pwmbench", "run", str(suite), "--out", str(out), "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (out / ".pwmbench.lock").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert (out / ".pwmbench.lock").exists(), first.stdout.read() if first.poll() is not None else "no lock"
        second = subprocess.run([sys.executable, "-m", "pwmbench", "run", str(suite), "--out", str(out), "--no-progress"],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr and "in use by another pwmbench run" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
    assert not (out / ".pwmbench.lock").exists()  # released on Ctrl-C

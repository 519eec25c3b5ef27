"""The slurm executor on a real single-node Slurm cluster (`scripts/local-slurm.sh up`): a graph with dependencies
and a job array in order, failures and their cancelled dependents, a simulated preemption (requeue, then resume),
Ctrl-C, submit/status, options.

The cluster fixture skips these tests only when the script exits 3 ("local-slurm: cannot start Slurm: …": no root,
no apt, daemons that die); any other failure of the script is a test failure. Jobs run as root on this machine's
CPUs (2 in CI), so the tests keep their jobs few and short; each key carries a random suffix so that tests running
side by side (xdist) never mistake each other's jobs."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import executor_jobs as jobs_mod
import pytest

from pwmbench.api import JOB_STATES, ConfigError, DependencyFailed, Job, executor

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "local-slurm.sh"
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def cluster():
    """The local cluster, started when it is not up; the tests skip with the script's reason only on exit 3."""
    if subprocess.run(["bash", str(SCRIPT), "status"], check=False, capture_output=True, timeout=60).returncode != 0:
        done = subprocess.run(["bash", str(SCRIPT), "up"], check=False, capture_output=True, text=True, timeout=900)
        if done.returncode == 3:
            reason = next((line for line in done.stdout.splitlines() if line.startswith("local-slurm: cannot start Slurm")), done.stdout.strip())
            pytest.skip(reason)
        assert done.returncode == 0, f"scripts/local-slurm.sh up exited {done.returncode}:\n{done.stdout}\n{done.stderr}"


def uid(key):
    return f"{key}-{uuid.uuid4().hex[:6]}"


def events(path):
    """{(key, 'start'|'end'): time} from a record() file."""
    out = {}
    for line in Path(path).read_text().splitlines():
        key, what, t = line.split()
        out[key, what] = float(t)
    return out


def slurm_jobs(name_prefix):
    """{job name: [Slurm states]} of this user's jobs whose name starts with pwmbench_<name_prefix> (the executor
    names a job pwmbench_<key>, with characters other than letters, digits and _.=+- replaced by _)."""
    text = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%j|%T"], capture_output=True, text=True, check=True).stdout
    out = {}
    for line in text.splitlines():
        name, state = line.split("|")
        if name.startswith(f"pwmbench_{name_prefix}"):
            out.setdefault(name[len("pwmbench_"):], []).append(state)
    return out


def test_a_graph_with_an_array_runs_in_dependency_order_and_yields_every_outcome(cluster, tmp_path):
    log = tmp_path / "order.txt"
    names = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")
    a, c, e = uid("a"), uid("c"), uid("e")
    members = [uid(f"m{i}") for i in range(3)]
    job = lambda key, deps=(), group=None: Job(key, jobs_mod.record_env, {"key": key, "path": str(log), "names": names, "sleep": 0.2},
                                               depends_on=deps, group=group, kind="member" if group else "cell")  # fmt: skip
    graph = [job(a), *(job(m, (a,), group="members") for m in members), job(c, tuple(members)),
             Job(e, jobs_mod.shout, {"key": e, "text": "hello"}, log=str(tmp_path / "e" / "job.log"))]  # fmt: skip
    start = time.time()
    outcomes = {j.key: o for j, o in executor("slurm", workers=2, folder=str(tmp_path / "slurm"), poll_s=0.5).run(graph)}
    print(f"graph of 6 jobs: {time.time() - start:.1f} s")
    assert set(outcomes) == {a, c, e, *members}
    assert not [o for o in outcomes.values() if isinstance(o, BaseException)], outcomes
    t = events(log)
    assert all(t[m, "start"] >= t[a, "end"] for m in members)
    assert t[c, "start"] >= max(t[m, "end"] for m in members)
    # the group went as ONE job array (three elements of one array job), the others as plain jobs
    arrays = {outcomes[m]["SLURM_ARRAY_JOB_ID"] for m in members}
    assert len(arrays) == 1 and None not in arrays
    assert sorted(outcomes[m]["SLURM_ARRAY_TASK_ID"] for m in members) == ["0", "1", "2"]
    assert outcomes[a]["SLURM_ARRAY_JOB_ID"] is None and outcomes[c]["SLURM_ARRAY_JOB_ID"] is None
    # the job's stdout and stderr (Python's and the file descriptors') went to its log
    text = (tmp_path / "e" / "job.log").read_text()
    assert outcomes[e] == e
    for what in ("print-stdout", "print-stderr", "fd1", "fd2"):
        assert f"hello {what}" in text


def test_an_exception_is_the_outcome_and_its_dependents_are_cancelled(cluster, tmp_path):
    log = tmp_path / "ran.txt"
    tag = uuid.uuid4().hex[:6]
    bad, child, grandchild, fine = (f"{k}-{tag}" for k in ("bad", "child", "grandchild", "fine"))
    graph = [
        Job(bad, jobs_mod.fail, {"key": bad}),
        Job(child, jobs_mod.record, {"key": child, "path": str(log)}, depends_on=(bad,)),
        Job(grandchild, jobs_mod.record, {"key": grandchild, "path": str(log)}, depends_on=(child,)),
        Job(fine, jobs_mod.record, {"key": fine, "path": str(log), "sleep": 0.5}),
    ]
    outcomes = {j.key: o for j, o in executor("slurm", folder=str(tmp_path / "slurm"), poll_s=0.5).run(graph)}
    assert set(outcomes) == {bad, child, grandchild, fine}
    assert isinstance(outcomes[bad], ValueError) and f"{bad}: on purpose" in str(outcomes[bad])
    assert "Traceback" in str(outcomes[bad].__cause__) and "raise ValueError" in str(outcomes[bad].__cause__)
    assert isinstance(outcomes[child], DependencyFailed) and outcomes[child].dependency == bad
    assert isinstance(outcomes[grandchild], DependencyFailed) and outcomes[grandchild].dependency == child
    assert "ValueError" in outcomes[grandchild].error
    assert outcomes[fine] == fine
    ran = {key for key, _ in events(log)}
    assert ran == {fine}
    # nothing stays queued: Slurm saw the dependents cancelled
    states = slurm_jobs("")
    assert states[bad] == ["FAILED"]
    assert states[child] == ["CANCELLED"] and states[grandchild] == ["CANCELLED"]


@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_resumes_to_its_normal_result(cluster, tmp_path):
    """`scancel --signal=USR2` (Slurm's preemption/time-limit warning, as submitit asks for it) makes submitit
    checkpoint and requeue the job; it starts again and counts on from its progress file. Slurm holds a requeued
    job back for its credential lifetime (AuthInfo cred_expire: 120 s by default, 10 s on the local cluster), so
    this test takes ~15 s."""
    key, progress = uid("preempted"), tmp_path / "progress"
    starts = Path(f"{progress}.starts")
    job = Job(key, jobs_mod.count_to, {"key": key, "progress": str(progress), "steps": 10, "step_s": 0.4})
    errors = []

    def preempt():
        try:
            deadline = time.time() + 120
            while time.time() < deadline and not (progress.exists() and int(progress.read_text() or 0) >= 3):
                time.sleep(0.1)
            job_id = starts.read_text().split()[0]
            subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=preempt, daemon=True)
    thread.start()
    start = time.time()
    outcomes = list(executor("slurm", folder=str(tmp_path / "slurm"), poll_s=0.5).run([job]))
    thread.join(timeout=10)
    print(f"preempted job: {time.time() - start:.1f} s")
    assert not errors, errors
    assert len(outcomes) == 1 and outcomes[0][1] == (key, 10, 2), outcomes
    runs = [line.split() for line in starts.read_text().splitlines()]
    assert len(runs) == 2 and runs[0][0] == runs[1][0], runs  # the same Slurm job, started twice
    assert int(runs[0][2]) == 0 and int(runs[1][2]) >= 3, runs  # the second start resumed from the progress file


def test_closing_the_run_cancels_what_is_queued_or_running(cluster, tmp_path):
    tag = uuid.uuid4().hex[:6]
    quick, slow, after = f"quick-{tag}", f"slow-{tag}", f"after-{tag}"
    graph = [
        Job(quick, jobs_mod.record, {"key": quick, "path": str(tmp_path / "log")}),
        Job(slow, jobs_mod.record, {"key": slow, "path": str(tmp_path / "log"), "sleep": 300}),
        Job(after, jobs_mod.record, {"key": after, "path": str(tmp_path / "log")}, depends_on=(slow,)),
    ]
    run = executor("slurm", folder=str(tmp_path / "slurm"), poll_s=0.5).run(graph)
    first_job, first = next(run)
    assert first_job.key == quick and first == quick
    run.close()  # what Ctrl-C in the caller does
    deadline = time.time() + 30
    while time.time() < deadline:
        states = slurm_jobs("")
        if states.get(slow) == ["CANCELLED"] and states.get(after) == ["CANCELLED"]:
            break
        time.sleep(0.5)
    assert states.get(slow) == ["CANCELLED"] and states.get(after) == ["CANCELLED"], states


def test_submit_then_status_follows_the_jobs_to_done(cluster, tmp_path, monkeypatch):
    tag = uuid.uuid4().hex[:6]
    first, second = f"first-{tag}", f"second-{tag}"
    record_dir = tmp_path / ".executor"
    graph = [
        Job(first, jobs_mod.record, {"key": first, "path": str(tmp_path / "log"), "sleep": 1.0}, log=str(tmp_path / "first.log")),
        Job(second, jobs_mod.record, {"key": second, "path": str(tmp_path / "log")}, depends_on=(first,)),
    ]
    ex = executor("slurm", poll_s=0.5)
    submitted = ex.submit(graph, str(record_dir))
    assert [s.key for s in submitted] == [first, second] and {s.state for s in submitted} == {"queued"}
    assert submitted[0].log == str(tmp_path / "first.log") and submitted[1].log.endswith("_log.out")
    record = json.loads((record_dir / "slurm_jobs.json").read_text())
    assert set(record["jobs"]) == {first, second}
    assert record["folder"] == str(record_dir / ".slurm")  # the default folder goes under the record directory
    assert record["jobs"][second]["depends_on"] == [first]
    assert all(record["jobs"][k]["job_id"] == s.scheduler_id for k, s in zip((first, second), submitted))
    # a fresh executor (as `pwmbench status` makes one) follows them through the scheduler
    seen, deadline = set(), time.time() + 90
    while time.time() < deadline:
        states = {s.key: s for s in executor("slurm").status(str(record_dir))}
        seen |= {(k, s.state) for k, s in states.items()}
        if all(s.state == "done" for s in states.values()):
            break
        time.sleep(0.5)
    assert {s.state for s in states.values()} == {"done"}, states
    assert {state for _, state in seen} <= set(JOB_STATES)
    assert (second, "queued") in seen  # it waited for its dependency
    assert states[first].log == str(tmp_path / "first.log") and states[first].scheduler_id == submitted[0].scheduler_id
    # without a scheduler to ask, status says so and still tells finished jobs from their result files
    empty = tmp_path / "no-slurm"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    offline = {s.key: s for s in executor("slurm").status(str(record_dir))}
    assert {s.state for s in offline.values()} == {"done"}
    assert all("scheduler unreachable" in s.detail for s in offline.values()), offline


def test_unknown_options_and_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="partiton.*did you mean 'partition'"):
        executor("slurm", partiton="debug")
    with pytest.raises(ConfigError, match="poll_s"):
        executor("slurm", poll_s="soon")
    with pytest.raises(ConfigError, match="time_min"):
        executor("slurm", time_min=-5)
    with pytest.raises(ConfigError, match="extra"):
        executor("slurm", extra="mail-type=END")
    ex = executor("slurm", poll_s="0.5", time_min="90", extra='{"mail-type": "END"}', partition="debug")  # from --set
    assert (ex.poll_s, ex.time_min, ex.extra, ex.partition) == (0.5, 90, {"mail-type": "END"}, "debug")


def test_importing_the_plugin_imports_neither_submitit_nor_torch():
    """Registering the executor needs neither; a job on a node loads only pwmbench_slurm.job before its function."""
    code = ("import sys, pwmbench_slurm, pwmbench_slurm.job; "
            "assert not {'submitit', 'torch', 'pwmbench.api'} & set(sys.modules), sorted({'submitit', 'torch', 'pwmbench.api'} & set(sys.modules))")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_a_suite_runs_on_slurm_attached_and_detached(cluster, tmp_path, monkeypatch, toy_plugins):
    """The toy suite (two cells) through the runner: attached, every cell ok; detached, `pwmbench status`'s view
    (results_status) follows the Slurm jobs to done."""
    from test_runner import write_suite

    from pwmbench.jobs.runner import run_suite
    from pwmbench.jobs.status import results_status
    from pwmbench.suite.spec import load_suite, prepare

    monkeypatch.setenv("PWMBENCH_PLUGINS", "toy_task")  # the jobs load the toy task plugin (sbatch passes the environment)
    suite = prepare(load_suite(write_suite(tmp_path, seeds=(1,))))
    summary = run_suite(suite, tmp_path / "attached", workers=2, executor="slurm", options={"folder": str(tmp_path / "slurm"), "poll_s": 0.5}, progress=False)
    assert summary.ok and summary.statuses == {"ok": 2}, summary
    assert len(list((tmp_path / "attached").rglob("run.arrow"))) == 2
    out = tmp_path / "detached"
    run_suite(suite, out, workers=2, executor="slurm", options={"poll_s": 0.5}, progress=False, detach=True)
    assert (out / ".executor" / "slurm_jobs.json").exists()
    deadline = time.time() + 120
    while time.time() < deadline:
        rows, note = results_status(out)
        if rows and all(r["state"] == "done" and r.get("scheduler", "").startswith("slurm: done") for r in rows):
            break  # the cells' files and the scheduler agree (a job ends a moment after its cell wrote run.arrow)
        time.sleep(1)
    assert note.startswith("submitted to slurm"), note
    assert len(rows) == 2 and all(r["state"] == "done" and r["scheduler"].startswith("slurm: done (job ") for r in rows), rows


@pytest.mark.slow
def test_a_task_set_suite_on_slurm_gives_the_local_executors_results(cluster, tmp_path, monkeypatch):
    """MT30 with two members on the cluster: its dataset collected by a Slurm `dataset` job (not by the submitting
    process), the world-model job after it, the member jobs as one array after that, then the collecting job — the
    same rows and curves as the local executor, which finds the data there and collects nothing."""
    from test_jobs import TASKSET_SUITE

    from pwmbench.jobs.runner import plan_graph, run_suite
    from pwmbench.results.tables import read_table
    from pwmbench.suite.spec import load_suite, prepare

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    path = tmp_path / "suite.toml"
    path.write_text(TASKSET_SUITE.format(data=tmp_path / "data") + '[data]\ntaskset = "mt30"\nepisodes_per_task = 2\ntask_ids = [8, 29]\nseed = 3\nnum_envs = 2\n')
    suite = prepare(load_suite(path))
    graph = plan_graph(suite, tmp_path / "slurm", suite.cells(), restart=False)
    data_key = f"dataset|{tmp_path / 'data'}"
    assert [(j.key, j.kind) for j in graph.jobs[:2]] == [(data_key, "dataset"), (f"{suite.cells()[0].key}|world_model", "world_model")]
    assert graph.jobs[1].depends_on == (data_key,) and not (tmp_path / "data").exists()  # planning collects nothing
    summary = run_suite(suite, tmp_path / "slurm", workers=2, executor="slurm", options={"poll_s": 0.5}, progress=False)
    assert summary.ok and summary.statuses == {"ok": 1}, summary
    assert (tmp_path / "data" / "metadata.json").exists() and "dmc/cartpole-balance (id 8): 2 episodes" in (tmp_path / "data" / "collect.log").read_text()
    assert [j.kind for j in plan_graph(suite, tmp_path / "local", suite.cells(), restart=False).jobs][0] == "world_model"  # collected once
    summary = run_suite(suite, tmp_path / "local", workers=2, executor="local", progress=False)
    assert summary.ok and summary.statuses == {"ok": 1}, summary
    (cell,) = suite.cells()

    def table(root, name):
        t = read_table(cell.directory(root) / name)
        return t.drop([c for c in t.column_names if c in ("wall_s", "fps") or c.startswith("time_")]).to_pylist()

    assert table(tmp_path / "slurm", "curves.arrow") == table(tmp_path / "local", "curves.arrow")
    keep = ("task", "status", "final_return", "final_score", "epochs", "wm_iterations", "data_transitions_sampled")
    assert [{k: r[k] for k in keep} for r in table(tmp_path / "slurm", "run.arrow")] == [{k: r[k] for k in keep} for r in table(tmp_path / "local", "run.arrow")]
    assert (tmp_path / "slurm" / ".executor" / ".slurm").is_dir()  # submitit's files live with the results


def test_status_of_a_results_directory_never_unpickles_what_it_names(tmp_path, monkeypatch):
    """W14: `pwmbench status DIR` on a directory someone handed you reads JSON only. The Slurm record names result and
    error pickles that would run code when loaded; status must report the jobs without loading them."""
    import json
    import pickle

    from click.testing import CliRunner

    from pwmbench.cli import main

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    out = tmp_path / "results"
    (out / ".executor").mkdir(parents=True)
    for name in ("result.pkl", "error.pkl"):
        (tmp_path / name).write_bytes(pickle.dumps(("success", Payload())))
    (out / "suite.json").write_text(json.dumps({"configs": {}, "seeds": []}))
    (out / ".executor" / "submission.json").write_text(json.dumps({"executor": "slurm", "options": {}, "submitted": 0}))
    (out / ".executor" / "slurm_jobs.json").write_text(json.dumps({"version": 1, "jobs": {
        "a|mlp|1": {"job_id": "99999", "result": str(tmp_path / "result.pkl"), "error_file": str(tmp_path / "error.pkl"), "log": None}}}))  # fmt: skip
    empty = tmp_path / "no-slurm"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # the scheduler cannot be asked: status falls back to the files
    result = CliRunner().invoke(main, ["status", str(out)])
    assert not marker.exists(), "status unpickled a file named in the results directory"
    assert "a|mlp|1" in result.output and result.exit_code == 1

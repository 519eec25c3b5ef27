"""The suite runner end to end with real worker processes: resume, failure isolation, retries of failed cells,
exit status and end-of-run report, filters (faults — kill -9, signals, a full disk, corrupt files — in test_faults.py)."""

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from pyarrow import ipc
from toy_task import suite_base

from pwmbench.api import ConfigError, Executor, hookimpl
from pwmbench.cli import main
from pwmbench.jobs.runner import parse_only, run_suite
from pwmbench.jobs.summary import one_line
from pwmbench.plugin.manager import Plugins, get_plugins, set_plugins
from pwmbench.suite.spec import load_suite, prepare

pytestmark = [pytest.mark.usefixtures("toy_plugins"), pytest.mark.slow]
TESTS = Path(__file__).parent
TIMING = {"wall_s", "fps", "time_env", "time_imagine", "time_actor_backward", "time_critic", "time_wm", "time_esnr", "time_epoch"}

SUITE = """
name = "toy"
tasks = ["toy/point"]
seeds = {seeds}
parity_tolerance = {tolerance}
{base}[variants.mlp]
dynamics = "mlp"
[variants.{second}]
dynamics = "{second_dynamics}"
{options}
"""


@pytest.fixture(autouse=True)
def workers_see_the_toy_plugin(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PWMBENCH_PLUGINS", "toy_task")


def write_suite(tmp_path, epochs=12, second="flow", second_dynamics="flow", tolerance=2.0, seeds=(1, 2), options=""):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(base=suite_base(epochs), second=second, second_dynamics=second_dynamics, tolerance=tolerance, seeds=list(seeds), options=options))
    return path


def curves(cell_dir):
    table = ipc.open_file(cell_dir / "curves.arrow").read_all()
    return table.drop([c for c in table.column_names if c in TIMING]).to_pylist()


def test_runs_all_cells_then_skips_them(tmp_path):
    suite = prepare(load_suite(write_suite(tmp_path)))
    out = tmp_path / "out"
    first = run_suite(suite, out, workers=2, progress=False)
    assert first.statuses == {"ok": 4} and first.skipped == 0 and first.ok
    assert (out / "suite.json").exists() and len(list(out.rglob("run.arrow"))) == 4
    before = {p: p.stat().st_mtime_ns for p in out.rglob("run.arrow")}
    again = run_suite(suite, out, workers=2, progress=False)
    assert again.skipped == 4 and not again.statuses
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("run.arrow")}


def test_a_diverging_cell_is_recorded_and_the_others_go_on(tmp_path):
    suite = prepare(load_suite(write_suite(tmp_path, second="boom", second_dynamics="exploding", tolerance=1000.0)))
    summary = run_suite(suite, tmp_path / "out", workers=2, progress=False)
    assert summary.statuses == {"ok": 2, "diverged": 2}
    rows = [ipc.open_file(p).read_all().to_pylist()[0] for p in (tmp_path / "out").rglob("run.arrow")]
    boom = [r for r in rows if r["variant"] == "boom"]
    assert all(r["status"] == "diverged" and "nan" in r["reason"] for r in boom)


def test_only_and_dry_run(tmp_path):
    path = write_suite(tmp_path)
    out = tmp_path / "out"
    dry = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--dry-run"])
    assert dry.exit_code == 0 and dry.output.count("would train") == 4 and not out.joinpath("cells").exists()
    one = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--only", "variant=flow,seed=2", "--no-progress"])
    assert one.exit_code == 0, one.output
    assert [p.parent.relative_to(out / "cells").as_posix() for p in out.rglob("run.arrow")] == ["toy__point/flow/2"]
    assert parse_only("seed=1,seed=2") == {"seed": {"1", "2"}}
    # a sweep point's name holds commas of its own
    assert parse_only("variant=flow[integrator=heun,substeps=2],seed=1") == {"variant": {"flow[integrator=heun,substeps=2]"}, "seed": {"1"}}
    bad = CliRunner().invoke(main, ["run", str(path), "--only", "colour=red"])
    assert bad.exit_code == 2 and "--only expects" in bad.output


def test_check_runs_the_preflight_list(tmp_path):
    good = CliRunner().invoke(main, ["check", str(write_suite(tmp_path)), "--out", str(tmp_path / "out")])
    assert good.exit_code == 0, good.output
    for line in ("plugins import", "suite file valid", "seeds", "parity gate", "fairness audit", "builds an environment", "writable"):
        assert line in good.output
    assert not (tmp_path / "out").exists() and "will be created" in good.output  # W15 friction 9: a check creates nothing
    bad = tmp_path / "bad.toml"
    bad.write_text(write_suite(tmp_path).read_text().replace('dynamics = "flow"', 'dynamics = "flow"\nhorizon = 8'))
    result = CliRunner().invoke(main, ["check", str(bad)])
    assert result.exit_code == 1 and "[FAIL] parity gate" in result.output or "[FAIL]" in result.output


def run_cli(*args):
    return CliRunner().invoke(main, ["run", *map(str, args), "--no-progress"])


def run_row(cell_dir):
    return ipc.open_file(cell_dir / "run.arrow").read_all().to_pylist()[0]


def test_a_failed_cell_exits_1_with_its_reason_and_traceback_and_a_rerun_retries_it_from_its_checkpoint(tmp_path):
    crash = tmp_path / "crash-while-this-exists"
    crash.touch()  # the cause: toy_task's `fragile` dynamics raises after 100 predictions (epoch 6: the untrained evaluation's model diagnostics predict too) while it exists
    path = write_suite(tmp_path, epochs=8, second="crash", second_dynamics="fragile", tolerance=1000.0, seeds=[1], options=f'after = 100\ncrash_file = "{crash}"')
    out = tmp_path / "out"
    cell = out / "cells" / "toy__point" / "crash" / "1"

    first = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--workers", "2", "--no-progress"])
    assert first.exit_code == 1, first.output
    assert "1 failed, 1 ok; 0 already finished" in first.output
    line = next(x for x in first.output.splitlines() if "toy/point crash seed 1: failed" in x)
    assert "RuntimeError: toy crash" in line and f"traceback: {cell / 'traceback.txt'}" in line and "re-run retries it" in line
    assert "[raised in dynamics model 'fragile'" in line  # whose code failed: the plugin, named by the runner
    assert "plugin 'toy_task'" in run_row(cell)["failed_in"] and run_row(cell)["threads"] == 1
    assert "mlp seed 1" not in first.output.split("did not finish ok")[1]  # only the cell that is not ok is listed
    text = (cell / "traceback.txt").read_text()
    assert text.startswith("Traceback (most recent call last)") and "RuntimeError: toy crash" in text
    assert run_row(cell)["status"] == "failed" and (cell / "checkpoint.pt").exists()
    failed_curves = ipc.open_file(cell / "curves.arrow").read_all().to_pylist()
    assert [r["epoch"] for r in failed_curves] == [0, 1, 2, 3, 4, 5]  # 0: the untrained actor's evaluation

    dry = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--dry-run"])
    assert dry.exit_code == 0 and "would retry toy/point crash seed 1" in dry.output and "it failed in an earlier run" in dry.output
    assert "would train" not in dry.output and "to run 1" in dry.output  # the ok cell is finished

    crash.unlink()  # the cause is gone: the re-run retries the failed cell and it finishes
    again = run_cli(path, "--out", out)
    assert again.exit_code == 0, again.output
    assert "1 ok; 1 already finished" in again.output and "did not finish ok" not in again.output
    row = run_row(cell)
    assert row["status"] == "ok" and row["reason"] is None and row["traceback"] is None and row["epochs"] == 8
    assert not (cell / "traceback.txt").exists() and not (cell / "checkpoint.pt").exists()
    # resumed from the epoch-5 checkpoint: epochs 1–5 are the failed attempt's, timings and all
    retried = ipc.open_file(cell / "curves.arrow").read_all().to_pylist()
    assert [r["epoch"] for r in retried] == list(range(0, 9))
    assert retried[:6] == failed_curves[:6]


def test_a_diverged_cell_is_kept_and_still_fails_the_run_until_restart(tmp_path):
    path = write_suite(tmp_path, second="boom", second_dynamics="exploding", tolerance=1000.0, seeds=[1])
    out = tmp_path / "out"
    cell = out / "cells" / "toy__point" / "boom" / "1"
    first = run_cli(path, "--out", out, "--only", "variant=boom")
    assert first.exit_code == 1, first.output
    line = next(x for x in first.output.splitlines() if "toy/point boom seed 1: diverged" in x)
    assert "became nan" in line and f"details: {cell / 'run.arrow'}" in line and "(from an earlier run)" not in line
    assert not (cell / "traceback.txt").exists()
    stamp = (cell / "run.arrow").stat().st_mtime_ns

    kept = run_cli(path, "--out", out, "--only", "variant=boom")
    assert kept.exit_code == 1, kept.output
    assert "none trained; 1 already finished (1 diverged)" in kept.output
    assert "toy/point boom seed 1: diverged (from an earlier run) — " in kept.output and "became nan" in kept.output
    assert (cell / "run.arrow").stat().st_mtime_ns == stamp

    restarted = run_cli(path, "--out", out, "--only", "variant=boom", "--restart")
    assert restarted.exit_code == 1, restarted.output  # trained again (and it diverges again: it is built to)
    assert "1 diverged; 0 already finished" in restarted.output and "(from an earlier run)" not in restarted.output
    assert (cell / "run.arrow").stat().st_mtime_ns != stamp


class _RaisingExecutor(Executor):
    """Yields an exception for every job without running it: what a worker that cannot start a cell gives back."""

    def __init__(self, workers=1):
        pass

    def run(self, jobs):
        for job in jobs:
            if job.kwargs["seed"] == 1:
                yield job, RuntimeError("the worker process was killed")
            else:
                yield job, ConfigError("checkpoint.pt was written with another config")


class _RaisingExecutorPlugin:
    @hookimpl
    def pwmbench_register_executors(self, registry):
        registry.add("toy-raise", _RaisingExecutor)


def test_exceptions_from_the_executor_are_failures_with_a_traceback_file(tmp_path):
    import toy_task

    previous = set_plugins(Plugins(extra=[toy_task, _RaisingExecutorPlugin()]))
    try:
        out = tmp_path / "out"
        result = run_cli(write_suite(tmp_path), "--out", out, "--only", "variant=mlp", "--executor", "toy-raise")
    finally:
        set_plugins(previous)
    assert result.exit_code == 1, result.output
    assert "2 error; 0 already finished" in result.output
    lines = result.output.split("did not finish ok")[1].splitlines()
    killed = next(x for x in lines if "toy/point mlp seed 1: error" in x)
    assert "RuntimeError: the worker process was killed" in killed and "re-run retries it" in killed
    bad = next(x for x in lines if "toy/point mlp seed 2: error" in x)
    assert "ConfigError: checkpoint.pt was written with another config" in bad and "fix the input" in bad
    traceback_file = out / "cells" / "toy__point" / "mlp" / "1" / "traceback.txt"
    assert f"traceback: {traceback_file}" in killed and "RuntimeError: the worker process was killed" in traceback_file.read_text()
    assert get_plugins() is previous


def test_reasons_are_shortened_to_one_line():
    assert one_line("ValueError: bad\n  more detail") == "ValueError: bad …"
    assert one_line(None) == "no reason recorded"
    assert len(one_line("x" * 500)) == 200




def test_unpickling_is_the_command_lines_permission_and_check_and_dry_run_name_it(tmp_path):
    """W14: only `--allow-pickle` on the command line lets a run unpickle dataset files; `check` and `run --dry-run`
    say so whenever it is given (and the run rows' config, which names what is trained, does not change with it)."""
    path = write_suite(tmp_path)
    plain = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out"), "--dry-run"])
    assert plain.exit_code == 0 and "UNSAFE" not in plain.output
    unsafe = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out"), "--dry-run", "--allow-pickle"])
    assert unsafe.exit_code == 0 and "UNSAFE: --allow-pickle: dataset chunk files the safe loader refuses will be unpickled" in unsafe.output
    check = CliRunner().invoke(main, ["check", str(path), "--out", str(tmp_path / "out"), "--allow-pickle"])
    assert "[pass] unsafe options (code from data): --allow-pickle" in check.output, check.output
    safe = CliRunner().invoke(main, ["check", str(path), "--out", str(tmp_path / "out")])
    assert "[pass] unsafe options (code from data): none" in safe.output
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("[variants.mlp]", "allow_pickle = true\n[variants.mlp]", 1))
    refused = CliRunner().invoke(main, ["run", str(bad), "--dry-run"])
    assert refused.exit_code == 2 and "allow_pickle cannot be set in a suite file" in refused.output
    from pwmbench.pwm.config import resolve_config
    from pwmbench.results.cell_files import config_hash

    assert config_hash(resolve_config({"allow_pickle": True})) == config_hash(resolve_config({}))


def test_a_results_directory_belongs_to_one_suite(tmp_path):
    """W14 item 3: a suite whose cells' configs differ from the recorded one, or that drops cells, is refused naming the
    differences (run and --dry-run alike) unless --restart; added seeds, variants or tasks are allowed and recorded."""
    from pwmbench.suite.record import check_same_suite, write_suite_record

    out = tmp_path / "out"
    out.mkdir()
    first = prepare(load_suite(write_suite(tmp_path, seeds=(1, 2))))
    write_suite_record(first, out)
    assert check_same_suite(first, out, restart=False) == []  # the same suite: nothing to say
    changed_path = tmp_path / "changed.toml"
    changed_path.write_text(write_suite(tmp_path, epochs=40, seeds=(1,)).read_text())
    changed = prepare(load_suite(changed_path))
    with pytest.raises(ConfigError, match=r"different suite: toy/point flow: max_epochs 12 → 40.*seeds \[2\] are no longer in the suite.*--restart"):
        check_same_suite(changed, out, restart=False)
    dry = CliRunner().invoke(main, ["run", str(changed_path), "--out", str(out), "--dry-run"])
    assert dry.exit_code == 2 and "holds the results of a different suite" in dry.output
    assert check_same_suite(changed, out, restart=True)[0]["restarted_with_changes"]  # allowed with --restart, recorded
    more = prepare(load_suite(write_suite(tmp_path, seeds=(1, 2, 3), second="flow2")))
    refused_and_added = more
    with pytest.raises(ConfigError, match="toy/point flow is no longer in the suite"):
        check_same_suite(refused_and_added, out, restart=False)
    grown = prepare(load_suite(write_suite(tmp_path, seeds=(1, 2, 3))))
    history = check_same_suite(grown, out, restart=False)
    assert history[-1]["added"] == ["seed 3"] and history[-1]["restarted_with_changes"] == []
    write_suite_record(grown, out, history)
    assert check_same_suite(grown, out, restart=False)[-1]["added"] == ["seed 3"]  # the history is kept

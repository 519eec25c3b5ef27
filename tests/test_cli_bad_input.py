"""W14 item 6: every bad value on the command line is a one-line error naming the option, never a traceback. The cases
are generated from the CLI itself: every bounded option of every command (click's IntRange and the finite
percentage), with values drawn outside its bounds, non-numbers and NaN."""

import math
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from pwmbench.cli import FINITE_PERCENT, main

ROOT = Path(__file__).resolve().parents[1]
DUMMY = {"suite_file": "suites/smoke.toml", "results": ".", "directory": ".", "out_dir": "/tmp/pwmbench-never-written", "task_name": "dmc/cartpole-balance"}


def commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def bounded_options():
    for path, cmd in commands(main):
        for param in cmd.params:
            if isinstance(param, click.Option) and (isinstance(param.type, click.IntRange) or param.type is FINITE_PERCENT):
                yield path, cmd, param


CASES = list(bounded_options())


def required(cmd, skip):
    """Plausible values for the command's required parameters (the bad option is refused before any is used)."""
    argv = []
    for param in cmd.params:
        if param.name == skip.name or not param.required:
            continue
        value = DUMMY.get(param.name, "x")
        argv += [value] if isinstance(param, click.Argument) else [param.opts[0], value]
    return argv


def outside(param):
    if param.type is FINITE_PERCENT:
        return st.sampled_from(["nan", "-nan", "inf", "-1", "100.5", "1e400", "ten", ""])
    lo, hi = param.type.min, param.type.max
    values = [st.sampled_from(["x", "1.5", "", "99999999999999999999999", "nan"])]
    if lo is not None:
        values.append(st.integers(max_value=lo - 1, min_value=lo - 10**30).map(str))
    if hi is not None:
        values.append(st.integers(min_value=hi + 1, max_value=hi + 10**30).map(str))
    return st.one_of(values)


def test_the_cli_has_bounded_options_to_check():
    names = {(" ".join(p), o.name) for p, _, o in CASES}
    assert {("run", "workers"), ("parity", "tolerance"), ("train", "seed"), ("data collect", "num_envs")} <= names, names


@pytest.mark.parametrize("path, cmd, param", CASES, ids=[f"{' '.join(p)}:{o.name}" for p, _, o in CASES])
def test_a_value_outside_an_options_bounds_is_a_one_line_error_naming_it(path, cmd, param):
    @settings(max_examples=6, deadline=None)
    @given(value=outside(param))
    def refused(value):
        result = CliRunner().invoke(main, [*path, param.opts[0], value, *required(cmd, param)])
        assert result.exit_code == 2, (value, result.output)
        assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output, (value, result.output)
        assert param.opts[0] in result.output, (value, result.output)

    refused()


def test_nan_is_not_a_number_any_bound_accepts():
    assert not (0 <= math.nan <= 100)


# ------------------------------------------------------------------------------------------ suite files that are not
@settings(max_examples=25, deadline=None)
@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode),
                         st.integers(1, 3000).map(lambda n: b"x = " + b"[" * n + b"]" * n + b"\n")))  # fmt: skip
def test_any_bytes_as_a_suite_file_give_one_line_and_check_and_dry_run_agree(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("s") / "suite.toml"
    path.write_bytes(content)
    dry = CliRunner().invoke(main, ["run", str(path), "--dry-run", "--out", str(path.parent / "out")])
    check = CliRunner().invoke(main, ["check", str(path), "--out", str(path.parent / "out")])
    for result in (dry, check):
        assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output, result.output
    assert (dry.exit_code == 0) == (check.exit_code == 0), (dry.output[-300:], check.output[-300:])


def test_suite_files_that_are_not_regular_files_are_named(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.toml")  # reading it would block forever
    os.symlink(tmp_path / "b.toml", tmp_path / "a.toml")
    os.symlink(tmp_path / "a.toml", tmp_path / "b.toml")
    (tmp_path / "dir.toml").mkdir()
    for name, said in (("pipe.toml", "is not a regular file"), ("a.toml", "symbolic link that leads nowhere"), ("dir.toml", "is a directory"),
                       ("none.toml", "does not exist")):  # fmt: skip
        for command in (["run", "--dry-run"], ["check"]):
            result = CliRunner().invoke(main, [command[0], str(tmp_path / name), *command[1:]])
            assert result.exit_code in (1, 2) and said in result.output, (name, command, result.output)


@pytest.mark.parametrize("extra, said", [
    ('data_dir = "/data/x"\n', "base.data_dir apply to task sets"),
    ("task_ids = [1, 2]\n", "base.task_ids apply to task sets"),
    ("offline_wm_iterations = 10\n", "base.offline_wm_iterations apply to task sets"),
])  # fmt: skip
def test_task_set_keys_on_a_suite_without_a_task_set_are_refused_not_ignored(tmp_path, extra, said):
    text = (ROOT / "suites" / "smoke.toml").read_text().replace("[base]\n", "[base]\n" + extra, 1)
    (tmp_path / "s.toml").write_text(text)
    for command in (["run", "--dry-run"], ["check"]):
        result = CliRunner().invoke(main, [command[0], str(tmp_path / "s.toml"), *command[1:], "--out", str(tmp_path / "o")])
        assert result.exit_code in (1, 2) and said in result.output, (command, result.output)


def test_task_ids_outside_the_set_and_a_device_this_machine_lacks_are_named(tmp_path):
    text = (ROOT / "suites" / "mt30-mini.toml").read_text().replace("task_ids = [8, 13, 29]", "task_ids = [8, 99]", 1)
    (tmp_path / "s.toml").write_text(text)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "s.toml"), "--dry-run"])
    assert result.exit_code == 2 and "task_ids [99] are not members of mt30 (ids 0–29)" in result.output, result.output
    from pwmbench.errors import ConfigError
    from pwmbench.pwm.config import check_device

    check_device("cpu")
    with pytest.raises(ConfigError, match="cuda:99"):
        check_device("cuda:99")


@pytest.mark.parametrize(("old", "new", "said"), [
    ("task_ids = [8, 13, 29]\nseed", "task_ids = [8, 30]\nseed", "[data]: task_ids [30] are not members of mt30 (ids 0–29)"),
    ('taskset = "mt30"', 'taskset = "dmc/cartpole-swingup"', "[data]: taskset 'dmc/cartpole-swingup' is a single task, not a task set"),
    ('taskset = "mt30"', 'taskset = "mt31"', "[data]: taskset 'mt31':"),
])  # fmt: skip
def test_the_data_tables_task_set_and_ids_are_checked_when_planning(tmp_path, old, new, said):
    """W14 leftover: [data].task_ids outside its task set (or a [data].taskset that is none) are named by check and
    --dry-run, not first by the collector job on a node."""
    text = (ROOT / "suites" / "mt30-mini.toml").read_text()
    assert old in text
    (tmp_path / "s.toml").write_text(text.replace(old, new, 1))
    for command in (["run", "--dry-run"], ["check"]):
        result = CliRunner().invoke(main, [command[0], str(tmp_path / "s.toml"), *command[1:], "--out", str(tmp_path / "o")])
        assert result.exit_code in (1, 2) and said in result.output, (command, result.output)


def test_a_results_directory_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    for out, said in ((tmp_path / "file" / "out", "is a file, not a directory"), (Path("/proc/pwmbench-out"), "is not writable")):
        for extra in (["--dry-run"], []):
            result = CliRunner().invoke(main, ["run", str(ROOT / "suites" / "smoke.toml"), "--out", str(out), *extra])
            assert result.exit_code == 2 and said in result.output, (out, extra, result.output)

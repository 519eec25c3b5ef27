"""Fault injection against the runner (issue W10, item 7): kill -9 of the whole process group at hypothesis-chosen
moments, Ctrl-C and SIGTERM, a full disk (a real, small tmpfs), and truncated or garbled result, checkpoint, progress
and suite files. After each fault the next `pwmbench run` must finish with nothing lost, duplicated or half-written,
and with results equal, bit for bit on CPU, to a run that was never interrupted."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pyarrow import ipc
from toy_task import suite_base

from pwmbench.cli import main
from pwmbench.pwm.checkpoint import load_checkpoint
from pwmbench.results.atomic_files import DiskFull, write_atomic

pytestmark = [pytest.mark.slow]
TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), "PWMBENCH_PLUGINS": "toy_task"}
TIMING = {"wall_s", "fps", "time_env", "time_imagine", "time_actor_backward", "time_critic", "time_wm", "time_esnr", "time_epoch", "time_probe"}
# run-row fields that are about this machine and moment, not about the result
NOT_RESULT = TIMING | {"pretrain_wall_s", "time_probe_mean", "git_commit", "platform", "cpu_model", "cpu_count", "plugins"}

SUITE = """
name = "faults"
tasks = ["toy/point"]
seeds = [7]
parity_tolerance = 50.0
""" + suite_base(max_epochs=24, checkpoint_every=3) + """[variants.mlp]
dynamics = "mlp"
[variants.flow]
dynamics = "flow"
"""


def command(suite: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pwmbench", "run", str(suite), "--out", str(out), "--workers", "1", "--no-progress", *extra]


def run(suite: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(suite, out, *extra), capture_output=True, text=True, env=ENV, cwd=TESTS.parent)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the suite (and how long it took, to place the faults in it)."""
    root = tmp_path_factory.mktemp("reference")
    suite = root / "suite.toml"
    suite.write_text(SUITE)
    start = time.perf_counter()
    done = run(suite, root / "out")
    assert done.returncode == 0, done.stderr
    return suite, root / "out", time.perf_counter() - start


def cell_dirs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "cells").glob("*/*/*") if p.is_dir())


def result(cell: Path) -> tuple[list[dict], dict]:
    curves = ipc.open_file(cell / "curves.arrow").read_all()
    curves = curves.drop([c for c in curves.column_names if c in TIMING]).to_pylist()
    row = ipc.open_file(cell / "run.arrow").read_all().to_pylist()[0]
    return curves, {k: v for k, v in row.items() if k not in NOT_RESULT}


def assert_equals_reference(out: Path, reference_out: Path) -> None:
    """Every cell finished once, readable, no temp files left, and equal to the uninterrupted run's."""
    cells = cell_dirs(out)
    assert [c.relative_to(out) for c in cells] == [c.relative_to(reference_out) for c in cell_dirs(reference_out)]
    assert not list(out.rglob("*.tmp")), "temporary files left behind"
    for cell in cells:
        curves, row = result(cell)
        want_curves, want_row = result(reference_out / cell.relative_to(out))
        epochs = [r["epoch"] for r in curves]
        assert epochs == sorted(set(epochs)), "an epoch recorded twice or out of order"
        assert row["status"] == "ok" and row == want_row
        assert curves == want_curves


def assert_nothing_half_written(out: Path) -> None:
    """What an interrupted run leaves is whole: every result file reads, every checkpoint loads."""
    for path in [*out.rglob("run.arrow"), *out.rglob("curves.arrow")]:
        ipc.open_file(path).read_all()
    for path in out.rglob("checkpoint.pt"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------------- kill -9


def test_results_do_not_depend_on_workers_or_only(reference, tmp_path):
    """A cell's thread count comes from the suite (default 1), not from how the run is split: same numbers."""
    suite, reference_out, _ = reference
    out = tmp_path / "out"
    assert run(suite, out, "--workers", "2", "--only", "variant=flow").returncode == 0
    rest = run(suite, out, "--workers", "2")
    assert rest.returncode == 0, rest.stderr
    assert_equals_reference(out, reference_out)
    assert {result(c)[1]["threads"] for c in cell_dirs(out)} == {1}


@settings(max_examples=2)
@given(moments=st.lists(st.floats(0.1, 0.9), min_size=1, max_size=2))
def test_kill_9_of_the_process_group_at_random_moments_then_resume_gives_the_uninterrupted_results(reference, moments):
    suite, reference_out, wall = reference
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        for moment in moments:  # each a fraction of an uninterrupted run's time, from the command's start
            proc = subprocess.Popen(command(suite, out), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=ENV, cwd=TESTS.parent)  # fmt: skip
            time.sleep(moment * wall)
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers, with no chance to clean up
            proc.wait()
            assert_nothing_half_written(out)
        resumed = run(suite, out)
        assert resumed.returncode == 0, resumed.stderr
        assert_equals_reference(out, reference_out)


# ---------------------------------------------------------------------------------------------------- signals


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_at_a_boundary_leave_no_worker_and_resume_exactly(reference, tmp_path, how):
    suite, reference_out, _ = reference
    out = tmp_path / "out"
    proc = subprocess.Popen(command(suite, out), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=TESTS.parent)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.rglob("progress.json")):
        time.sleep(0.05)
    workers = _children(proc.pid)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    else:
        proc.send_signal(signal.SIGTERM)  # a scheduler or `kill`: the main process only
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command to resume" in err
    assert not list(out.rglob("*.tmp"))
    limit = time.time() + 15  # no worker outlives the runner
    while time.time() < limit and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if _alive(w)]
    assert_nothing_half_written(out)
    resumed = run(suite, out)
    assert resumed.returncode == 0, resumed.stderr
    assert_equals_reference(out, reference_out)


def test_kill_9_of_the_main_process_only_leaves_no_worker_and_the_run_resumes_exactly(reference, tmp_path):
    """W14 item 5: the runner killed with SIGKILL (no handler runs) while its workers train: every worker sees its
    parent go, checkpoints at its next boundary and exits — none is left training beside the resumed run."""
    suite, reference_out, _ = reference
    out = tmp_path / "out"
    proc = subprocess.Popen(command(suite, out, "--workers", "2"), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=TESTS.parent)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.rglob("progress.json"))) < 2:
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert workers, "no worker processes found"
    proc.kill()  # the main process only: its workers are not signalled
    proc.communicate(timeout=60)
    limit = time.time() + 60
    while time.time() < limit and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if _alive(w)], "workers outlived the runner"
    assert_nothing_half_written(out)
    resumed = run(suite, out)
    assert resumed.returncode == 0, resumed.stderr
    assert_equals_reference(out, reference_out)


# ---------------------------------------------------------------------------------------------------- full disk


def test_a_write_that_finds_no_space_is_a_clear_error_and_keeps_the_old_file(tmp_path):
    """Without privileges: a file-size limit (RLIMIT_FSIZE) makes the write fail the way a full disk does."""
    target = tmp_path / "results.arrow"
    target.write_bytes(b"old")
    script = textwrap.dedent(f"""
        import resource, signal
        from pwmbench.results.atomic_files import DiskFull, write_atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_atomic(b"x" * 100_000, {str(target)!r}, checksum=True)
        except DiskFull as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr
    assert f"cannot write {target}" in done.stdout and "run the same command again" in done.stdout and "Errno" not in done.stdout
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["results.arrow"]
    assert issubclass(DiskFull, OSError) and write_atomic(b"new", target) == target and target.read_bytes() == b"new"


def _namespace_mounts() -> list[str] | None:
    """How to get a private mount namespace to mount a tmpfs in: as root, or in a user namespace."""
    for prefix in (["unshare", "-m"], ["unshare", "-Urm"]):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


@pytest.mark.parametrize("fraction", [0.0, 0.15, 0.5])
def test_a_full_disk_is_a_clear_error_and_the_run_resumes_cleanly_when_space_returns(reference, tmp_path, fraction):
    """The disk fills up before anything is written (0: not even the results lock fits), or part-way through."""
    prefix = _namespace_mounts()
    if prefix is None:  # the RLIMIT test above covers the error itself on such machines
        pytest.skip("cannot mount a tmpfs here (neither root nor user namespaces)")
    suite, reference_out, _ = reference
    used = sum(p.stat().st_size for p in reference_out.rglob("*") if p.is_file())
    size_k = max(16, int(fraction * used / 1024) // 4 * 4)  # the disk fills up part-way through the suite
    mnt, copy = tmp_path / "disk", tmp_path / "copy"
    mnt.mkdir()
    cmd = " ".join(command(suite, mnt / "out"))
    fill = f"dd if=/dev/zero of={mnt}/filler bs=4k 2>/dev/null; true" if fraction == 0 else "true"
    script = f"""
        mount -t tmpfs -o size={size_k}k tmpfs {mnt} || exit 97
        {fill}
        {cmd} > {tmp_path}/full.log 2>&1; echo $? > {tmp_path}/full.rc
        rm -f {mnt}/filler
        find {mnt} -name '*.tmp' > {tmp_path}/full.tmp
        mount -o remount,size=64m {mnt}
        {cmd} > {tmp_path}/again.log 2>&1; echo $? > {tmp_path}/again.rc
        cp -a {mnt}/out {copy}
    """
    done = subprocess.run([*prefix, "sh", "-c", textwrap.dedent(script)], capture_output=True, text=True, env=ENV, cwd=TESTS.parent)
    assert done.returncode == 0, done.stderr
    full = (tmp_path / "full.log").read_text()
    assert int((tmp_path / "full.rc").read_text()) != 0, full
    assert "No space left on device" in full and f"cannot write {mnt}" in full, full
    assert "Traceback (most recent call last)" not in full, full  # the error, not a stack: traceback.txt has that
    assert (tmp_path / "full.tmp").read_text() == "", "a failed write left its temporary file"
    again = (tmp_path / "again.log").read_text()
    assert int((tmp_path / "again.rc").read_text()) == 0, again
    assert_equals_reference(copy, reference_out)


# ---------------------------------------------------------------------------------------------------- corrupt files


def _corrupt(path: Path, how: str, at: float) -> None:
    data = path.read_bytes()
    cut = int(at * len(data))
    if how == "truncated":
        path.write_bytes(data[:cut])
    elif how == "garbled":  # a few bytes changed in place: same size, often still parseable
        path.write_bytes(data[:cut] + bytes(b ^ 0x5A for b in data[cut : cut + 8]) + data[cut + 8 :])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(os.urandom(max(1, len(data))))


@pytest.fixture(scope="module")
def interrupted(reference, tmp_path_factory):
    """The suite stopped by Ctrl-C once a checkpoint exists: a cell with checkpoint.pt and progress.json."""
    suite, _, _ = reference
    out = tmp_path_factory.mktemp("interrupted") / "out"
    proc = subprocess.Popen(command(suite, out), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=TESTS.parent)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.rglob("checkpoint.pt")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert list(out.rglob("checkpoint.pt")) and list(out.rglob("progress.json"))
    return out


@settings(max_examples=5)
@given(target=st.sampled_from(["run.arrow", "curves.arrow", "checkpoint.pt", "progress.json", "suite.json"]),
       how=st.sampled_from(["truncated", "garbled", "empty", "garbage"]), at=st.floats(0.1, 0.9))  # fmt: skip
def test_a_corrupt_file_is_named_never_trusted_and_its_cell_trained_again(reference, interrupted, target, how, at):
    suite, reference_out, _ = reference
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        shutil.copytree(interrupted if target in ("checkpoint.pt", "progress.json") else reference_out, out)
        broken = sorted(out.rglob(target))[0]
        _corrupt(broken, how, at)
        commands = [["status", out], ["score", out, "--bootstrap", "100"]]
        if target in ("run.arrow", "curves.arrow", "suite.json"):  # what a report reads (it draws plots: slow)
            commands.append(["report", out, "--out", Path(tmp) / "report", "--bootstrap", "100"])
        for args in commands:
            said = CliRunner().invoke(main, [str(a) for a in args])
            assert said.exception is None or isinstance(said.exception, SystemExit), (args, said.output)  # no traceback
            if target == "suite.json" and args[0] != "report" and how != "garbled":
                assert said.exit_code == 2 and "suite.json" in said.output, said.output
            if target in ("run.arrow", "curves.arrow") and args[0] == "score":  # garbled too: its checksum says so
                assert f"unreadable: {broken}" in said.output and said.exit_code != 0, said.output  # named; never accepted
            if target in ("run.arrow", "curves.arrow") and args[0] == "status":
                assert "corrupt" in said.output and broken.exists(), said.output  # status only reads
        again = run(suite, out)
        assert again.returncode == 0, again.stderr
        if target in ("run.arrow", "curves.arrow", "checkpoint.pt"):  # named, moved aside, that work done again
            assert broken.name in again.stderr and broken.with_name(broken.name + ".corrupt").exists(), again.stderr
        assert_equals_reference(out, reference_out)


@settings(max_examples=6)
@given(how=st.sampled_from(["another cell's", "no checksum", "foreign plain data"]))
def test_a_checkpoint_that_is_not_this_cells_is_moved_aside_and_the_cell_trained_from_the_start(reference, interrupted, how):
    """W14 item 2: a checkpoint resumes only the cell that wrote it, with its checksum. Another cell's checkpoint (with
    its valid checksum) copied in, a checkpoint whose checksum is missing (a crash between the two, or a hand), and
    valid plain data that is no checkpoint of this cell are each named, moved aside, and the cell trained afresh —
    never resumed from, never a KeyError on every re-run."""
    from pwmbench.pwm.checkpoint import save_checkpoint

    suite, reference_out, _ = reference
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        shutil.copytree(interrupted, out)
        ckpt = sorted(out.rglob("checkpoint.pt"))[0]
        if how == "another cell's":
            other = out / "cells" / "toy__point" / ("flow" if ckpt.parent.parent.name == "mlp" else "mlp") / "7"
            shutil.rmtree(other, ignore_errors=True)
            other.mkdir(parents=True)
            for name in ("checkpoint.pt", "checkpoint.pt.sha256"):
                shutil.copy(ckpt.with_name(name), other / name)
            ckpt, said = other / "checkpoint.pt", "belongs to another cell"
        elif how == "no checksum":
            ckpt.with_name("checkpoint.pt.sha256").unlink()
            said = "has no checksum"
        else:
            import torch

            save_checkpoint({"weights": torch.zeros(3), "note": "something else"}, ckpt)
            said = "is not a checkpoint of this cell"
        again = run(suite, out)
        assert again.returncode == 0, again.stderr
        assert said in again.stderr and ckpt.with_name("checkpoint.pt.corrupt").exists(), again.stderr
        assert_equals_reference(out, reference_out)

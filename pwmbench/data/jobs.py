"""Data collection as jobs of a suite's graph: `dataset` (a task set's [data] into base.data_dir) and `pretrain_data`
(one task's [pretrain] episodes into its directory).

Why jobs: collection is simulation. Run in the submitting process it would be serial work on a login node (or a
Ray head), outside the scheduler's accounting, retries and resources, and not resumable job by job. As jobs they run
on the executor like the cells that depend on them, with `[executor.resources.dataset]` / `.pretrain_data`.

A directory is written by one collector at a time and never twice:
- `metadata.json` is written last (data/collect.py), so a directory that has it is complete; a directory of chunk
  files without our lock is someone's TD-MPC2 data (also complete: it was never ours to write);
- the collector holds `.pwmbench-collecting` (O_EXCL; host, pid) while it writes, and marks the directory
  `.pwmbench-partial` until metadata.json is there. Another job needing the same directory (a second suite, a second
  cell) waits for the holder and then finds the data complete; a lock whose process is gone (killed mid-collection)
  is taken over (renamed away atomically: one taker wins) and the partial chunks are replaced;
- the job key names the directory, so two cells of one graph that share it get one job.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from pwmbench.data.chunks import chunk_paths
from pwmbench.errors import ConfigError
from pwmbench.jobs.lock import holder_gone, lock_holder
from pwmbench.plugin.interfaces import Job

__all__ = ["COLLECTING_LOCK", "collect_dataset", "collect_pretrain_data", "data_complete", "data_state", "dataset_job", "pretrain_data_job"]

COLLECTING_LOCK = ".pwmbench-collecting"
PARTIAL = ".pwmbench-partial"  # present from the first chunk written until metadata.json is
METADATA = "metadata.json"
WAIT_POLL_S = 2.0


def data_complete(directory: str | os.PathLike) -> bool:
    """The directory holds a finished dataset: ours (metadata.json, no lock) or someone's chunk files (no lock)."""
    directory = Path(directory).expanduser()
    if (directory / COLLECTING_LOCK).exists() or (directory / PARTIAL).exists():
        return False
    return directory.is_dir() and ((directory / METADATA).exists() or bool(chunk_paths(directory)))


def _alive(holder: dict[str, Any] | None, lock: Path) -> bool:
    """The collector holding `lock` still runs (another host's counts as alive). A lock still empty is its writer
    between creating and writing it: alive while young."""
    if holder is None:
        try:
            return time.time() - lock.stat().st_mtime < 60
        except OSError:
            return False
    return not holder_gone(holder)


def data_state(directory: str | os.PathLike) -> str:
    """"ready", "collecting" (a live holder), "interrupted" (a dead holder's partial data) or "missing"."""
    directory = Path(directory).expanduser()
    lock = directory / COLLECTING_LOCK
    if lock.exists():
        return "collecting" if _alive(lock_holder(lock), lock) else "interrupted"
    if (directory / PARTIAL).exists():
        return "interrupted"
    return "ready" if data_complete(directory) else "missing"


def _collect_once(directory: Path, what: str, collect: Any, wait_s: float) -> dict[str, Any]:
    """Run `collect(overwrite=...)` into `directory` unless it is complete, holding the lock; wait for a live holder."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / COLLECTING_LOCK
    waited = 0.0
    while True:
        if data_complete(directory):
            return {"collected": False, "directory": str(directory)}
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = lock_holder(lock)
            if _alive(holder, lock):
                if waited >= wait_s:
                    raise ConfigError(f"{directory}: another process ({holder}) has been collecting {what} for {waited:.0f} s; "
                                      f"wait for it, or delete {lock} if it is gone") from None  # fmt: skip
                time.sleep(WAIT_POLL_S)
                waited += WAIT_POLL_S
                continue
            stale = lock.with_name(f"{lock.name}.stale-{os.getpid()}-{time.time_ns()}")
            try:
                os.rename(lock, stale)  # its collector died: take over (a rename has one winner), the partial chunks go
            except FileNotFoundError:
                continue  # another job took it over first
            (directory / PARTIAL).touch()
            stale.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}, f)
        break
    try:
        partial = bool(chunk_paths(directory)) or (directory / METADATA).exists()
        (directory / PARTIAL).touch()
        meta = collect(overwrite=partial)
        (directory / PARTIAL).unlink()
    finally:
        lock.unlink(missing_ok=True)
    return {"collected": True, "directory": str(directory), "seconds": meta.get("seconds")}


def collect_dataset(data_dir: str, spec: dict[str, Any], wait_s: float = 24 * 3600) -> dict[str, Any]:
    """The `dataset` job: the suite's [data] (`spec`) into `data_dir`, once."""
    from pwmbench.data.collect import collect

    directory = Path(data_dir).expanduser()

    def run(overwrite: bool) -> dict[str, Any]:
        return collect(spec["taskset"], spec["episodes_per_task"], directory, policy=spec.get("policy", "random"), seed=spec.get("seed", 0),
                       num_envs=spec.get("num_envs", 8), task_ids=spec.get("task_ids"), overwrite=overwrite,
                       progress=lambda line: print(line, flush=True))  # fmt: skip

    return _collect_once(directory, f"the {spec['taskset']} dataset", run, wait_s)


def collect_pretrain_data(task: str, directory: str, spec: dict[str, Any], horizon: int, wait_s: float = 24 * 3600) -> dict[str, Any]:
    """The `pretrain_data` job: [pretrain]'s `episodes` of `task` into `directory`, once; then the data is checked
    against the task (pwm/pretrain.py), so bad data stops the cells that need it with the reason."""
    from pwmbench.api import task as get_task
    from pwmbench.data.collect import collect_task
    from pwmbench.pwm.pretrain import open_pretrain_data

    where = Path(directory).expanduser()

    def run(overwrite: bool) -> dict[str, Any]:
        return collect_task(task, spec["episodes"], where, policy=spec.get("policy", "random"), seed=spec.get("seed", 0),
                            num_envs=spec.get("num_envs", 8), overwrite=overwrite, progress=lambda line: print(line, flush=True))  # fmt: skip

    result = _collect_once(where, f"{task}'s pretraining data", run, wait_s)
    open_pretrain_data(where, get_task(task).spec, horizon)
    return result


# ------------------------------------------------------------------------------------------ the jobs of a suite
LOG_FILE = "collect.log"


def dataset_job(suite: Any) -> Job | None:
    """The suite's `dataset` job (its [data] into base.data_dir), or None when there is nothing to collect: no
    [data] table, or the directory already holds a finished dataset. A task set without data and without [data] is
    refused at planning time (suite.check_task_set_data), before anything is submitted."""
    from pwmbench.jobs.cell_kinds import job_resources

    data_dir = suite.base.get("data_dir")
    if not suite.data or not data_dir or data_complete(data_dir):
        return None
    directory = str(Path(data_dir).expanduser())
    return Job(f"dataset|{directory}", collect_dataset, {"data_dir": directory, "spec": dict(suite.data)}, kind="dataset",
               resources=job_resources(suite, "dataset"), log=str(Path(directory) / LOG_FILE))  # fmt: skip


def pretrain_data_job(suite: Any, task: str, horizon: int) -> Job | None:
    """The `pretrain_data` job of `task` under [pretrain] with a collector (`episodes`), or None when its directory
    already holds finished data (user-supplied data is checked at planning time instead)."""
    from pwmbench.jobs.cell_kinds import job_resources
    from pwmbench.suite.spec import pretrain_dir

    spec = suite.pretrain
    if not spec or "episodes" not in spec:
        return None
    directory = str(Path(pretrain_dir(suite, task) or "").expanduser())
    if data_complete(directory):
        return None
    return Job(f"pretrain_data|{directory}", collect_pretrain_data, {"task": task, "directory": directory, "spec": dict(spec), "horizon": horizon},
               kind="pretrain_data", resources=job_resources(suite, "pretrain_data"), log=str(Path(directory) / LOG_FILE))  # fmt: skip


def check_suite_data(suite: Any, horizon: int) -> None:
    """Planning-time checks of a suite's data, before anything is submitted: a task set needs base.data_dir to hold a
    dataset or a [data] table to collect one; [pretrain] data that is there already (supplied, or collected by an
    earlier run) must fit its task; data [pretrain] does not collect must be there."""
    from pwmbench.api import TaskSet
    from pwmbench.api import task as get_task
    from pwmbench.pwm.pretrain import open_pretrain_data
    from pwmbench.suite.spec import SuiteError, pretrain_dir

    sets = [t for t in suite.tasks if isinstance(get_task(t), TaskSet)]
    data_dir = suite.base.get("data_dir")
    if sets and not suite.data and not (data_dir and data_complete(data_dir)):
        name = sets[0]
        where = "not set" if not data_dir else f"{data_dir!r}, which holds no chunk_<i>.pt files"
        raise SuiteError(
            f"{suite.where()}: {', '.join(sets)} train(s) offline, but base.data_dir is {where}. Point data_dir at "
            f"TD-MPC2's {name.upper()} data (chunk_<i>.pt files), or add a [data] table to collect one, or run "
            f"`pwmbench data collect --taskset {name} --episodes-per-task N --out DIR` first."
        )
    if not suite.pretrain:
        return
    for task_name in suite.tasks:
        directory = Path(pretrain_dir(suite, task_name) or "").expanduser()
        if not data_complete(directory) and "episodes" in suite.pretrain:
            continue  # its pretrain_data job collects it, then checks it
        try:
            open_pretrain_data(directory, get_task(task_name).spec, horizon)
        except ConfigError as exc:
            raise SuiteError(f"{suite.where()} [pretrain]: {exc}") from None


_STATE_ROW = {"ready": "done", "collecting": "running", "interrupted": "failed", "missing": "queued"}


def data_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """`pwmbench status` rows for the data jobs of a suite record (suite.json): one per directory a collector fills."""
    from pwmbench.suite.spec import pretrain_dir_of

    rows = []
    data_dir = (record.get("base") or {}).get("data_dir")
    if record.get("data") and data_dir:
        directory = str(Path(data_dir).expanduser())
        rows.append(("dataset", directory))
    pretrain = record.get("pretrain") or {}
    if "episodes" in pretrain:
        for task in record.get("tasks", []):
            rows.append(("pretrain_data", str(Path(pretrain_dir_of(pretrain, task) or "").expanduser())))
    out = []
    for kind, directory in rows:
        state = data_state(directory)
        detail = {"interrupted": "its collector stopped; the next run collects it again", "collecting": "being collected"}.get(state)
        log = str(Path(directory) / LOG_FILE) if (Path(directory) / LOG_FILE).exists() else None
        out.append({"job": f"{kind}|{directory}", "state": _STATE_ROW[state], "detail": detail, "log": log})
    return out

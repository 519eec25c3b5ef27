"""Run a suite: expand cells, skip finished ones, hand the rest to an executor, watch progress, record.

Every cell trains in its own process (`run_cell_job`) and writes its own atomic files, so a failing or
diverged cell is recorded with its reason while the others go on, and a re-run after a crash, Ctrl-C or
kill -9 skips finished cells and resumes the others from their checkpoints. Finished means ok or diverged (a
NaN/Inf is a result); a failed cell (an exception: a bug, a full disk, a killed worker) is no result and is
trained again by the next run, from its last checkpoint. The summary lists every selected cell that is not ok,
with its reason and the file that explains it, skipped diverged cells included.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import socket
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwmbench.atomic_files import no_space
from pwmbench.errors import ConfigError, PwmbenchError
from pwmbench.interfaces import DependencyFailed, Job, Resources
from pwmbench.pwm.cell_files import (
    COLLECT_LOG,
    JOB_LOG,
    MEMBERS_DIR,
    PROGRESS_FILE,
    RUN_FILE,
    TRACEBACK_FILE,
    clear_cell_files,
    run_status,
    write_text_atomic,
)
from pwmbench.results import read_table
from pwmbench.suite import Cell, Suite

SUITE_FILE = "suite.json"
LOCK_FILE = ".pwmbench.lock"  # who is running a suite into this results directory (host, pid)
EXECUTOR_DIR = ".executor"  # what a detached executor recorded to find its jobs again (pwmbench status)


def run_cell_job(task: str, config: dict[str, Any], seed: int, out_dir: str, identity: dict[str, str], threads: int, restart: bool, threshold: float | None) -> str:
    """What a worker process runs for one single-task cell (module-level, so it pickles for any executor)."""
    import torch

    torch.set_num_threads(threads)
    from pwmbench.pwm.cell import train_cell
    from pwmbench.pwm.config import resolve_config

    return train_cell(task, resolve_config(config), seed, out_dir, restart=restart, identity=identity, threshold=threshold).status


def run_task_set_job(stage: str, task: str, config: dict[str, Any], seed: int, out_dir: str, identity: dict[str, str], threads: int,
                     task_id: int | None = None, task_ids: list[int] | None = None) -> str:  # fmt: skip
    """What a worker process runs for one job of a task-set cell: stage "world_model", "member" (task_id) or
    "collect" (task_ids); returns the status it recorded."""
    import torch

    torch.set_num_threads(threads)
    from pwmbench.api import task as get_task
    from pwmbench.pwm import multitask_cell
    from pwmbench.pwm.config import resolve_config

    taskset, cfg = get_task(task), resolve_config(config)
    ident = {"task": task, "seed": str(seed), **identity}
    if stage == "world_model":
        return multitask_cell.train_world_model(taskset, cfg, seed, Path(out_dir), ident)
    if stage == "member":
        return multitask_cell.train_member(taskset, cfg, seed, Path(out_dir), ident, int(task_id))
    if stage == "collect":
        return multitask_cell.collect(taskset, cfg, seed, Path(out_dir), ident, list(task_ids or []))
    raise ValueError(f"unknown task-set job stage {stage!r}")


def job_resources(suite: Suite, kind: str) -> Resources:
    """A job kind's resources: the suite's [executor.resources.<kind>], cpus (the job's torch threads) defaulting to 1.
    The thread count changes float sums and so the results: it is fixed by the suite alone — never by `--workers`,
    `--only` or how many cells are left — so a cell gives the same numbers however the run is split or resumed."""
    return Resources(**dict(suite.executor.get("resources", {}).get(kind, {})))


def cell_jobs(suite: Suite, cell: Cell, out: Path, restart: bool) -> list[Job]:
    """The jobs of one cell still to run. A single task: one job. A task set: a world-model job, one job per member
    policy depending on it (one group: a Slurm array), and a collecting job keyed like the cell, depending on all."""
    from pwmbench.api import TaskSet
    from pwmbench.api import task as get_task

    directory = cell.directory(out)
    identity = {"suite": suite.name, "variant": cell.variant}
    common = {"task": cell.task, "config": cell.config.to_dict(), "seed": cell.seed, "out_dir": str(directory), "identity": identity}
    if not isinstance(get_task(cell.task), TaskSet):
        res = job_resources(suite, "cell")
        kwargs = {**common, "threads": res.cpus, "restart": restart, "threshold": suite.thresholds.get(cell.task)}
        return [Job(cell.key, run_cell_job, kwargs, kind="cell", resources=res, log=str(directory / JOB_LOG))]
    from pwmbench.pwm import multitask_cell as mt

    if restart:
        clear_cell_files(directory)
    ids = mt.member_ids(get_task(cell.task), cell.config)
    jobs: list[Job] = []
    wm_key = f"{cell.key}|world_model"
    if mt.prepare_retry(directory, ids) is None:
        res = job_resources(suite, "world_model")
        jobs.append(Job(wm_key, run_task_set_job, {"stage": "world_model", **common, "threads": res.cpus}, kind="world_model",
                        resources=res, log=str(directory / JOB_LOG)))  # fmt: skip
    wm_dep = (wm_key,) if jobs else ()
    res = job_resources(suite, "member")
    for task_id in ids:
        if mt.member_status(directory, task_id) is None:
            jobs.append(Job(f"{cell.key}|member|{task_id}", run_task_set_job, {"stage": "member", **common, "threads": res.cpus, "task_id": task_id},
                            kind="member", depends_on=wm_dep, resources=res, log=str(mt.member_dir(directory, task_id) / JOB_LOG),
                            group=f"{cell.key}|members"))  # fmt: skip
    res = job_resources(suite, "collect")
    jobs.append(Job(cell.key, run_task_set_job, {"stage": "collect", **common, "threads": res.cpus, "task_ids": ids}, kind="collect",
                    depends_on=tuple(j.key for j in jobs), resources=res, log=str(directory / COLLECT_LOG)))  # fmt: skip
    return jobs


class ResultsLocked(PwmbenchError):
    """Another `pwmbench run` holds the results directory."""


def _lock_holder(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _holder_gone(holder: dict[str, Any] | None) -> bool:
    """The holder's process has ended (only knowable on its own host; a lock from another host is kept)."""
    if holder is None:
        return True  # an unreadable lock: its writer died between creating and writing it
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, KeyError):
        return False
    return False


@contextmanager
def results_lock(out: Path) -> Iterator[Path]:
    """Hold `out` for this process: a second `pwmbench run` on it is refused (naming the holder) while the holder
    lives; a lock whose process is gone is taken over. Created with O_EXCL, so two runners never both get it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "command": " ".join(sys.argv)}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            if _holder_gone(holder):
                path.unlink(missing_ok=True)
                continue
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
            raise ResultsLocked(
                f"{out} is in use by another pwmbench run (host {holder.get('host')}, pid {holder.get('pid')}, since {since}): "
                f"wait for it to finish, or run into another --out. If that process is gone (e.g. on another machine "
                f"that was shut down), delete {path}."
            ) from None
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
        except OSError as exc:  # a full disk: no lock file left half-written, and an error that says what to do
            path.unlink(missing_ok=True)
            raise no_space(exc, path) from None
        break
    else:
        raise ResultsLocked(f"could not take the lock {path}: it keeps changing hands")
    try:
        yield path
    finally:
        if (_lock_holder(path) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)


def parse_only(text: str | None) -> dict[str, set[str]]:
    """'task=dmc/cheetah-run,variant=flow,seed=42' → filters; a key may repeat ('seed=42,seed=123')."""
    filters: dict[str, set[str]] = {}
    if not text:
        return filters
    for part in re.split(r",(?=\s*(?:task|variant|seed)\s*=)", text):  # sweep variant names hold commas themselves
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("task", "variant", "seed"):
            raise ConfigError(f"--only expects task=…,variant=…,seed=… filters, got {part!r}")
        filters.setdefault(key, set()).add(value.strip())
    return filters


def select(cells: list[Cell], filters: dict[str, set[str]]) -> list[Cell]:
    return [c for c in cells if all(str(getattr(c, k)) in v for k, v in filters.items())]


def cell_status(cell: Cell, out: Path) -> str | None:
    """The status of a cell's run file ("ok", "diverged" or "failed"; a task set's worst row), or None without one."""
    return run_status(cell.directory(out) / RUN_FILE)


def finished(cell: Cell, out: Path) -> str | None:
    """The status of a cell's finished result ("ok" or "diverged"), or None when it has not finished or failed:
    a failed cell (an exception) is trained again, resuming from its checkpoint."""
    status = cell_status(cell, out)
    return None if status == "failed" else status


def write_suite_record(suite: Suite, out: Path) -> None:
    write_text_atomic(json.dumps(suite.to_dict(), indent=1, default=str), out / SUITE_FILE)


# the exception types of bad input (a changed config against a checkpoint, missing data, ...): a fix, not a re-run
BAD_INPUT_ERRORS = ("ConfigError", "SuiteError", "ChunkError", "CellAlreadyDone", "PluginError")


@dataclass(frozen=True)
class Problem:
    """A selected cell (a task set: one member row) that is not ok, and where to read why."""

    task: str
    variant: str
    seed: int
    status: str  # "failed", "diverged", or "error" (the executor got an exception: the cell wrote no result)
    reason: str  # one line
    path: Path  # traceback.txt (failed, error) or run.arrow (diverged)
    earlier: bool = False  # skipped this time: the result of an earlier run

    def line(self) -> str:
        where = "traceback" if self.path.name == TRACEBACK_FILE else "details"
        if self.earlier:
            hint = "`--restart` trains it again"
        elif self.status == "diverged":
            hint = "a result: a re-run keeps it, `--restart` trains it again"
        elif self.status == "error" and self.reason.split(":", 1)[0] in BAD_INPUT_ERRORS:
            hint = "fix the input; `--restart` discards a cell's old checkpoint"
        else:
            hint = "a re-run retries it from its last checkpoint"
        when = " (from an earlier run)" if self.earlier else ""
        return f"{self.task} {self.variant} seed {self.seed}: {self.status}{when} — {self.reason} ({where}: {self.path}; {hint})"


def one_line(text: str | None, limit: int = 200) -> str:
    """A reason shortened to one line of at most `limit` characters."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    first = lines[0] if lines else "no reason recorded"
    if len(lines) > 1:
        first += " …"
    return first if len(first) <= limit else first[: limit - 1] + "…"


@dataclass
class RunSummary:
    total: int
    skipped: int
    statuses: Counter = field(default_factory=Counter)
    errors: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    problems: list[Problem] = field(default_factory=list)  # every selected cell that is not ok, skipped ones included
    skipped_statuses: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        """Every selected cell is ok (trained now or skipped as finished): `pwmbench run`'s exit status 0."""
        return not self.errors and not self.problems and set(self.statuses) <= {"ok"}


def cell_problems(cell: Cell, out: Path, earlier: bool = False) -> list[Problem]:
    """The not-ok rows of a cell's run file as Problems (none when it has no run file or all rows are ok)."""
    directory = cell.directory(out)
    path = directory / RUN_FILE
    if not path.exists():
        return []
    problems = []
    for row in read_table(path).select(["task", "status", "reason"]).to_pylist():
        if row["status"] == "ok":
            continue
        where = directory / TRACEBACK_FILE if row["status"] == "failed" and (directory / TRACEBACK_FILE).exists() else path
        problems.append(Problem(row["task"] or cell.task, cell.variant, cell.seed, row["status"], one_line(row["reason"]), where, earlier))
    return problems


def _record_error(cell: Cell, out: Path, exc: BaseException, job: Job | None = None) -> Problem:
    """An exception the executor got for a job (it never wrote a result): its traceback goes to traceback.txt in the
    job's directory (a task-set member's own, else the cell's)."""
    directory = Path(job.log).parent if job is not None and job.log else cell.directory(out)
    path = directory / TRACEBACK_FILE
    try:
        write_text_atomic("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), path)
    except OSError as write_error:  # e.g. the disk is still full: the run goes on and says so
        path = Path(f"{path} (not written: {write_error})")
    what = "" if job is None or job.kind in ("cell", "collect") else f" ({job.kind.replace('_', ' ')} job)"
    return Problem(cell.task, cell.variant, cell.seed, "error", one_line(f"{type(exc).__name__}: {exc}") + what, path)


@dataclass(frozen=True)
class Tracked:
    """One line of the progress board: a cell, or one job of a task-set cell, and where its progress.json is."""

    key: str
    label: str
    directory: Path
    total: int
    unit: str = "epoch"


def tracked_jobs(jobs: list[Job], cell_of: dict[str, Cell], out: Path) -> list[Tracked]:
    """What the board follows for a job graph: every job but the (instant) collecting ones."""
    items = []
    for job in jobs:
        cell = cell_of[job.key]
        name = f"{cell.task} {cell.variant} seed {cell.seed}"
        if job.kind == "cell":
            items.append(ProgressBoard.track_cell(cell, out))
        elif job.kind == "world_model":
            items.append(Tracked(job.key, f"{name} world model", cell.directory(out), cell.config.wm_training_steps, "step"))
        elif job.kind == "member":
            task_id = job.kwargs["task_id"]
            items.append(Tracked(job.key, f"{name} member {task_id}", cell.directory(out) / MEMBERS_DIR / str(task_id), cell.config.max_epochs, "iteration"))
    return items


class ProgressBoard:
    """Overall bar with ETA plus one line per running cell or job, read from their progress.json files."""

    def __init__(self, cells: list[Cell], out: Path, stream: Any = sys.stderr, interval: float = 1.0, items: list[Tracked] | None = None) -> None:
        self.cells, self.out, self.stream, self.interval = cells, out, stream, interval
        self.items = items if items is not None else [self.track_cell(c, out) for c in cells]
        self.noun = "cells" if items is None else "jobs"
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.done: set[str] = set()
        self.start = time.time()
        self._stop = threading.Event()
        self._lines = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._last_plain = 0.0

    def __enter__(self) -> ProgressBoard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.draw(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.draw()

    @classmethod
    def track_cell(cls, cell: Cell, out: Path) -> Tracked:
        total = cls.cell_total(cell)
        unit = "epoch" if total == cell.config.max_epochs else "step"
        return Tracked(cell.key, f"{cell.task} {cell.variant} seed {cell.seed}", cell.directory(out), total, unit)

    @staticmethod
    def cell_total(cell: Cell) -> int:
        """A cell's units of work (a task set counts world-model steps and member iterations)."""
        from pwmbench.pwm.cell import total_steps

        try:
            return total_steps(cell.task, cell.config)
        except PwmbenchError:  # a task this process cannot resolve: count its epochs
            return cell.config.max_epochs

    def _progress(self, item: Tracked) -> tuple[int, dict[str, Any] | None]:
        if item.key in self.done:
            return item.total, None
        try:
            info = json.loads((item.directory / PROGRESS_FILE).read_text())
            return min(int(info["epoch"]), item.total), info
        except (OSError, ValueError, KeyError):
            return 0, None

    def draw(self, final: bool = False) -> None:
        total = sum(i.total for i in self.items)
        states = [(i, *self._progress(i)) for i in self.items]
        done_units = sum(e for _, e, _ in states)
        elapsed = time.time() - self.start
        eta = elapsed / done_units * (total - done_units) if done_units else float("nan")
        frac = done_units / total if total else 1.0
        finished = sum(i.key in self.done for i in self.items)
        head = f"{self.noun} {finished}/{len(self.items)} [{'#' * int(30 * frac)}{'.' * (30 - int(30 * frac))}] {100 * frac:.0f}%"
        head += f"  elapsed {elapsed / 60:.1f} min" + (f"  ETA {eta / 60:.1f} min" if eta == eta else "")
        lines = [head]
        for item, units, info in states:
            if info is not None and item.key not in self.done:
                ev = info.get("eval_return")
                lines.append(f"  {item.label}: {item.unit} {units}/{item.total}" + (f", eval {ev:.1f}" if ev is not None else ""))
        if self.tty:
            if self._lines:
                self.stream.write(f"\x1b[{self._lines}F\x1b[J")
            self.stream.write("\n".join(lines) + "\n")
            self._lines = len(lines)
        elif final or time.time() - self._last_plain > 30:
            self.stream.write(head + "\n")
            self._last_plain = time.time()
        self.stream.flush()

    def finished(self, what: Cell | str, status: str) -> None:
        """A cell (or a job, by key) ended with `status`."""
        key = what if isinstance(what, str) else what.key
        self.done.add(key)
        label = next((i.label for i in self.items if i.key == key), key)
        if not self.tty:
            self.stream.write(f"  finished {label}: {status}\n")


def plan(suite: Suite, out: Path, filters: dict[str, set[str]] | None = None, restart: bool = False) -> tuple[list[Cell], list[Cell]]:
    """(cells selected, cells still to run)."""
    cells = select(suite.cells(), filters or {})
    if not cells:
        raise ConfigError(f"--only matches no cell of suite {suite.name!r}")
    todo = cells if restart else [c for c in cells if finished(c, out) is None]
    return cells, todo


def prepare_datasets(suite: Suite, stream: Any = None) -> None:
    """Task sets train offline: collect the suite's [data] into base.data_dir when it holds no dataset yet, and
    refuse to start (with the fix) when a task set's data_dir is missing or empty — before any cell runs."""
    from pwmbench.api import TaskSet
    from pwmbench.api import task as get_task
    from pwmbench.data.chunks import chunk_paths
    from pwmbench.suite import SuiteError

    sets = [t for t in suite.tasks if isinstance(get_task(t), TaskSet)]
    if not sets:
        return
    data_dir = suite.base.get("data_dir")
    has_data = bool(data_dir) and Path(data_dir).expanduser().is_dir() and bool(chunk_paths(Path(data_dir).expanduser()))
    if not has_data and suite.data:
        from pwmbench.data.collect import collect

        spec = suite.data
        if stream is not None:
            stream.write(f"collecting the {spec['taskset']} dataset into {data_dir} ...\n")
        collect(spec["taskset"], spec["episodes_per_task"], Path(data_dir).expanduser(), policy=spec.get("policy", "random"),
                seed=spec.get("seed", 0), num_envs=spec.get("num_envs", 8), task_ids=spec.get("task_ids"),
                progress=(lambda line: stream.write(f"  {line}\n")) if stream is not None else None)  # fmt: skip
        return
    if not has_data:
        name = sets[0]
        where = "not set" if not data_dir else f"{data_dir!r}, which holds no chunk_<i>.pt files"
        raise SuiteError(
            f"{suite.where()}: {', '.join(sets)} train(s) offline, but base.data_dir is {where}. Point data_dir at "
            f"TD-MPC2's {name.upper()} data (chunk_<i>.pt files), or add a [data] table to collect one, or run "
            f"`pwmbench data collect --taskset {name} --episodes-per-task N --out DIR` first."
        )


def prepare_pretraining(suite: Suite, stream: Any = None) -> None:
    """[pretrain]: collect every task's pretraining dataset that is not there yet (the collector spec), then check
    each against its task (pwm/pretrain.py's checks) — before any cell runs, so bad data stops the suite at once."""
    from pwmbench.api import task as get_task
    from pwmbench.data.chunks import chunk_paths
    from pwmbench.pwm.pretrain import open_pretrain_data
    from pwmbench.suite import SuiteError, pretrain_dir

    spec = suite.pretrain
    if not spec:
        return
    horizon = _suite_horizon(suite)
    for task_name in suite.tasks:
        directory = Path(pretrain_dir(suite, task_name) or "").expanduser()
        present = directory.is_dir() and bool(chunk_paths(directory))
        if not present and "episodes" in spec:
            from pwmbench.data.collect import collect_task

            if stream is not None:
                stream.write(f"collecting {spec['episodes']} {task_name} episodes for pretraining into {directory} ...\n")
            collect_task(task_name, spec["episodes"], directory, policy=spec.get("policy", "random"), seed=spec.get("seed", 0),
                         num_envs=spec.get("num_envs", 8), progress=(lambda line: stream.write(f"  {line}\n")) if stream is not None else None)  # fmt: skip
        try:
            open_pretrain_data(directory, get_task(task_name).spec, horizon)
        except ConfigError as exc:
            raise SuiteError(f"{suite.where()} [pretrain]: {exc}") from None


def _suite_horizon(suite: Suite) -> int:
    """The suite's horizon (shared by every variant; the fairness audit makes sure)."""
    from pwmbench.pwm.config import resolve_config

    return next(iter(suite.configs.values())).horizon if suite.configs else resolve_config(suite.base).horizon


def executor_choice(suite: Suite, executor: str | None, options: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The executor's name (given, else the suite's [executor] name, else "local") and its options (the suite's,
    overridden by the given ones, e.g. from `--set executor.KEY=VALUE`)."""
    named = suite.executor.get("name")
    name = executor or named or "local"
    # the suite's options belong to the executor it names (or to any, when it names none)
    merged = dict(suite.executor.get("options", {})) if named in (None, name) else {}
    return name, {**merged, **(options or {})}


@dataclass
class Submission:
    """What a detached run handed to its executor."""

    executor: str
    record_dir: Path
    jobs: list[Any]


def run_suite(
    suite: Suite,
    out: Path,
    *,
    workers: int = 1,
    filters: dict[str, set[str]] | None = None,
    restart: bool = False,
    executor: str | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = True,
    stream: Any = sys.stderr,
    detach: bool = False,
) -> RunSummary | Submission:
    """Train every selected cell that has not finished (all of them with restart) as a job graph on the executor;
    record outcomes. The results directory is locked for the run. With `detach` (executors that can), submit the
    graph and return at once: `pwmbench status` follows it."""
    from pwmbench.api import executor as make_executor

    name, opts = executor_choice(suite, executor, options)
    with results_lock(out):
        cells, todo = plan(suite, out, filters, restart)
        runner = make_executor(name, workers=workers, **opts)  # bad options fail here, before any data is collected
        if getattr(runner, "record_dir", None) is None:
            runner.record_dir = str(out / EXECUTOR_DIR)  # where an executor keeps its own files (submitit's, ...)
        if detach and not runner.detachable:
            raise ConfigError(f"executor {name!r} cannot detach: its jobs live in this process (use slurm, or run without --detach)")
        if todo:
            prepare_datasets(suite, stream if progress else None)
            prepare_pretraining(suite, stream if progress else None)
        write_suite_record(suite, out)
        summary = RunSummary(total=len(cells), skipped=len(cells) - len(todo))
        running = {c.key for c in todo}
        for cell in cells:
            if cell.key not in running:  # finished in an earlier run: ok, or diverged (a result, but not ok)
                summary.skipped_statuses[cell_status(cell, out) or "?"] += 1
                summary.problems += cell_problems(cell, out, earlier=True)
        pairs = [(job, c) for c in todo for job in cell_jobs(suite, c, out, restart)]
        jobs, cell_of = [job for job, _ in pairs], {job.key: c for job, c in pairs}
        if detach:
            record_dir = out / EXECUTOR_DIR
            record_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(json.dumps({"executor": name, "options": opts, "submitted": time.time(),
                                          "jobs": [{"key": j.key, "kind": j.kind, "log": j.log} for j in jobs]}, indent=1, default=str),
                              record_dir / "submission.json")  # fmt: skip
            runner.submit(jobs, str(record_dir))
            return Submission(name, record_dir, jobs)
        _execute(runner, jobs, cell_of, todo, out, summary, progress, stream)
    summary.problems.sort(key=lambda p: (p.task, p.variant, p.seed))
    return summary


def _execute(runner: Any, jobs: list[Job], cell_of: dict[str, Cell], todo: list[Cell], out: Path, summary: RunSummary, progress: bool, stream: Any) -> None:
    start = time.time()
    board = ProgressBoard(todo, out, stream, items=tracked_jobs(jobs, cell_of, out)) if progress and todo else None
    try:
        if board is not None:
            board.__enter__()
        for job, outcome in runner.run(jobs):
            cell = cell_of[job.key]
            if job.kind in ("world_model", "member"):  # a task-set cell's inner job: its collecting job reports the cell
                if isinstance(outcome, BaseException):
                    summary.errors[job.key] = f"{type(outcome).__name__}: {outcome}"
                    summary.problems.append(_record_error(cell, out, outcome, job))
                if board is not None:
                    board.finished(job.key, "error" if isinstance(outcome, BaseException) else str(outcome))
                continue
            if isinstance(outcome, BaseException):
                summary.errors[job.key] = f"{type(outcome).__name__}: {outcome}"
                status = "error"
                if not isinstance(outcome, DependencyFailed):  # the failed dependency is already listed
                    summary.problems.append(_record_error(cell, out, outcome, job))
            else:
                status = str(outcome)
                summary.statuses[status] += 1
                if status != "ok":
                    summary.problems += cell_problems(cell, out) or [
                        Problem(cell.task, cell.variant, cell.seed, status, "the cell wrote no run.arrow", cell.directory(out))]
            if board is not None:
                board.finished(job.key, status)
    except BaseException:
        runner.cancel()
        raise
    finally:
        if board is not None:
            board.__exit__(None, None, None)
        summary.wall_s = time.time() - start


def parse_executor_settings(settings: Iterable[str]) -> dict[str, Any]:
    """`executor.KEY=VALUE` strings (`pwmbench run --set`) → options; VALUE is read as a TOML value when it is one
    (numbers, booleans, quoted strings, arrays, inline tables), else kept as the string."""
    import tomllib

    options: dict[str, Any] = {}
    for text in settings:
        key, sep, value = text.partition("=")
        prefix, dot, name = key.strip().partition(".")
        if not sep or prefix != "executor" or not dot or not name:
            raise ConfigError(f"--set expects executor.KEY=VALUE (e.g. executor.address=auto), got {text!r}")
        try:
            options[name] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            options[name] = value.strip()
    return options


def results_status(out: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Every job of a results directory with its state from the files: a cell (or a task-set job) with a result is
    done (or failed/diverged), one with progress.json is running, others are queued. After `run --detach`, the
    executor's own view of each job is added when the scheduler is reachable."""
    from pwmbench.pwm.cell_files import WORLD_MODEL_FILE

    suite_file = out / SUITE_FILE
    if not suite_file.exists():
        raise ConfigError(f"{out} holds no {SUITE_FILE}: not a results directory of `pwmbench run`")
    try:
        record = json.loads(suite_file.read_text())
    except ValueError as exc:
        raise ConfigError(f"{suite_file} is not valid JSON ({exc}): run the suite again to rewrite it (finished cells are kept)") from None
    rows: list[dict[str, Any]] = []
    for key in record.get("configs", {}):
        task, variant = key.split("|", 1)
        for seed in record.get("seeds", []):
            cell = Cell(task, variant, seed, None)  # type: ignore[arg-type]
            directory = cell.directory(out)
            rows.append(_file_state(cell.key, directory, directory / RUN_FILE))
            if (directory / WORLD_MODEL_FILE).exists() or (directory / MEMBERS_DIR).is_dir():
                from pwmbench.pwm.multitask_cell import MEMBER_RUN_FILE, world_model_status

                wm = world_model_status(directory, repair=False)  # `status` only reads: `run` moves a corrupt one aside
                if wm is not None:
                    detail = f"{WORLD_MODEL_FILE} unreadable: the next run trains it again" if wm == "corrupt" else None
                    rows.append({"job": f"{cell.key}|world_model", "state": "done" if wm == "ok" else wm, "detail": detail})
                for member in sorted((directory / MEMBERS_DIR).glob("*"), key=lambda p: int(p.name) if p.name.isdigit() else 0):
                    rows.append(_file_state(f"{cell.key}|member|{member.name}", member, member / MEMBER_RUN_FILE))
    note = None
    submission = out / EXECUTOR_DIR / "submission.json"
    if submission.exists():
        info = json.loads(submission.read_text())
        try:
            from pwmbench.api import executor as make_executor

            states = {s.key: s for s in make_executor(info["executor"], **info.get("options", {})).status(str(out / EXECUTOR_DIR))}
            by_job = {r["job"]: r for r in rows}
            for key, st in states.items():
                row = by_job.get(key) or by_job.setdefault(key, {"job": key, "state": st.state, "detail": None})
                if row not in rows:
                    rows.append(row)
                row["scheduler"] = f"{info['executor']}: {st.state}" + (f" (job {st.scheduler_id})" if st.scheduler_id else "") + (f", {st.detail}" if st.detail else "")
                if row["state"] in ("queued", "running") and st.state in ("failed", "cancelled", "preempted"):
                    row["state"] = st.state
                row["log"] = row.get("log") or st.log
            note = f"submitted to {info['executor']} at {time.strftime('%Y-%m-%d %H:%M', time.localtime(info['submitted']))}"
        except Exception as exc:  # noqa: BLE001 - the files still tell the state; say why the scheduler did not
            note = f"{info['executor']} not reachable: {type(exc).__name__}: {exc}"
    return rows, note


def _file_state(job: str, directory: Path, run_file: Path) -> dict[str, Any]:
    status = run_status(run_file, repair=False)  # `status` only reads: `run` moves a corrupt result aside
    log = str(directory / JOB_LOG) if (directory / JOB_LOG).exists() else None
    if status == "ok":
        return {"job": job, "state": "done", "detail": None, "log": log}
    if status == "corrupt":
        return {"job": job, "state": "corrupt", "detail": f"{run_file.name} unreadable: the next run trains it again", "log": log}
    if status is not None:
        return {"job": job, "state": "failed" if status == "failed" else "diverged", "detail": status, "log": log}
    try:
        info = json.loads((directory / PROGRESS_FILE).read_text())
        return {"job": job, "state": "running", "detail": f"{info['epoch']}/{info['max_epochs']}", "log": log}
    except (OSError, ValueError, KeyError):
        return {"job": job, "state": "queued", "detail": None, "log": log}

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
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwmbench.errors import ConfigError, PwmbenchError
from pwmbench.interfaces import Job
from pwmbench.pwm.cell import PROGRESS_FILE, RUN_FILE, TRACEBACK_FILE, run_status, total_steps, write_text_atomic
from pwmbench.results import read_table
from pwmbench.suite import Cell, Suite

SUITE_FILE = "suite.json"


def run_cell_job(task: str, config: dict[str, Any], seed: int, out_dir: str, identity: dict[str, str], threads: int, restart: bool, threshold: float | None) -> str:
    """What a worker process runs for one cell (module-level, so it pickles for any executor)."""
    import torch

    torch.set_num_threads(threads)
    from pwmbench.pwm.cell import train_cell
    from pwmbench.pwm.config import resolve_config

    return train_cell(task, resolve_config(config), seed, out_dir, restart=restart, identity=identity, threshold=threshold).status


def parse_only(text: str | None) -> dict[str, set[str]]:
    """'task=dmc/cheetah-run,variant=flow,seed=42' → filters; a key may repeat ('seed=42,seed=123')."""
    filters: dict[str, set[str]] = {}
    if not text:
        return filters
    for part in text.split(","):
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
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{SUITE_FILE}.tmp"
    tmp.write_text(json.dumps(suite.to_dict(), indent=1, default=str))
    os.replace(tmp, out / SUITE_FILE)


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


def _record_error(cell: Cell, out: Path, exc: BaseException) -> Problem:
    """An exception the executor got for a cell (it never wrote a result): its traceback goes to traceback.txt."""
    path = cell.directory(out) / TRACEBACK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), path)
    return Problem(cell.task, cell.variant, cell.seed, "error", one_line(f"{type(exc).__name__}: {exc}"), path)


class ProgressBoard:
    """Overall bar with ETA plus one line per running cell, read from the cells' progress.json files."""

    def __init__(self, cells: list[Cell], out: Path, stream: Any = sys.stderr, interval: float = 1.0) -> None:
        self.cells, self.out, self.stream, self.interval = cells, out, stream, interval
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.done: set[str] = set()
        self.start = time.time()
        self._stop = threading.Event()
        self._lines = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._last_plain = 0.0
        self.totals = {c.key: self._total(c) for c in cells}

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

    @staticmethod
    def _total(cell: Cell) -> int:
        """The cell's units of work (a task set counts world-model steps and member iterations)."""
        try:
            return total_steps(cell.task, cell.config)
        except PwmbenchError:  # a task this process cannot resolve: count its epochs
            return cell.config.max_epochs

    def _epochs(self, cell: Cell) -> tuple[int, dict[str, Any] | None]:
        if cell.key in self.done:
            return self.totals[cell.key], None
        try:
            info = json.loads((cell.directory(self.out) / PROGRESS_FILE).read_text())
            return int(info["epoch"]), info
        except (OSError, ValueError, KeyError):
            return 0, None

    def draw(self, final: bool = False) -> None:
        total = sum(self.totals.values())
        states = [(c, *self._epochs(c)) for c in self.cells]
        done_epochs = sum(e for _, e, _ in states)
        elapsed = time.time() - self.start
        eta = elapsed / done_epochs * (total - done_epochs) if done_epochs else float("nan")
        frac = done_epochs / total if total else 1.0
        head = f"cells {len(self.done)}/{len(self.cells)} [{'#' * int(30 * frac)}{'.' * (30 - int(30 * frac))}] {100 * frac:.0f}%"
        head += f"  elapsed {elapsed / 60:.1f} min" + (f"  ETA {eta / 60:.1f} min" if eta == eta else "")
        lines = [head]
        for cell, epochs, info in states:
            if info is not None and cell.key not in self.done:
                ev = info.get("eval_return")
                lines.append(f"  {cell.task} {cell.variant} seed {cell.seed}: {'epoch' if self.totals[cell.key] == cell.config.max_epochs else 'step'} {epochs}/{self.totals[cell.key]}" + (f", eval {ev:.1f}" if ev is not None else ""))
        if self.tty:
            if self._lines:
                self.stream.write(f"\x1b[{self._lines}F\x1b[J")
            self.stream.write("\n".join(lines) + "\n")
            self._lines = len(lines)
        elif final or time.time() - self._last_plain > 30:
            self.stream.write(head + "\n")
            self._last_plain = time.time()
        self.stream.flush()

    def finished(self, cell: Cell, status: str) -> None:
        self.done.add(cell.key)
        if not self.tty:
            self.stream.write(f"  finished {cell.task} {cell.variant} seed {cell.seed}: {status}\n")


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


def run_suite(
    suite: Suite,
    out: Path,
    *,
    workers: int = 1,
    filters: dict[str, set[str]] | None = None,
    restart: bool = False,
    executor: str = "local",
    progress: bool = True,
    stream: Any = sys.stderr,
) -> RunSummary:
    """Train every selected cell that has not finished (all of them with restart); record outcomes."""
    from pwmbench.api import executor as make_executor

    cells, todo = plan(suite, out, filters, restart)
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
    threads = max(1, (os.cpu_count() or 1) // max(1, min(workers, len(todo) or 1)))
    jobs = [
        Job(
            c.key,
            run_cell_job,
            {
                "task": c.task,
                "config": c.config.to_dict(),
                "seed": c.seed,
                "out_dir": str(c.directory(out)),
                "identity": {"suite": suite.name, "variant": c.variant},
                "threads": threads,
                "restart": restart,
                "threshold": suite.thresholds.get(c.task),
            },
        )
        for c in todo
    ]
    by_key = {c.key: c for c in todo}
    start = time.time()
    board = ProgressBoard(todo, out, stream) if progress and todo else None
    try:
        if board is not None:
            board.__enter__()
        for job, outcome in make_executor(executor, workers=workers).run(jobs):
            cell = by_key[job.key]
            if isinstance(outcome, BaseException):
                summary.errors[job.key] = f"{type(outcome).__name__}: {outcome}"
                status = "error"
                summary.problems.append(_record_error(cell, out, outcome))
            else:
                status = str(outcome)
                summary.statuses[status] += 1
                if status != "ok":
                    summary.problems += cell_problems(cell, out) or [
                        Problem(cell.task, cell.variant, cell.seed, status, "the cell wrote no run.arrow", cell.directory(out))]
            if board is not None:
                board.finished(cell, status)
    finally:
        if board is not None:
            board.__exit__(None, None, None)
        summary.wall_s = time.time() - start
    summary.problems.sort(key=lambda p: (p.task, p.variant, p.seed))
    return summary

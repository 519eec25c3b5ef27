"""Run a suite: plan its job graph, hand it to an executor, watch progress, summarise.

The runner knows no algorithm. `cell_kinds.plan_jobs` turns the cells still to run into jobs (data jobs first, each
cell's jobs after the data they need); an executor plugin runs them where it runs things (local processes, Ray,
Slurm); the board and the summary read the files the jobs write. Every job writes its own atomic files, so a failing
or diverged cell is recorded with its reason while the others go on, and a re-run after a crash, Ctrl-C or kill -9
skips finished cells and resumes the others from their checkpoints. Finished means ok or diverged (a NaN/Inf is a
result); a failed cell (an exception) is no result and is trained again by the next run, from its last checkpoint.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pwmbench.errors import ConfigError
from pwmbench.jobs.cell_kinds import JobPlan, Tracked, plan_jobs
from pwmbench.jobs.lock import results_lock
from pwmbench.jobs.progress import ProgressBoard
from pwmbench.jobs.status import EXECUTOR_DIR
from pwmbench.jobs.summary import Problem, RunSummary, cell_problems, record_error
from pwmbench.plugin.interfaces import DependencyFailed, Job
from pwmbench.results.cell_files import RUN_FILE, run_status, write_text_atomic
from pwmbench.suite.record import check_same_suite, write_suite_record
from pwmbench.suite.spec import Cell, Suite

__all__ = ["Submission", "cell_status", "executor_choice", "finished", "parse_executor_settings", "parse_only", "plan", "plan_graph",
           "run_suite", "select", "write_suite_record"]  # fmt: skip


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


def check_results_dir(out: Path) -> None:
    """The results directory can be made here: its nearest existing ancestor is a writable directory (not a file,
    not /proc) — said before anything is planned, on a dry run too."""
    import os

    probe = Path(out).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"results directory {out}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK) or str(probe.resolve()).startswith(("/proc", "/sys")):
        raise ConfigError(f"results directory {out}: {probe} is not writable (choose another --out)")


def plan(suite: Suite, out: Path, filters: dict[str, set[str]] | None = None, restart: bool = False) -> tuple[list[Cell], list[Cell]]:
    """(cells selected, cells still to run)."""
    cells = select(suite.cells(), filters or {})
    if not cells:
        raise ConfigError(f"--only matches no cell of suite {suite.name!r}")
    todo = cells if restart else [c for c in cells if finished(c, out) is None]
    return cells, todo


def plan_graph(suite: Suite, out: Path, todo: list[Cell], restart: bool, prepare: bool = False) -> JobPlan:
    """The job graph of the cells still to run, after the planning-time data checks (nothing is collected here).
    `prepare` (a real run, not a dry one): each cell's kind first discards what a re-run must (failed records;
    everything with restart)."""
    from pwmbench.data.jobs import check_suite_data
    from pwmbench.jobs.cell_kinds import kind_for

    amendments = check_same_suite(suite, out, restart, repair=prepare)  # a dry run changes nothing
    if todo:
        check_suite_data(suite, todo[0].config.horizon)
    if prepare:
        for cell in todo:
            kind_for(cell.task).prepare(cell, out, restart)
    graph = plan_jobs(suite, todo, out, restart)
    graph.amendments = amendments
    return graph


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
    """Run every selected cell that has not finished (all of them with restart) as a job graph on the executor;
    record outcomes. The results directory is locked for the run. With `detach` (executors that can), submit the
    graph and return at once: `pwmbench status` follows it."""
    from pwmbench.api import executor as make_executor

    name, opts = executor_choice(suite, executor, options)
    check_results_dir(out)
    with results_lock(out):
        cells, todo = plan(suite, out, filters, restart)
        runner = make_executor(name, workers=workers, **opts)  # bad options fail here, before anything is submitted
        if getattr(runner, "record_dir", None) is None:
            runner.record_dir = str(out / EXECUTOR_DIR)  # where an executor keeps its own files (submitit's, ...)
        if detach and not runner.detachable:
            raise ConfigError(f"executor {name!r} cannot detach: its jobs live in this process (use slurm, or run without --detach)")
        graph = plan_graph(suite, out, todo, restart, prepare=True)
        write_suite_record(suite, out, graph.amendments)
        summary = RunSummary(total=len(cells), skipped=len(cells) - len(todo))
        running = {c.key for c in todo}
        for cell in cells:
            if cell.key not in running:  # finished in an earlier run: ok, or diverged (a result, but not ok)
                summary.skipped_statuses[cell_status(cell, out) or "?"] += 1
                summary.problems += cell_problems(cell, out, earlier=True)
        if detach:
            record_dir = out / EXECUTOR_DIR
            record_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(json.dumps({"executor": name, "options": opts, "submitted": time.time(),
                                          "jobs": [{"key": j.key, "kind": j.kind, "log": j.log} for j in graph.jobs]}, indent=1, default=str),
                              record_dir / "submission.json")  # fmt: skip
            runner.submit(graph.jobs, str(record_dir))
            return Submission(name, record_dir, graph.jobs)
        _execute(runner, graph, out, summary, progress and bool(todo), stream, workers)
    summary.problems.sort(key=lambda p: (p.task, p.variant, p.seed if p.seed is not None else -1))
    return summary


def _execute(runner: Any, graph: JobPlan, out: Path, summary: RunSummary, progress: bool, stream: Any, slots: int = 1) -> None:
    """Run the graph; the cell job of each cell (its kind's `cell_job`) reports the cell, inner and data jobs only
    their errors."""
    start = time.time()
    items = [t for job in graph.jobs if (t := _tracked(graph, job, out)) is not None]
    board = ProgressBoard([], out, stream, items=items, slots=slots) if progress else None
    try:
        if board is not None:
            board.__enter__()
        for job, outcome in runner.run(graph.jobs):
            cell = graph.cell_of[job.key]
            failed = isinstance(outcome, BaseException)
            if cell is None or job.kind != graph.kinds[cell.key].cell_job:  # a data job or a cell's inner job
                if failed and not isinstance(outcome, DependencyFailed):
                    summary.errors[job.key] = f"{type(outcome).__name__}: {outcome}"
                    summary.problems.append(record_error(cell, out, outcome, job))
                if board is not None:
                    board.finished(job.key, "error" if failed else str(outcome))
                continue
            if failed:
                summary.errors[job.key] = f"{type(outcome).__name__}: {outcome}"
                status = "error"
                if not isinstance(outcome, DependencyFailed):  # the failed dependency is already listed
                    summary.problems.append(record_error(cell, out, outcome, job))
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


def _tracked(graph: JobPlan, job: Job, out: Path) -> Tracked | None:
    cell = graph.cell_of[job.key]
    if cell is None:  # a data job: its progress is the collector's log
        return Tracked(job.key, f"{job.kind.replace('_', ' ')} {Path(job.kwargs.get('data_dir') or job.kwargs.get('directory')).name}",
                       Path(job.log).parent, 1, "directory")  # fmt: skip
    return graph.kinds[cell.key].tracked(job, cell, out)


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

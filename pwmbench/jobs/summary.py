"""What `pwmbench run` tells at its end: the outcome counts and one line per selected cell that is not ok (failed,
diverged, or an error the executor got), with its reason and the file that explains it."""

from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pwmbench.plugin.interfaces import Job
from pwmbench.results.cell_files import RUN_FILE, TRACEBACK_FILE, write_text_atomic
from pwmbench.results.tables import read_table

if TYPE_CHECKING:
    from pwmbench.suite.spec import Cell

__all__ = ["BAD_INPUT_ERRORS", "Problem", "RunSummary", "cell_problems", "one_line", "record_error"]


# the exception types of bad input (a changed config against a checkpoint, missing data, ...): a fix, not a re-run
BAD_INPUT_ERRORS = ("ConfigError", "SuiteError", "ChunkError", "CellAlreadyDone", "PluginError")


@dataclass(frozen=True)
class Problem:
    """A selected cell (a task set: one member row) that is not ok, or a data job that failed, and where to read why."""

    task: str
    variant: str  # "data" for a data job
    seed: int | None  # None for a data job
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
        who = f"{self.task} {self.variant} seed {self.seed}" if self.seed is not None else f"{self.task} ({self.variant})"
        return f"{who}: {self.status}{when} — {self.reason} ({where}: {self.path}; {hint})"


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


def record_error(cell: Cell | None, out: Path, exc: BaseException, job: Job | None = None) -> Problem:
    """An exception the executor got for a job (it never wrote a result): its traceback goes to traceback.txt in the
    job's directory (a task-set member's own, a data job's data directory, else the cell's)."""
    directory = Path(job.log).parent if job is not None and job.log else cell.directory(out)  # type: ignore[union-attr]
    path = directory / TRACEBACK_FILE
    try:
        write_text_atomic("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), path)
    except OSError as write_error:  # e.g. the disk is still full: the run goes on and says so
        path = Path(f"{path} (not written: {write_error})")
    reason = one_line(f"{type(exc).__name__}: {exc}")
    if cell is None:  # a data job: the cells that needed it end as DependencyFailed
        return Problem(f"{job.kind.replace('_', ' ')} job for {directory}", "data", None, "error", reason, path)  # type: ignore[union-attr]
    what = "" if job is None or job.kind in ("cell", "collect") else f" ({job.kind.replace('_', ' ')} job)"
    return Problem(cell.task, cell.variant, cell.seed, "error", reason + what, path)

"""Cell kinds: everything that differs between a single-task cell and a task-set cell, behind one interface.

A cell is (task, variant, seed). Its kind decides which jobs it becomes, which data jobs those depend on, how far
each job has got (the progress board), what `pwmbench status` lists for it, and what must be cleaned before it runs
again. The runner, `pwmbench status` and the progress board only call this interface; adding a kind of cell means
one module with a `CellKind` subclass and one line in `KIND_MODULES`.

`plan_jobs` is the one place a suite becomes a job graph: the data jobs the cells need (one per data directory,
however many cells share it), then every cell's jobs depending on them. `pwmbench run` executes that graph and
`pwmbench run --dry-run --json` prints it.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pwmbench.errors import ConfigError
from pwmbench.plugin.interfaces import Job, Resources

__all__ = ["KIND_MODULES", "CellKind", "JobPlan", "Tracked", "job_resources", "kind_for", "plan_jobs", "registered_kinds"]

# the modules that define cell kinds (each exposes KIND, a CellKind); the first whose `handles` accepts a task wins
KIND_MODULES = ("pwmbench.pwm.task_set_kind", "pwmbench.pwm.single_task_kind")
DATA_JOB_KINDS = ("dataset", "pretrain_data")


@dataclass(frozen=True)
class Tracked:
    """One line of the progress board: a job, where its progress.json is, and how many units it has."""

    key: str
    label: str
    directory: Path
    total: int
    unit: str = "epoch"
    rate_group: str = ""  # jobs that cost the same per unit (a task, a variant, a job kind): the ETA prices queued ones by it
    rate_fallbacks: tuple[str, ...] = ()  # wider groups to price by while rate_group has no measured job (e.g. the dynamics model)


def job_resources(suite: Any, kind: str) -> Resources:
    """A job kind's resources: the suite's [executor.resources.<kind>], cpus (the job's torch threads) defaulting to 1.
    The thread count changes float sums and so the results: it is fixed by the suite alone — never by `--workers`,
    `--only` or how many cells are left — so a cell gives the same numbers however the run is split or resumed."""
    return Resources(**dict(suite.executor.get("resources", {}).get(kind, {})))


class CellKind(ABC):
    """What one kind of cell does in a suite's job graph. `job_kinds`: the kinds of job it emits (each takes
    `[executor.resources.<kind>]`); `cell_job`: the one whose outcome is the cell's (it writes run.arrow)."""

    name: str
    job_kinds: tuple[str, ...]
    cell_job: str

    @abstractmethod
    def handles(self, task: Any) -> bool:
        """Whether a resolved task object is this kind's."""

    @abstractmethod
    def data_jobs(self, suite: Any, cell: Any) -> list[Job]:
        """The data jobs the cell needs that still have to run (collected data, not data a user supplies)."""

    @abstractmethod
    def jobs(self, suite: Any, cell: Any, out: Path, restart: bool, after: tuple[str, ...]) -> list[Job]:
        """The cell's jobs still to run, the first ones depending on `after` (its data jobs); reads files only."""

    def prepare(self, cell: Any, out: Path, restart: bool) -> None:
        """Before its jobs run (not on a dry run): what a re-run must discard (failed records, or all with restart)."""

    @abstractmethod
    def total(self, cell: Any) -> int:
        """The cell's units of work, as its progress files count them."""

    @abstractmethod
    def tracked(self, job: Job, cell: Any, out: Path) -> Tracked | None:
        """The progress-board line of one of its jobs (None: not followed)."""

    def status_rows(self, cell: Any, out: Path) -> list[dict[str, Any]]:
        """`pwmbench status` rows for its inner jobs, beside the cell's own row."""
        return []


def registered_kinds() -> list[CellKind]:
    return [importlib.import_module(name).KIND for name in KIND_MODULES]


def kind_for(task_name: str) -> CellKind:
    from pwmbench.api import task as get_task

    task = get_task(task_name)
    for kind in registered_kinds():
        if kind.handles(task):
            return kind
    raise ConfigError(f"no cell kind handles task {task_name!r} ({type(task).__name__})")


def job_kinds() -> tuple[str, ...]:
    """Every kind of job a graph can hold (the keys [executor.resources] takes)."""
    kinds = [k for kind in registered_kinds() for k in kind.job_kinds]
    return tuple(dict.fromkeys([*kinds, *DATA_JOB_KINDS]))


@dataclass
class JobPlan:
    """A suite's job graph: `jobs` in dependency order of creation, the cell each cell job belongs to (None for data
    jobs) and each cell's kind."""

    jobs: list[Job]
    cell_of: dict[str, Any]
    kinds: dict[str, CellKind]
    amendments: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the suite record's history (suite/record.py)

    def to_json(self) -> list[dict[str, Any]]:
        """What `pwmbench run --dry-run --json` prints: the graph the executor receives."""
        return [{"key": j.key, "kind": j.kind, "depends_on": list(j.depends_on), "resources": dataclasses.asdict(j.resources),
                 **({"group": j.group} if j.group else {}), "log": j.log} for j in self.jobs]  # fmt: skip


def plan_jobs(suite: Any, cells: list[Any], out: Path, restart: bool) -> JobPlan:
    """The job graph of `cells` (those still to run): their data jobs first, one per directory, then each cell's
    jobs depending on the data jobs it needs."""
    jobs: list[Job] = []
    data: dict[str, Job] = {}
    cell_of: dict[str, Any] = {}
    kinds: dict[str, CellKind] = {}
    for cell in cells:
        kind = kinds.setdefault(cell.key, kind_for(cell.task))
        needs = []
        for job in kind.data_jobs(suite, cell):
            if job.key not in data:
                data[job.key] = job
                jobs.append(job)
                cell_of[job.key] = None
            needs.append(job.key)
        for job in kind.jobs(suite, cell, out, restart, tuple(needs)):
            jobs.append(job)
            cell_of[job.key] = cell
    return JobPlan(jobs, cell_of, kinds)

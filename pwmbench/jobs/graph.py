"""Job graphs: the checks and bookkeeping every executor needs to run jobs in dependency order.

An executor that schedules jobs itself (the local one, Ray's) keeps a `JobGraph`: `ready()` hands out the jobs whose
dependencies have all finished, `finished(job, outcome)` records an outcome and returns the jobs that can now never
run (a dependency raised) with their `DependencyFailed` outcomes. Executors that hand the graph to a scheduler (Slurm
with `afterok`) use `order_jobs` to validate it and to submit in an order where dependencies exist first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pwmbench.errors import ConfigError
from pwmbench.plugin.interfaces import DependencyFailed, Job


def order_jobs(jobs: Iterable[Job]) -> list[Job]:
    """The jobs in an order where each comes after its dependencies (stable otherwise); ConfigError on a duplicate
    key, an unknown dependency or a cycle."""
    jobs = list(jobs)
    by_key: dict[str, Job] = {}
    for job in jobs:
        if job.key in by_key:
            raise ConfigError(f"two jobs share the key {job.key!r}")
        by_key[job.key] = job
    for job in jobs:
        for dep in job.depends_on:
            if dep not in by_key:
                raise ConfigError(f"job {job.key!r} depends on {dep!r}, which is not in the graph")
    ordered: list[Job] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(job: Job, path: tuple[str, ...]) -> None:
        if state.get(job.key) == 2:
            return
        if state.get(job.key) == 1:
            raise ConfigError(f"job dependencies form a cycle: {' → '.join((*path, job.key))}")
        state[job.key] = 1
        for dep in job.depends_on:
            visit(by_key[dep], (*path, job.key))
        state[job.key] = 2
        ordered.append(job)

    for job in jobs:
        visit(job, ())
    return ordered


class JobGraph:
    """Which jobs may start now, and which can never run because a dependency raised."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self.pending = order_jobs(jobs)
        self.outcomes: dict[str, Any] = {}
        self.started: set[str] = set()

    def ready(self) -> list[Job]:
        """Jobs not yet handed out whose dependencies have all finished without raising (handed out now)."""
        out = [j for j in self.pending if all(d in self.outcomes for d in j.depends_on)]
        for job in out:
            self.pending.remove(job)
            self.started.add(job.key)
        return out

    def finished(self, job: Job, outcome: Any) -> list[tuple[Job, DependencyFailed]]:
        """Record `job`'s outcome; when it raised, remove every job downstream of it (transitively) and return them
        with their DependencyFailed outcomes."""
        if not isinstance(outcome, BaseException):
            self.outcomes[job.key] = outcome
            return []
        dropped: list[tuple[Job, DependencyFailed]] = []
        frontier = [job.key]
        while frontier:
            key = frontier.pop()
            for other in [j for j in self.pending if key in j.depends_on]:
                self.pending.remove(other)
                error = DependencyFailed(other.key, key, f"{type(outcome).__name__}: {outcome}")
                dropped.append((other, error))
                frontier.append(other.key)
        return dropped

    @property
    def blocked(self) -> bool:
        """Jobs remain but none can start (their dependencies have not finished yet)."""
        return bool(self.pending) and not any(all(d in self.outcomes for d in j.depends_on) for j in self.pending)

    def __bool__(self) -> bool:
        return bool(self.pending)

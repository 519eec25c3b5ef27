"""The local executor: one process per job, `workers` at a time, on this machine.

Processes are started with the `spawn` method (torch and MuJoCo state must not be forked), so a job's
function and arguments must be picklable. A job that raises yields its exception; a worker process that
dies (killed, out of memory) yields a BrokenProcessPool error for the jobs it took down, and the run goes on
with a fresh pool for the remaining jobs.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pwmbench.api import Executor, Job, hookimpl

__version__ = "0.1.0"


class LocalExecutor(Executor):
    """Runs jobs in `workers` local processes."""

    def __init__(self, workers: int = 1, start_method: str = "spawn") -> None:
        if workers < 1:
            raise ValueError(f"workers must be ≥ 1, got {workers}")
        self.workers, self.start_method = workers, start_method

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Any]]:
        queue = list(jobs)
        while queue:
            pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(self.start_method))
            running: dict[Future, Job] = {}
            broken = False
            try:
                while queue or running:
                    while queue and len(running) < self.workers and not broken:
                        job = queue.pop(0)
                        running[pool.submit(job.fn, **job.kwargs)] = job
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        job = running.pop(future)
                        try:
                            yield job, future.result()
                        except BrokenProcessPool as exc:
                            broken = True
                            yield job, exc
                        except Exception as exc:  # noqa: BLE001 - a job's failure is its outcome
                            yield job, exc
                    if broken and not running:
                        break
            except BaseException:
                for future in running:
                    future.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True, cancel_futures=True)


@hookimpl
def pwmbench_register_executors(registry: Any) -> None:
    registry.add("local", LocalExecutor)

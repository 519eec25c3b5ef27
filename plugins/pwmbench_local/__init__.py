"""The local executor: one process per job, `workers` at a time, on this machine, in dependency order.

Processes are started with the `spawn` method (torch and MuJoCo state must not be forked), so a job's
function and arguments must be picklable. A job that raises yields its exception; a worker process that
dies (killed, out of memory) yields a BrokenProcessPool error for the jobs it took down, and the run goes on
with a fresh pool for the remaining jobs. A worker never outlives the run: a watchdog thread in each worker sees
its parent go (however it died, kill -9 included) and sends the worker SIGTERM, which a training cell answers by
checkpointing at its next boundary; a worker still there after STOP_GRACE_S exits.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ClassVar, Literal

from pwmbench.api import ConfigError, Executor, Job, JobGraph, hookimpl, resolve_options

__version__ = "0.1.0"


class LocalExecutor(Executor):
    """Runs a job graph in `workers` local processes, each job once its dependencies have finished."""

    default_options: ClassVar[dict[str, Any]] = {"start_method": "spawn"}
    option_types: ClassVar[dict[str, Any]] = {"start_method": Literal["spawn", "forkserver", "fork"]}

    def __init__(self, workers: int = 1, **options: Any) -> None:
        opts = resolve_options(options, self.default_options, self.option_types, owner="the local executor", where="[executor]")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be an int ≥ 1, got {workers!r}")
        self.workers, self.start_method = workers, opts["start_method"]
        self._pool: ProcessPoolExecutor | None = None

    def cancel(self) -> None:
        if self._pool is not None:
            _terminate(self._pool)
            self._pool = None

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Any]]:
        graph = JobGraph(jobs)
        queue: list[Job] = []
        while graph or queue:
            pool = self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(self.start_method),
                                                    initializer=watch_parent, initargs=(os.getpid(),))  # fmt: skip
            running: dict[Future, Job] = {}
            broken = False
            try:
                while graph or queue or running:
                    queue += graph.ready()
                    while queue and len(running) < self.workers and not broken:
                        job = queue.pop(0)
                        running[pool.submit(job.fn, **job.kwargs)] = job
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        job = running.pop(future)
                        try:
                            outcome = future.result()
                        except BrokenProcessPool as exc:
                            broken, outcome = True, exc
                        except Exception as exc:  # noqa: BLE001 - a job's failure is its outcome
                            outcome = exc
                        yield job, outcome
                        for dropped in graph.finished(job, outcome):
                            yield dropped
                    if broken and not running:
                        break
            except BaseException:
                self.cancel()
                raise
            pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


STOP_GRACE_S = 30.0  # how long a worker may take to finish its epoch and checkpoint after SIGTERM
WATCH_INTERVAL_S = 0.5


def watch_parent(parent: int) -> None:
    """Worker initializer: a daemon thread that stops this worker when the process that started it is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_INTERVAL_S)
        os.kill(os.getpid(), signal.SIGTERM)  # a training cell checkpoints at its next boundary and stops
        time.sleep(STOP_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="pwmbench-watch-parent", daemon=True).start()


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool: cancel queued work and send its worker processes SIGTERM, which a training cell answers by
    stopping at its next epoch boundary with a checkpoint (exact resume); a worker still alive after STOP_GRACE_S
    is killed (its cell resumes from its last checkpoint). No worker is orphaned."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(timeout=10)


@hookimpl
def pwmbench_register_executors(registry: Any) -> None:
    registry.add("local", LocalExecutor)

"""The Ray executor: each job a Ray task, on a local Ray instance or an existing Ray cluster, in dependency order.

`pwmbench run SUITE --executor ray --workers N [--set executor.address=auto]` (or the suite's `[executor]` table).

- `address` — None (default): start a local Ray instance for this run and shut it down at the end (if this process
  is already connected to Ray, that connection is used and left alone). "auto" or "ray://host:port": connect to a
  running cluster and leave it running ("ray://" needs Ray's client extra, which `pwmbench[ray]` installs). Every
  machine of a cluster must see the results directory (a shared filesystem) and have pwmbench installed.
- `max_retries` — 3: how often Ray runs a task again after its worker process or node died (killed, out of memory,
  preempted). Job functions are idempotent and resume from their checkpoints, so a retry continues the job. An
  exception raised by the job is its outcome and is never retried (`retry_exceptions=False`); -1 retries forever.
- `runtime_env` — None: Ray's runtime environment for every job's task (a table, or a JSON string from the command
  line), e.g. `{env_vars = {PWMBENCH_PLUGINS = "my_plugin"}}` for a cluster whose workers need them. On a local
  instance the workers inherit this process's environment anyway.

Each job asks Ray for its `resources` (cpus, gpus, memory). At most `workers` jobs are in flight at once, on a local
instance and on a cluster alike (the driver submits a job only when fewer than `workers` are running). A local
instance gets `workers` × the largest CPU request of the run as its CPUs (so `workers` jobs fit at once; with the
default 1 CPU per job that is `workers` CPUs) and Ray's detection of GPUs and memory; a job that could never fit on
it (more GPUs or memory than the machine has) is not started: its outcome is a ConfigError that says so.

Ray is imported only when a run starts, so `pwmbench --help` stays fast and a missing Ray is reported only to whoever
picks `--executor ray`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pwmbench.api import (
    ConfigError,
    Executor,
    Job,
    JobGraph,
    PluginError,
    RemoteTraceback,
    captured_output,
    check_keys,
    hookimpl,
)

__version__ = "0.1.0"

INSTALL_HINT = "pip install 'pwmbench[ray]'"
WAIT_S = 0.5  # how long one ray.wait blocks, so that Ctrl-C is seen at once


def run_job(fn: Any, kwargs: dict[str, Any], log: str | None) -> Any:
    """What a Ray task runs: `fn(**kwargs)`, its output appended to `log` when one is given."""
    with captured_output(log):
        return fn(**kwargs)


class RayExecutor(Executor):
    """Runs a job graph as Ray tasks, each job once its dependencies have returned, at most `workers` at a time."""

    OPTIONS = ("address", "max_retries", "runtime_env")

    def __init__(self, workers: int = 1, **options: Any) -> None:
        check_keys(options, self.OPTIONS, kind="ray executor option", where="[executor]")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be an int ≥ 1, got {workers!r}")
        self.workers = workers
        self.address = _address(options.get("address"))
        self.max_retries = _max_retries(options.get("max_retries", 3))
        self.runtime_env = _runtime_env(options.get("runtime_env"))
        try:
            found = importlib.util.find_spec("ray") is not None
        except (ImportError, ValueError):  # a broken install, or sys.modules["ray"] = None
            found = False
        if not found:
            raise PluginError(f"the ray executor needs Ray, which is not installed: {INSTALL_HINT}")
        self._running: dict[Any, Job] = {}  # ObjectRef → job
        self._started_ray = False

    # ------------------------------------------------------------------ connection
    def _connect(self, jobs: list[Job]) -> Any:
        import ray

        if ray.is_initialized():
            return ray  # this process is already connected (to a local instance or a cluster): use it, leave it be
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
        if self.address is None:
            cpus = self.workers * max((j.resources.cpus for j in jobs), default=1)
            kwargs.update(num_cpus=cpus, include_dashboard=False)
            self._started_ray = True
        else:
            kwargs["address"] = self.address
        try:
            ray.init(**{k: v for k, v in kwargs.items() if v is not None})
        except Exception as exc:  # say what failed, in pwmbench's terms
            self._started_ray = False
            where = "start a local Ray instance" if self.address is None else f"connect to Ray at {self.address!r}"
            hint = " (ray:// addresses need Ray's client extra: " + INSTALL_HINT + ")" if str(self.address).startswith("ray://") else ""
            raise PluginError(f"ray executor: cannot {where}: {type(exc).__name__}: {exc}{hint}") from exc
        return ray

    def _shutdown(self) -> None:
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False

    def cancel(self) -> None:
        """Cancel (force: kill the worker) every job in flight; shut down the local instance if this run started it."""
        if self._running:
            import ray

            for ref in list(self._running):
                with contextlib.suppress(Exception):  # finished meanwhile, or the connection is gone: nothing to stop
                    ray.cancel(ref, force=True)
            self._running.clear()
        self._shutdown()

    # ------------------------------------------------------------------ running
    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Any]]:
        jobs = list(jobs)
        graph = JobGraph(jobs)  # validates the graph before anything starts
        if not jobs:
            return
        ray = self._connect(jobs)
        try:
            remote = ray.remote(run_job)
            limits = _capacity(ray) if self.address is None else None
            queue: list[Job] = []
            while graph or queue or self._running:
                queue += graph.ready()
                while queue and len(self._running) < self.workers:
                    job = queue.pop(0)
                    refused = _does_not_fit(job, limits)
                    if refused is None:
                        try:
                            ref = remote.options(**self._task_options(job)).remote(job.fn, dict(job.kwargs), job.log)
                        except Exception as exc:  # noqa: BLE001 - e.g. an argument that does not pickle: its outcome
                            refused = exc
                        else:
                            self._running[ref] = job
                            continue
                    yield job, refused
                    for dropped in graph.finished(job, refused):
                        yield dropped
                if not self._running:
                    if graph and not graph.blocked:
                        continue
                    break
                done, _ = ray.wait(list(self._running), num_returns=1, timeout=WAIT_S)
                for ref in done:
                    job = self._running.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a job's failure (or its worker's death) is its outcome
                        outcome = _unwrap(exc)
                    yield job, outcome
                    for dropped in graph.finished(job, outcome):
                        yield dropped
        except BaseException:
            self.cancel()
            raise
        self._shutdown()

    def _task_options(self, job: Job) -> dict[str, Any]:
        res = job.resources
        options: dict[str, Any] = {
            "num_cpus": res.cpus,
            "num_gpus": res.gpus,
            "max_retries": self.max_retries,
            "retry_exceptions": False,
            "name": job.key,
        }
        if res.memory_gb is not None:
            options["memory"] = int(res.memory_gb * 1024**3)
        if self.runtime_env is not None:
            options["runtime_env"] = self.runtime_env  # per task: it applies on a connection made before this run too
        return options


# ---------------------------------------------------------------------------------------------- helpers
def _unwrap(exc: BaseException) -> BaseException:
    """The exception the job raised (with the worker's traceback chained as its cause), or Ray's own error (the
    worker died more often than max_retries allows, the task was cancelled, the node was lost)."""
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError):
        cause = exc.cause
        if isinstance(cause, BaseException):
            if cause.__cause__ is None:
                tb = getattr(exc, "traceback_str", None) or (exc.args[1] if len(exc.args) > 1 else str(exc))
                cause.__cause__ = RemoteTraceback(re.sub(r"\x1b\[[0-9;]*m", "", str(tb)))  # no terminal colours
            return cause
    return exc


def _capacity(ray: Any) -> dict[str, float]:
    total = ray.cluster_resources()
    return {"CPU": total.get("CPU", 0.0), "GPU": total.get("GPU", 0.0), "memory": total.get("memory", 0.0)}


def _does_not_fit(job: Job, limits: dict[str, float] | None) -> ConfigError | None:
    """On a local instance, a job that asks for more than the machine has would wait forever: refuse it."""
    if limits is None:
        return None
    res = job.resources
    asks = {"CPU": res.cpus, "GPU": res.gpus, "memory": (res.memory_gb or 0) * 1024**3}
    for name, amount in asks.items():
        if amount > limits[name]:
            have = f"{limits[name] / 1024**3:.1f} GB" if name == "memory" else f"{limits[name]:g}"
            want = f"{amount / 1024**3:.1f} GB" if name == "memory" else f"{amount:g}"
            return ConfigError(f"job {job.key} asks for {want} {name} but the local Ray instance has {have}: "
                               f"lower resources.{job.kind} or run on a cluster (executor.address)")
    return None


def _address(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "local")):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"executor.address must be a string (\"auto\", \"ray://host:port\" or \"host:port\"), got {value!r}")
    return value.strip()


def _max_retries(value: Any) -> int:
    try:
        number = int(value) if isinstance(value, str) else value
    except ValueError:
        number = None
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= 100:
        raise ConfigError(f"executor.max_retries must be an int in [0, 100] (Ray's -1, retry forever, would hang on a job that always fails), got {value!r}")
    return number


def _runtime_env(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"executor.runtime_env must be a table (or a JSON object string): {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"executor.runtime_env must be a table (or a JSON object string), got {value!r}")
    return dict(value)


@hookimpl
def pwmbench_register_executors(registry: Any) -> None:
    registry.add("ray", RayExecutor)

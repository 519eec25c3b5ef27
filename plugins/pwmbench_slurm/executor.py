"""The slurm executor (the module docstring of pwmbench_slurm describes it)."""

from __future__ import annotations

import contextlib
import getpass
import importlib.util
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pwmbench.api import (
    ConfigError,
    DependencyFailed,
    Executor,
    Job,
    JobStatus,
    PluginError,
    check_keys,
    order_jobs,
)
from pwmbench_slurm.job import RemoteTraceback, SlurmCall, SlurmJobError, _load_error, outcome_file, read_outcome  # noqa: F401

INSTALL_HINT = "pip install 'pwmbench[slurm]'"
RECORD_FILE = "slurm_jobs.json"
DEFAULT_FOLDER = "slurm-jobs"
NO_LIMIT_MIN = 7 * 24 * 60  # the time limit asked for on a partition without one
COMMAND_TIMEOUT_S = 60
LOST_GRACE_S = 15.0  # how long a job may look ended without its result file before it counts as lost

# Slurm's job states → JOB_STATES
STATE_MAP = {
    "PENDING": "queued", "CONFIGURING": "queued", "REQUEUE_HOLD": "preempted", "REQUEUE_FED": "preempted",
    "RUNNING": "running", "COMPLETING": "running", "SIGNALING": "running", "STAGE_OUT": "running",
    "SUSPENDED": "running", "RESIZING": "running", "STOPPED": "running",
    "COMPLETED": "done",
    "FAILED": "failed", "OUT_OF_MEMORY": "failed", "NODE_FAIL": "failed", "BOOT_FAIL": "failed",
    "TIMEOUT": "failed", "DEADLINE": "failed",
    "PREEMPTED": "preempted", "REQUEUED": "preempted",
    "CANCELLED": "cancelled", "REVOKED": "cancelled",
}  # fmt: skip
# States after which a job never runs again unless requeued (a result file may still be on its way).
ENDED = {"COMPLETED", "FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "TIMEOUT", "DEADLINE", "CANCELLED",
         "REVOKED", "PREEMPTED"}  # fmt: skip


class SlurmJobLost(RuntimeError):
    """Slurm ended a job without a result: cancelled, out of memory, node failure, time limit after too many
    requeues, or it vanished from the scheduler."""


class SchedulerUnreachable(PluginError):
    """squeue (and sacct) could not be asked."""


# ---------------------------------------------------------------------------------------------- options
def _positive(name: str, value: Any, kind: type) -> Any:
    if isinstance(value, str):
        try:
            value = kind(value.strip())
        except ValueError:
            raise ConfigError(f"slurm executor option {name} must be a positive number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"slurm executor option {name} must be a positive number, got {value!r}")
    if kind is int and value != int(value):
        raise ConfigError(f"slurm executor option {name} must be a whole number, got {value!r}")
    return kind(value)


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConfigError(f"slurm executor option {name} must be a non-empty string, got {value!r}")
    return str(value).strip()


def _extra(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"slurm executor option extra must be a table of sbatch options (or a JSON object), got {value!r}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise ConfigError(f"slurm executor option extra must be a table of sbatch options, got {value!r}")
    for key, item in value.items():
        if isinstance(item, (dict, list)) or item is None:
            raise ConfigError(f"slurm executor option extra.{key} must be a string, number or boolean, got {item!r}")
    return dict(value)


def parse_time_min(text: str) -> int | None:
    """Minutes in a Slurm time limit ("30", "1:00:00", "2-12:00:00", "infinite"); None when unlimited or unset."""
    text = text.strip().lower()
    if text in ("", "infinite", "unlimited", "n/a", "none"):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        parts += [0] * (3 - len(parts))
        h, m, s = parts
    elif len(parts) == 3:
        h, m, s = parts
    elif len(parts) == 2:
        h, m, s = 0, parts[0], parts[1]
    else:
        h, m, s = 0, parts[0], 0
    return max(1, math.ceil(((int(days or 0) * 24 + h) * 60 + m) + s / 60))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text)[:100]


# ---------------------------------------------------------------------------------------------- scheduler
def _command(args: list[str]) -> str:
    """Run a Slurm command; SchedulerUnreachable with its message when it is missing or fails."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise SchedulerUnreachable(f"{args[0]} is not installed here (not a Slurm machine?)") from None
    except subprocess.TimeoutExpired:
        raise SchedulerUnreachable(f"{args[0]} did not answer within {COMMAND_TIMEOUT_S} s") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise SchedulerUnreachable(f"{' '.join(args[:1])} failed: {message[-1] if message else f'exit {done.returncode}'}")
    return done.stdout


def query_states(ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """{job id: (Slurm state, reason)} for the jobs (array elements as "ID_INDEX") the scheduler knows. squeue
    first (one call: this user's jobs, arrays expanded); sacct for the ones squeue has forgotten, when accounting is
    on. SchedulerUnreachable when squeue cannot be asked."""
    ids = set(ids)
    if not ids:
        return {}
    out: dict[str, tuple[str, str]] = {}
    text = _command(["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T|%r"])
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0] in ids:
            out[parts[0]] = (parts[1].strip().upper(), parts[2].strip())
    missing = ids - set(out)
    if missing and shutil.which("sacct"):
        with contextlib.suppress(SchedulerUnreachable):  # accounting is off on small clusters: squeue is all there is
            text = _command(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(sorted(missing))])
            for line in text.splitlines():
                parts = line.strip().split("|")
                if len(parts) >= 2 and parts[0] in missing:
                    out[parts[0]] = (parts[1].split()[0].upper() if parts[1].strip() else "UNKNOWN", "")
    return out


def scancel(ids: Iterable[str], signal: str | None = None) -> None:
    ids = sorted(set(ids))
    if not ids:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # gone already, or no scheduler: nothing to stop
        subprocess.run(["scancel", *([f"--signal={signal}"] if signal else []), *ids], capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)


def partition_time_min(partition: str | None) -> int:
    """The time limit a job without one gets on `partition` (None: the default partition): its DefaultTime, else
    its MaxTime, else NO_LIMIT_MIN."""
    try:
        text = _command(["sinfo", "-h", "-o", "%P|%L|%l", *(["-p", partition] if partition else [])])
    except SchedulerUnreachable:
        return NO_LIMIT_MIN
    rows = [line.split("|") for line in text.splitlines() if line.count("|") == 2]
    row = next((r for r in rows if r[0].endswith("*")), None) if partition is None else next(iter(rows), None)
    if row is None:
        return NO_LIMIT_MIN
    for text_limit in (row[1], row[2]):
        with contextlib.suppress(ValueError):
            minutes = parse_time_min(text_limit)
            if minutes is not None:
                return minutes
    return NO_LIMIT_MIN


# ---------------------------------------------------------------------------------------------- executor
@dataclass
class Submitted:
    """One job as submitted: its Slurm id ("ID" or "ID_INDEX" for an array element) and where its files are."""

    job: Job
    slurm_id: str
    handle: Any  # submitit's SlurmJob
    error_file: str
    submitted_at: float

    @property
    def result_file(self) -> Path:
        return Path(self.handle.paths.result_pickle)

    @property
    def stdout(self) -> str:
        return str(self.handle.paths.stdout)

    @property
    def stderr(self) -> str:
        return str(self.handle.paths.stderr)

    @property
    def log(self) -> str:
        return self.job.log or self.stdout


class SlurmExecutor(Executor):
    """Submits a job graph to Slurm (sbatch through submitit: afterok dependencies, one array per group) and follows it."""

    OPTIONS = ("partition", "account", "qos", "folder", "poll_s", "time_min", "extra", "record_dir")
    detachable = True

    def __init__(self, workers: int = 1, **options: Any) -> None:
        check_keys(options, self.OPTIONS, kind="slurm executor option", where="[executor]")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be an int ≥ 1, got {workers!r}")
        self.workers = workers  # not used: Slurm decides how many jobs run at once
        self.partition = _text("partition", options.get("partition"))
        self.account = _text("account", options.get("account"))
        self.qos = _text("qos", options.get("qos"))
        self.folder = _text("folder", options.get("folder"))
        self.record_dir = _text("record_dir", options.get("record_dir"))
        self.poll_s = _positive("poll_s", options.get("poll_s", 2.0), float)
        time_min = options.get("time_min")
        self.time_min = None if time_min is None or (isinstance(time_min, str) and time_min.strip().lower() in ("", "none")) else _positive("time_min", time_min, int)
        self.extra = _extra(options.get("extra"))
        try:
            found = importlib.util.find_spec("submitit") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise PluginError(f"the slurm executor needs submitit, which is not installed: {INSTALL_HINT}")
        self._live: dict[str, Submitted] = {}  # slurm id → job submitted by this executor and not finished
        self._default_time: int | None = None

    # ------------------------------------------------------------------ submission
    def job_folder(self, record_dir: str | None = None) -> Path:
        """Where submitit's files go: the `folder` option, else `.slurm` under the record directory, else
        ./slurm-jobs."""
        if self.folder:
            return Path(self.folder).expanduser().absolute()
        base = record_dir or self.record_dir
        return (Path(base) / ".slurm").absolute() if base else (Path.cwd() / DEFAULT_FOLDER)

    def _parameters(self, job: Job, dependencies: list[str]) -> dict[str, Any]:
        res = job.resources
        time_min = res.time_min or self.time_min
        if time_min is None:
            if self._default_time is None:
                self._default_time = partition_time_min(self.partition)
            time_min = self._default_time
        params: dict[str, Any] = {
            "job_name": "pwmbench_" + _safe(job.group or job.key),
            "time": math.ceil(time_min),
            "cpus_per_task": res.cpus,
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
        }
        if res.gpus > 0:
            params["gres"] = f"gpu:{res.gpus}"
        if res.memory_gb is not None:
            params["mem"] = f"{math.ceil(res.memory_gb * 1024)}M"
        # requeue-able whatever the cluster's JobRequeue default (submitit requeues on preemption and time limits)
        additional = {"requeue": True, **self.extra}
        if additional["requeue"] is False or "no-requeue" in additional or "no_requeue" in additional:
            del additional["requeue"]
        if dependencies:
            additional["dependency"] = "afterok:" + ":".join(dependencies)
            additional["kill_on_invalid_dep"] = "yes"  # a detached graph does not leave jobs pending forever
        if additional:
            params["additional_parameters"] = additional
        return {k: v for k, v in params.items() if v is not None}

    def _submit(self, jobs: Iterable[Job], folder: Path) -> list[Submitted]:
        """Submit the graph in dependency order (validated first: nothing is submitted for a bad graph); jobs with
        the same group, kind, resources and dependencies as one array. On a refused submission, what was submitted
        is cancelled and PluginError says why."""
        if shutil.which("sbatch") is None or shutil.which("srun") is None:
            raise PluginError("the slurm executor needs sbatch and srun on PATH (a Slurm login node); "
                              "scripts/local-slurm.sh up starts a single-node test cluster")  # fmt: skip
        ordered = order_jobs(jobs)
        import cloudpickle  # submitit's own dependency: functions of a script's __main__ travel by value

        calls: dict[str, SlurmCall] = {}
        for job in ordered:
            try:
                payload = cloudpickle.dumps((job.fn, dict(job.kwargs)))
            except Exception as exc:  # noqa: BLE001
                raise ConfigError(f"job {job.key!r} cannot be sent to Slurm: its function or arguments do not pickle ({type(exc).__name__}: {exc})") from None
            calls[job.key] = SlurmCall(job.key, payload, list(sys.path), job.log, str(folder / "errors" / f"{uuid.uuid4().hex}.pkl"))
        batches: list[list[Job]] = []
        placed: set[str] = set()
        signature = lambda j: (j.group, j.kind, j.resources, tuple(j.depends_on))
        for job in ordered:
            if job.key in placed:
                continue
            batch = [job] if job.group is None else [j for j in ordered if j.key not in placed and j.group is not None and signature(j) == signature(job)]
            placed.update(j.key for j in batch)
            batches.append(batch)
        import submitit

        (folder / "errors").mkdir(parents=True, exist_ok=True)
        ids: dict[str, str] = {}
        submitted: list[Submitted] = []
        try:
            for batch in batches:
                executor = submitit.SlurmExecutor(folder=folder)
                executor.update_parameters(**self._parameters(batch[0], [ids[d] for d in batch[0].depends_on]))
                now = time.time()
                if len(batch) == 1:
                    handles = [executor.submit(calls[batch[0].key])]
                else:
                    with executor.batch():  # one sbatch --array; the handles are filled in when the block ends
                        handles = [executor.submit(calls[j.key]) for j in batch]
                for job, handle in zip(batch, handles):
                    ids[job.key] = str(handle.job_id)
                    entry = Submitted(job, str(handle.job_id), handle, calls[job.key].error_file, now)
                    submitted.append(entry)
                    self._live[entry.slurm_id] = entry
        except Exception as exc:
            self.cancel()
            if isinstance(exc, (ConfigError, PluginError)):
                raise
            where = batch[0].key if len(batch) == 1 else f"the array of {len(batch)} jobs of group {batch[0].group!r}"
            raise PluginError(f"slurm executor: submitting {where} failed: {type(exc).__name__}: {str(exc).strip()}") from exc
        return submitted

    # ------------------------------------------------------------------ following
    def _outcome(self, entry: Submitted) -> Any:
        try:
            return entry.handle.result()
        except Exception as exc:  # noqa: BLE001 - the job's failure is its outcome
            return _load_error(entry.error_file) or exc

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Any]]:
        jobs = list(jobs)
        if not jobs:
            return
        submitted = self._submit(jobs, self.job_folder())
        try:
            yield from self._follow(submitted)
        except BaseException:
            self.cancel()
            raise

    def _follow(self, submitted: list[Submitted]) -> Iterator[tuple[Job, Any]]:
        pending = {s.job.key: s for s in submitted}
        children: dict[str, list[str]] = {}
        for s in submitted:
            for dep in s.job.depends_on:
                children.setdefault(dep, []).append(s.job.key)
        ended_since: dict[str, float] = {}
        grace = max(LOST_GRACE_S, 3 * self.poll_s)
        while pending:
            finished = [(key, self._outcome(s)) for key, s in pending.items() if s.result_file.exists()]
            done = {key for key, _ in finished}
            rest = [s for key, s in pending.items() if key not in done]
            if rest:
                try:
                    states = query_states(s.slurm_id for s in rest)
                except SchedulerUnreachable:
                    states = None  # keep polling: a busy controller answers later
                now = time.time()
                for s in rest if states is not None else ():
                    state, reason = states.get(s.slurm_id, ("VANISHED", ""))
                    if state not in ENDED and state != "VANISHED":
                        ended_since.pop(s.job.key, None)
                        continue
                    since = ended_since.setdefault(s.job.key, now)
                    if s.result_file.exists():
                        finished.append((s.job.key, self._outcome(s)))
                    elif now - since >= grace:
                        what = "vanished from the scheduler" if state == "VANISHED" else f"ended {state}" + (f" ({reason})" if reason and reason != "None" else "")
                        finished.append((s.job.key, SlurmJobLost(f"Slurm job {s.slurm_id} {what} without a result; its output: {s.stdout}, {s.stderr}")))
            for key, outcome in finished:
                entry = pending.pop(key, None)
                if entry is None:
                    continue
                self._live.pop(entry.slurm_id, None)
                yield entry.job, outcome
                if isinstance(outcome, BaseException):
                    yield from self._drop_dependents(key, outcome, pending, children)
            if pending and not finished:
                time.sleep(self.poll_s)

    def _drop_dependents(self, key: str, outcome: BaseException, pending: dict[str, Submitted], children: dict[str, list[str]]) -> Iterator[tuple[Job, Any]]:
        """Cancel every job downstream of `key` (Slurm would leave them pending: DependencyNeverSatisfied) and yield
        each with its DependencyFailed."""
        error = f"{type(outcome).__name__}: {outcome}"
        dropped: list[tuple[Submitted, str]] = []
        frontier = [key]
        while frontier:
            parent = frontier.pop()
            for child in children.get(parent, []):
                if child in pending:
                    dropped.append((pending.pop(child), parent))
                    frontier.append(child)
        scancel(entry.slurm_id for entry, _ in dropped)
        for entry, parent in dropped:
            self._live.pop(entry.slurm_id, None)
            yield entry.job, DependencyFailed(entry.job.key, parent, error)

    def cancel(self) -> None:
        """scancel every job this executor submitted that has not finished (a detached submission is not tracked)."""
        scancel(self._live)
        self._live.clear()

    # ------------------------------------------------------------------ detached
    def submit(self, jobs: Iterable[Job], record_dir: str) -> list[JobStatus]:
        """Submit the graph and return; `record_dir/slurm_jobs.json` records each job's Slurm id and files."""
        jobs = list(jobs)
        record = Path(record_dir)
        record.mkdir(parents=True, exist_ok=True)
        folder = self.job_folder(record_dir)
        submitted = self._submit(jobs, folder) if jobs else []
        self._live.clear()  # detached: these jobs outlive this process and are not cancelled with it
        path = record / RECORD_FILE
        data: dict[str, Any] = {"version": 1, "jobs": {}}
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            data.setdefault("jobs", {})
        data.update({"version": 1, "folder": str(folder), "submitted_at": time.time()})
        for s in submitted:
            data["jobs"][s.job.key] = {
                "job_id": s.slurm_id,
                "kind": s.job.kind,
                "depends_on": list(s.job.depends_on),
                "log": s.job.log,
                "stdout": s.stdout,
                "stderr": s.stderr,
                "result": str(s.result_file),
                "error_file": s.error_file,
                "outcome": outcome_file(s.error_file),
                "submitted_at": s.submitted_at,
            }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
        return [JobStatus(s.job.key, "queued", s.log, None, s.slurm_id) for s in submitted]

    def status(self, record_dir: str) -> list[JobStatus]:
        """Each job `submit` recorded under `record_dir`, as the scheduler sees it (with its log). When the
        scheduler cannot be asked, the jobs' result files still tell finished ones; `detail` says why."""
        path = Path(record_dir) / RECORD_FILE
        if not path.exists():
            return []
        try:
            jobs = json.loads(path.read_text()).get("jobs", {})
        except ValueError as exc:
            raise PluginError(f"{path} is not readable JSON: {exc}") from None
        unreachable = None
        try:
            states = query_states(info["job_id"] for info in jobs.values())
        except SchedulerUnreachable as exc:
            states, unreachable = {}, str(exc)
        out = []
        for key, info in jobs.items():
            log = info.get("log") or info.get("stdout")
            slurm_state, reason = states.get(info["job_id"], (None, ""))
            outcome = read_outcome(info.get("outcome") or outcome_file(str(info.get("error_file") or "")))  # JSON only: no pickle
            if slurm_state is not None:
                state = STATE_MAP.get(slurm_state, "unknown")
                detail = slurm_state if state == "unknown" else None
                if slurm_state == "PENDING" and reason and reason != "None":
                    detail = f"pending: {reason}"
                    if reason == "DependencyNeverSatisfied":
                        detail += " (a job it depends on failed: it will never start)"
                elif slurm_state == "CANCELLED" and reason and reason != "None":
                    detail = f"cancelled: {reason}"
            elif outcome is not None:
                state, detail = ("done", None) if outcome["state"] == "success" else ("failed", None)
            else:
                state, detail = "unknown", "the scheduler no longer knows this job and it left no result"
            if state == "failed" and outcome is not None and outcome["state"] == "error":
                detail = f"{outcome.get('type')}: {outcome.get('message')}"
            if unreachable:
                detail = f"scheduler unreachable ({unreachable})" + (f"; {detail}" if detail else "")
            out.append(JobStatus(key, state, log, detail, info["job_id"]))
        return out



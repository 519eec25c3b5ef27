"""What runs inside a Slurm job: the checkpointable call around a pwmbench job, and its exception file.

This module imports only `pwmbench.plugin.job_output` (standard library, no torch): unpickling a job's call on the compute
node costs only these files, and the job function's own imports come when its payload is loaded."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import traceback
from typing import Any

from pwmbench.plugin.job_output import RemoteTraceback, captured_output


class SlurmJobError(RuntimeError):
    """A job raised an exception that could not be brought back as itself (it does not unpickle)."""


class SlurmCall:
    """What one Slurm job runs: `fn(**kwargs)`, with stdout/stderr appended to `log` when one is given.

    It implements submitit's checkpoint protocol (a `checkpoint` method, as `submitit.helpers.Checkpointable` does,
    without importing submitit here): on a preemption or time-limit signal submitit calls `checkpoint()`, which
    returns the same call, dumps it and requeues the job; the job function resumes from its own checkpoint.

    The function and its arguments travel as pickle bytes and are loaded only after the submitting process's
    `sys.path` entries are added, so a function from a module that is importable there (a test helper, a script's
    directory) is importable in the job too, as with the local executor's spawned workers. An exception the
    function raises is saved (with its traceback) to `error_file` before submitit records the failure, so that the
    executor can hand back the original exception."""

    def __init__(self, key: str, payload: bytes, sys_path: list[str], log: str | None, error_file: str) -> None:
        self.key, self.payload, self.sys_path, self.log, self.error_file = key, payload, sys_path, log, error_file

    def __call__(self) -> Any:
        for entry in self.sys_path:
            if entry not in sys.path:
                sys.path.append(entry)
        fn, kwargs = pickle.loads(self.payload)
        with captured_output(self.log):
            try:
                result = fn(**kwargs)
            except Exception as exc:
                _save_error(self.error_file, exc)
                raise
        _write_json(outcome_file(self.error_file), {"state": "success", "result": result if isinstance(result, (str, int, float, bool)) else None})
        return result

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Resubmit the same call (submitit's protocol); the job resumes from its own checkpoint files."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)

    def __repr__(self) -> str:
        return f"SlurmCall({self.key!r})"


def outcome_file(error_file: str) -> str:
    """The job's outcome as JSON beside its error file: what `status` reads (never a pickle: a results directory
    someone hands you must not run code when you look at it)."""
    return os.path.splitext(error_file)[0] + ".json"


def _write_json(path: str, data: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)


def read_outcome(path: str | None) -> dict[str, Any] | None:
    """A job's JSON outcome ({"state": "success"|"error", ...}), or None without a readable one."""
    if not path:
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("state") in ("success", "error") else None


def _save_error(path: str, exc: BaseException) -> None:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    _write_json(outcome_file(path), {"state": "error", "type": type(exc).__name__, "message": str(exc)[:2000], "traceback": tb[-20000:]})
    try:
        blob: bytes | None = pickle.dumps(exc)
        pickle.loads(blob)  # an exception whose class cannot be rebuilt from its args is sent as its text
    except Exception:  # noqa: BLE001
        blob = None
    with contextlib.suppress(OSError):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump({"exception": blob, "type": type(exc).__name__, "message": str(exc), "traceback": tb}, f)
        os.replace(tmp, path)


def _load_error(path: str) -> BaseException | None:
    """The exception a job saved (its remote traceback as the cause), or None."""
    try:
        with open(path, "rb") as f:
            info = pickle.load(f)
    except Exception:  # noqa: BLE001 - no file (the job died otherwise) or a damaged one
        return None
    exc: BaseException | None = None
    if info.get("exception") is not None:
        with contextlib.suppress(Exception):
            exc = pickle.loads(info["exception"])
    if not isinstance(exc, BaseException):
        exc = SlurmJobError(f"{info.get('type')}: {info.get('message')}")
    exc.__cause__ = RemoteTraceback(info.get("traceback", ""))
    return exc

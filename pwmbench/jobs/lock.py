"""One `pwmbench run` per results directory: `results_lock` holds DIR/.pwmbench.lock (host, pid, command) while a run
writes there; a second run is refused naming the holder, and a lock whose process is gone is taken over."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pwmbench.errors import PwmbenchError
from pwmbench.results.atomic_files import no_space

__all__ = ["LOCK_FILE", "ResultsLocked", "holder_gone", "lock_holder", "results_lock"]

LOCK_FILE = ".pwmbench.lock"  # who is running a suite into this results directory (host, pid)


class ResultsLocked(PwmbenchError):
    """Another `pwmbench run` holds the results directory."""


def lock_holder(path: Path) -> dict[str, Any] | None:
    """The holder a lock file names ({"host", "pid", ...}), or None when it is unreadable or still empty."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _holder_gone(holder: dict[str, Any] | None) -> bool:
    if holder is None:
        return True  # an unreadable lock: its writer died between creating and writing it
    return holder_gone(holder)


def holder_gone(holder: dict[str, Any]) -> bool:
    """A lock holder's process has ended (only knowable on its own host; a lock from another host is kept)."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, KeyError):
        return False
    return False


@contextmanager
def results_lock(out: Path) -> Iterator[Path]:
    """Hold `out` for this process: a second `pwmbench run` on it is refused (naming the holder) while the holder
    lives; a lock whose process is gone is taken over. Created with O_EXCL, so two runners never both get it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "command": " ".join(sys.argv)}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = lock_holder(path)
            if _holder_gone(holder):
                path.unlink(missing_ok=True)
                continue
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
            raise ResultsLocked(
                f"{out} is in use by another pwmbench run (host {holder.get('host')}, pid {holder.get('pid')}, since {since}): "
                f"wait for it to finish, or run into another --out. If that process is gone (e.g. on another machine "
                f"that was shut down), delete {path}."
            ) from None
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
        except OSError as exc:  # a full disk: no lock file left half-written, and an error that says what to do
            path.unlink(missing_ok=True)
            raise no_space(exc, path) from None
        break
    else:
        raise ResultsLocked(f"could not take the lock {path}: it keeps changing hands")
    try:
        yield path
    finally:
        if (lock_holder(path) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)

"""One `pwmbench run` per results directory: `results_lock` holds DIR/.pwmbench.lock (host, pid, command) while a run
writes there; a second run is refused naming the holder, and a lock whose process is gone is taken over."""

from __future__ import annotations

import contextlib
import fcntl
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
    """Hold `out` for this process: a second `pwmbench run` on it is refused, naming the holder, while the holder runs.

    The lock is the kernel's: an exclusive `flock` on DIR/.pwmbench.lock, held for the whole run and released by the
    kernel however the process ends (so a stale lock cannot exist and there is nothing to take over). The holder's
    name is written into the file once the lock is held; after taking the lock the file is checked to be the one at
    the path (a releasing holder unlinks it), so two runners never hold it at once. On a filesystem without flock
    the lock falls back to a file created whole with a hard link (atomic, never empty) and a pid check."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsLocked(f"results directory {out} cannot be created: {exc.strerror or exc} (choose another --out)") from None
    path = out / LOCK_FILE
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "command": " ".join(sys.argv)}
    for _ in range(50):
        try:
            fd, created = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            try:
                fd, created = os.open(path, os.O_RDWR), False
            except FileNotFoundError:
                continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _locked(out, path) from None
        except OSError:  # no flock on this filesystem
            os.close(fd)
            if created:
                path.unlink(missing_ok=True)  # the empty file just made to be locked
            with _link_lock(out, path, me):
                yield path
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # we locked a file its last holder had just unlinked: take the one at the path
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
        except OSError as exc:  # a full disk: no lock left behind, and an error that says what to do
            path.unlink(missing_ok=True)
            os.close(fd)
            raise no_space(exc, path) from None
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)  # before unlocking: a waiter that opened this file sees it is gone
            os.close(fd)
        return
    raise ResultsLocked(f"could not take the lock {path}: it keeps changing hands")


def _locked(out: Path, path: Path) -> ResultsLocked:
    holder = None
    for _ in range(20):  # the holder writes its name right after taking the lock
        holder = lock_holder(path)
        if holder:
            break
        time.sleep(0.05)
    holder = holder or {}
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return ResultsLocked(
        f"{out} is in use by another pwmbench run (host {holder.get('host')}, pid {holder.get('pid')}, since {since}): "
        f"wait for it to finish, or run into another --out."
    )


@contextmanager
def _link_lock(out: Path, path: Path, me: dict[str, Any]) -> Iterator[None]:
    """The lock without flock: the holder's file is written whole under a private name and hard-linked to the lock's
    name (atomic; fails if it exists), so no one ever reads an empty lock; a holder whose process is gone (on this
    host) is removed under a takeover mutex, and only if the lock still names it (_remove_stale)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{time.time_ns()}")
    try:
        tmp.write_text(json.dumps(me))
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise no_space(exc, path) from None
    try:
        for _ in range(50):
            try:
                os.link(tmp, path)
                break
            except FileExistsError:
                holder = lock_holder(path)
                if holder is None or not holder_gone(holder):  # an unreadable lock: refused, never guessed gone
                    raise _locked(out, path) from None
                _remove_stale(path, holder)  # then try the link again
        else:
            raise ResultsLocked(f"could not take the lock {path}: it keeps changing hands")
    finally:
        tmp.unlink(missing_ok=True)
    try:
        yield
    finally:
        if (lock_holder(path) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)


TAKEOVER_STALE_S = 10.0  # a takeover mutex older than this was left by a process that died holding it (held for microseconds)


def _remove_stale(path: Path, holder: dict[str, Any]) -> None:
    """Remove a lock whose holder is gone — only while holding the takeover mutex (created with O_EXCL), and only if
    the lock still names that holder: no one else can remove or replace a lock meanwhile, so a live lock is never
    removed by a taker that read an older one."""
    mutex = path.with_name(path.name + ".takeover")
    deadline = time.monotonic() + 2 * TAKEOVER_STALE_S
    while True:
        try:
            os.close(os.open(mutex, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            break
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - mutex.stat().st_mtime > TAKEOVER_STALE_S:
                    mutex.unlink(missing_ok=True)
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
    try:
        if lock_holder(path) == holder:
            path.unlink(missing_ok=True)
    finally:
        mutex.unlink(missing_ok=True)

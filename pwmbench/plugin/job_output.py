"""What a job running on another process or node needs to report back: its output in its log file, and its
traceback chained to the exception it raised. Standard library only, so that a Slurm job imports it without torch;
part of the public API for executor plugins (also re-exported by `pwmbench.api`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


class RemoteTraceback(Exception):
    """The job's traceback where it ran, chained as the cause of the exception it raised (as concurrent.futures
    does), so that the runner's traceback.txt shows where the job failed."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


@contextlib.contextmanager
def captured_output(log: str | None) -> Iterator[None]:
    """Python's and file descriptors 1/2's output (subprocesses and C libraries too) appended to `log` (nothing
    when it is None); both restored afterwards, since worker processes are reused."""
    if log is None:
        yield
        return
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log, "a", buffering=1) as stream:
        saved_fds = os.dup(1), os.dup(2)
        saved_streams = sys.stdout, sys.stderr
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        sys.stdout = sys.stderr = stream
        try:
            yield
        finally:
            stream.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0])
            os.close(saved_fds[1])

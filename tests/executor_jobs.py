"""Small module-level job functions for executor tests (they pickle by reference: workers import this module,
so tests put this directory on the workers' PYTHONPATH)."""

import os
import sys
import time
from pathlib import Path


def record(key, path, sleep=0.0):
    """Append '<key> start <t>' and '<key> end <t>' lines to `path` around a nap; return the key."""
    with open(path, "a") as f:
        f.write(f"{key} start {time.time():.6f}\n")
    time.sleep(sleep)
    with open(path, "a") as f:
        f.write(f"{key} end {time.time():.6f}\n")
    return key


def fail(key, message="on purpose"):
    raise ValueError(f"{key}: {message}")


def sleep_once(key, pid_file, seconds=120.0):
    """Append this process's pid to `pid_file`; the first attempt then sleeps (long enough to be killed), a retry
    returns at once with the number of attempts it has seen (as a job resuming from its checkpoint would)."""
    with open(pid_file, "a") as f:
        f.write(f"{os.getpid()}\n")
    attempts = len(Path(pid_file).read_text().split())
    if attempts == 1:
        time.sleep(seconds)
    return f"{key} finished on attempt {attempts}"


def shout(key, text):
    """Write `text` through print (stdout and stderr) and straight to file descriptors 1 and 2."""
    print(f"{text} print-stdout")
    print(f"{text} print-stderr", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, f"{text} fd1\n".encode())
    os.write(2, f"{text} fd2\n".encode())
    return key


def getenv(key, name):
    """The value of environment variable `name` in the worker (None when unset)."""
    return os.environ.get(name)

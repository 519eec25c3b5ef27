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


def count_to(key, progress, steps=8, step_s=0.5):
    """Count to `steps`, one step every `step_s` seconds, keeping the count in the file `progress` and resuming from
    it (as a training cell resumes from its checkpoint). Each start appends its scheduler job id (SLURM_JOB_ID), pid
    and the count it resumed from to `progress`.starts. Returns (key, final count, number of starts)."""
    path, starts = Path(progress), Path(f"{progress}.starts")
    n = int(path.read_text() or 0) if path.exists() else 0
    with open(starts, "a") as f:
        f.write(f"{os.environ.get('SLURM_JOB_ID', '-')} {os.getpid()} {n}\n")
    while n < steps:
        time.sleep(step_s)
        n += 1
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(str(n))
        os.replace(tmp, path)
    return key, n, len(starts.read_text().split("\n")) - 1


def record_env(key, path, names=(), sleep=0.0):
    """record() that also returns {name: value} of the environment variables `names` in the worker."""
    record(key, path, sleep)
    return {name: os.environ.get(name) for name in names}

"""The files of a training cell and the small helpers both kinds of cell (single task, task set) share.

Names of the result, checkpoint and progress files; a run file's status (an unreadable one moved aside); the config hash;
the progress line and progress file. pwm/cell.py (single tasks) and pwm/multitask_cell.py (task sets) import
these; neither imports the other's training code through here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pwmbench.errors import PwmbenchError
from pwmbench.plugin.manager import get_plugins
from pwmbench.pwm.config import PWMConfig
from pwmbench.results.atomic_files import move_aside, remove, remove_temp_files, write_text_atomic  # noqa: F401 - write_text_atomic re-exported
from pwmbench.results.tables import UnreadableTable, read_table

CURVES_FILE, RUN_FILE, CHECKPOINT_FILE, PROGRESS_FILE = "curves.arrow", "run.arrow", "checkpoint.pt", "progress.json"
WORLD_MODEL_FILE = "world_model.pt"  # a task-set cell's world-model job result: the trained model, its status, data usage
MEMBERS_DIR = "members"  # a task-set cell's per-member job results: members/<task id>/member_run.arrow, member_curves.arrow
JOB_LOG, COLLECT_LOG = "job.log", "collect.log"  # where an executor that captures output writes a job's stdout/stderr
TRACEBACK_FILE = "traceback.txt"  # the full traceback of a failed cell (run.arrow's `traceback` column holds its start)


class CellAlreadyDone(PwmbenchError):
    """The output directory already holds a finished run."""


def run_status(path: str | os.PathLike[str], *, repair: bool = True) -> str | None:
    """The status of a run file as a whole: "failed" when any row failed (an exception: the cell is trained again,
    resuming from its checkpoint), else "diverged" when any row diverged (a result: kept), else "ok"; None when
    there is no run file (the cell has not finished). A run file — or the curves file beside it — that cannot be read
    or does not match its checksum is no result: both are moved aside (`.corrupt`) and the cell is trained again;
    with `repair=False` (read-only callers: `pwmbench status`) nothing moves and the status is "corrupt"."""
    path = Path(path)
    if not path.exists():
        return None
    curves = path.with_name(path.name.replace("run.arrow", "curves.arrow"))
    try:
        statuses = set(read_table(path).column("status").to_pylist())
        if curves != path and curves.exists():
            read_table(curves)
    except (UnreadableTable, KeyError) as exc:
        if not repair:
            return "corrupt"
        moved = [move_aside(p).name for p in (path, curves) if p.exists()]
        print(f"warning: {exc}; moved {' and '.join(moved)} aside, the cell will be trained again", file=sys.stderr)
        return None
    return "failed" if "failed" in statuses else "diverged" if "diverged" in statuses else "ok"


def failure_record(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """(reason, failure) for an exception that ended a cell or job: the reason is `Type: message`, followed by the
    plugin whose code raised it when there is one (so a plugin author reads at once whose bug it is); `failure` holds
    that plugin (`failed_in`), the traceback's start for the run row and the full traceback for traceback.txt."""
    import traceback

    from pwmbench.plugin.registry import plugin_in_traceback

    culprit = plugin_in_traceback(exc.__traceback__)
    reason = f"{type(exc).__name__}: {exc}" + (f" [raised in {culprit}]" if culprit else "")
    short, full = ("".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=n)) for n in (8, None))
    return reason, {"failed_in": culprit, "traceback": short, "full_traceback": full}


def thread_count() -> int:
    """The torch intra-op threads this process computes with (recorded in run rows: float sums, and with them
    results, can differ with the thread count, so a resumed or re-run cell is only comparable at the same count)."""
    import torch

    return torch.get_num_threads()


@dataclass(frozen=True)
class CellResult:
    status: str
    out_dir: Path
    row: dict[str, Any]


def variant_label(cfg: PWMConfig) -> str:
    if not cfg.dynamics_options:
        return cfg.dynamics
    return cfg.dynamics + ":" + ",".join(f"{k}={v}" for k, v in sorted(cfg.dynamics_options.items()))


def identity_hash(identity: dict[str, Any]) -> str:
    """The hash of a config's identity dict (PWMConfig.identity(), or a recorded config's keys as written)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def config_hash(cfg: PWMConfig) -> str:
    return identity_hash(cfg.identity())


def cell_identity(task: str, variant: str | None, seed: int, cfg: PWMConfig) -> dict[str, Any]:
    """Whose a checkpoint is (pwm/checkpoint.py checked_identity): the cell's task, variant, seed and config hash."""
    return {"task": task, "variant": variant, "seed": int(seed), "config_hash": config_hash(cfg)}


def plugin_versions() -> dict[str, str | None]:
    return {name: src.version for name, src in get_plugins().sources.items()}


class ProgressLine:
    """`epoch 12/100 [####......] rewards 123.4 eval 150.2 ETA 1m20s` on stderr.

    On a terminal the line is redrawn in place (at most 4 times a second); in a log, one line per 10%.
    """

    def __init__(self, total: int, stream: Any = sys.stderr) -> None:
        self.total, self.stream, self.start = total, stream, time.perf_counter()
        self.last_eval: float | None = None
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._last_decile = -1

    def __call__(self, row: dict[str, Any], done_before: int) -> None:
        epoch = row["epoch"]
        if row.get("eval_return") is not None:
            self.last_eval = row["eval_return"]
        now = time.perf_counter()
        decile = 10 * epoch // self.total
        if epoch != self.total and ((self.tty and now - self._last_draw < 0.25) or (not self.tty and decile == self._last_decile)):
            return
        self._last_draw, self._last_decile = now, decile
        frac = epoch / self.total
        ran = epoch - done_before
        eta = (time.perf_counter() - self.start) / max(ran, 1) * (self.total - epoch)
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        rewards = row.get("rewards")
        parts = [f"epoch {epoch}/{self.total} [{bar}]", f"rewards {rewards:.1f}" if rewards is not None else "rewards -"]
        if self.last_eval is not None:
            parts.append(f"eval {self.last_eval:.1f}")
        parts.append(f"ETA {int(eta // 60)}m{int(eta % 60):02d}s")
        if self.tty:
            self.stream.write("\r" + "  ".join(parts) + ("\n" if epoch == self.total else ""))
        else:
            self.stream.write("  ".join(parts) + "\n")
        self.stream.flush()


class ProgressFile:
    """`progress.json` in the cell directory, rewritten atomically at most every 2 s: how far the cell is, for
    runners that watch cells in other processes or on other machines."""

    def __init__(self, path: Path, total: int) -> None:
        self.path, self.total, self._last = path, total, 0.0
        self.last_eval: float | None = None

    def __call__(self, row: dict[str, Any]) -> None:
        if row.get("eval_return") is not None:
            self.last_eval = row["eval_return"]
        now = time.time()
        if now - self._last < 2.0 and row["epoch"] < self.total:
            return
        self._last = now
        write_text_atomic(json.dumps({"epoch": row["epoch"], "max_epochs": self.total, "rewards": row.get("rewards"), "eval_return": self.last_eval, "time": now}), self.path)


def clear_cell_files(out: str | os.PathLike[str]) -> None:
    """Forget a cell's results and checkpoints (`--restart`): every file pwmbench writes in a cell directory."""
    import shutil

    from pwmbench.pwm.policy_file import POLICY_FILE
    from pwmbench.pwm.pretrain import PRETRAINED_WM_FILE

    out = Path(out)
    for name in (RUN_FILE, CURVES_FILE, CHECKPOINT_FILE, WORLD_MODEL_FILE, PROGRESS_FILE, TRACEBACK_FILE, POLICY_FILE, PRETRAINED_WM_FILE, JOB_LOG, COLLECT_LOG):
        remove(out / name)
    remove_temp_files(out)
    shutil.rmtree(out / MEMBERS_DIR, ignore_errors=True)


class StopRequest:
    """Ctrl-C and SIGTERM during training stop it at the next epoch boundary, not in the middle of one.

    The first SIGINT or any SIGTERM only sets `requested`; the training loop checkpoints at the next boundary and
    raises `KeyboardInterrupt` (`stop_here`), so a resumed cell continues exactly where an uninterrupted one would be.
    A second SIGINT stops at once (the last boundary checkpoint stands: still exact, a few epochs are redone).
    Handlers are installed only in the main thread (signals cannot be caught elsewhere) and restored on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        import signal

        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def stop_here(self, checkpoint: Any) -> None:
        """At a boundary: when a stop was requested, checkpoint and raise KeyboardInterrupt."""
        if self.requested:
            checkpoint()
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

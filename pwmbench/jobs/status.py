"""`pwmbench status DIR`: every job of a results directory and its state, read from the files the jobs write (and,
after `run --detach`, from the executor's own record when its scheduler is reachable). It only reads: a corrupt file
is reported, never moved."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pwmbench.data.jobs import data_rows
from pwmbench.errors import ConfigError
from pwmbench.jobs.cell_kinds import registered_kinds
from pwmbench.results.cell_files import JOB_LOG, PROGRESS_FILE, RUN_FILE, run_status
from pwmbench.suite.record import SUITE_FILE
from pwmbench.suite.spec import Cell

__all__ = ["EXECUTOR_DIR", "file_state", "results_status"]

EXECUTOR_DIR = ".executor"  # what a detached executor recorded to find its jobs again (pwmbench status)


def results_status(out: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Every job of a results directory with its state from the files: a cell (or a task-set job) with a result is
    done (or failed/diverged), one with progress.json is running, others are queued. After `run --detach`, the
    executor's own view of each job is added when the scheduler is reachable."""

    suite_file = out / SUITE_FILE
    if not suite_file.exists():
        raise ConfigError(f"{out} holds no {SUITE_FILE}: not a results directory of `pwmbench run`")
    try:
        record = json.loads(suite_file.read_text())
    except ValueError as exc:
        raise ConfigError(f"{suite_file} is not valid JSON ({exc}): run the suite again to rewrite it (finished cells are kept)") from None
    if not isinstance(record, dict) or not isinstance(record.get("configs", {}), dict) or not isinstance(record.get("seeds", []), list):
        raise ConfigError(f"{suite_file} is not a suite record (a {type(record).__name__} without configs and seeds): run the suite again to rewrite it")
    rows: list[dict[str, Any]] = data_rows(record)
    kinds = registered_kinds()
    for key in record.get("configs", {}):
        task, variant = key.split("|", 1)
        for seed in record.get("seeds", []):
            cell = Cell(task, variant, seed, None)  # type: ignore[arg-type]
            directory = cell.directory(out)
            rows.append(file_state(cell.key, directory, directory / RUN_FILE))
            for kind in kinds:  # each kind lists its inner jobs from its own files (no task needs resolving)
                rows += kind.status_rows(cell, out)
    note = None
    submission = out / EXECUTOR_DIR / "submission.json"
    if submission.exists():
        info = json.loads(submission.read_text())
        try:
            from pwmbench.api import executor as make_executor

            states = {s.key: s for s in make_executor(info["executor"], **info.get("options", {})).status(str(out / EXECUTOR_DIR))}
            by_job = {r["job"]: r for r in rows}
            for key, st in states.items():
                row = by_job.get(key) or by_job.setdefault(key, {"job": key, "state": st.state, "detail": None})
                if row not in rows:
                    rows.append(row)
                row["scheduler"] = f"{info['executor']}: {st.state}" + (f" (job {st.scheduler_id})" if st.scheduler_id else "") + (f", {st.detail}" if st.detail else "")
                if row["state"] in ("queued", "running") and st.state in ("failed", "cancelled", "preempted"):
                    row["state"] = st.state
                row["log"] = row.get("log") or st.log
            note = f"submitted to {info['executor']} at {time.strftime('%Y-%m-%d %H:%M', time.localtime(info['submitted']))}"
        except Exception as exc:  # noqa: BLE001 - the files still tell the state; say why the scheduler did not
            note = f"{info['executor']} not reachable: {type(exc).__name__}: {exc}"
    return rows, note


def file_state(job: str, directory: Path, run_file: Path) -> dict[str, Any]:
    status = run_status(run_file, repair=False)  # `status` only reads: `run` moves a corrupt result aside
    log = str(directory / JOB_LOG) if (directory / JOB_LOG).exists() else None
    if status == "ok":
        return {"job": job, "state": "done", "detail": None, "log": log}
    if status == "corrupt":
        return {"job": job, "state": "corrupt", "detail": f"{run_file.name} unreadable: the next run trains it again", "log": log}
    if status is not None:
        return {"job": job, "state": "failed" if status == "failed" else "diverged", "detail": status, "log": log}
    try:
        info = json.loads((directory / PROGRESS_FILE).read_text())
        return {"job": job, "state": "running", "detail": f"{info['epoch']}/{info['max_epochs']}", "log": log}
    except (OSError, ValueError, KeyError):
        return {"job": job, "state": "queued", "detail": None, "log": log}

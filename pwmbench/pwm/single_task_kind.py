"""The single-task cell kind: one `cell` job per (task, variant, seed) — PWM online on one environment, with its
[pretrain] data collected first by a `pretrain_data` job when the suite has a collector (pwm/cell.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pwmbench.data.jobs import pretrain_data_job
from pwmbench.jobs.cell_kinds import CellKind, Tracked, job_resources
from pwmbench.plugin.interfaces import Job, TaskSet
from pwmbench.results.cell_files import JOB_LOG

__all__ = ["KIND", "SingleTaskKind", "run_cell_job"]


def run_cell_job(task: str, config: dict[str, Any], seed: int, out_dir: str, identity: dict[str, str], threads: int, restart: bool,
                 threshold: float | None) -> str:  # fmt: skip
    """What a worker process runs for one single-task cell (module-level, so it pickles for any executor)."""
    import torch

    torch.set_num_threads(threads)
    from pwmbench.pwm.cell import train_cell
    from pwmbench.pwm.config import resolve_config

    return train_cell(task, resolve_config(config), seed, out_dir, restart=restart, identity=identity, threshold=threshold).status


class SingleTaskKind(CellKind):
    name = "single-task"
    job_kinds = ("cell",)
    cell_job = "cell"

    def handles(self, task: Any) -> bool:
        return not isinstance(task, TaskSet)

    def data_jobs(self, suite: Any, cell: Any) -> list[Job]:
        job = pretrain_data_job(suite, cell.task, cell.config.horizon)
        return [job] if job is not None else []

    def jobs(self, suite: Any, cell: Any, out: Path, restart: bool, after: tuple[str, ...]) -> list[Job]:
        directory = cell.directory(out)
        res = job_resources(suite, "cell")
        kwargs = {"task": cell.task, "config": cell.config.to_dict(), "seed": cell.seed, "out_dir": str(directory),
                  "identity": {"suite": suite.name, "variant": cell.variant}, "threads": res.cpus, "restart": restart,
                  "threshold": suite.thresholds.get(cell.task)}  # fmt: skip
        return [Job(cell.key, run_cell_job, kwargs, kind="cell", depends_on=after, resources=res, log=str(directory / JOB_LOG))]

    def total(self, cell: Any) -> int:
        return cell.config.max_epochs

    def tracked(self, job: Job, cell: Any, out: Path) -> Tracked | None:
        # a variant not yet measured is priced like another variant of the same dynamics model (mlp-residual like
        # mlp), not like the average epoch of every model (flow's included)
        same_model = f"{cell.task}|{cell.config.dynamics}|cell"
        return Tracked(cell.key, f"{cell.task} {cell.variant} seed {cell.seed}", cell.directory(out), self.total(cell), "epoch", f"{cell.task}|{cell.variant}|cell",
                       (same_model,))  # fmt: skip


KIND = SingleTaskKind()

"""The task-set cell kind (MT30, MT80): a `world_model` job trained once on the set's dataset, one `member` job per
member task's policy depending on it (one group: a Slurm job array), and a `collect` job keyed like the cell that
writes its files (pwm/multitask_cell.py). A `dataset` job collects the suite's [data] first when it is not there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pwmbench.data.jobs import data_complete, dataset_job
from pwmbench.jobs.cell_kinds import CellKind, Tracked, job_resources
from pwmbench.plugin.interfaces import Job, TaskSet
from pwmbench.results.cell_files import COLLECT_LOG, JOB_LOG, MEMBERS_DIR, clear_cell_files

__all__ = ["KIND", "TaskSetKind", "run_task_set_job"]


def run_task_set_job(stage: str, task: str, config: dict[str, Any], seed: int, out_dir: str, identity: dict[str, str], threads: int,
                     task_id: int | None = None, task_ids: list[int] | None = None) -> str:  # fmt: skip
    """What a worker process runs for one job of a task-set cell: stage "world_model", "member" (task_id) or
    "collect" (task_ids); returns the status it recorded."""
    import torch

    torch.set_num_threads(threads)
    from pwmbench.api import task as get_task
    from pwmbench.pwm import multitask_cell
    from pwmbench.pwm.config import resolve_config

    taskset, cfg = get_task(task), resolve_config(config)
    ident = {"task": task, "seed": str(seed), **identity}
    if stage == "world_model":
        return multitask_cell.train_world_model(taskset, cfg, seed, Path(out_dir), ident)
    if stage == "member":
        return multitask_cell.train_member(taskset, cfg, seed, Path(out_dir), ident, int(task_id))
    if stage == "collect":
        return multitask_cell.collect(taskset, cfg, seed, Path(out_dir), ident, list(task_ids or []))
    raise ValueError(f"unknown task-set job stage {stage!r}")


class TaskSetKind(CellKind):
    name = "task-set"
    job_kinds = ("world_model", "member", "collect")
    cell_job = "collect"

    def handles(self, task: Any) -> bool:
        return isinstance(task, TaskSet)

    def data_jobs(self, suite: Any, cell: Any) -> list[Job]:
        job = dataset_job(suite) if cell.config.data_dir == suite.base.get("data_dir") else None
        return [job] if job is not None else []

    def member_ids(self, suite: Any, cell: Any) -> list[int]:
        """The members the cell trains: from the dataset when it is there, else from what [data] will collect."""
        from pwmbench.api import task as get_task
        from pwmbench.pwm import multitask_cell as mt

        taskset, cfg = get_task(cell.task), cell.config
        if cfg.data_dir and data_complete(cfg.data_dir):
            return mt.member_ids(taskset, cfg)
        collected = (suite.data or {}).get("task_ids")
        ids = list(cfg.task_ids) if cfg.task_ids is not None else list(collected if collected is not None else range(taskset.spec.n_tasks))
        return ids

    def prepare(self, cell: Any, out: Path, restart: bool) -> None:
        from pwmbench.pwm import multitask_cell as mt

        directory = cell.directory(out)
        if restart:
            clear_cell_files(directory)
        elif directory.is_dir():
            mt.prepare_retry(directory, [int(p.name) for p in (directory / MEMBERS_DIR).glob("*") if p.name.isdigit()])

    def jobs(self, suite: Any, cell: Any, out: Path, restart: bool, after: tuple[str, ...]) -> list[Job]:
        from pwmbench.pwm import multitask_cell as mt

        directory = cell.directory(out)
        common = {"task": cell.task, "config": cell.config.to_dict(), "seed": cell.seed, "out_dir": str(directory),
                  "identity": {"suite": suite.name, "variant": cell.variant}}  # fmt: skip
        ids = self.member_ids(suite, cell)
        jobs: list[Job] = []
        wm_key = f"{cell.key}|world_model"
        wm_state = None if restart else mt.world_model_status(directory, repair=False)
        train_wm = wm_state not in ("ok", "diverged")
        if train_wm:
            res = job_resources(suite, "world_model")
            jobs.append(Job(wm_key, run_task_set_job, {"stage": "world_model", **common, "threads": res.cpus}, kind="world_model",
                            depends_on=after, resources=res, log=str(directory / JOB_LOG)))  # fmt: skip
        res = job_resources(suite, "member")
        for task_id in ids:
            state = None if restart or train_wm else mt.member_status(directory, task_id)
            if state in (None, "failed"):
                jobs.append(Job(f"{cell.key}|member|{task_id}", run_task_set_job, {"stage": "member", **common, "threads": res.cpus, "task_id": task_id},
                                kind="member", depends_on=(wm_key,) if train_wm else after, resources=res,
                                log=str(mt.member_dir(directory, task_id) / JOB_LOG), group=f"{cell.key}|members"))  # fmt: skip
        res = job_resources(suite, "collect")
        jobs.append(Job(cell.key, run_task_set_job, {"stage": "collect", **common, "threads": res.cpus, "task_ids": ids}, kind="collect",
                        depends_on=tuple(j.key for j in jobs) or after, resources=res, log=str(directory / COLLECT_LOG)))  # fmt: skip
        return jobs

    def total(self, cell: Any) -> int:
        from pwmbench.pwm.cell import total_steps

        return total_steps(cell.task, cell.config)

    def tracked(self, job: Job, cell: Any, out: Path) -> Tracked | None:
        name = f"{cell.task} {cell.variant} seed {cell.seed}"
        if job.kind == "world_model":
            return Tracked(job.key, f"{name} world model", cell.directory(out), cell.config.wm_training_steps, "step", f"{cell.task}|{cell.variant}|world_model")
        if job.kind == "member":
            task_id = job.kwargs["task_id"]
            return Tracked(job.key, f"{name} member {task_id}", cell.directory(out) / MEMBERS_DIR / str(task_id), cell.config.max_epochs, "iteration",
                           f"{cell.task}|{cell.variant}|member")  # fmt: skip
        return None  # the collecting job is instant

    def status_rows(self, cell: Any, out: Path) -> list[dict[str, Any]]:
        from pwmbench.jobs.status import file_state
        from pwmbench.pwm import multitask_cell as mt
        from pwmbench.results.cell_files import WORLD_MODEL_FILE

        directory = cell.directory(out)
        rows: list[dict[str, Any]] = []
        if not ((directory / WORLD_MODEL_FILE).exists() or (directory / MEMBERS_DIR).is_dir()):
            return rows
        wm = mt.world_model_status(directory, repair=False)  # `status` only reads: `run` moves a corrupt one aside
        if wm is not None:
            detail = f"{WORLD_MODEL_FILE} unreadable: the next run trains it again" if wm == "corrupt" else None
            rows.append({"job": f"{cell.key}|world_model", "state": "done" if wm == "ok" else wm, "detail": detail})
        for member in sorted((directory / MEMBERS_DIR).glob("*"), key=lambda p: int(p.name) if p.name.isdigit() else 0):
            rows.append(file_state(f"{cell.key}|member|{member.name}", member, member / mt.MEMBER_RUN_FILE))
        return rows


KIND = TaskSetKind()

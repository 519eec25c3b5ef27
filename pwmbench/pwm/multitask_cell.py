"""One task-set cell (set × variant × seed) as three kinds of job: the world model trained once on the dataset,
then each member's policy in that frozen model (one job per member, in any order or in parallel), then a small
job that collects the members' results into the cell's `curves.arrow` and `run.arrow` (one row per member).

- `train_world_model` checkpoints into the cell directory (`checkpoint.pt`, every `WM_CHECKPOINT_EVERY` steps) and
  ends by writing `world_model.pt` atomically: the trained model, its status (ok / diverged / failed with the reason)
  and the dataset usage. Started again after a failure it resumes from the checkpoint.
- `train_member` reads `world_model.pt` (read-only: any number of members share it), trains one member's policy
  (seeded by the seed and the member's id, so the order does not matter) and writes `members/<id>/member_run.arrow`
  and `member_curves.arrow` (and `traceback.txt` when it failed). An interrupted member restarts from its first
  iteration; a world model that diverged or failed gives every member that status.
- `collect` writes the cell's files once every member has one, with the cell's status: failed when any member failed
  (a run started again retries those members, and the world model if it failed), else diverged when any diverged.

`train_multitask_cell` runs the three in this process, one after the other (`pwmbench train`, tests); the runner
hands them to an executor as a job graph (pwm/task_set_kind.py plans the jobs, jobs/runner.py runs them).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from pwmbench.data.dataset import OfflineDataset
from pwmbench.errors import ConfigError
from pwmbench.nn.world_model import count_parameters
from pwmbench.plugin.interfaces import RunEvent, TaskSet
from pwmbench.plugin.manager import get_plugins
from pwmbench.pwm.checkpoint import (
    IDENTITY_KEY,
    CorruptCheckpoint,
    checked_identity,
    discard_corrupt,
    load_checkpoint,
    save_checkpoint,
)
from pwmbench.pwm.config import PWMConfig
from pwmbench.pwm.diagnostics import final_model_quality
from pwmbench.pwm.multitask import OfflineWorldModel, TaskPolicy
from pwmbench.pwm.trainer import Diverged
from pwmbench.results.atomic_files import remove, sha256_of
from pwmbench.results.cell_files import (
    CHECKPOINT_FILE,
    CURVES_FILE,
    MEMBERS_DIR,
    PROGRESS_FILE,
    RUN_FILE,
    TRACEBACK_FILE,
    WORLD_MODEL_FILE,
    ProgressFile,
    StopRequest,
    cell_identity,
    config_hash,
    failure_record,
    plugin_versions,
    remove_temp_files,
    run_status,
    thread_count,
    write_text_atomic,
)
from pwmbench.results.provenance import provenance
from pwmbench.results.tables import SCHEMA_VERSION, curves_table, read_table, run_table, write_table_atomic

__all__ = ["WM_CHECKPOINT_EVERY", "WORLD_MODEL_FILE", "collect", "member_ids", "prepare_retry", "train_member",
           "train_multitask_cell", "train_world_model"]

MEMBER_RUN_FILE, MEMBER_CURVES_FILE = "member_run.arrow", "member_curves.arrow"  # not run.arrow: only the cell's counts

WM_CHECKPOINT_EVERY = 5_000
WM_LOG_EVERY = 100


def open_dataset(taskset: TaskSet, cfg: PWMConfig) -> OfflineDataset:
    """The dataset of `cfg.data_dir`, with an error that says how to get one when it is missing."""
    name = taskset.spec.name
    fix = (f"set `data_dir` to a directory of TD-MPC2 {name.upper()} chunk files (e.g. in the suite's [base]: "
           f'data_dir = "/data/tdmpc2/{name}"), or collect one: pwmbench data collect --taskset {name} '
           f"--episodes-per-task 10 --out DIR")  # fmt: skip
    if not cfg.data_dir:
        raise ConfigError(f"{name} trains offline and needs a dataset: {fix}")
    if not Path(cfg.data_dir).expanduser().is_dir():
        raise ConfigError(f"data_dir {cfg.data_dir!r} does not exist: {fix}")
    return OfflineDataset(Path(cfg.data_dir).expanduser(), allow_pickle=cfg.allow_pickle)


def _member_ids(taskset: TaskSet, cfg: PWMConfig, dataset: OfflineDataset) -> list[int]:
    ids = list(cfg.task_ids) if cfg.task_ids is not None else [t for t in range(taskset.spec.n_tasks) if t in dataset.task_ids]
    missing = [t for t in ids if t not in dataset.task_ids or not 0 <= t < taskset.spec.n_tasks]
    if missing:
        raise ConfigError(f"task_ids {missing} of {taskset.spec.name} have no episodes in {dataset.directory} (it has {dataset.task_ids})")
    return ids


def _load_world_model(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The world-model job's result, checked: a corrupt one, or one of another cell, is moved aside (the next run
    trains the world model again, and its members with it) and the job that found it fails saying so."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist: the cell's world-model job has not finished (run it first)")
    try:
        saved = checked_identity(load_checkpoint(path), identity, path)
        if not {"status", "owm", "rows"} <= set(saved):
            raise CorruptCheckpoint(f"{path} is not a task-set world model (keys {sorted(saved)[:6]})")
        return saved
    except CorruptCheckpoint as exc:
        discard_corrupt(path)
        raise CorruptCheckpoint(f"{exc}; moved aside: the next run trains the world model again") from None


def world_model_status(out: Path, *, repair: bool = True) -> str | None:
    """The status recorded in the cell's `world_model.pt` ("ok", "diverged", "failed"), or None without one (an
    unreadable one is moved aside: the world model is trained again; with `repair=False`, for read-only callers,
    nothing moves and the status is "corrupt"). Only the small entries are read."""
    path = Path(out) / WORLD_MODEL_FILE
    if not path.exists():
        return None
    try:
        return load_checkpoint(path, peek=True)["status"]  # not the weights: members and collect check those
    except CorruptCheckpoint as exc:
        if not repair:
            return "corrupt"
        print(f"warning: {exc}; moved to {discard_corrupt(path).name}, the world model is trained again", file=sys.stderr)
        return None


def member_ids(taskset: TaskSet, cfg: PWMConfig) -> list[int]:
    """The member task ids the cell trains (cfg.task_ids, else every member with episodes in the dataset)."""
    return _member_ids(taskset, cfg, open_dataset(taskset, cfg))


def member_dir(out: Path, task_id: int) -> Path:
    return Path(out) / MEMBERS_DIR / str(task_id)


def train_world_model(taskset: TaskSet, cfg: PWMConfig, seed: int, out: Path, ident: dict[str, str], *, progress: Any = None) -> str:
    """The world-model job: train (resuming from the checkpoint), then write `world_model.pt`; returns its status."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_temp_files(out)  # a killed writer's leftovers: this job is the cell directory's only writer now
    plugins = get_plugins()
    dataset = open_dataset(taskset, cfg)
    owm = OfflineWorldModel(taskset, dataset, cfg, seed)
    ckpt_path = out / CHECKPOINT_FILE
    rows: list[dict[str, Any]] = []
    saved = None
    identity = cell_identity(taskset.spec.name, ident.get("variant"), seed, cfg)
    if ckpt_path.exists():
        try:
            saved = checked_identity(load_checkpoint(ckpt_path), identity, ckpt_path)
            try:
                owm.load_state_dict(saved["owm"])
                dataset.load_usage_state(saved["usage"])
                rows = saved["rows"]
            except (KeyError, TypeError, IndexError, RuntimeError) as exc:  # plain data, but not this cell's checkpoint
                raise CorruptCheckpoint(f"{ckpt_path} is not a checkpoint of this cell ({type(exc).__name__}: {str(exc)[:120]})") from None
        except CorruptCheckpoint as exc:
            print(f"warning: {exc}; moved to {discard_corrupt(ckpt_path).name}, the world model starts again", file=sys.stderr)
            owm, rows = OfflineWorldModel(taskset, dataset, cfg, seed), []  # nothing of the refused state stays
    plugins.emit(RunEvent("started", {**ident, "phase": "world_model"}, step=owm.iteration, config=cfg.to_dict()))
    if cfg.world_model_checkpoint:
        return _import_world_model(owm, cfg, out, identity)
    reporter = ProgressFile(out / PROGRESS_FILE, cfg.offline_wm_iterations)

    def checkpoint() -> None:
        save_checkpoint({"owm": owm.state_dict(), "usage": dataset.usage_state(), "rows": rows, IDENTITY_KEY: identity}, ckpt_path)

    status, reason, failure = "ok", None, {}
    try:
        with StopRequest() as stop:  # Ctrl-C/SIGTERM: stop at the next logging boundary, checkpointed (exact resume)
            while owm.iteration < cfg.offline_wm_iterations:
                new = owm.train(min(WM_LOG_EVERY - owm.iteration % WM_LOG_EVERY, cfg.offline_wm_iterations - owm.iteration), log_every=WM_LOG_EVERY)
                rows += new
                for row in new:
                    plugins.emit(RunEvent("metrics", {**ident, "phase": "world_model"}, step=row["epoch"], metrics={k: float(v) for k, v in row.items() if k != "epoch"}))
                reporter({**new[-1], "epoch": owm.iteration})
                if progress is not None:
                    progress({**new[-1], "epoch": owm.iteration}, 0)
                stop.stop_here(checkpoint)  # first: a stop at a checkpoint boundary writes the checkpoint once
                if owm.iteration % WM_CHECKPOINT_EVERY == 0 or owm.iteration == cfg.offline_wm_iterations:
                    checkpoint()
    except Diverged as exc:
        status, reason = "diverged", f"world model: {exc}"
        failure = {"diverged_epoch": exc.epoch, "diverged_quantity": f"world model {exc.quantity}"}
    except KeyboardInterrupt:
        raise  # the last boundary checkpoint stands (StopRequest wrote one when it could)
    except Exception as exc:  # noqa: BLE001 - a crashed world model is a result for its members too
        status = "failed"
        reason, failure = failure_record(exc)
        reason = f"world model: {reason}"
    save_checkpoint({"status": status, "reason": reason, "failure": failure, "owm": owm.state_dict(), "usage": dataset.usage(), IDENTITY_KEY: identity,
                     "rows": rows, "iteration": owm.iteration, "wall_s": owm.wall_s}, out / WORLD_MODEL_FILE)  # fmt: skip
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    return status


def _import_world_model(owm: OfflineWorldModel, cfg: PWMConfig, out: Path, identity: dict[str, Any]) -> str:
    """The world-model job when `world_model_checkpoint` is set: PWM's multitask path (`general.checkpoint` →
    `load_wm`, a TD-MPC2 checkpoint) — the weights imported, no step trained; `world_model.pt` records the file, its
    SHA-256 and what was left out. A file that does not fit is this job's failure, named, like any other."""
    from pwmbench.nn.checkpoint_import import import_world_model, read_checkpoint

    path = Path(cfg.world_model_checkpoint).expanduser()
    status, reason, failure, imported = "ok", None, {}, {}
    try:
        report = import_world_model(read_checkpoint(path), owm.wm, cfg.world_model_checkpoint_source)
        imported = {"path": str(path), "source": cfg.world_model_checkpoint_source, "sha256": sha256_of(path),
                    "loaded": len(report["loaded"]), "left_out": report["left_out"]}  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - recorded for the members, as a crashed training is
        status = "failed"
        reason, failure = failure_record(exc)
        reason = f"world model: {reason}"
    save_checkpoint({"status": status, "reason": reason, "failure": failure, "owm": owm.state_dict(), "usage": owm.dataset.usage(), IDENTITY_KEY: identity,
                     "rows": [], "iteration": 0, "wall_s": 0.0, "imported_from": imported}, out / WORLD_MODEL_FILE)  # fmt: skip
    return status


def train_member(taskset: TaskSet, cfg: PWMConfig, seed: int, out: Path, ident: dict[str, str], task_id: int, *,
                 progress: Any = None, done_before: int = 0) -> str:  # fmt: skip
    """One member's policy job: train it in the frozen world model of `world_model.pt`; write its row and curves."""
    out = Path(out)
    where = member_dir(out, task_id)
    where.mkdir(parents=True, exist_ok=True)
    remove_temp_files(where)
    saved = _load_world_model(out / WORLD_MODEL_FILE, cell_identity(taskset.spec.name, ident.get("variant"), seed, cfg))
    plugins = get_plugins()
    member = taskset.tasks[task_id]
    dataset = open_dataset(taskset, cfg)
    owm = OfflineWorldModel(taskset, dataset, cfg, seed)
    owm.load_state_dict(saved["owm"])
    (where / TRACEBACK_FILE).unlink(missing_ok=True)
    policy, curves = None, []
    status, reason, failure = saved["status"], saved["reason"], saved["failure"]
    started = time.perf_counter()
    if status == "ok":
        reporter = ProgressFile(where / PROGRESS_FILE, cfg.max_epochs)
        try:
            policy = TaskPolicy(taskset, task_id, owm.wm, dataset, cfg, seed, rew_rms=owm.rew_rms)
            while policy.iteration < cfg.max_epochs:
                row = policy.train_iteration()
                if policy.iteration % cfg.log_every == 0 or policy.iteration == cfg.max_epochs or "eval_return" in row:
                    curves.append(row)
                plugins.emit(RunEvent("metrics", {**ident, "member": member}, step=policy.iteration, metrics={k: float(v) for k, v in row.items() if k != "epoch"}))
                reporter(row)
                if progress is not None:
                    progress({**row, "epoch": done_before + policy.iteration}, 0)
            if not curves or curves[-1].get("eval_return") is None:
                final = policy.evaluate()
                if curves:
                    curves[-1].update(final)
                else:
                    curves.append({"epoch": policy.iteration, "wall_s": policy.wall_s, **final})
        except Diverged as exc:
            status, reason = "diverged", str(exc)
            failure = {"diverged_epoch": exc.epoch, "diverged_quantity": exc.quantity}
        except Exception as exc:  # noqa: BLE001 - a crashed member is a result; the others go on
            status = "failed"
            reason, failure = failure_record(exc)
        (where / PROGRESS_FILE).unlink(missing_ok=True)
    row = _member_row(taskset, cfg, seed, owm, saved, ident, task_id, status, reason, failure, curves, policy, time.perf_counter() - started)
    write_table_atomic(curves_table(curves, {**ident, "task": row["task"], "member": member, "phase": "policy"}), where / MEMBER_CURVES_FILE)
    if status == "failed":  # before the run file: a failed member always has its traceback.txt
        write_text_atomic(failure.get("full_traceback") or failure.get("traceback") or reason or "", where / TRACEBACK_FILE)
    write_table_atomic(run_table(row), where / MEMBER_RUN_FILE)
    return status


def member_status(out: Path, task_id: int) -> str | None:
    """A member job's recorded status, or None when it has not finished."""
    return run_status(member_dir(out, task_id) / MEMBER_RUN_FILE)


def _member_row(taskset, cfg, seed, owm, saved, ident, task_id, status, reason, failure, curves, policy, wall_s) -> dict[str, Any]:
    member = taskset.tasks[task_id]
    counts = owm.wm.component_parameters()
    evals = [r for r in curves if r.get("eval_return") is not None]
    use = saved["usage"].get(task_id, {})
    return {
        **{k: v for k, v in ident.items() if k != "task"},
        "seed": int(seed), "taskset": taskset.spec.name, "task": f"{taskset.spec.name}/{member}", "task_id": task_id,
        "dynamics": cfg.dynamics, "dynamics_options": json.dumps(owm.wm.dynamics.options(), sort_keys=True), "preset": cfg.preset,
        "params_total": count_parameters(owm.wm), "params_dynamics": counts["dynamics"], "params_encoder": counts["encoder"],
        "params_reward": counts["reward"], "nfe_per_step": owm.wm.dynamics.evals_per_next,
        "nfe_per_train_step": owm.wm.dynamics.evals_per_train_step,
        "config": cfg.to_json(), "config_hash": config_hash(cfg), "schema_version": SCHEMA_VERSION,
        "data_dir": str(owm.dataset.directory), "wm_iterations": saved["iteration"],
        "wm_recipe": f"imported ({saved['imported_from']['source']})" if saved.get("imported_from") else owm.recipe.name,
        **provenance(cfg.device, plugin_versions()),
        "status": status, "reason": reason,
        "diverged_epoch": failure.get("diverged_epoch"), "diverged_quantity": failure.get("diverged_quantity"),
        "traceback": failure.get("traceback"), "failed_in": failure.get("failed_in"), "threads": thread_count(),
        "epochs": policy.iteration if policy is not None else 0, "env_steps": 0, "wall_s": saved["wall_s"] + wall_s,
        "final_return": evals[-1]["eval_return"] if evals else None,
        "best_return": max(r["eval_return"] for r in evals) if evals else None,
        "final_score": evals[-1]["eval_score"] if evals else None,
        "best_score": max(r["eval_score"] for r in evals) if evals else None,
        "params_actor": count_parameters(policy.actor) if policy is not None else None,
        "params_critic": count_parameters(policy.critic) if policy is not None else None,
        "data_episodes": use.get("episodes"), "data_transitions": use.get("transitions"),
        "data_episodes_used": use.get("episodes_used"), "data_transitions_sampled": use.get("transitions_sampled"),
        **final_model_quality(curves),
        **get_plugins().tasks.get(member)().spec.score_record(),
        "final_success": evals[-1].get("eval_success") if evals else None,
    }  # fmt: skip


def collect(taskset: TaskSet, cfg: PWMConfig, seed: int, out: Path, ident: dict[str, str], task_ids: list[int]) -> str:
    """The collecting job: the cell's curves.arrow (world-model rows, then every member's) and run.arrow (one row per
    member, written last), traceback.txt for failed members; returns the cell's status."""
    out = Path(out)
    remove_temp_files(out)  # every other job of the cell has ended: what a killed one left is garbage
    saved = _load_world_model(out / WORLD_MODEL_FILE, cell_identity(taskset.spec.name, ident.get("variant"), seed, cfg))
    missing = [t for t in task_ids if member_status(out, t) is None]
    if missing:
        raise ConfigError(f"{out}: members {missing} have no results yet (their jobs have not finished)")
    tables = [curves_table(saved["rows"], {**ident, "member": "", "phase": "world_model"})]
    rows = []
    tracebacks: dict[str, list[str]] = {}  # full traceback → the members it failed (a world model's failure fails them all)
    for task_id in task_ids:
        where = member_dir(out, task_id)
        tables.append(read_table(where / MEMBER_CURVES_FILE))
        row = read_table(where / MEMBER_RUN_FILE).to_pylist()[0]
        rows.append(row)
        if row["status"] == "failed":
            text = (where / TRACEBACK_FILE).read_text() if (where / TRACEBACK_FILE).exists() else ""
            tracebacks.setdefault(f"{row['reason']}\n{text}", []).append(row["task"])
    if tracebacks:  # before run.arrow: a failed cell always has its traceback.txt
        write_text_atomic("\n".join(f"=== {', '.join(members)}: {text}" for text, members in tracebacks.items()), out / TRACEBACK_FILE)
    else:
        (out / TRACEBACK_FILE).unlink(missing_ok=True)
    write_table_atomic(pa.concat_tables(tables, promote_options="permissive"), out / CURVES_FILE)
    write_table_atomic(pa.concat_tables([run_table(r) for r in rows]), out / RUN_FILE)
    statuses = {r["status"] for r in rows}
    # any failed member makes the cell "failed": a run started again retries it (diverged members are results)
    overall = "ok" if statuses == {"ok"} else ("failed" if "failed" in statuses else "diverged")
    if overall == "ok":
        remove(out / CHECKPOINT_FILE)
    get_plugins().emit(RunEvent("finished", ident, step=saved["iteration"], status=overall, reason=None if overall == "ok" else "; ".join(
        f"{r['task']}: {r['reason']}" for r in rows if r["status"] != "ok")))  # fmt: skip
    return overall


def prepare_retry(out: Path, task_ids: list[int]) -> str | None:
    """Before a task-set cell runs again: a failed world model and failed members are no result, so their records go
    (the world model resumes from its checkpoint; members start again); diverged ones are results and stay. Returns
    the world model's recorded status afterwards (None: it is to be trained), read once (world_model.pt is large)."""
    out = Path(out)
    status = world_model_status(out)
    if status == "failed":
        remove(out / WORLD_MODEL_FILE)
        status = None
    for task_id in task_ids:
        if status is None or member_status(out, task_id) == "failed":
            remove(member_dir(out, task_id) / MEMBER_RUN_FILE)
    if run_status(out / RUN_FILE) == "failed":
        remove(out / RUN_FILE)
    return status


def train_multitask_cell(taskset: TaskSet, cfg: PWMConfig, seed: int, out: Path, ident: dict[str, str], *, progress: Any = None) -> str:
    """The whole cell in this process: the world model, every member, the collection; returns the cell's status."""
    out = Path(out)
    ids = member_ids(taskset, cfg)
    if prepare_retry(out, ids) is None:
        train_world_model(taskset, cfg, seed, out, ident, progress=progress)
    for k, task_id in enumerate(ids):
        if member_status(out, task_id) is None:
            train_member(taskset, cfg, seed, out, ident, task_id, progress=progress, done_before=cfg.wm_training_steps + k * cfg.max_epochs)
    return collect(taskset, cfg, seed, out, ident, ids)

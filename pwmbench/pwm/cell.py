"""One training cell (task × dynamics variant × seed) from start to result files.

`DIR/curves.arrow` (one row per logged epoch) and `DIR/run.arrow` (one row: identity, status, returns,
costs, parameter counts, resolved config, provenance) are written atomically. `DIR/checkpoint.pt` holds the
full training state every `checkpoint_every` epochs; a cell started again on the same directory resumes
from it and continues as if it had never stopped. A diverged run (NaN/Inf) or a crash still writes its
run row (status `diverged` / `failed`, with the reason) and the curves up to that point; a crash also writes its
full traceback to `DIR/traceback.txt`. A diverged run is a result and stays (`restart` trains it again); a failed
one is not: started again, the cell discards it and resumes from its last checkpoint like an interrupted cell.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from pwmbench.analysis.stats import steps_to_threshold
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
from pwmbench.pwm.gradient_probe import probe_summary
from pwmbench.pwm.policy_file import POLICY_FILE, save_policy
from pwmbench.pwm.pretrain import PRETRAINED_WM_FILE, save_pretrained_wm
from pwmbench.pwm.trainer import Diverged, PWMTrainer
from pwmbench.results.atomic_files import remove
from pwmbench.results.cell_files import (  # noqa: F401 - re-exported: callers import the file names from here
    CHECKPOINT_FILE,
    CURVES_FILE,
    PROGRESS_FILE,
    RUN_FILE,
    TRACEBACK_FILE,
    CellAlreadyDone,
    CellResult,
    ProgressFile,
    ProgressLine,
    StopRequest,
    clear_cell_files,
    cell_identity,
    config_hash,
    failure_record,
    plugin_versions,
    remove_temp_files,
    run_status,
    thread_count,
    variant_label,
    write_text_atomic,
)
from pwmbench.results.provenance import provenance
from pwmbench.results.tables import SCHEMA_VERSION, curves_table, read_table, run_table, write_table_atomic


def train_cell(
    task_name: str,
    cfg: PWMConfig,
    seed: int,
    out_dir: str | Path,
    *,
    restart: bool = False,
    progress: bool = False,
    identity: dict[str, str] | None = None,
    on_epoch: Callable[[PWMTrainer, dict[str, Any]], None] | None = None,
    threshold: float | None = None,
    on_pretrain_step: Callable[[PWMTrainer, int], None] | None = None,
) -> CellResult:
    """Train one cell to `out_dir`; returns its status and run row. Never leaves half-written results.

    With `pretrain_data` the world model is pretrained first (pwm/pretrain.py): the cell checkpoints every
    `PRETRAIN_CHECKPOINT_EVERY` steps and at the phase's end, and writes `pretrained_wm.pt` (reusable as another
    cell's `pretrain_checkpoint`). `on_pretrain_step(trainer, step)` runs after every pretraining step."""
    from pwmbench.api import task as get_task

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_temp_files(out)  # a killed writer's leftovers: this job is the directory's only writer now
    run_path, curves_path, ckpt_path = out / RUN_FILE, out / CURVES_FILE, out / CHECKPOINT_FILE
    if restart:
        clear_cell_files(out)
    elif (previous := run_status(run_path)) not in (None, "failed"):
        raise CellAlreadyDone(f"{out} already holds a finished run (status {previous}); pass --restart to train it again")

    def discard_failure() -> None:
        """A failed run (an exception) is no result: once its retry has started, its run.arrow (status failed) and
        traceback.txt go, so nothing reads the old failure as the cell's result; the retry writes its own."""
        if run_status(run_path) == "failed":
            remove(run_path)
        (out / TRACEBACK_FILE).unlink(missing_ok=True)

    ident = {"task": task_name, "variant": variant_label(cfg), "seed": str(seed), **(identity or {})}
    plugins = get_plugins()
    task = get_task(task_name)
    if isinstance(task, TaskSet):
        return _train_task_set(task, cfg, seed, out, ident, progress)
    trainer = PWMTrainer(task, cfg, seed)
    identity = cell_identity(task_name, ident["variant"], seed, cfg)
    if ckpt_path.exists():
        try:
            saved = checked_identity(load_checkpoint(ckpt_path), identity, ckpt_path, check_config=False)
            try:
                trainer.load_state_dict(saved)
            except (KeyError, TypeError, IndexError, RuntimeError) as exc:  # plain data, but not a checkpoint of this cell's shape
                raise CorruptCheckpoint(f"{ckpt_path} is not a checkpoint of this cell ({type(exc).__name__}: {str(exc)[:120]})") from None
        except CorruptCheckpoint as exc:  # never trusted: the cell starts again from scratch
            trainer = PWMTrainer(task, cfg, seed)  # nothing of the refused state stays
            print(f"warning: {exc}; moved to {discard_corrupt(ckpt_path).name}, training {out} from the start", file=sys.stderr)
    discard_failure()
    resumed_from = trainer.epoch
    plugins.emit(RunEvent("started", ident, step=trainer.epoch, config=cfg.to_dict()))
    bar = ProgressLine(cfg.max_epochs) if progress else None
    reporter = ProgressFile(out / PROGRESS_FILE, cfg.max_epochs)

    status, reason, failure, full_traceback = "ok", None, {}, None

    def progress_mark() -> tuple[int, int | None]:
        return trainer.epoch, trainer.pretraining.step if trainer.pretraining is not None else None

    saved_at = progress_mark() if ckpt_path.exists() else None  # where the checkpoint on disk stands

    def checkpoint() -> None:
        """Write the checkpoint unless the one on disk already holds this point (a stop request on a periodic
        checkpoint's boundary writes it once)."""
        nonlocal saved_at
        if saved_at != progress_mark():
            save_checkpoint({**trainer.state_dict(), IDENTITY_KEY: identity}, ckpt_path)
            write_table_atomic(_curves(trainer, ident), curves_path)
            saved_at = progress_mark()

    def pretrain_save() -> None:
        """Every few thousand pretraining steps and at the phase's end (then with pretrained_wm.pt first)."""
        if trainer.pretraining is not None and trainer.pretraining.done and cfg.pretrain_data:
            save_pretrained_wm(trainer, out / PRETRAINED_WM_FILE)
        if cfg.checkpoint_every:
            checkpoint()

    stop = StopRequest()

    def pretrain_step(step: int) -> None:
        if on_pretrain_step is not None:
            on_pretrain_step(trainer, step)
        stop.stop_here(checkpoint)  # a pretraining step is a boundary too

    try:
        with stop:  # a stop request ends training at the next boundary, checkpointed
            trainer.pretrain(save=pretrain_save, on_step=pretrain_step)
            if cfg.eval_untrained and cfg.eval_every and trainer.epoch == 0 and not trainer.curves:
                trainer.evaluate_untrained()
            while trainer.epoch < cfg.max_epochs:
                stop.stop_here(checkpoint)
                row = trainer.train_epoch()
                plugins.emit(RunEvent("metrics", ident, step=trainer.epoch, metrics={k: v for k, v in row.items() if isinstance(v, float)}))
                if bar is not None:
                    bar(row, resumed_from)
                reporter(row)
                if on_epoch is not None:
                    on_epoch(trainer, row)
                if cfg.checkpoint_every and trainer.epoch % cfg.checkpoint_every == 0 and trainer.epoch < cfg.max_epochs:
                    checkpoint()
            if not trainer.curves or trainer.curves[-1].get("eval_return") is None:
                final_eval = trainer.evaluate()
                if trainer.curves:
                    trainer.curves[-1].update(final_eval)
    except Diverged as exc:
        status, reason = "diverged", str(exc)
        failure = {"diverged_epoch": exc.epoch, "diverged_quantity": exc.quantity}
    except KeyboardInterrupt:
        raise  # the last epoch-boundary checkpoint stands (StopRequest wrote one when it could)
    except Exception as exc:  # noqa: BLE001 - a crashed cell is a result too
        status = "failed"
        reason, failure = failure_record(exc)
        full_traceback = failure["full_traceback"]

    row = _run_row(trainer, cfg, ident, status, reason, failure, plugins_versions=plugin_versions())
    row["threshold"] = threshold
    if threshold is not None:
        # only evaluations after learning started: an untrained actor crossing the threshold says nothing about the
        # dynamics model (a learning epoch logs its world-model updates)
        evals = [(r["env_steps"], r.get("eval_return")) for r in trainer.curves if r.get("wm_updates")]
        row["steps_to_threshold"] = steps_to_threshold([s for s, _ in evals], [v for _, v in evals], threshold)
    write_table_atomic(_curves(trainer, ident), curves_path)
    if status == "ok":
        save_policy(trainer, task_name, out / POLICY_FILE)  # before run.arrow: a finished cell always has it
    if full_traceback is not None:  # before run.arrow too: a failed run always has its traceback.txt
        write_text_atomic(full_traceback, out / TRACEBACK_FILE)
    write_table_atomic(run_table(row), run_path)
    if status == "ok":
        remove(ckpt_path)
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    plugins.emit(RunEvent("finished", ident, step=trainer.epoch, status=status, reason=reason))
    return CellResult(status, out, row)


def _curves(trainer: PWMTrainer, ident: dict[str, str]) -> pa.Table:
    """The cell's curves: pretraining rows (phase "pretrain", `epoch` = world-model steps on the dataset, every
    PRETRAIN_LOG_EVERY steps) then the epoch rows (phase "train")."""
    tables = []
    if trainer.pretraining is not None and trainer.pretraining.curves:
        tables.append(curves_table(trainer.pretraining.curves, {**ident, "phase": "pretrain"}))
    tables.append(curves_table(trainer.curves, {**ident, "phase": "train"}))
    if trainer.probe_curves:
        tables.append(curves_table(trainer.probe_curves, {**ident, "phase": "probe"}))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def total_steps(task_name: str, cfg: PWMConfig) -> int:
    """A cell's units of work, as its progress line and progress.json count them: epochs for a single task;
    for a task set, world-model steps plus every member's policy iterations."""
    from pwmbench.api import task as get_task

    task = get_task(task_name)
    if not isinstance(task, TaskSet):
        return cfg.max_epochs
    members = len(cfg.task_ids) if cfg.task_ids is not None else task.spec.n_tasks
    return cfg.wm_training_steps + cfg.max_epochs * members


def _train_task_set(taskset: TaskSet, cfg: PWMConfig, seed: int, out: Path, ident: dict[str, str], progress: bool) -> CellResult:
    """A task-set cell (pwm/multitask_cell.py) in this process: one run row per member task."""
    from pwmbench.pwm.multitask_cell import train_multitask_cell

    bar = ProgressLine(total_steps(taskset.spec.name, cfg)) if progress else None
    status = train_multitask_cell(taskset, cfg, seed, out, ident, progress=bar)
    return CellResult(status, out, read_table(out / RUN_FILE).to_pylist()[0])


def _run_row(trainer: PWMTrainer, cfg: PWMConfig, ident: dict[str, str], status: str, reason: str | None, failure: dict[str, Any], plugins_versions: dict[str, str | None]) -> dict[str, Any]:
    curves = trainer.curves
    evaluated = [r for r in curves if r.get("eval_return") is not None]
    untrained = next((r for r in evaluated if r["epoch"] == 0), {})  # epoch 0: the untrained actor (eval_untrained)
    trained = [r for r in evaluated if r["epoch"] > 0]
    evals = [r["eval_return"] for r in trained]
    rewards = [r["rewards"] for r in curves if r.get("rewards") is not None]
    fps = [r["fps"] for r in curves if r.get("fps") is not None and r.get("wm_updates")]
    esnr = {k: [r[k] for r in curves if r.get(k) is not None] for k in ("esnr_global", "esnr_pwm")}
    counts = trainer.parameter_counts()
    dyn = trainer.wm.dynamics
    row: dict[str, Any] = {
        **ident,
        "seed": int(ident["seed"]),
        "dynamics": cfg.dynamics,
        "dynamics_options": json.dumps(dyn.options(), sort_keys=True),
        "preset": cfg.preset,
        "status": status,
        "reason": reason,
        "diverged_epoch": failure.get("diverged_epoch"),
        "diverged_quantity": failure.get("diverged_quantity"),
        "traceback": failure.get("traceback"),
        "failed_in": failure.get("failed_in"),
        "threads": thread_count(),
        "epochs": trainer.epoch,
        "env_steps": trainer.env_steps,
        "wall_s": trainer.wall_s,
        "wm_recipe": "pwm-single",
        "pretrain_iterations": trainer.pretraining.step if trainer.pretraining is not None else 0,
        "pretrain_wall_s": trainer.pretraining.wall_s if trainer.pretraining is not None else 0.0,
        "final_return": evals[-1] if evals else None,
        "best_return": max(evals) if evals else None,
        "untrained_return": untrained.get("eval_return"),
        "untrained_success": untrained.get("eval_success"),
        "final_rewards": rewards[-1] if rewards else None,
        "best_rewards": max(rewards) if rewards else None,
        "fps": sum(fps) / len(fps) if fps else None,
        "esnr_global_median": statistics.median(esnr["esnr_global"]) if esnr["esnr_global"] else None,
        "esnr_pwm_median": statistics.median(esnr["esnr_pwm"]) if esnr["esnr_pwm"] else None,
        "params_total": counts["wm_total"],
        "params_dynamics": counts["wm_dynamics"],
        "params_encoder": counts["wm_encoder"],
        "params_reward": counts["wm_reward"],
        "params_actor": counts["actor"],
        "params_critic": counts["critic"],
        "nfe_per_step": dyn.evals_per_next,
        "nfe_per_train_step": dyn.evals_per_train_step,
        "num_envs": trainer.num_envs,
        "config": cfg.to_json(),
        "config_hash": config_hash(cfg),
        "schema_version": SCHEMA_VERSION,
        **final_model_quality(curves),
        **probe_summary(trainer.probe_curves, cfg.horizon),
        **trainer.task.spec.score_record(),
        "final_success": trained[-1].get("eval_success") if trained else None,
    }
    row.update(provenance(cfg.device, plugins_versions))
    return row

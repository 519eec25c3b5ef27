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

import hashlib
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pwmbench.errors import PwmbenchError
from pwmbench.interfaces import RunEvent, TaskSet
from pwmbench.plugins import get_plugins
from pwmbench.provenance import provenance
from pwmbench.pwm.checkpoint import load_checkpoint, save_checkpoint
from pwmbench.pwm.config import PWMConfig
from pwmbench.pwm.diagnostics import final_model_quality
from pwmbench.pwm.policy_file import POLICY_FILE, save_policy
from pwmbench.pwm.pretrain import PRETRAINED_WM_FILE, save_pretrained_wm
from pwmbench.pwm.trainer import Diverged, PWMTrainer
from pwmbench.results import SCHEMA_VERSION, curves_table, read_table, run_table, write_table_atomic
from pwmbench.stats import steps_to_threshold

CURVES_FILE, RUN_FILE, CHECKPOINT_FILE, PROGRESS_FILE = "curves.arrow", "run.arrow", "checkpoint.pt", "progress.json"
TRACEBACK_FILE = "traceback.txt"  # the full traceback of a failed cell (run.arrow's `traceback` column holds its start)


class CellAlreadyDone(PwmbenchError):
    """The output directory already holds a finished run."""


def run_status(path: str | os.PathLike[str]) -> str | None:
    """The status of a run file as a whole: "failed" when any row failed (an exception: the cell is trained again,
    resuming from its checkpoint), else "diverged" when any row diverged (a result: kept), else "ok"; None when
    there is no run file (the cell has not finished)."""
    if not Path(path).exists():
        return None
    statuses = set(read_table(path).column("status").to_pylist())
    return "failed" if "failed" in statuses else "diverged" if "diverged" in statuses else "ok"


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> Path:
    """Write a text file via a temporary file in the same directory and os.replace (never half-written)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class CellResult:
    status: str
    out_dir: Path
    row: dict[str, Any]


def variant_label(cfg: PWMConfig) -> str:
    if not cfg.dynamics_options:
        return cfg.dynamics
    return cfg.dynamics + ":" + ",".join(f"{k}={v}" for k, v in sorted(cfg.dynamics_options.items()))


def config_hash(cfg: PWMConfig) -> str:
    return hashlib.sha256(cfg.to_json().encode()).hexdigest()[:16]


def _plugin_versions() -> dict[str, str | None]:
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
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"epoch": row["epoch"], "max_epochs": self.total, "rewards": row.get("rewards"), "eval_return": self.last_eval, "time": now}))
        os.replace(tmp, self.path)


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
    run_path, curves_path, ckpt_path = out / RUN_FILE, out / CURVES_FILE, out / CHECKPOINT_FILE
    if restart:
        for path in (run_path, curves_path, ckpt_path, out / POLICY_FILE, out / PRETRAINED_WM_FILE, out / TRACEBACK_FILE):
            path.unlink(missing_ok=True)
    elif (previous := run_status(run_path)) not in (None, "failed"):
        raise CellAlreadyDone(f"{out} already holds a finished run (status {previous}); pass --restart to train it again")

    def discard_failure() -> None:
        """A failed run (an exception) is no result: once its retry has started, its run.arrow (status failed) and
        traceback.txt go, so nothing reads the old failure as the cell's result; the retry writes its own."""
        if run_status(run_path) == "failed":
            run_path.unlink()
        (out / TRACEBACK_FILE).unlink(missing_ok=True)

    ident = {"task": task_name, "variant": variant_label(cfg), "seed": str(seed), **(identity or {})}
    plugins = get_plugins()
    task = get_task(task_name)
    if isinstance(task, TaskSet):
        discard_failure()
        return _train_task_set(task, cfg, seed, out, ident, progress)
    trainer = PWMTrainer(task, cfg, seed)
    if ckpt_path.exists():
        trainer.load_state_dict(load_checkpoint(ckpt_path))
    discard_failure()
    resumed_from = trainer.epoch
    plugins.emit(RunEvent("started", ident, step=trainer.epoch, config=cfg.to_dict()))
    bar = ProgressLine(cfg.max_epochs) if progress else None
    reporter = ProgressFile(out / PROGRESS_FILE, cfg.max_epochs)

    status, reason, failure, full_traceback = "ok", None, {}, None

    def checkpoint() -> None:
        save_checkpoint(trainer.state_dict(), ckpt_path)
        write_table_atomic(_curves(trainer, ident), curves_path)

    def pretrain_save() -> None:
        """Every few thousand pretraining steps and at the phase's end (then with pretrained_wm.pt first)."""
        if trainer.pretraining is not None and trainer.pretraining.done and cfg.pretrain_data:
            save_pretrained_wm(trainer, out / PRETRAINED_WM_FILE)
        if cfg.checkpoint_every:
            checkpoint()

    try:
        trainer.pretrain(save=pretrain_save, on_step=(lambda step: on_pretrain_step(trainer, step)) if on_pretrain_step else None)
        while trainer.epoch < cfg.max_epochs:
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
        checkpoint()
        raise
    except Exception as exc:  # noqa: BLE001 - a crashed cell is a result too
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
        failure, full_traceback = {"traceback": traceback.format_exc(limit=8)}, traceback.format_exc()

    row = _run_row(trainer, cfg, ident, status, reason, failure, plugins_versions=_plugin_versions())
    row["threshold"] = threshold
    if threshold is not None:
        evals = [(r["env_steps"], r.get("eval_return")) for r in trainer.curves]
        row["steps_to_threshold"] = steps_to_threshold([s for s, _ in evals], [v for _, v in evals], threshold)
    write_table_atomic(_curves(trainer, ident), curves_path)
    if status == "ok":
        save_policy(trainer, task_name, out / POLICY_FILE)  # before run.arrow: a finished cell always has it
    if full_traceback is not None:  # before run.arrow too: a failed run always has its traceback.txt
        write_text_atomic(full_traceback, out / TRACEBACK_FILE)
    write_table_atomic(run_table(row), run_path)
    if status == "ok":
        ckpt_path.unlink(missing_ok=True)
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
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def total_steps(task_name: str, cfg: PWMConfig) -> int:
    """A cell's units of work, as its progress line and progress.json count them: epochs for a single task;
    for a task set, world-model steps plus every member's policy iterations."""
    from pwmbench.api import task as get_task

    task = get_task(task_name)
    if not isinstance(task, TaskSet):
        return cfg.max_epochs
    members = len(cfg.task_ids) if cfg.task_ids is not None else task.spec.n_tasks
    return cfg.offline_wm_iterations + cfg.max_epochs * members


def _train_task_set(taskset: TaskSet, cfg: PWMConfig, seed: int, out: Path, ident: dict[str, str], progress: bool) -> CellResult:
    """A task-set cell (pwm/multitask_cell.py): one run row per member task."""
    from pwmbench.pwm.multitask_cell import train_multitask_cell, write_multitask_results

    total = total_steps(taskset.spec.name, cfg)
    bar = ProgressLine(total) if progress else None
    status, rows, curves = train_multitask_cell(taskset, cfg, seed, out, ident, progress=bar, reporter=ProgressFile(out / PROGRESS_FILE, total))
    write_multitask_results(out, rows, curves)
    if status == "ok":
        (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    return CellResult(status, out, rows[0])


def _run_row(trainer: PWMTrainer, cfg: PWMConfig, ident: dict[str, str], status: str, reason: str | None, failure: dict[str, Any], plugins_versions: dict[str, str | None]) -> dict[str, Any]:
    curves = trainer.curves
    evals = [r["eval_return"] for r in curves if r.get("eval_return") is not None]
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
        "epochs": trainer.epoch,
        "env_steps": trainer.env_steps,
        "wall_s": trainer.wall_s,
        "wm_recipe": "pwm-single",
        "pretrain_iterations": trainer.pretraining.step if trainer.pretraining is not None else 0,
        "pretrain_wall_s": trainer.pretraining.wall_s if trainer.pretraining is not None else 0.0,
        "final_return": evals[-1] if evals else None,
        "best_return": max(evals) if evals else None,
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
        **trainer.task.spec.score_record(),
        "final_success": next((r.get("eval_success") for r in reversed(curves) if r.get("eval_return") is not None), None),
    }
    row.update(provenance(cfg.device, plugins_versions))
    return row

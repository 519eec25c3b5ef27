"""One task-set cell (set × variant × seed): the world model trained once on the dataset, then every member's
policy in it; `curves.arrow` and `run.arrow` (one row per member) written atomically, like a single-task cell.

The world model is shared by all of the variant's member policies of that seed, which is why the cell is the set
and not the member. Resume: the checkpoint holds the world model (saved when its phase ends and every
`WM_CHECKPOINT_EVERY` steps) and every finished member's results; an interrupted member restarts from its
first iteration. A member that fails or diverges gets its row with the status and the others go on; a world
model that diverges or fails ends the cell with that status on every member's row. Failed members (their full
tracebacks in `traceback.txt`) are retried when the cell is started again; diverged ones are results and stay.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

import pyarrow as pa

from pwmbench.data.dataset import OfflineDataset
from pwmbench.errors import ConfigError
from pwmbench.interfaces import RunEvent, TaskSet
from pwmbench.nn.world_model import count_parameters
from pwmbench.plugins import get_plugins
from pwmbench.provenance import provenance
from pwmbench.pwm.checkpoint import load_checkpoint, save_checkpoint
from pwmbench.pwm.config import PWMConfig
from pwmbench.pwm.diagnostics import final_model_quality
from pwmbench.pwm.multitask import OfflineWorldModel, TaskPolicy
from pwmbench.pwm.trainer import Diverged
from pwmbench.results import SCHEMA_VERSION, curves_table, run_table, write_table_atomic

__all__ = ["WM_CHECKPOINT_EVERY", "train_multitask_cell"]

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


def train_multitask_cell(
    taskset: TaskSet,
    cfg: PWMConfig,
    seed: int,
    out: Path,
    ident: dict[str, str],
    *,
    progress: Any = None,
    reporter: Any = None,
) -> tuple[str, list[dict[str, Any]], pa.Table]:
    """Train the cell into `out` (checkpoint there); returns (overall status, run rows, curves table). The caller
    writes the tables (cell.py)."""
    from pwmbench.pwm.cell import CHECKPOINT_FILE, _plugin_versions, config_hash

    plugins = get_plugins()
    dataset = open_dataset(taskset, cfg)
    ids = _member_ids(taskset, cfg, dataset)
    owm = OfflineWorldModel(taskset, dataset, cfg, seed)
    ckpt_path = out / CHECKPOINT_FILE
    state: dict[str, Any] = {"wm_rows": [], "members": {}}
    if ckpt_path.exists():
        saved = load_checkpoint(ckpt_path)
        owm.load_state_dict(saved["owm"])
        dataset.load_usage_state(saved["usage"])
        state = saved["state"]
        # a member that failed (an exception) is no result: a cell started again retries it (from its first
        # iteration, as an interrupted member restarts); finished and diverged members are kept
        state["members"] = {k: m for k, m in state["members"].items() if m["status"] != "failed"}
    plugins.emit(RunEvent("started", ident, step=owm.iteration, config=cfg.to_dict()))

    def checkpoint() -> None:
        save_checkpoint({"owm": owm.state_dict(), "usage": dataset.usage_state(), "state": state}, ckpt_path)

    def report(done: int, row: dict[str, Any]) -> None:
        if reporter is not None:
            reporter({**row, "epoch": done})
        if progress is not None:
            progress({**row, "epoch": done}, 0)

    wm_status, wm_reason, wm_failure = "ok", None, {}
    try:
        while owm.iteration < cfg.offline_wm_iterations:
            block = min(WM_CHECKPOINT_EVERY - owm.iteration % WM_CHECKPOINT_EVERY, cfg.offline_wm_iterations - owm.iteration)
            rows = owm.train(block, log_every=WM_LOG_EVERY)
            state["wm_rows"] += rows
            for row in rows:
                plugins.emit(RunEvent("metrics", {**ident, "phase": "world_model"}, step=row["epoch"], metrics={k: float(v) for k, v in row.items() if k != "epoch"}))
            report(owm.iteration, rows[-1])
            checkpoint()
    except Diverged as exc:
        wm_status, wm_reason = "diverged", f"world model: {exc}"
        wm_failure = {"diverged_epoch": exc.epoch, "diverged_quantity": f"world model {exc.quantity}"}
    except KeyboardInterrupt:
        checkpoint()
        raise
    except Exception as exc:  # noqa: BLE001 - a crashed cell is a result too
        wm_status, wm_reason = "failed", f"world model: {type(exc).__name__}: {exc}"
        wm_failure = {"traceback": traceback.format_exc(limit=8), "full_traceback": traceback.format_exc()}

    usage = dataset.usage()
    for k, task_id in enumerate(ids):
        key = str(task_id)
        if key in state["members"]:
            continue
        member = taskset.tasks[task_id]
        if wm_status != "ok":
            state["members"][key] = {"status": wm_status, "reason": wm_reason, "failure": wm_failure, "curves": [], "iterations": 0, "wall_s": 0.0}
            continue
        policy, curves = None, []
        status, reason, failure = "ok", None, {}
        started = time.perf_counter()
        try:
            policy = TaskPolicy(taskset, task_id, owm.wm, dataset, cfg, seed, rew_rms=owm.rew_rms)
            while policy.iteration < cfg.max_epochs:
                row = policy.train_iteration()
                if policy.iteration % cfg.log_every == 0 or policy.iteration == cfg.max_epochs or "eval_return" in row:
                    curves.append(row)
                plugins.emit(RunEvent("metrics", {**ident, "member": member}, step=policy.iteration, metrics={k: float(v) for k, v in row.items() if k != "epoch"}))
                report(cfg.offline_wm_iterations + k * cfg.max_epochs + policy.iteration, row)
            if not curves or curves[-1].get("eval_return") is None:
                final = policy.evaluate()
                if curves:
                    curves[-1].update(final)
                else:
                    curves.append({"epoch": policy.iteration, "wall_s": policy.wall_s, **final})
        except Diverged as exc:
            status, reason = "diverged", str(exc)
            failure = {"diverged_epoch": exc.epoch, "diverged_quantity": exc.quantity}
        except KeyboardInterrupt:
            checkpoint()
            raise
        except Exception as exc:  # noqa: BLE001
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
            failure = {"traceback": traceback.format_exc(limit=8), "full_traceback": traceback.format_exc()}
        state["members"][key] = {
            "status": status, "reason": reason, "failure": failure, "curves": curves,
            "iterations": policy.iteration if policy is not None else 0, "wall_s": time.perf_counter() - started,
            "params": {"actor": count_parameters(policy.actor), "critic": count_parameters(policy.critic)} if policy is not None else {},
        }  # fmt: skip
        checkpoint()

    counts = owm.wm.component_parameters()
    base = {
        **{k: v for k, v in ident.items() if k != "task"},
        "seed": int(ident["seed"]),
        "taskset": taskset.spec.name,
        "dynamics": cfg.dynamics,
        "dynamics_options": json.dumps(owm.wm.dynamics.options(), sort_keys=True),
        "preset": cfg.preset,
        "params_total": count_parameters(owm.wm),
        "params_dynamics": counts["dynamics"],
        "params_encoder": counts["encoder"],
        "params_reward": counts["reward"],
        "nfe_per_step": owm.wm.dynamics.evals_per_next,
        "nfe_per_train_step": owm.wm.dynamics.evals_per_train_step,
        "config": cfg.to_json(),
        "config_hash": config_hash(cfg),
        "schema_version": SCHEMA_VERSION,
        "data_dir": str(dataset.directory),
        "wm_iterations": owm.iteration,
        "wm_recipe": owm.recipe.name,
        **provenance(cfg.device, _plugin_versions()),
    }
    rows, tables = [], [curves_table(state["wm_rows"], {**ident, "member": "", "phase": "world_model"})]
    for task_id in ids:
        m = state["members"][str(task_id)]
        member = taskset.tasks[task_id]
        evals = [r for r in m["curves"] if r.get("eval_return") is not None]
        use = usage.get(task_id, {})
        rows.append({
            **base,
            "task": f"{taskset.spec.name}/{member}",
            "task_id": task_id,
            "status": m["status"], "reason": m["reason"],
            "diverged_epoch": m["failure"].get("diverged_epoch"), "diverged_quantity": m["failure"].get("diverged_quantity"),
            "traceback": m["failure"].get("traceback"),
            "epochs": m["iterations"], "env_steps": 0, "wall_s": owm.wall_s + m["wall_s"],
            "final_return": evals[-1]["eval_return"] if evals else None,
            "best_return": max(r["eval_return"] for r in evals) if evals else None,
            "final_score": evals[-1]["eval_score"] if evals else None,
            "best_score": max(r["eval_score"] for r in evals) if evals else None,
            "params_actor": m.get("params", {}).get("actor"), "params_critic": m.get("params", {}).get("critic"),
            "data_episodes": use.get("episodes"), "data_transitions": use.get("transitions"),
            "data_episodes_used": use.get("episodes_used"), "data_transitions_sampled": use.get("transitions_sampled"),
            **final_model_quality(m["curves"]),
            **get_plugins().tasks.get(member)().spec.score_record(),
            "final_success": evals[-1].get("eval_success") if evals else None,
        })  # fmt: skip
        tables.append(curves_table(m["curves"], {**ident, "task": f"{taskset.spec.name}/{member}", "member": member, "phase": "policy"}))
    tracebacks: dict[str, list[str]] = {}  # full traceback → the members it failed (a world model's failure fails them all)
    for task_id in ids:
        m = state["members"][str(task_id)]
        if m["status"] == "failed":
            text = m["failure"].get("full_traceback") or m["failure"].get("traceback") or ""
            tracebacks.setdefault(f"{m['reason']}\n{text}", []).append(f"{taskset.spec.name}/{taskset.tasks[task_id]}")
    if tracebacks:  # written before the caller writes run.arrow: a failed cell always has its traceback.txt
        from pwmbench.pwm.cell import TRACEBACK_FILE, write_text_atomic

        write_text_atomic("\n".join(f"=== {', '.join(members)}: {text}" for text, members in tracebacks.items()), out / TRACEBACK_FILE)
    statuses = {r["status"] for r in rows}
    # any failed member makes the cell "failed": a run started again retries it (diverged members are results)
    overall = "ok" if statuses == {"ok"} else ("failed" if "failed" in statuses else "diverged")
    plugins.emit(RunEvent("finished", ident, step=owm.iteration, status=overall, reason=None if overall == "ok" else "; ".join(
        f"{r['task']}: {r['reason']}" for r in rows if r["status"] != "ok")))  # fmt: skip
    return overall, rows, pa.concat_tables(tables)


def write_multitask_results(out: Path, rows: list[dict[str, Any]], curves: pa.Table) -> None:
    from pwmbench.pwm.cell import CURVES_FILE, RUN_FILE

    write_table_atomic(curves, out / CURVES_FILE)
    write_table_atomic(pa.concat_tables([run_table(r) for r in rows]), out / RUN_FILE)

"""Arrow result files: the per-step curves table and the one-row run table of a training cell.

Files are written to a temporary name in the same directory and renamed (atomic on POSIX), so a reader
never sees half a file, with a checksum beside them (pwmbench/results/atomic_files.py), so a garbled one is never
believed. Provenance lives in columns (not only schema metadata), because a dataset read from many files keeps
only the first file's metadata.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyarrow import ipc

from pwmbench.errors import PwmbenchError
from pwmbench.results.atomic_files import ChecksumMismatch, verify_checksum, write_atomic

SCHEMA_VERSION = 8  # 8: untrained_return / untrained_success (the actor's evaluation before any policy update, curves epoch 0); 7: model_reward_error_mean_H / model_reward_ratio_mean_H (the mean-reward predictor of the model-quality gate); 6: threads (torch threads the cell computed with), failed_in (the plugin an exception came from); 5: gradient probe (curves phase "probe", grad_* columns; run-row grad_*_median); 4: score_kind/score_random/score_reference/final_success (fixed score references); 3: model_error_* (held-out diagnostics), phase (pretrain|train), pi_* (TD-MPC2 recipe); 2: task-set columns (taskset, task_id, scores, data use; curves eval_score, eval_episodes)

# Curves: identity, counters, then every metric (PWM's names first). All metrics are float64, null when absent.
CURVE_KEYS = ("epoch", "env_steps", "wall_s")
CURVE_METRICS = (
    "rewards", "policy_loss", "policy_discounted_loss", "episode_lengths", "episodes",
    "actor_loss", "value_loss", "wm_loss", "dynamics_loss", "reward_loss",
    "actor_grad_norm", "critic_grad_norm", "wm_grad_norm", "actor_std", "actor_lr", "critic_lr", "model_lr",
    "fps", "episode_end", "early_termination",
    "rew_rms_mean", "rew_rms_var", "ret_rms_mean", "ret_rms_var",
    "eval_return", "eval_success", "eval_episode_length", "eval_score", "eval_episodes",
    "esnr_global", "esnr_pwm",
    "time_env", "time_imagine", "time_actor_backward", "time_critic", "time_wm", "time_esnr", "time_epoch",
    "wm_updates", "nfe",
    # TD-MPC2's world-model recipe for task sets (pwm/recipes.py): its policy prior, world-model phase only
    "pi_loss", "pi_grad_norm", "pi_entropy", "pi_scale",
    # model quality on the held-out evaluation episodes (pwm/diagnostics.py), on evaluation epochs
    "model_error_1", "model_error_copy", "model_error_ratio_copy", "model_error_H", "model_error_copy_H",
    "model_error_ratio_copy_H", "model_reward_error_H", "model_reward_error_mean_H", "model_reward_ratio_mean_H", "model_windows",
    # gradient quality against the simulator (pwm/gradient_probe.py): rows of phase "probe", one per horizon
    "probe_horizon", "grad_sim_cosine", "grad_sim_rel_error", "grad_wm_norm", "grad_sim_norm",
    "grad_wm_esnr_global", "grad_wm_esnr_pwm", "grad_sim_esnr_global", "grad_sim_esnr_pwm",
    "grad_sim_var", "grad_sim_rel_std", "time_probe",
)
CURVES_SCHEMA = pa.schema(
    [pa.field("epoch", pa.int64()), pa.field("env_steps", pa.int64()), pa.field("wall_s", pa.float64())]
    + [pa.field(name, pa.float64()) for name in CURVE_METRICS],
    metadata={"pwmbench_schema_version": str(SCHEMA_VERSION), "table": "curves"},
)


# Runs: one row per cell. Explicit types so that many files read as one dataset (pyarrow.dataset, duckdb,
# polars) even when a column is null in some of them.
_S, _I, _F = pa.string(), pa.int64(), pa.float64()
RUN_FIELDS = [
    ("suite", _S), ("task", _S), ("variant", _S), ("seed", _I), ("dynamics", _S), ("dynamics_options", _S), ("preset", _S),
    ("status", _S), ("reason", _S), ("diverged_epoch", _I), ("diverged_quantity", _S), ("traceback", _S), ("failed_in", _S),
    ("threads", _I),
    ("epochs", _I), ("env_steps", _I), ("wall_s", _F), ("final_return", _F), ("best_return", _F), ("untrained_return", _F), ("untrained_success", _F),
    ("final_rewards", _F), ("best_rewards", _F), ("threshold", _F), ("steps_to_threshold", _F), ("fps", _F),
    ("esnr_global_median", _F), ("esnr_pwm_median", _F),
    ("params_total", _I), ("params_dynamics", _I), ("params_encoder", _I), ("params_reward", _I),
    ("params_actor", _I), ("params_critic", _I), ("nfe_per_step", _I), ("nfe_per_train_step", _I), ("num_envs", _I),
    ("config", _S), ("config_hash", _S), ("schema_version", _I),
    ("pwmbench_version", _S), ("git_commit", _S), ("python_version", _S), ("platform", _S), ("device", _S),
    ("device_name", _S), ("cpu_model", _S), ("cpu_count", _I), ("plugins", _S),
    ("torch_version", _S), ("numpy_version", _S), ("pyarrow_version", _S), ("pluggy_version", _S),
    ("warp_lang_version", _S), ("mujoco_version", _S), ("dm_control_version", _S), ("metaworld_version", _S),
    # task sets (multitask, offline): one row per member task of a (set, variant, seed) cell
    ("taskset", _S), ("task_id", _I), ("final_score", _F), ("best_score", _F), ("data_dir", _S),
    ("wm_iterations", _I), ("data_episodes", _I), ("data_transitions", _I), ("data_episodes_used", _I),
    ("data_transitions_sampled", _I),
    # model quality at the last evaluation (pwm/diagnostics.py)
    ("model_error_1_final", _F), ("model_error_copy_final", _F), ("model_error_ratio_copy_final", _F),
    ("model_error_H_final", _F), ("model_error_copy_H_final", _F), ("model_error_ratio_copy_H_final", _F),
    ("model_reward_error_H_final", _F), ("model_reward_error_mean_H_final", _F), ("model_reward_ratio_mean_H_final", _F),
    # world-model recipe and single-task pretraining (pwm/recipes.py, pwm/pretrain.py)
    ("wm_recipe", _S), ("pretrain_iterations", _I), ("pretrain_wall_s", _F),
    # the task's score definition at run time (TaskSpec.score_record) and the success rate it may be scored on
    ("score_kind", _S), ("score_random", _F), ("score_reference", _F), ("score_source", _S), ("final_success", _F),
    # gradient quality (pwm/gradient_probe.py) at the training horizon: medians over the run's last half of probes
    ("grad_probe_horizon", _I), ("grad_sim_cosine_median", _F), ("grad_sim_rel_error_median", _F),
    ("grad_wm_esnr_global_median", _F), ("grad_sim_esnr_global_median", _F), ("grad_sim_rel_std_median", _F),
    ("time_probe_mean", _F),
]
RUNS_SCHEMA = pa.schema([pa.field(n, t) for n, t in RUN_FIELDS], metadata={"pwmbench_schema_version": str(SCHEMA_VERSION), "table": "runs"})
STATUSES = ("ok", "failed", "diverged")


def write_table_atomic(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write an Arrow IPC file whole (a temporary file, then a rename) with its checksum beside it (`<name>.sha256`)."""
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return write_atomic(sink.getvalue().to_pybytes(), path, checksum=True)


def curves_table(rows: Sequence[Mapping[str, Any]], identity: Mapping[str, str] | None = None) -> pa.Table:
    """Rows of metrics → the curves table; unknown metric names are an error (they would be lost silently)."""
    known = set(CURVE_KEYS) | set(CURVE_METRICS)
    for row in rows:
        extra = set(row) - known
        if extra:
            raise KeyError(f"metrics not in the curves schema: {sorted(extra)}; add them to CURVE_METRICS")
    columns = {f.name: [row.get(f.name) for row in rows] for f in CURVES_SCHEMA}
    table = pa.Table.from_pydict(columns, schema=CURVES_SCHEMA)
    for i, (key, value) in enumerate((identity or {}).items()):
        table = table.add_column(i, pa.field(key, pa.string()), pa.array([value] * len(rows), pa.string()))
    return table


def run_table(row: Mapping[str, Any]) -> pa.Table:
    """One run row in RUNS_SCHEMA; a key outside the schema is an error (it would be lost silently)."""
    extra = set(row) - set(RUNS_SCHEMA.names)
    if extra:
        raise KeyError(f"run-row keys not in RUNS_SCHEMA: {sorted(extra)}")
    return pa.Table.from_pylist([{name: row.get(name) for name in RUNS_SCHEMA.names}], schema=RUNS_SCHEMA)


class NewerSchema(PwmbenchError, ValueError):
    """A table written by a newer pwmbench: never moved aside or rewritten by this one (it is someone's result)."""


class UnreadableTable(ValueError):
    """A result file that exists but cannot be read (truncated, garbled): named, never guessed at."""


def read_dir(results: str | os.PathLike[str], filename: str, skipped: list[str] | None = None) -> pa.Table:
    """Every `filename` (run.arrow or curves.arrow) under `results`, concatenated (schemas unified). An unreadable
    file raises UnreadableTable naming it — or, with a `skipped` list, is left out and listed there ("path: why")."""
    paths = sorted(Path(results).rglob(filename))
    if not paths:
        raise FileNotFoundError(f"no {filename} under {results}")
    tables = []
    for p in paths:
        try:
            tables.append(read_table(p))
        except UnreadableTable as exc:
            if skipped is None:
                raise
            skipped.append(str(exc))
    if not tables:
        raise FileNotFoundError(f"no readable {filename} under {results} ({len(paths)} unreadable)")
    return pa.concat_tables(tables, promote_options="permissive")


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """Read an Arrow IPC file written by pwmbench, checked against its checksum; refuse a newer schema version than
    this code knows."""
    try:
        verify_checksum(path)
    except ChecksumMismatch as exc:
        raise UnreadableTable(str(exc)) from None
    try:
        with ipc.open_file(path) as reader:
            table = reader.read_all()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise UnreadableTable(f"{path}: not a readable Arrow file ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
    raw = (table.schema.metadata or {}).get(b"pwmbench_schema_version", b"0")
    try:
        version = int(raw)
    except ValueError:
        raise UnreadableTable(f"{path}: its schema version {raw[:40]!r} is not a number: not a table pwmbench wrote") from None
    if version > SCHEMA_VERSION:
        raise NewerSchema(f"{path} has result schema version {version}; this pwmbench reads ≤ {SCHEMA_VERSION} — upgrade pwmbench")
    return table

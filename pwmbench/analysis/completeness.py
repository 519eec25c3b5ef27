"""What a verdict is made from must be what the suite planned, once: the completeness and identity audit of a
results directory, run by `score` and `report` before any statistic.

Why: a verdict computed on what happens to be on disk can flip without a word — a cell missing (its seed's pair
drops out), an empty or unreadable run.arrow, a backup copy of a cell directory (`flow/42-backup`) or a stray
`old/run.arrow` scored as one more run, a run.arrow copied from another cell. So every run.arrow is read from where
the suite's plan puts it and must hold that cell's rows:

- planned cells (suite.json's configs × seeds) without a run.arrow: **missing**;
- a run.arrow that cannot be read (checksum, Arrow) or holds no row: **unreadable** / **empty**;
- a run.arrow whose rows name another task, variant or seed than its directory, or another config than the suite
  planned for that cell (config hash): **misplaced** — left out;
- a run.arrow anywhere else under the directory: **stray** — left out;
- one run (task, variant, seed) in two rows: **duplicated** — the first kept.

Every problem is named; a verdict with any of them cannot be "accepted" (scoring.py turns it inconclusive).
Without suite.json's plan (results from elsewhere), the directory layout alone is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pwmbench.results.tables import UnreadableTable, read_table

__all__ = ["Loaded", "load_checked"]

CELLS_DIR = "cells"
REQUIRED_COLUMNS = ("task", "variant", "seed", "status")


def _safe_name(text: str) -> str:
    from pwmbench.suite.spec import safe_name

    return safe_name(text)


def _config_hashes(config: dict[str, Any]) -> set[str]:
    """The config hashes a run row of this planned config may carry: today's (without the invocation's permissions)
    and the one written before they were left out."""
    from pwmbench.pwm.config import INVOCATION_KEYS
    from pwmbench.results.cell_files import identity_hash

    return {identity_hash({k: v for k, v in config.items() if k not in INVOCATION_KEYS}), identity_hash({**config, **{k: False for k in INVOCATION_KEYS}})}


class Loaded:
    """Rows kept for scoring, and every problem found (one line each)."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.curves: list[dict[str, Any]] = []
        self.problems: list[str] = []


def _plan(suite: dict[str, Any]) -> dict[Path, tuple[str, str, int, dict[str, Any] | None]]:
    """Relative cell directory → (task, variant, seed, config) of every planned cell (empty without a plan)."""
    configs, seeds = suite.get("configs"), suite.get("seeds")
    if not isinstance(configs, dict) or not isinstance(seeds, list):
        return {}
    plan = {}
    for key, config in configs.items():
        task, _, variant = key.partition("|")
        for seed in seeds:
            plan[Path(CELLS_DIR, _safe_name(task), _safe_name(variant), str(seed))] = (task, variant, int(seed), config if isinstance(config, dict) else None)
    return plan


def _identity_problem(rows: list[dict[str, Any]], where: Path, planned: tuple[str, str, int, dict[str, Any] | None] | None) -> str | None:
    """Why the rows do not belong in `where` (cells/<task>/<variant>/<seed>), or None."""
    hashes = _config_hashes(planned[3]) if planned is not None and planned[3] is not None else None
    parts = where.parts
    for row in rows:
        cell_task = row.get("taskset") or row.get("task")
        found = (_safe_name(str(cell_task)), _safe_name(str(row.get("variant"))), str(row.get("seed")))
        if len(parts) != 4 or parts[0] != CELLS_DIR or found != tuple(parts[1:]):
            return f"its rows are {cell_task} {row.get('variant')} seed {row.get('seed')}"
        if hashes is not None and row.get("config_hash") and row["config_hash"] not in hashes:
            return f"its config (hash {row['config_hash']}) is not the one the suite planned for this cell"
    return None


def load_checked(results: Path, suite: dict[str, Any], curves: bool) -> Loaded:
    """Every run.arrow (and its curves.arrow) under `results`, checked against the plan and the layout."""
    out = Loaded()
    plan = _plan(suite)
    found = sorted(results.rglob("run.arrow"))
    present = {p.parent.relative_to(results) for p in found}
    for where in sorted(set(plan) - present):
        task, variant, seed, _ = plan[where]
        out.problems.append(f"missing: {task} {variant} seed {seed} has no {where / 'run.arrow'}")
    seen: set[tuple[Any, ...]] = set()
    for path in found:
        where = path.parent.relative_to(results)
        if plan and where not in plan:
            out.problems.append(f"stray: {path} is not a cell of this suite (left out)")
            continue
        try:
            rows = read_table(path).to_pylist()
        except (UnreadableTable, ValueError) as exc:
            out.problems.append(f"unreadable: {exc}")
            continue
        if not rows:
            out.problems.append(f"empty: {path} holds no run row")
            continue
        lacking = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
        if lacking:
            out.problems.append(f"unreadable: {path} lacks the column(s) {', '.join(lacking)}: not a run table pwmbench wrote")
            continue
        why = _identity_problem(rows, where, plan.get(where))
        if why is not None:
            out.problems.append(f"misplaced: {path} — {why} (left out)")
            continue
        kept = []
        for row in rows:
            key = (row.get("task"), row.get("variant"), row.get("seed"))
            if key in seen:
                out.problems.append(f"duplicated: {row.get('task')} {row.get('variant')} seed {row.get('seed')} appears twice (in {path}; the first kept)")
                continue
            seen.add(key)
            kept.append(row)
        out.runs += kept
        if curves and (path.parent / "curves.arrow").exists():
            try:
                out.curves += read_table(path.parent / "curves.arrow").to_pylist()
            except (UnreadableTable, ValueError) as exc:
                out.problems.append(f"unreadable: {exc}")
    return out

"""Synthetic result directories in pwmbench's exact format, for scoring and report tests."""

import json
from pathlib import Path

import pyarrow as pa

from pwmbench.pwm.config import resolve_config
from pwmbench.results.tables import curves_table, run_table, write_table_atomic

SEEDS = (42, 123, 456, 1, 2, 3, 4, 5, 6, 7, 8, 9)
TRAINED = 0.5  # a world model's held-out error ratio against the trivial predictors (below 1: it has learned)


def write_results(root: Path, returns: dict, *, statuses=None, params=None, wall=None, thresholds=None, suite_extra=None, scores=None, first_eval=None, suite_json=True, probe=None, quality=None, curve=None, untrained=None):
    """returns: {(task, variant): [per-seed final returns]} (seeds 42, 123, 456, then 1, 2, ...); writes cells, curves
    and suite.json.

    quality: {variant: ratio} of the model-quality columns (H-step and reward ratios; default TRAINED, a trained
    model; None in the dict: not measured); curve: {(task, variant): [per-seed [eval returns at epochs 1, 2, 3]]}
    instead of the default ramp to the final return;
    scores: {task: (random, reference)} recorded in the run rows as the task's fixed references (none: fallback);
    first_eval: the first evaluation return of every run (default: a third of its final return);
    probe: {(task, variant): [per-seed gradient cosine]} → probe curve rows (horizon 4) and the run rows' median;
    untrained: every run's untrained_return (default: none recorded, as before result schema 8)."""
    statuses, params, wall = statuses or {}, params or {}, wall or {}
    variants = sorted({v for _, v in returns})
    for (task, variant), values in returns.items():
        for seed, value in zip(SEEDS, values):
            cfg = resolve_config({"dynamics": "flow" if variant.startswith("flow") else "mlp", "max_epochs": 3})
            ident = {"suite": "synthetic", "task": task, "variant": variant, "seed": str(seed)}
            rows = [
                {"epoch": e, "env_steps": 100 * e, "wall_s": float(e), "eval_return": (first_eval if first_eval is not None and e == 1 else value * e / 3), "dynamics_loss": 1.0 / e, "actor_grad_norm": 0.1 * e, "critic_grad_norm": 1.0, "wm_grad_norm": 2.0}
                for e in (1, 2, 3)
            ]
            if curve and (task, variant) in curve:
                for row, value_at in zip(rows, curve[(task, variant)][SEEDS.index(seed)]):
                    row["eval_return"] = value_at
            ratio = (quality or {}).get(variant, TRAINED)
            ratio = None if ratio is None else ratio * (1 + 0.05 * SEEDS.index(seed))
            cell = root / "cells" / task.replace("/", "__") / variant / str(seed)
            table = curves_table(rows, {**ident, "phase": "train"})
            cosine = (probe or {}).get((task, variant))
            if cosine is not None:
                c = cosine[SEEDS.index(seed)]
                probe_rows = [{"epoch": e, "env_steps": 100 * e, "probe_horizon": 4.0, "grad_sim_cosine": c, "grad_sim_rel_error": 1 - c, "time_probe": 0.1} for e in (1, 2, 3)]
                table = pa.concat_tables([table, curves_table(probe_rows, {**ident, "phase": "probe"})])
            write_table_atomic(table, cell / "curves.arrow")
            threshold = (thresholds or {}).get(task)
            steps = next((r["env_steps"] for r in rows if threshold is not None and r["eval_return"] >= threshold), None)
            status = statuses.get((task, variant, seed), "ok")
            write_table_atomic(
                run_table(
                    {
                        **ident, "seed": seed, "dynamics": cfg.dynamics, "status": status, "final_return": (value if curve is None or (task, variant) not in curve else rows[-1]["eval_return"]) if status == "ok" else None,
                        "epochs": 3, "env_steps": 300, "wall_s": wall.get(variant, 10.0), "params_total": params.get(variant, 1000),
                        "config": cfg.to_json(), "threshold": threshold, "steps_to_threshold": steps, "untrained_return": untrained,
                        "reason": None if status == "ok" else "wm_loss became nan at epoch 2",
                        "model_error_ratio_copy_H_final": ratio, "model_reward_ratio_mean_H_final": ratio,
                        **({"grad_sim_cosine_median": (probe or {})[(task, variant)][SEEDS.index(seed)], "grad_probe_horizon": 4}
                           if (task, variant) in (probe or {}) else {}),
                        **({"score_kind": "return", "score_random": scores[task][0], "score_reference": scores[task][1], "score_source": "test"}
                           if scores and task in scores else {}),
                    }
                ),
                cell / "run.arrow",
            )
    suite = {"name": "synthetic", "baseline": "mlp", "parity_tolerance": 2.0, "variants": [{"name": v, "dynamics": v, "options": {}, "declared": {}} for v in variants]}
    suite.update(suite_extra or {})
    if suite_json:
        (root / "suite.json").write_text(json.dumps(suite))
    return root

"""Has each variant learned at all? Its final score against its own untrained actor's, and the one-line reading of
what a result may be used for.

A comparison of dynamics models means something only when the policies trained on them learned: two untrained actors
differ by noise, and a decision between them is a decision about nothing (W15). Every single-task run records the
evaluation of its actor before any policy update (`untrained_return`, curves epoch 0). Per variant, the gain is the
final score minus that untrained score, both on the task's normalised scale, averaged over runs with a stratified
bootstrap CI over seeds (analysis/stats.py); a variant has *learned* when the CI's lower bound is above 0.
Success-scored tasks compare success rates. Task sets record no untrained score: counted as not checked, never as
learned.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pwmbench.analysis.stats import BOOTSTRAP_REPS, Estimate, aggregate

__all__ = ["Learning", "format_learning", "learning_check", "reading_line"]


@dataclass(frozen=True)
class Learning:
    """One variant: how many runs were checked, how many ended above their untrained actor, the mean normalised gain."""

    variant: str
    checked: int  # runs with a finite untrained and final score on the task's scale
    unchecked: int  # runs without (no untrained evaluation recorded, no task scale, failed run)
    improved: int  # checked runs whose final score is above their untrained one
    gain: Estimate | None  # mean of (final − untrained) in normalised points, 95% CI

    @property
    def learned(self) -> bool | None:
        """True: the gain's CI is above 0; False: it is not; None: nothing could be checked."""
        return None if self.gain is None else self.gain.low > 0

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "checked": self.checked, "unchecked": self.unchecked, "improved": self.improved,
                "gain": self.gain.to_dict() if self.gain else None, "learned": self.learned}  # fmt: skip


def _gain(row: dict[str, Any], scale: Any) -> float | None:  # scale: scoring.TaskScale (scoring imports this module)
    """(final − untrained) on the scale the task is scored on: its success rate, else its return."""
    if row.get("status") != "ok" or scale is None:
        return None
    kind = "success" if scale.kind == "success" else "return"
    untrained, final = row.get(f"untrained_{kind}"), row.get(f"final_{kind}")
    if untrained is None or final is None:
        return None
    if not (math.isfinite(untrained) and math.isfinite(final)):
        return None
    return scale.normalise(final) - scale.normalise(untrained)


def learning_check(runs: list[dict[str, Any]], scales: dict[str, Any], variants: list[str], reps: int = BOOTSTRAP_REPS) -> list[Learning]:
    """Every variant's Learning, in `variants`' order."""
    out = []
    for variant in variants:
        gains: dict[str, list[float]] = defaultdict(list)
        unchecked = 0
        for r in runs:
            if r["variant"] != variant:
                continue
            g = _gain(r, scales.get(r["task"]))
            if g is None:
                unchecked += 1
            else:
                gains[r["task"]].append(g)
        values = [g for v in gains.values() for g in v]
        estimate = aggregate(dict(gains), reps=reps)["mean"] if values else None
        out.append(Learning(variant, len(values), unchecked, sum(g > 0 for g in values), estimate))
    return out


def format_learning(learning: list[Learning]) -> list[str]:
    """The terminal's and the report's table: one line per variant."""
    lines = ["learning: final score minus the untrained actor's (curves epoch 0), normalised points, mean over runs [95% CI]"]
    width = max(len(x.variant) for x in learning)
    for x in learning:
        if x.gain is None:
            lines.append(f"  {x.variant:<{width}}  not checked ({x.unchecked} run(s) without an untrained evaluation and a task scale)")
            continue
        verdict = "learned" if x.learned else "NOT clearly learned"
        extra = f"; {x.unchecked} run(s) not checked" if x.unchecked else ""
        lines.append(f"  {x.variant:<{width}}  {x.gain.value:+.3f} [{x.gain.low:+.3f}, {x.gain.high:+.3f}]  "
                     f"{x.improved}/{x.checked} runs above their untrained score{extra}  → {verdict}")  # fmt: skip
    return lines


def reading_line(learning: list[Learning], exit_code: int, seeds: int) -> str:
    """What the result may and may not be used for, in one line (printed under the VERDICT line)."""
    unchecked = [x.variant for x in learning if x.learned is None]
    flat = [x.variant for x in learning if x.learned is False]
    if flat:
        return (f"READING: not a comparison of dynamics models — {', '.join(flat)} did not clearly learn (final score not above "
                "the untrained actor's), so any difference is between policies that barely trained; use it as an end-to-end "
                "check of the pipeline only.")  # fmt: skip
    if unchecked:
        return (f"READING: learning not checked for {', '.join(unchecked)} (no untrained evaluation recorded: a task set, or "
                "results from before it was recorded); read the learning curves before the verdict.")  # fmt: skip
    if exit_code == 3:
        return (f"READING: every variant learned, but {seeds} seed(s) cannot tell the models apart at this budget — evidence "
                "that the setup trains, not a ranking; the 'seeds needed' column says what would decide it.")  # fmt: skip
    return ("READING: every variant learned; the verdict is a decision at this budget, on these tasks and seeds — not a "
            "statement about other budgets or tasks, nor comparable with PWM's published scores.")

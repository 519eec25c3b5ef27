"""Parameter parity between world-model variants, on the real task dimensions.

The variants' total parameter counts must be within ±2% (docs/protocol.md#parameter-parity). Only the dynamics model may differ
(encoder, reward head and task embedding are shared by construction), so the gap is the dynamics
difference over the baseline total. The width solver changes only the variant's own dynamics widths
(`units` dynamics option) — never a shared component (resizing the encoder or reward head to reach parity
would change what is compared). Models are
built on the meta device: counting the 317M preset costs no memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pwmbench.errors import ConfigError
from pwmbench.nn.presets import WorldModelPreset
from pwmbench.nn.presets import preset as get_preset
from pwmbench.nn.world_model import SHARED_COMPONENTS, build_world_model

DEFAULT_TOLERANCE_PCT = 2.0


@dataclass(frozen=True)
class Dims:
    """The task dimensions a world model is built for (padded dims for task sets)."""

    obs_dim: int
    act_dim: int
    n_tasks: int = 1
    task_dim: int = 0

    def kwargs(self) -> dict[str, int]:
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "n_tasks": self.n_tasks, "task_dim": self.task_dim}


@dataclass(frozen=True)
class VariantSpec:
    """A dynamics model name and its options, e.g. `flow:integrator=heun,substeps=2`."""

    dynamics: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if not self.options:
            return self.dynamics
        return self.dynamics + ":" + ",".join(f"{k}={_format(v)}" for k, v in self.options.items())

    @classmethod
    def parse(cls, text: str) -> VariantSpec:
        name, _, rest = text.partition(":")
        if not name:
            raise ConfigError(f"empty dynamics name in {text!r}")
        matches = list(_OPTION.finditer(rest))
        if "".join(m.group(0) for m in matches).strip() != rest.strip():
            raise ConfigError(f"cannot parse dynamics options {rest!r}; expected key=value[,key=value...]")
        return cls(name, {m.group(1): _parse_value(m.group(2).strip()) for m in matches})


_OPTION = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*(\[[^\]]*\]|[^,]*)\s*(?:,|$)")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _format(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, tuple)) else str(value)


@dataclass(frozen=True)
class ParityEntry:
    variant: str
    dynamics: str
    options: Mapping[str, Any]
    total: int
    components: Mapping[str, int]
    gap_pct: float  # (total − baseline total) / baseline total · 100

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "dynamics": self.dynamics,
            "options": dict(self.options),
            "total": self.total,
            "components": dict(self.components),
            "gap_pct": self.gap_pct,
        }


@dataclass(frozen=True)
class ParityReport:
    preset: str
    dims: Dims
    entries: tuple[ParityEntry, ...]
    tolerance_pct: float

    @property
    def baseline(self) -> ParityEntry:
        return self.entries[0]

    @property
    def max_gap_pct(self) -> float:
        return max((abs(e.gap_pct) for e in self.entries), default=0.0)

    @property
    def ok(self) -> bool:
        return self.max_gap_pct <= self.tolerance_pct

    def over_tolerance(self) -> list[ParityEntry]:
        return [e for e in self.entries[1:] if abs(e.gap_pct) > self.tolerance_pct]

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "dims": vars(self.dims),
            "baseline": self.baseline.variant,
            "tolerance_pct": self.tolerance_pct,
            "max_gap_pct": self.max_gap_pct,
            "ok": self.ok,
            "models": [e.to_dict() for e in self.entries],
        }


def count_components(preset: str | WorldModelPreset, dims: Dims, variant: VariantSpec) -> dict[str, int]:
    """Parameter counts per component of the world model `variant` on `dims` (meta device, no memory)."""
    wm = build_world_model(preset, dynamics=variant.dynamics, dynamics_options=dict(variant.options), device="meta", **dims.kwargs())
    return wm.component_parameters()


def parity_report(
    preset: str | WorldModelPreset,
    dims: Dims,
    variants: Sequence[VariantSpec],
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
) -> ParityReport:
    """Counts for every variant and each one's gap to the first (the baseline)."""
    if not variants:
        raise ConfigError("parity needs at least one variant")
    counted = [(v, count_components(preset, dims, v)) for v in variants]
    base_total = sum(counted[0][1].values())
    entries = tuple(
        ParityEntry(v.label, v.dynamics, dict(v.options), sum(c.values()), c, 100.0 * (sum(c.values()) - base_total) / base_total)
        for v, c in counted
    )
    name = preset if isinstance(preset, str) else preset.name
    return ParityReport(name, dims, entries, tolerance_pct)


@dataclass(frozen=True)
class WidthSolution:
    """The dynamics width that brings a variant closest to the baseline's total."""

    variant: VariantSpec  # with `units` set to the solved widths
    width: int
    total: int
    baseline_total: int
    gap_pct: float
    rule_of_thumb_width: int  # first-order estimate w − Δ / (2 · layers · latent_dim), for comparison
    shared_unchanged: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant.label,
            "units": list(self.variant.options["units"]),
            "width": self.width,
            "total": self.total,
            "baseline_total": self.baseline_total,
            "gap_pct": self.gap_pct,
            "rule_of_thumb_width": self.rule_of_thumb_width,
            "shared_unchanged": self.shared_unchanged,
        }


def solve_width(
    preset: str | WorldModelPreset,
    dims: Dims,
    baseline: VariantSpec,
    variant: VariantSpec,
    max_width: int | None = None,
) -> WidthSolution:
    """Find the uniform hidden width of `variant`'s dynamics net minimising |total − baseline total|.

    The total is non-decreasing in the width, so a bisection finds the first width at or above the
    baseline and the answer is it or its predecessor. Only the `units` dynamics option changes.
    """
    cfg = get_preset(preset) if isinstance(preset, str) else preset
    base = count_components(cfg, dims, baseline)
    base_total = sum(base.values())
    start_units = tuple(variant.options.get("units", cfg.units))
    layers = len(start_units)

    def with_width(w: int) -> VariantSpec:
        return VariantSpec(variant.dynamics, {**variant.options, "units": [w] * layers})

    def total(w: int) -> int:
        return sum(count_components(cfg, dims, with_width(w)).values())

    lo, hi = 1, max_width or 8 * max(max(start_units), cfg.latent_dim)
    if total(hi) < base_total:
        raise ConfigError(f"no width ≤ {hi} reaches the baseline's {base_total:,} parameters")
    while lo < hi:
        mid = (lo + hi) // 2
        if total(mid) < base_total:
            lo = mid + 1
        else:
            hi = mid
    candidates = [w for w in (lo - 1, lo) if w >= 1]
    best = min(candidates, key=lambda w: (abs(total(w) - base_total), -w))
    solved = with_width(best)
    components = count_components(cfg, dims, solved)
    best_total = sum(components.values())

    start_total = total(start_units[0]) if len(set(start_units)) == 1 else sum(count_components(cfg, dims, variant).values())
    rule = round(start_units[0] - (start_total - base_total) / (2 * layers * cfg.latent_dim))
    shared_unchanged = all(components[name] == base[name] for name in SHARED_COMPONENTS)
    return WidthSolution(solved, best, best_total, base_total, 100.0 * (best_total - base_total) / base_total, rule, shared_unchanged)


def format_report(report: ParityReport, solutions: Sequence[WidthSolution] = ()) -> str:
    """A plain-text parity table, a warning per variant over tolerance with the fix, and solver results."""
    d = report.dims
    dims = f"obs {d.obs_dim}, act {d.act_dim}" + (f", {d.n_tasks} tasks × task_dim {d.task_dim}" if d.n_tasks > 1 else "")
    names = ["encoder", "dynamics", "reward", "task_embedding"]
    rows = [["variant", *names, "total", "gap %"]]
    for e in report.entries:
        rows.append([e.variant, *(f"{e.components[n]:,}" for n in names), f"{e.total:,}", f"{e.gap_pct:+.3f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"Parameter parity — preset {report.preset} ({dims}); baseline: {report.baseline.variant}"]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for e in report.over_tolerance():
        lines.append(
            f"WARNING: {e.variant} differs from {report.baseline.variant} by {e.gap_pct:+.2f}% "
            f"(tolerance ±{report.tolerance_pct}%). Change its dynamics width with the option "
            f"units=[W,W] (run with --solve to find W)."
        )
    if report.ok:
        lines.append(f"OK: every variant is within ±{report.tolerance_pct}% of the baseline (max {report.max_gap_pct:.3f}%).")
    for s in solutions:
        lines.append(
            f"solve: {s.variant.label} → total {s.total:,} (gap {s.gap_pct:+.4f}%); "
            f"the first-order estimate w − Δ/(2·layers·latent_dim) gives width {s.rule_of_thumb_width}; shared components unchanged: {s.shared_unchanged}"
        )
    return "\n".join(lines)

"""Parity: counts on real dims, gaps, the width solver (optimal, never touches shared parts), spec parsing."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pwmbench.errors import ConfigError
from pwmbench.nn.world_model import SHARED_COMPONENTS
from pwmbench.suite.parity import Dims, VariantSpec, count_components, format_report, parity_report, solve_width

ANT = Dims(37, 8)
MT30 = Dims(24, 6, 30, 64)


def test_report_counts_and_gap_on_ant():
    report = parity_report("pwm", ANT, [VariantSpec("mlp"), VariantSpec("flow")])
    assert report.baseline.total == 1_469_953
    assert report.entries[1].total == 1_469_953 + 512
    assert report.entries[1].gap_pct == pytest.approx(100 * 512 / 1_469_953)
    assert report.ok and "OK" in format_report(report)


def test_report_warns_with_the_fix_above_tolerance():
    report = parity_report("pwm", ANT, [VariantSpec("mlp"), VariantSpec("flow", {"units": [600, 600]})])
    assert not report.ok
    text = format_report(report)
    assert "WARNING" in text and "units=[W,W]" in text and "--solve" in text


@pytest.mark.parametrize("preset,dims", [("pwm", ANT), ("pwm_48M", MT30)])
def test_solver_keeps_the_presets_width_when_it_is_already_best(preset, dims):
    sol = solve_width(preset, dims, VariantSpec("mlp"), VariantSpec("flow"))
    assert sol.width == (512 if preset == "pwm" else 1792)
    assert sol.shared_unchanged


@settings(max_examples=15)
@given(
    preset=st.sampled_from(["pwm", "pwm_5M", "pwm_19M"]),
    obs=st.integers(3, 80),
    act=st.integers(1, 21),
    start=st.integers(64, 2048),
    multitask=st.booleans(),
)
def test_solver_is_optimal_and_never_changes_a_shared_component(preset, obs, act, start, multitask):
    dims = Dims(obs, act, 10, 32) if multitask else Dims(obs, act)
    base = count_components(preset, dims, VariantSpec("mlp"))
    sol = solve_width(preset, dims, VariantSpec("mlp"), VariantSpec("flow", {"units": [start, start]}))
    solved = count_components(preset, dims, sol.variant)
    assert all(solved[c] == base[c] for c in SHARED_COMPONENTS) and sol.shared_unchanged
    gap = abs(sol.total - sol.baseline_total)
    for w in (sol.width - 1, sol.width + 1):
        if w >= 1:
            other = sum(count_components(preset, dims, VariantSpec("flow", {"units": [w, w]})).values())
            assert abs(other - sol.baseline_total) >= gap
    assert abs(sol.gap_pct) < 2.0


def test_solver_rule_of_thumb_is_reported():
    sol = solve_width("pwm", ANT, VariantSpec("mlp"), VariantSpec("flow", {"units": [600, 600]}))
    assert sol.width == 512 and sol.rule_of_thumb_width == 507


def test_variant_spec_parsing():
    spec = VariantSpec.parse("flow:integrator=euler,substeps=4,units=[600,600],x0=teacher")
    assert spec == VariantSpec("flow", {"integrator": "euler", "substeps": 4, "units": [600, 600], "x0": "teacher"})
    assert VariantSpec.parse(spec.label) == spec
    with pytest.raises(ConfigError):
        VariantSpec.parse("flow:substeps")


def test_parity_of_a_suite_is_the_gate_as_the_suite_applies_it():
    """W15 friction 5: `pwmbench parity --suite S` gives every variant's signed gap with the suite's own world_model
    override (the numbers the gate and `run`/`check` use), not the preset's defaults."""
    from pathlib import Path

    from click.testing import CliRunner

    from pwmbench.cli import main

    suite = Path(__file__).resolve().parents[1] / "suites" / "smoke.toml"
    out = CliRunner().invoke(main, ["parity", "--suite", str(suite)])
    assert out.exit_code == 0, out.output
    assert "dflex/hopper: flow +0.182%, mlp-residual +0.000% vs mlp (tolerance ±2.0%)" in out.output
    dry = CliRunner().invoke(main, ["run", str(suite), "--dry-run", "--out", "/tmp/pwmbench-parity-dry"])
    assert "parity on dflex/hopper: flow +0.182%, mlp-residual +0.000% vs mlp" in dry.output

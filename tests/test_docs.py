"""Every result column is documented (docs/results.md), as every hook is (CONTRIBUTING.md)."""

from pathlib import Path

from pwmbench.results import CURVE_METRICS, RUNS_SCHEMA

DOC = (Path(__file__).parents[1] / "docs" / "results.md").read_text()


def test_every_run_column_is_documented():
    missing = [name for name in RUNS_SCHEMA.names if f"| `{name}` |" not in DOC]
    assert not missing, f"document these run columns in docs/results.md: {missing}"


def test_every_curve_column_is_documented():
    missing = [name for name in ("epoch", "env_steps", "wall_s", *CURVE_METRICS) if f"| `{name}` |" not in DOC]
    assert not missing, f"document these curve columns in docs/results.md: {missing}"

"""Every recorded result under benchmarks/results keeps its tables (run rows, curves, suite.json — no weights), and
re-scoring them from the repository under the current protocol gives the decision recorded beside them."""

import json
from pathlib import Path

import pytest

from pwmbench.analysis.scoring import load_results, score_all

RECORDS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SCORED = ["smoke_suite", "gradient_quality", "mt30_mini_suite", "learning_pretrained"]


def _tables(name: str) -> Path:
    """The directory holding the record's result tables (a suite's results dir, or the benchmark's own)."""
    root = RECORDS / name
    return root / "results" if (root / "results").is_dir() else root


@pytest.mark.parametrize("name", SCORED)
def test_a_recorded_result_keeps_its_tables_and_no_weights(name):
    tables = _tables(name)
    assert (tables / "suite.json").is_file(), f"{name}: no suite.json"
    assert list(tables.rglob("run.arrow")) and list(tables.rglob("curves.arrow")), f"{name}: no run rows or curves"
    weights = [p for p in tables.rglob("*") if p.suffix in (".pt", ".npz") or p.name.startswith("checkpoint")]
    assert not weights, f"{name}: weights or checkpoints recorded: {weights[:3]}"


@pytest.mark.parametrize("name", SCORED)
def test_rescoring_a_recorded_result_gives_its_recorded_decision(name):
    recorded = json.loads(next(p for p in (RECORDS / name / "report" / "verdict.json", RECORDS / name / "verdict.json") if p.is_file()).read_text())
    runs, suite, curves = load_results(_tables(name), curves=True)
    scoring = score_all(runs, suite, curves, reps=recorded["bootstrap_resamples"])
    again = scoring.to_dict()
    assert again["exit_code"] == recorded["exit_code"]
    for old, new in zip(recorded["verdicts"], again["verdicts"], strict=True):
        assert (new["candidate"], new["decision"], new["status"]) == (old["candidate"], old["decision"], old["status"])
        assert new["difference"] == pytest.approx(old["difference"], nan_ok=True)
        assert new["decision_reasons"] == old["decision_reasons"]

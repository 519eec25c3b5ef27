"""Scoring verdicts and reports on synthetic result tables; the score/report CLI and its exit codes."""

import json

import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner
from results_factory import write_results

from pwmbench.cli import main
from pwmbench.results import read_table, run_table, write_table_atomic
from pwmbench.scoring import UnusableResults, compare, load_results

GOOD = {
    ("dmc/a", "mlp"): [100, 110, 120], ("dmc/a", "flow"): [150, 160, 170],
    ("dmc/b", "mlp"): [10, 12, 14], ("dmc/b", "flow"): [9, 11, 13],
}


def verdict(root, **kw):
    runs, suite = load_results(root)
    return compare(runs, suite, reps=300, **kw)


def by_name(v):
    return {c.name: c for c in v.criteria}


def test_accepted_when_flow_wins_half_the_tasks(tmp_path):
    v = verdict(write_results(tmp_path, GOOD, params={"mlp": 1000, "flow": 1005}, wall={"mlp": 10.0, "flow": 15.0}))
    assert v.passed and v.candidate == "flow"
    c = by_name(v)
    assert c["flow ≥ baseline final return (mean over seeds) on ≥ 50% of tasks"].value == "1/2 tasks"
    assert c["parameter parity gap"].value == "0.500%" and c["parameter parity gap"].passed
    assert c["wall-clock ratio flow / baseline"].value == "1.50×"
    task_a = next(t for t in v.tasks if t.task == "dmc/a")
    assert task_a.delta_pct == pytest.approx(100 * 50 / 110) and task_a.p_value < 0.05
    assert any("power" in n for n in v.notes)


def test_rejected_when_flow_loses_everywhere(tmp_path):
    worse = {k: ([x - 60 for x in v] if k[1] == "flow" else v) for k, v in GOOD.items()}
    v = verdict(write_results(tmp_path, worse))
    assert not v.passed and by_name(v)["flow ≥ baseline final return (mean over seeds) on ≥ 50% of tasks"].passed is False


def test_divergence_and_parity_fail_the_verdict(tmp_path):
    v = verdict(write_results(tmp_path / "d", GOOD, statuses={("dmc/a", "flow", 123): "diverged"}))
    assert not v.passed and "dmc/a/flow/123: diverged" in by_name(v)["no NaN, divergence or crash"].value
    v = verdict(write_results(tmp_path / "p", GOOD, params={"mlp": 1000, "flow": 1100}))
    assert not v.passed and by_name(v)["parameter parity gap"].value == "10.000%"


def test_suite_parity_records_take_precedence(tmp_path):
    extra = {"parity": {"dmc/a": {"gap_pct": {"mlp": 0.0, "flow": 0.035}}, "dmc/b": {"gap_pct": {"mlp": 0.0, "flow": 0.04}}}}
    v = verdict(write_results(tmp_path, GOOD, params={"mlp": 1000, "flow": 1100}, suite_extra=extra))
    assert by_name(v)["parameter parity gap"].value == "0.040%"


def test_sample_efficiency_from_thresholds(tmp_path):
    v = verdict(write_results(tmp_path, GOOD, thresholds={"dmc/a": 100.0, "dmc/b": 12.0}))
    a = next(t for t in v.tasks if t.task == "dmc/a")
    assert a.candidate_steps is not None and a.candidate_steps <= a.baseline_steps
    assert "sample efficiency: fewer env steps to the return threshold" in by_name(v)


def test_unusable_results(tmp_path):
    with pytest.raises(UnusableResults):
        load_results(tmp_path)
    write_results(tmp_path, {("dmc/a", "flow"): [1, 2, 3]})
    with pytest.raises(UnusableResults, match="baseline 'mlp' has no runs"):
        verdict(tmp_path)


def test_score_cli_exit_codes(tmp_path):
    good = write_results(tmp_path / "good", GOOD)
    worse = write_results(tmp_path / "worse", {k: ([x - 60 for x in v] if k[1] == "flow" else v) for k, v in GOOD.items()})
    runner = CliRunner()
    ok = runner.invoke(main, ["score", str(good), "--bootstrap", "100"])
    assert ok.exit_code == 0 and "VERDICT: accepted" in ok.output
    bad = runner.invoke(main, ["score", str(worse), "--bootstrap", "100", "--json"])
    assert bad.exit_code == 1 and json.loads(bad.output)["passed"] is False
    assert runner.invoke(main, ["score", str(tmp_path / "nothing")]).exit_code == 2


def test_report_has_the_tables_paragraph_plots_and_csv(tmp_path):
    root = write_results(tmp_path / "r", GOOD, wall={"mlp": 10.0, "flow": 15.0})
    result = CliRunner().invoke(main, ["report", str(root), "--out", str(tmp_path / "out"), "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| dmc/a | 110.0 ± 10.0 | 160.0 ± 10.0 | 45.5 | 10.0 | 15.0 | 1.50 |" in text
    assert "| **average** |" in text and "## Summary (seed §8.2)" in text and "1.50× the wall-clock" in text
    assert "VERDICT: accepted" in text and "## Settings that matter" in text
    for name in ("learning_curves.png", "dynamics_loss.png", "grad_norms.png", "runs.csv", "curves.csv", "summary.csv", "verdict.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_report_adds_the_compute_matched_table(tmp_path):
    returns = {**GOOD, ("dmc/a", "mlp-cm"): [130, 140, 150], ("dmc/b", "mlp-cm"): [12, 13, 14]}
    extra = {"variants": [{"name": "mlp", "declared": {}}, {"name": "flow", "declared": {}}, {"name": "mlp-cm", "declared": {"wm_iterations": 16}}]}
    root = write_results(tmp_path / "r", returns, suite_extra=extra)
    v = verdict(root)
    assert v.candidate == "flow" and "compute-matched: flow ≥ mlp-cm on ≥ 50% of tasks" in by_name(v)
    CliRunner().invoke(main, ["report", str(root), "--out", str(tmp_path / "out"), "--bootstrap", "100"])
    assert "## Parameter-matched and compute-matched (seed §9.3)" in (tmp_path / "out" / "report.md").read_text()


def test_runs_read_as_one_dataset_and_newer_schemas_are_refused(tmp_path):
    root = write_results(tmp_path, GOOD)
    table = ds.dataset(sorted(str(p) for p in root.rglob("run.arrow")), format="ipc").to_table()
    assert table.num_rows == 12 and set(table.column("variant").to_pylist()) == {"mlp", "flow"}
    newer = run_table({"task": "x"}).replace_schema_metadata({"pwmbench_schema_version": "99"})
    write_table_atomic(newer, tmp_path / "new.arrow")
    with pytest.raises(ValueError, match="schema version 99"):
        read_table(tmp_path / "new.arrow")
    with pytest.raises(KeyError, match="not in RUNS_SCHEMA"):
        run_table({"made_up_column": 1})

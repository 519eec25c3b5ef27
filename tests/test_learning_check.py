"""Has each variant learned at all (pwmbench/analysis/learning_check.py), and the one-line reading of what a result
may be used for (W15 item 1): hand-computed gains, each branch of the reading, and `pwmbench score` printing both."""

import pytest
from click.testing import CliRunner

from pwmbench.analysis.learning_check import Learning, learning_check, reading_line
from pwmbench.analysis.scoring import TaskScale
from pwmbench.analysis.stats import Estimate
from pwmbench.cli import main

SCALE = {"t": TaskScale("t", "return", 0.0, 1000.0, True, "test"), "s": TaskScale("s", "success", 0.0, 1.0, True, "success")}


def row(variant, seed, untrained, final, task="t", status="ok"):
    return {"task": task, "variant": variant, "seed": seed, "status": status, "untrained_return": untrained, "final_return": final}


def test_the_gain_is_final_minus_untrained_on_the_normalised_scale():
    runs = [row("a", 1, 100.0, 300.0), row("a", 2, 0.0, 100.0), row("a", 3, 50.0, 350.0),  # gains 0.2, 0.1, 0.3
            row("b", 1, 200.0, 100.0), row("b", 2, 10.0, 20.0), row("b", 3, 30.0, 30.0)]  # fmt: skip
    a, b = learning_check(runs, SCALE, ["a", "b"], reps=2000)
    assert a.gain.value == pytest.approx(0.2) and a.improved == a.checked == 3 and a.learned
    assert 0.1 <= a.gain.low <= a.gain.value <= a.gain.high <= 0.3  # a bootstrap mean of {0.1, 0.2, 0.3} stays inside
    assert b.gain.value == pytest.approx((-0.1 + 0.01 + 0.0) / 3) and b.improved == 1 and b.learned is False


def test_runs_that_cannot_be_checked_are_counted_never_taken_as_learned():
    runs = [row("a", 1, None, 300.0), row("a", 2, 1.0, 2.0, status="failed"), row("a", 3, 0.0, 0.5, task="s"), row("a", 4, 0.0, float("nan")),
            row("a", 5, 0.0, 1.0, task="no scale")]  # fmt: skip
    (a,) = learning_check(runs, SCALE, ["a"], reps=100)
    assert a.checked == 0 and a.unchecked == 5 and a.gain is None and a.learned is None  # task "s" is scored on success


def test_success_scored_tasks_compare_success_rates():
    runs = [{"task": "s", "variant": "a", "seed": i, "status": "ok", "untrained_return": 5.0, "final_return": 1.0,
             "untrained_success": 0.0, "final_success": f} for i, f in enumerate((0.4, 0.6, 0.5))]  # fmt: skip
    (a,) = learning_check(runs, SCALE, ["a"], reps=1000)
    assert a.gain.value == pytest.approx(0.5) and a.improved == 3 and a.learned  # the return fell; the success rate is what counts


@pytest.mark.parametrize(
    ("learned", "exit_code", "starts"),
    [((True, False), 0, "READING: not a comparison of dynamics models — b did not clearly learn"),
     ((True, None), 0, "READING: learning not checked for b"),
     ((True, True), 3, "READING: every variant learned, but 3 seed(s) cannot tell the models apart"),
     ((True, True), 0, "READING: every variant learned; the verdict is a decision at this budget")],
)  # fmt: skip
def test_the_reading_says_what_the_result_may_be_used_for(learned, exit_code, starts):
    def variant(name, ok):
        gain = None if ok is None else Estimate(0.1, 0.05 if ok else -0.05, 0.2)
        return Learning(name, 3 if gain else 0, 0 if gain else 3, 3, gain)

    line = reading_line([variant("a", learned[0]), variant("b", learned[1])], exit_code, 3)
    assert line.startswith(starts)


def test_score_prints_the_learning_table_and_the_reading_above_the_verdict(tmp_path):
    from results_factory import write_results

    write_results(tmp_path, {("t", "mlp"): [300.0, 320.0, 310.0], ("t", "flow"): [330.0, 350.0, 340.0]}, scores={"t": (0.0, 1000.0)}, untrained=20.0)
    result = CliRunner().invoke(main, ["score", str(tmp_path)])
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("VERDICT:") and lines[-2].startswith("READING:")
    at = lines.index(next(line for line in lines if line.startswith("learning: final score minus the untrained actor's")))
    assert lines[at + 1].split() == ["mlp", "+0.290", "[+0.280,", "+0.300]", "3/3", "runs", "above", "their", "untrained", "score", "→", "learned"]
    assert lines[at + 2].split()[:2] == ["flow", "+0.320"]

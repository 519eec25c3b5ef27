"""The report's rliable-style figures: each writes a readable PNG, copes with one variant / task / seed and with no
input, and the learning curves read only policy evaluations and never extrapolate a run."""

import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from pwmbench.analysis import report_plots as rp  # noqa: E402
from pwmbench.analysis.stats import aggregate  # noqa: E402

REPS = 200
SCORES = {
    "mlp": {"dmc/a": [0.2, 0.4, 0.5], "dmc/b": [0.9, 1.1, 1.0], "dmc/c": [-0.1, 0.0, 0.3]},
    "flow": {"dmc/a": [0.6, 0.7, 0.5], "dmc/b": [1.2, 1.0, 1.3], "dmc/c": [0.1, 0.2]},  # one failed run left out
}
ONE = {"mlp": {"dmc/a": [0.7]}}


def image(path):
    """Height, width of a PNG that matplotlib can read back (RGB or RGBA)."""
    from matplotlib.image import imread

    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50
    return pixels.shape[:2]


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, pwmbench.analysis.report_plots; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------- interval estimates
def test_interval_estimates_writes_a_png(tmp_path):
    aggs = {v: aggregate(s, reps=REPS) for v, s in SCORES.items()}
    assert rp.interval_estimates(aggs, tmp_path) == "interval_estimates.png"
    height, width = image(tmp_path / "interval_estimates.png")
    assert width > height  # four panels side by side


def test_interval_estimates_takes_the_verdicts_stored_dicts_and_missing_values(tmp_path):
    stored = {v: {k: e.to_dict() for k, e in aggregate(s, reps=REPS).items()} for v, s in SCORES.items()}
    stored["broken"] = {"iqm": {"value": math.nan, "ci_low": None, "ci_high": None}}
    assert rp.interval_estimates(stored, tmp_path, fname="x.png") == "x.png"
    image(tmp_path / "x.png")


def test_interval_estimates_edge_cases(tmp_path):
    assert rp.interval_estimates({"mlp": aggregate(ONE["mlp"], reps=REPS)}, tmp_path) == "interval_estimates.png"
    image(tmp_path / "interval_estimates.png")
    empty = tmp_path / "empty"
    assert rp.interval_estimates({}, empty) is None
    assert rp.interval_estimates({"mlp": {}}, empty) is None
    assert not empty.exists()


# --------------------------------------------------------------------------------------------- performance profiles
def test_performance_profiles_writes_a_png(tmp_path):
    assert rp.performance_profiles(SCORES, tmp_path, reps=REPS) == "performance_profiles.png"
    image(tmp_path / "performance_profiles.png")


def test_performance_profiles_edge_cases(tmp_path):
    assert rp.performance_profiles(ONE, tmp_path, reps=REPS, seed=3) == "performance_profiles.png"
    image(tmp_path / "performance_profiles.png")
    assert rp.performance_profiles({}, tmp_path / "e", reps=REPS) is None
    assert rp.performance_profiles({"mlp": {}, "flow": {"dmc/a": []}}, tmp_path / "e", reps=REPS) is None
    assert not (tmp_path / "e").exists()


# ----------------------------------------------------------------------------------------------------- per-task bars
def test_per_task_bars_few_tasks_stand_vertically(tmp_path):
    scores = {**SCORES, "lone": {"dmc/b": [0.5, 0.6, 0.7]}}  # a variant that ran one task only
    assert rp.per_task_bars(scores, tmp_path, reps=REPS) == "per_task_scores.png"
    height, width = image(tmp_path / "per_task_scores.png")
    assert width > height


def test_per_task_bars_eighty_tasks_lie_horizontally_and_stay_readable(tmp_path):
    rng = np.random.default_rng(0)
    tasks = [f"mt80/task-{i:02d}" for i in range(80)]
    scores = {v: {t: list(rng.uniform(0, 1.2, 3)) for t in tasks} for v in ("mlp", "flow")}
    assert rp.per_task_bars(scores, tmp_path, reps=50) == "per_task_scores.png"
    height, width = image(tmp_path / "per_task_scores.png")
    assert height > width
    assert height / 80 >= 20  # pixels per task: room for a 7-pt label and two bars


def test_per_task_bars_edge_cases(tmp_path):
    assert rp.per_task_bars(ONE, tmp_path, reps=REPS) == "per_task_scores.png"
    image(tmp_path / "per_task_scores.png")
    assert rp.per_task_bars({}, tmp_path / "e", reps=REPS) is None
    assert rp.per_task_bars({"mlp": {"dmc/a": []}}, tmp_path / "e", reps=REPS) is None
    assert not (tmp_path / "e").exists()


# ------------------------------------------------------------------------------------------------------- curve_grid
def test_curve_grid_spans_only_the_range_every_run_evaluated():
    full = [(f, 2 * f) for f in np.linspace(0.1, 1.0, 10)]
    half = [(0.0, 0.0), (0.25, 1.0), (0.5, 0.0)]  # evaluated only up to 50% of training
    grid, values = rp.curve_grid({"full": full, "half": half}, points=20)
    assert len(grid) == 20 and grid[0] == pytest.approx(0.1) and grid[-1] == pytest.approx(0.5)
    assert np.all(np.diff(grid) > 0)
    np.testing.assert_allclose(values["full"], 2 * grid)
    np.testing.assert_allclose(values["half"], np.interp(grid, [0.0, 0.25, 0.5], [0.0, 1.0, 0.0]))


def test_curve_grid_orders_averages_and_drops():
    runs = {"a": [(1.0, 4.0), (0.0, 0.0), (1.0, 2.0)], "b": [(0.0, 1.0), (1.0, 1.0)], "none": []}
    grid, values = rp.curve_grid(runs, points=3)
    np.testing.assert_allclose(grid, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(values["a"], [0.0, 1.5, 3.0])  # unsorted input; two evaluations at 1.0 averaged
    assert set(values) == {"a", "b"}


def test_curve_grid_without_a_shared_range():
    assert rp.curve_grid({})[0].size == 0
    grid, values = rp.curve_grid({"early": [(0.1, 1.0), (0.3, 1.0)], "late": [(0.6, 1.0), (0.9, 1.0)]})
    assert grid.size == 0 and all(v.size == 0 for v in values.values())
    grid, values = rp.curve_grid({"a": [(0.5, 0.3)], "b": [(0.2, 0.0), (0.5, 0.9)]})  # they meet at one fraction
    np.testing.assert_allclose(grid, [0.5])
    np.testing.assert_allclose(values["b"], [0.9])


# ----------------------------------------------------------------------------------------------- normalised curves
def ident(task, seed, epoch, phase, variant="mlp"):
    return {"task": task, "variant": variant, "seed": seed, "epoch": epoch, "phase": phase}


def run_rows(task, variant, seed, epochs, evals, phase="train", scale=100.0):
    """Curves rows of one run: an evaluation (scale · fraction) on the epochs in `evals`, None elsewhere."""
    last = max(epochs)
    evaluation = lambda e: scale * e / last if e in evals else None  # noqa: E731
    return [
        {**ident(task, seed, e, phase, variant), "env_steps": 10 * e, "eval_return": evaluation(e)}
        for e in epochs
    ]


def curves_table():
    rows = []
    for variant, scale in (("mlp", 100.0), ("flow", 150.0)):
        for task, epochs in (("dmc/a", range(0, 11)), ("dmc/b", range(0, 21))):  # different budgets
            for seed in ("42", "123", "456"):
                rows += run_rows(task, variant, seed, epochs, set(epochs[::2]), scale=scale)
    return rows


def test_normalised_curves_writes_a_png(tmp_path):
    name = rp.normalised_curves(curves_table(), lambda task, r: r / 100.0, tmp_path, reps=REPS)
    assert name == "normalised_curves.png"
    image(tmp_path / name)


def test_normalised_curves_reads_policy_evaluations_only(tmp_path):
    rows = run_rows("dmc/a", "mlp", "42", range(0, 11), {0, 5, 10})
    pretrain = [{**ident("dmc/a", "42", 5000, "pretrain"), "env_steps": 0, "eval_return": -1.0}]
    world_model = [{**ident("mt/set", "42", 9000, "world_model"), "eval_return": -2.0}]
    rows[3]["eval_return"] = math.nan  # NaN: no evaluation, like None
    member = [{**ident("mt/set/reach", "42", e, "policy"), "eval_return": 7.0 * e} for e in (1, 2)]
    unphased = [{"task": "dmc/c", "variant": "mlp", "seed": "42", "epoch": e, "eval_return": 3.0} for e in (0, 4)]
    calls = []

    def normalise(task, raw):
        calls.append((task, raw))
        return raw

    runs = rp.curve_runs(pretrain + rows + world_model + member + unphased, normalise)
    expected = [("dmc/a", 0.0), ("dmc/a", 50.0), ("dmc/a", 100.0), ("mt/set/reach", 7.0), ("mt/set/reach", 14.0)]
    assert sorted(calls) == sorted([*expected, ("dmc/c", 3.0), ("dmc/c", 3.0)])
    # x = epoch / the run's last policy epoch: the pretrain row's epoch 5000 does not stretch the axis
    assert runs["mlp"][("dmc/a", "42")] == [(0.0, 0.0), (0.5, 50.0), (1.0, 100.0)]
    assert runs["mlp"][("mt/set/reach", "42")] == [(0.5, 7.0), (1.0, 14.0)]
    assert runs["mlp"][("dmc/c", "42")] == [(0.0, 3.0), (1.0, 3.0)]
    calls.clear()
    assert rp.normalised_curves(pretrain + rows, normalise, tmp_path, reps=REPS) == "normalised_curves.png"
    assert all(raw >= 0 for _, raw in calls)


def test_normalised_curves_skips_what_normalise_refuses():
    rows = run_rows("dmc/a", "mlp", "42", range(0, 5), {0, 2, 4}) + run_rows("dmc/b", "mlp", "42", range(0, 5), {4})
    runs = rp.curve_runs(rows, lambda task, raw: None if task == "dmc/b" or raw == 50.0 else raw / 100.0)
    assert runs == {"mlp": {("dmc/a", "42"): [(0.0, 0.0), (1.0, 1.0)]}}


def test_a_run_evaluated_to_half_of_training_ends_the_curve_there():
    rows = run_rows("dmc/a", "mlp", "1", range(0, 11), {0, 2, 4, 6, 8, 10})
    rows += run_rows("dmc/b", "mlp", "1", range(0, 11), {0, 1, 3, 5})  # trains to epoch 10, last evaluated at 5
    grid, values = rp.curve_grid(rp.curve_runs(rows, lambda task, raw: raw)["mlp"])
    assert grid[0] == 0.0 and grid[-1] == pytest.approx(0.5)
    np.testing.assert_allclose(values[("dmc/a", "1")], 100 * grid)


def test_normalised_curves_caps_the_bootstrap(tmp_path, monkeypatch):
    seen = []

    def recording(scores, reps, seed):
        seen.append(reps)
        return aggregate(scores, reps=10, seed=seed)

    monkeypatch.setattr(rp, "aggregate", recording)
    rp.normalised_curves(curves_table(), lambda task, r: r / 100.0, tmp_path, reps=50_000)
    assert seen and set(seen) == {rp.CURVE_REPS}
    seen.clear()
    rp.normalised_curves(curves_table(), lambda task, r: r / 100.0, tmp_path, reps=30)
    assert set(seen) == {30}
    assert len(seen) == 2 * rp.CURVE_POINTS  # two variants, one bootstrap per grid point


def test_normalised_curves_edge_cases(tmp_path):
    one = run_rows("dmc/a", "mlp", "42", range(0, 5), {0, 2, 4})
    assert rp.normalised_curves(one, lambda task, r: r / 100.0, tmp_path, reps=REPS) == "normalised_curves.png"
    image(tmp_path / "normalised_curves.png")
    single = run_rows("dmc/a", "mlp", "42", range(0, 5), {4})  # one evaluation: a single point with its CI
    assert rp.normalised_curves(single, lambda task, r: r, tmp_path, fname="single.png", reps=REPS) == "single.png"
    image(tmp_path / "single.png")
    empty = tmp_path / "e"
    assert rp.normalised_curves([], lambda task, r: r, empty, reps=REPS) is None
    unevaluated = run_rows("dmc/a", "mlp", "42", range(0, 5), set())
    assert rp.normalised_curves(unevaluated, lambda task, r: r, empty, reps=REPS) is None
    pretrain_only = run_rows("dmc/a", "mlp", "42", range(0, 5), {4}, phase="pretrain")
    assert rp.normalised_curves(pretrain_only, lambda task, r: r, empty, reps=REPS) is None
    assert rp.normalised_curves(one, lambda task, r: None, empty, reps=REPS) is None
    assert not empty.exists()


def test_the_plots_say_what_their_axes_hold(tmp_path):
    """W15 friction 11: the per-task table's ratio is named a time ratio, the dynamics-loss plot says its losses differ by
    variant, the grad-norm histograms have axis labels, and the per-task legend sits below the plots (not on the title)."""
    import inspect

    from results_factory import write_results

    from pwmbench.analysis import report, report_plots
    from pwmbench.analysis.report import build_report

    root = write_results(tmp_path / "r", {("dmc/a", "mlp"): [100, 110, 120], ("dmc/a", "flow"): [150, 160, 170]}, scores={"dmc/a": (0.0, 1000.0)})
    md = build_report(root, tmp_path / "rep", reps=200).read_text()
    assert "time ratio flow/mlp" in md and "speed ratio" not in md
    source = inspect.getsource(report)
    assert "MSE or rectified-flow: different quantities" in source and 'ax.set_ylabel("logged epochs (count)")' in source
    assert 'loc="outside lower center"' in inspect.getsource(report_plots)

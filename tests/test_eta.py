"""W15 item 3: the ETA from measured per-job rates (pwmbench/jobs/eta.py), driven by a fake clock: jobs of two costs
run two at a time, one of them resumed part-way; from a quarter of the run on the estimate stays within 15% of the
time actually left, and it says "unknown" (NaN) until something has progressed. (A queued job slower than every job
measured so far cannot be foreseen by any estimator; a suite's variants interleave, so their rates are measured early.)"""

import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pwmbench.jobs.eta import EtaEstimator


def simulate(costs, totals, slots, resumed=None):
    """A tiny scheduler: jobs start in order as slots free up; each advances one unit per `cost` seconds. Returns
    [(fraction of work done, estimated seconds left, true seconds left)] sampled every second."""
    clock = {"t": 0.0}
    keys = [f"j{i}" for i in range(len(costs))]
    est = EtaEstimator({k: (n, (f"cost {c}", "epoch")) for k, n, c in zip(keys, totals, costs)}, slots, clock=lambda: clock["t"])  # a variant's rate group
    done = {k: (resumed or {}).get(k, 0) for k in keys}
    started, finished, running = {}, set(), []
    queue = list(keys)
    samples, dt = [], 1.0
    while len(finished) < len(keys):
        while queue and len(running) < slots:
            k = queue.pop(0)
            running.append(k)
            started[k] = clock["t"]
        clock["t"] += dt
        for k in list(running):
            i = keys.index(k)
            done[k] = min(totals[i], done[k] + dt / costs[i])
            est.observe(k, int(done[k]))
            if done[k] >= totals[i]:
                running.remove(k)
                finished.add(k)
                est.finish(k)
        samples.append((sum(done.values()) / sum(totals), est.eta(), clock["t"]))
    end = clock["t"]
    return [(f, e, end - t) for f, e, t in samples]


def test_unknown_until_progress_then_close_to_the_truth():
    est = EtaEstimator({"a": (10, "epoch")}, 1, clock=lambda: 0.0)
    assert math.isnan(est.eta())
    # two kinds of job (an mlp cell and a flow cell at twice its cost per epoch), interleaved as a suite's cells are
    samples = simulate(costs=[1.0, 2.0] * 3, totals=[40] * 6, slots=2, resumed={"j0": 10})
    for fraction, eta, truth in samples:
        if 0.25 <= fraction <= 0.9 and truth > 5:
            assert abs(eta - truth) <= 0.15 * truth + 2, (fraction, eta, truth)


@settings(max_examples=30, deadline=None)
@given(costs=st.lists(st.floats(1.0, 3.0), min_size=2, max_size=6), n=st.integers(20, 60), slots=st.integers(1, 3))  # ≥ 1 s a unit: the
# fake clock ticks once a second, and a job of a few ticks measures its rate to ±1 tick (CI drew 0.22 s × 20 units)
def test_with_equal_jobs_the_estimate_converges(costs, n, slots):
    costs = [costs[0]] * len(costs)  # equal cost per unit: the measured rate is the true one
    samples = simulate(costs, [n] * len(costs), slots)
    checked = [(e, t) for f, e, t in samples if 0.25 <= f <= 0.75 and t > 5 and not math.isnan(e)]
    # within 20%, give or take two units: progress is read in whole units on a clock that ticks once a second
    assert checked and all(abs(e - t) <= 0.2 * t + 2 * costs[0] for e, t in checked), checked


def test_a_job_seen_only_at_its_end_does_not_set_the_rate():
    """Seen first at 95/96 and then finishing 10 s later (its final evaluation and files), a job must not price the
    queued ones at 10 s per epoch: only measured progress times a job (the smoke run's ETA rose to 11 min before this)."""
    clock = {"t": 0.0}
    est = EtaEstimator({"late": (96, ("g", "epoch")), "steady": (96, ("g", "epoch")), "queued": (96, ("g", "epoch"))}, 2, clock=lambda: clock["t"])
    est.observe("late", 95)
    for second in range(1, 41):
        clock["t"] = float(second)
        est.observe("steady", second)  # 1 s per epoch
    est.finish("late")
    assert abs(est.eta() - 96) / 96 < 0.05  # queued starts on the slot `late` freed: 96 epochs at steady's 1 s/epoch


def test_a_one_time_start_cost_stops_pricing_the_rest_once_enough_is_measured():
    """A cell's start (the untrained evaluation, the initial world-model block) costs once: 30 s before its first epoch,
    then 1 s per epoch. Once the later half of its progress alone is long enough to time (twice the minimum: 64 of
    160 epochs), the estimate prices the remaining epochs at 1 s, not at (30 + k) / k (the smoke run's +32% at its half)."""
    clock = {"t": 0.0}
    est = EtaEstimator({"a": (160, ("flow", "epoch")), "queued": (160, ("flow", "epoch"))}, 1, clock=lambda: clock["t"])
    est.observe("a", 0)
    clock["t"] = 30.0  # the one-time start
    for epoch in range(1, 131):
        clock["t"] = 30.0 + epoch
        est.observe("a", epoch)
    assert abs(est.eta() - (30 + 160)) <= 3  # 30 epochs left of `a`, then the queued 160, at 1 s each
    from_start = (30 + 130) / 130 * (30 + 160)
    assert from_start > 230  # what a rate since the job's start would say (+23%)


def test_an_unmeasured_variant_is_priced_like_its_dynamics_model_not_the_average_epoch(tmp_path):
    """The smoke run's +31% at its half: the queued mlp-residual cells were priced at the mean epoch of every measured
    cell, flow's (1.7× as slow) included. A single-task cell's fallback group is its dynamics model and evaluation
    count, so mlp-residual is priced like mlp and flow like flow."""
    from pwmbench.jobs.cell_kinds import plan_jobs
    from pwmbench.suite.spec import load_suite, prepare

    suite = prepare(load_suite(Path(__file__).resolve().parents[1] / "suites" / "smoke.toml"))
    cells = suite.cells()
    graph = plan_jobs(suite, cells, tmp_path, restart=False)
    tracked = {c.variant: graph.kinds[c.key].tracked(next(j for j in graph.jobs if j.key == c.key), c, tmp_path) for c in cells if c.seed == 42}
    assert tracked["mlp-residual"].rate_fallbacks == tracked["mlp"].rate_fallbacks != tracked["flow"].rate_fallbacks

    clock = {"t": 0.0}
    groups = {v: (t.rate_group, *t.rate_fallbacks, t.unit) for v, t in tracked.items()}
    est = EtaEstimator({"mlp": (100, groups["mlp"]), "flow": (100, groups["flow"]), "residual": (100, groups["mlp-residual"])}, 2, clock=lambda: clock["t"])
    for second in range(1, 101):
        clock["t"] = float(second)
        est.observe("mlp", second)  # 1 s per epoch: done at 100 s
        est.observe("flow", second // 2)  # 2 s per epoch: 50 epochs left at 100 s
    est.finish("mlp")
    assert abs(est.eta() - 100) <= 3  # flow: 100 s more; the residual cell on the freed slot: 100 epochs at mlp's 1 s

"""Suite files: parsing, validation messages, expansion, the fairness audit and the parity gate."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pwmbench.suite.spec import SuiteError, load_suite, parse_suite, prepare

pytestmark = pytest.mark.usefixtures("toy_plugins")

BASE = {"max_epochs": 12, "horizon": 4}
VARIANTS = {"mlp": {"dynamics": "mlp"}, "flow": {"dynamics": "flow", "integrator": "heun", "substeps": 2}}


def suite(**over):
    data = {"name": "t", "tasks": ["toy/point"], "base": dict(BASE), "variants": {k: dict(v) for k, v in VARIANTS.items()}}
    data.update(over)
    return data


def test_a_valid_suite_expands_to_tasks_x_variants_x_default_seeds():
    s = prepare(parse_suite(suite(tasks=["toy/point", "dmc/cartpole-balance"])))
    assert s.seeds == (42, 123, 456) and s.baseline == "mlp"
    cells = s.cells()
    assert len(cells) == 2 * 2 * 3 and len({c.key for c in cells}) == 12
    flow = s.configs[("toy/point", "flow")]
    assert flow.dynamics == "flow" and flow.dynamics_options == {"integrator": "heun", "substeps": 2} and flow.horizon == 4


def test_sweep_and_compute_matched_expand_into_variants():
    variants = {"mlp": {"dynamics": "mlp"}, "flow": {"dynamics": "flow", "sweep": [{"integrator": "heun", "substeps": 2}, {"integrator": "heun", "substeps": 4}, {"integrator": "euler", "substeps": 2}]}}
    s = prepare(parse_suite(suite(variants=variants, seeds=[1], compute_matched={"variant": "mlp", "match": "flow[integrator=heun,substeps=2]"})))
    names = [v.name for v in s.variants]
    assert names == ["mlp", "flow[integrator=heun,substeps=2]", "flow[integrator=heun,substeps=4]", "flow[integrator=euler,substeps=2]", "mlp-compute-matched"]
    assert len(s.cells()) == 5
    matched = s.configs[("toy/point", "mlp-compute-matched")]
    ratio = s.compute_matched["flop_ratio"]
    assert ratio > 1 and matched.wm_iterations == round(8 * ratio) and matched.dynamics == "mlp"
    given_iterations = prepare(parse_suite(suite(compute_matched={"variant": "mlp", "match": "flow", "wm_iterations": 16})))
    assert given_iterations.configs[("toy/point", "mlp-compute-matched")].wm_iterations == 16


@pytest.mark.parametrize(
    "data,message",
    [
        (suite(taks=["toy/point"]), "unknown suite key 'taks'.*did you mean 'tasks'"),
        (suite(base={"horzion": 4}), r"\[base\].*did you mean 'horizon'"),
        (suite(base={"horizon": "four"}), "horizon' expects int"),
        (suite(base={"horizon": 0}), "horizon must be ≥ 1"),
        (suite(base={"dynamics": "flow"}), "base.dynamics is not allowed"),
        (suite(variants={"flow": {"dynamics": "flow", "substep": 2}}), r"\[variants.flow\].*did you mean 'substeps'"),
        (suite(variants={"flow": {"dynamics": "flwo"}}), "did you mean 'flow'"),
        (suite(variants={"flow": {"integrator": "heun"}}), "'dynamics' is required"),
        (suite(variants={"flow": {"dynamics": "flow", "parity": "maybe"}}), "parity must be one of"),
        (suite(variants={"flow": {"dynamics": "flow", "sweep": [{"integrator": "heun", "substep": 4}]}}), "did you mean 'substeps'"),
        (suite(seeds=[42, 42]), "distinct"),
        (suite(seeds=[]), "non-empty"),
        (suite(tasks=[]), "non-empty"),
        (suite(baseline="nope"), "baseline 'nope' is not a variant"),
        (suite(parity_tolerance=-1), "positive"),
        (suite(thresholds={"toy/other": 1.0}), "not in 'tasks'"),
        (suite(compute_matched={"variant": "mlp", "match": "fl0w"}), "match must name a variant"),
        (suite(compute_matched={"variant": "mlp", "match": "flow", "wm_iterations": 0}), "positive integer"),
    ],
)
def test_invalid_suites_name_the_key(data, message):
    with pytest.raises(SuiteError, match=message):
        prepare(parse_suite(data))


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\ntasks = ["toy/point"]\n[base]\nwm_iteration = 3\n[variants.mlp]\ndynamics = "mlp"\n')
    with pytest.raises(SuiteError, match=f"{path}.*did you mean 'wm_iterations'"):
        load_suite(path)
    path.write_text("name = [unclosed")
    with pytest.raises(SuiteError, match="not valid TOML"):
        load_suite(path)
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(tmp_path / "missing.toml")


def test_unknown_task_is_an_error_before_anything_trains():
    with pytest.raises(SuiteError, match="unknown task 'toy/pointt'.*did you mean 'toy/point'"):
        prepare(parse_suite(suite(tasks=["toy/pointt"])))


def test_fairness_audit_catches_a_stray_difference_and_shows_the_diff():
    variants = {"mlp": {"dynamics": "mlp"}, "flow": {"dynamics": "flow", "horizon": 8}}
    with pytest.raises(SuiteError, match=r"(?s)fairness audit.*horizon: mlp=4, flow=8"):
        prepare(parse_suite(suite(variants=variants)))


def test_parity_gate_refuses_or_solves():
    wide = {"mlp": {"dynamics": "mlp"}, "flow": {"dynamics": "flow", "units": [900, 900]}}
    with pytest.raises(SuiteError, match=r"parity gate.*'flow'.*parity = \"match\""):
        prepare(parse_suite(suite(variants=wide)))
    wide["flow"]["parity"] = "match"
    s = prepare(parse_suite(suite(variants=wide)))
    info = s.parity["toy/point"]
    assert abs(info["gap_pct"]["flow"]) < 2.0 and "flow" in info["solved"]
    assert s.configs[("toy/point", "flow")].dynamics_options["units"] == [512, 512]
    assert info["solved"]["flow"]["shared_unchanged"]


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12)


@settings(max_examples=25)
@given(
    seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=4, unique=True),
    n_variants=st.integers(1, 3),
    horizon=st.integers(1, 32),
)
def test_generated_valid_suites_expand_correctly(seeds, n_variants, horizon):
    pool = [("mlp", {"dynamics": "mlp"}), ("flow", {"dynamics": "flow"}), ("flow_e", {"dynamics": "flow", "integrator": "euler", "substeps": 1})]
    variants = dict(pool[:n_variants])
    s = prepare(parse_suite(suite(seeds=seeds, variants=variants, base={"horizon": horizon})))
    assert len(s.cells()) == len(seeds) * n_variants
    assert all(c.config.horizon == horizon for c in s.cells())


@settings(max_examples=25)
@given(key=names)
def test_generated_unknown_keys_are_refused_by_name(key):
    from pwmbench.pwm.config import KEYS

    if key in KEYS:
        return
    with pytest.raises(SuiteError, match=f"'{key}'"):
        parse_suite(suite(base={key: 1}))


@pytest.mark.parametrize("bad, key", [({"actor_lr": float("nan")}, "actor_lr"), ({"model_lr": -1.0}, "model_lr"), ({"betas": [0.9, 1.5]}, "betas"),
                                      ({"critic_grad_norm": float("inf")}, "critic_grad_norm"), ({"rew_clip": 0.0}, "rew_clip")])  # fmt: skip
def test_non_finite_or_out_of_range_numbers_are_refused_by_name(bad, key):
    from pwmbench.errors import ConfigError
    from pwmbench.pwm.config import resolve_config

    with pytest.raises(ConfigError, match=key):
        resolve_config(bad)


def test_a_nan_parity_tolerance_is_refused():
    from pwmbench.suite.spec import SuiteError, parse_suite

    with pytest.raises(SuiteError, match="parity_tolerance"):
        parse_suite({"name": "s", "tasks": ["dmc/cartpole-balance"], "parity_tolerance": float("nan"), "variants": {"mlp": {"dynamics": "mlp"}}})

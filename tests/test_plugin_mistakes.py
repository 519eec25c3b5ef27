"""A plugin author's first mistakes get a clear word at once (issue W10, items 1-5): each test loads plugins from
tests/bad_plugins the way a third party's are loaded (PWMBENCH_PLUGINS, Plugins(extra=...) or a distribution's
entry point) and checks what the author sees."""

import importlib
import textwrap

import pytest
import torch
import toy_task
from bad_plugins import bad_integrator, good
from click.testing import CliRunner

from pwmbench import api
from pwmbench.api import ConfigError, DynamicsContext, DynamicsModel, PluginError
from pwmbench.cli import main
from pwmbench.plugin.manager import Plugins, set_plugins
from pwmbench.plugin.options import coerce, resolve_options
from pwmbench.plugin.registry import DynamicsRegistry, PluginSource
from pwmbench.testing import DYNAMICS_CHECKS, check_dynamics_model, check_integrator, dynamics_checks
from pwmbench.testing.integrator_checks import check_convergence_order, check_zero_interval_identity


def bad(*modules):
    return [importlib.import_module(f"bad_plugins.{m}") for m in modules]


def install(root, dist, ep_name, module):
    """A throw-away installed distribution (dist-info on sys.path) whose entry point `ep_name` names `module`."""
    info = root / f"{dist}-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(f"[pwmbench]\n{ep_name} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.fixture
def use_plugins():
    """Make a Plugins the process-wide one for the test (the CLI and api accessors use it)."""
    previous = []

    def use(plugins):
        previous.append(set_plugins(plugins))
        return plugins

    yield use
    if previous:
        set_plugins(previous[0])


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


SUITE = """
name = "mistakes"
tasks = ["toy/point"]
seeds = [1]
parity_tolerance = 1000.0
[base]
world_model = {{ units = [32, 32], encoder_units = [32], latent_dim = 16 }}
max_epochs = 2
[variants.base]
dynamics = "mlp"
[variants.{name}]
{block}
"""


def write_suite(tmp_path, name, block):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(name=name, block=textwrap.dedent(block)))
    return path


# ------------------------------------------------------------------ 1. validation at registration
def test_registration_checks_each_kind_against_the_api_and_names_plugin_distribution_and_what_is_missing(site, monkeypatch):
    install(site, "half-model", "half_ep", "bad_plugins.half_model")
    monkeypatch.setenv("PWMBENCH_PLUGINS", "bad_plugins.not_a_model,bad_plugins.wrong_shape,bad_plugins.bad_integrator,bad_plugins.bad_task_and_executor")
    plugins = Plugins()  # one bad plugin breaks nothing else: every command that does not use it works
    assert plugins.dynamics.get("whole") and plugins.dynamics.get("mlp") and plugins.integrators.get("heun")

    def refused(registry, name):
        with pytest.raises(PluginError) as err:
            registry.get(name)
        return str(err.value)

    half = refused(plugins.dynamics, "half")
    assert "plugin 'half_ep' (entry point, half-model 0.3.0)" in half and "HalfModel does not implement step_loss(self, z, a, target" in half
    assert "is not a subclass of pwmbench.api.DynamicsModel" in refused(plugins.dynamics, "notamodel")
    assert "plugin 'bad_plugins.not_a_model' (module, no distribution)" in refused(plugins.dynamics, "notamodel")
    assert "returned shape (3, 4) for a batch of 3; expected shape (3, latent_dim=16)" in refused(plugins.dynamics, "shrinking")
    assert "requires ['width'], which default_options does not declare" in refused(plugins.dynamics, "undeclared")
    nostep = refused(plugins.integrators, "nostep")
    assert "NoStep does not implement step(self, f, x, t, dt)" in nostep and "NoStep.order must be a positive int, got 0" in nostep
    assert "returned dict, not a pwmbench.api.Task" in refused(plugins.tasks, "bad/task")
    assert "Lazy does not implement run(self, jobs)" in refused(plugins.executors, "lazy")
    assert len(plugins.problems()) == 7
    # called directly (not through the plugin manager), add raises at once
    with pytest.raises(PluginError, match="not a subclass of pwmbench.api.DynamicsModel"):
        DynamicsRegistry().add("x", dict)


def test_a_misspelt_hook_gets_did_you_mean_and_a_missing_hookimpl_a_warning_in_plugins(use_plugins):
    plugins = use_plugins(Plugins(extra=bad("typo_hook", "no_hookimpl", "good")))
    with pytest.raises(PluginError) as err:
        plugins.dynamics.get("typo")
    assert "'pwmbench_register_dynamic' is marked @hookimpl but is not a pwmbench hook" in str(err.value)
    assert "did you mean 'pwmbench_register_dynamics'?" in str(err.value)
    result = cli("plugins")
    assert result.exit_code == 1  # a problem: the typo
    assert "warning: plugin 'bad_plugins.no_hookimpl'" in result.output and "has no @hookimpl, so pwmbench ignores it" in result.output
    assert "did you mean 'pwmbench_register_dynamics'?" in result.output
    header, mlp_row = result.output.splitlines()[0], next(x for x in result.output.splitlines() if x.startswith("dynamics model  mlp"))
    assert "distribution" in header and "pwmbench 0.1.0" in mlp_row  # distributions, not only entry-point names
    assert "residual" in result.output and "no distribution" not in mlp_row


# ------------------------------------------------------------------ 2. typed options
def test_options_are_checked_against_their_types_with_coercion_from_strings(use_plugins):
    use_plugins(Plugins(extra=bad("good")))
    residual = api.dynamics("residual")
    ctx = DynamicsContext(16, 2, units=(8,))
    assert residual.build(ctx, scale="0.5").options() == {"scale": 0.5}  # a CLI string coerced
    assert residual.build(ctx, scale=2).scale == 2.0 and isinstance(residual.build(ctx, scale=2).scale, float)
    with pytest.raises(ConfigError) as err:
        residual.build(ctx, scale="abc")
    assert str(err.value) == ("option 'scale' of dynamics model 'residual' (Residual; plugin 'bad_plugins.good', no distribution) "
                              "must be a number, got 'abc' (str)")  # fmt: skip
    # the shared helper (pwmbench.api.resolve_options): "256" → 256, "true" → True, "[256, 256]" → list
    defaults = {"width": 64, "fast": False, "units": [512, 512], "mode": "a"}
    assert api.resolve_options({"width": "256", "fast": "true", "units": "[256, 256]"}, defaults, owner="x") == {
        "width": 256, "fast": True, "units": [256, 256], "mode": "a"}  # fmt: skip
    with pytest.raises(ConfigError, match=r"option 'units' of x must be a list of ints, got \[1.7, 64\]"):
        api.resolve_options({"units": [1.7, 64]}, defaults, owner="x")
    from typing import Literal

    assert coerce("none", int | None) is None and coerce("3", int | None) == 3
    with pytest.raises(ConfigError, match="one of 'a', 'b'"):
        resolve_options({"mode": "c"}, defaults, {"mode": Literal["a", "b"]}, owner="x")
    # integrators and executors take typed options the same way
    with pytest.raises(ConfigError, match="option 'start_method' of the local executor must be one of 'spawn', 'forkserver', 'fork', got 'fork2'"):
        api.executor("local", workers=1, start_method="fork2")
    with pytest.raises(ConfigError, match="unknown option of integrator 'heun'"):
        api.integrator("heun", tol=1e-3)


def test_dynamics_units_given_as_an_int_is_a_clear_error_not_a_type_error(use_plugins):
    use_plugins(Plugins(extra=bad("good")))
    result = cli("parity", "--obs-dim", 5, "--act-dim", 2, "--dynamics", "mlp", "--dynamics", "residual:units=256")
    assert result.exit_code == 2 and "Traceback" not in result.output and not isinstance(result.exception, TypeError)
    assert ("error: option 'units' of dynamics model 'residual' (Residual; plugin 'bad_plugins.good', no distribution) must be a "
            "non-empty list of positive ints") in result.output and "got 256 (int); for one layer of 256 write units = [256]" in result.output  # fmt: skip
    assert cli("parity", "--obs-dim", 5, "--act-dim", 2, "--dynamics", "mlp", "--dynamics", "residual:units=[64,64],scale=0.5").exit_code == 0


# ------------------------------------------------------------------ 3. errors from plugin code during build
def test_a_constructor_that_raises_is_one_line_naming_plugin_type_and_message_in_check_and_dry_run(tmp_path, use_plugins):
    use_plugins(Plugins(extra=[toy_task, *bad("boom")]))
    path = write_suite(tmp_path, "boom", 'dynamics = "boom"\nwidth_multiplier = 8\n')
    expected = (f"{path} [variants.boom]: dynamics model 'boom' (Boom; plugin 'bad_plugins.boom', no distribution): constructor "
                "raised ValueError: width_multiplier 8 is more than this model supports (4)")  # fmt: skip
    dry = cli("run", path, "--out", tmp_path / "out", "--dry-run")
    assert dry.exit_code == 2 and dry.output.strip() == f"error: {expected}"
    check = cli("check", path, "--out", tmp_path / "out")
    assert check.exit_code == 1 and f"[FAIL] suite file valid: {expected}" in check.output and "Traceback" not in check.output
    with pytest.raises(PluginError, match=r"^dynamics model 'boom' .*constructor raised ValueError: width_multiplier 5"):
        api.dynamics("boom").build(DynamicsContext(16, 2), width_multiplier=5)


def test_not_implemented_errors_name_the_missing_method():
    class Half(DynamicsModel):
        def next(self, z, a, emb=None):
            return z

    with pytest.raises(NotImplementedError, match=r"Half must implement step_loss\(self, z, a, target, emb=None, \*, teacher=None\)"):
        Half(DynamicsContext(16, 2)).step_loss(torch.zeros(1, 16), torch.zeros(1, 2), torch.zeros(1, 16))
    with pytest.raises(NotImplementedError, match=r"NoStep must implement step\(self, f, x, t, dt\)"):
        bad_integrator.NoStep().integrate(lambda x, t: x, torch.ones(2))
    with pytest.raises(NotImplementedError, match=r"Executor must implement run\(self, jobs\)"):
        api.Executor().run([])


# ------------------------------------------------------------------ 4. duplicates
def test_a_duplicate_from_a_second_distribution_names_its_entry_point_and_breaks_only_that_name(site, monkeypatch, use_plugins):
    install(site, "flow-clone", "my_flow_ep", "bad_plugins.dup_flow")
    use_plugins(Plugins())
    listing = cli("plugins")
    assert listing.exit_code == 1
    assert ("error: dynamics model 'flow' is registered twice: by plugin 'flow' (built-in, pwmbench 0.1.0) and by plugin 'my_flow_ep' "
            "(entry point, flow-clone 0.3.0); it cannot be used until one of them goes: PWMBENCH_BLOCK_PLUGINS=my_flow_ep "
            "(or uninstall flow-clone)") in listing.output  # fmt: skip
    used = cli("parity", "--obs-dim", 5, "--act-dim", 2, "--dynamics", "mlp", "--dynamics", "flow")
    assert used.exit_code == 2 and "PWMBENCH_BLOCK_PLUGINS=my_flow_ep" in used.output
    # what does not need the clashing name keeps working
    assert cli("parity", "--obs-dim", 5, "--act-dim", 2, "--dynamics", "mlp", "--dynamics", "mlp:units=[256,256]").exit_code == 0
    assert api.integrator("heun").order == 2 and api.task("dmc/walker-walk").spec.act_dim == 6
    monkeypatch.setenv("PWMBENCH_BLOCK_PLUGINS", "my_flow_ep")  # the hint works
    assert Plugins().dynamics.entry("flow").source.how == "built-in"


# ------------------------------------------------------------------ 5. conformance kit
@pytest.mark.parametrize("form", ["name", "class", "instance"])
def test_every_check_takes_a_name_a_class_or_an_instance(form, use_plugins, monkeypatch):
    use_plugins(Plugins(extra=bad("good")))
    ctx = DynamicsContext(16, 4, units=(32,))
    model = {"name": "residual", "class": good.Residual, "instance": good.Residual.build(ctx, scale=0.5)}[form]
    integ = {"name": "ralston", "class": good.Ralston, "instance": good.Ralston()}[form]
    options = {"scale": 0.5} if form != "instance" else None
    monkeypatch.setattr(dynamics_checks, "DYNAMICS_CHECKS", DYNAMICS_CHECKS[:-1])  # the fitting check trains for seconds
    check_dynamics_model(model, options)
    check_integrator(integ)
    for check in DYNAMICS_CHECKS[:-1]:
        check(model, options)
    check_convergence_order(integ)


def test_an_integrator_dtype_bug_is_reported_as_a_dtype_problem(use_plugins):
    use_plugins(Plugins(extra=bad("bad_integrator")))  # registration passes: float32 in, float32 out
    with pytest.raises(AssertionError, match=r"dtype problem: it returned torch.float32 for torch.float64 input"):
        check_integrator("sloppy_euler")
    with pytest.raises(AssertionError, match="dtype problem"):
        check_zero_interval_identity(bad_integrator.SloppyEuler)  # no longer "changed x0 over a zero-length interval"


def test_options_left_out_of_options_are_caught_because_results_record_them():
    class Forgetful(good.Residual):
        def options(self):
            return {}

    with pytest.raises(AssertionError, match=r"Forgetful.options\(\) leaves out \['scale'\]"):
        check_dynamics_model(Forgetful)
    del Forgetful.options  # without an override, options() records what build resolved
    assert Forgetful.build(DynamicsContext(16, 2), scale="3").options() == {"scale": 3.0}


# ------------------------------------------------------------------ the small ones
def test_train_help_lists_registered_integrators_including_plugins(use_plugins):
    use_plugins(Plugins(extra=bad("good")))
    help_text = " ".join(cli("train", "--help").output.split())
    assert "Registered integrators: euler, heun, midpoint, ralston, rk4." in help_text


def test_an_integrator_typo_in_a_suite_names_the_file_and_the_variant(tmp_path, use_plugins):
    use_plugins(Plugins(extra=[toy_task]))
    path = write_suite(tmp_path, "fm", 'dynamics = "flow"\nintegrator = "hean"\n')
    result = cli("run", path, "--out", tmp_path / "out", "--dry-run")
    assert result.exit_code == 2
    assert f"error: {path} [variants.fm]: unknown integrator 'hean'; did you mean 'heun'?" in result.output
    swept = write_suite(tmp_path, "fm", 'dynamics = "flow"\nsweep = [{ substeps = 2 }, { substeps = "many" }]\n')
    result = cli("run", swept, "--dry-run")
    assert f"{swept} [variants.fm] sweep point {{substeps=many}}: option 'substeps' of dynamics model 'flow'" in result.output
    assert "must be an int, got 'many' (str)" in result.output


def test_only_that_matches_no_cell_lists_the_variants(tmp_path, use_plugins):
    use_plugins(Plugins(extra=[toy_task]))
    path = write_suite(tmp_path, "fm", 'dynamics = "flow"\n')
    typo = cli("run", path, "--out", tmp_path / "out", "--dry-run", "--only", "variant=fn")
    assert typo.exit_code == 2 and "--only variant=fn matches no cell of suite 'mistakes'; did you mean 'fm'? (its variants: base, fm)" in typo.output
    by_model = cli("run", path, "--out", tmp_path / "out", "--dry-run", "--only", "variant=flow")
    assert "'flow' is a dynamics model; the variants that use it are fm" in by_model.output
    assert cli("run", path, "--out", tmp_path / "out", "--dry-run", "--only", "variant=fm").exit_code == 0


def test_a_plugin_hook_that_raises_is_reported_and_explains_the_unknown_name():
    class Raising:
        @api.hookimpl
        def pwmbench_register_dynamics(self, registry):
            raise KeyError("units")

    plugins = Plugins(extra=[Raising()])
    assert plugins.dynamics.get("mlp")
    with pytest.raises(PluginError, match=r"unknown dynamics model 'mine'.*plugin 'Raising' .*pwmbench_register_dynamics raised KeyError: 'units'"):
        plugins.dynamics.get("mine")


def test_a_plugin_source_block_hint_names_the_entry_point():
    assert PluginSource("my_ep", "my-dist", "1.0").block_hint() == "PWMBENCH_BLOCK_PLUGINS=my_ep (or uninstall my-dist)"
    assert PluginSource("mlp", "pwmbench", "0.1.0", how="built-in").block_hint() is None



def test_the_checks_say_what_they_verified_and_a_swapped_train_step_is_named(use_plugins, monkeypatch, capsys):
    """W15 friction 3 and 8: the conformance checks print one line on success; train_step returning (next, loss)
    instead of (loss, next) is named as swapped, with the expected order."""
    use_plugins(Plugins(extra=bad("good")))
    monkeypatch.setattr(dynamics_checks, "DYNAMICS_CHECKS", DYNAMICS_CHECKS[:-1])
    line = check_dynamics_model("residual", {"scale": 0.5})
    assert line in capsys.readouterr().out and f"{len(DYNAMICS_CHECKS) - 1} dynamics checks passed" in line
    assert "integrator checks passed" in check_integrator("ralston", quiet=True) and capsys.readouterr().out == ""

    class Swapped(good.Residual):
        def train_step(self, z, a, target, emb=None, *, teacher=None):
            loss, nxt = super().train_step(z, a, target, emb, teacher=teacher)
            return nxt, loss

    with pytest.raises(AssertionError, match=r"must return \(loss, next\).*the two look swapped"):
        check_dynamics_model(Swapped, {"scale": 0.5})


def test_a_plugin_class_without_a_docstring_gets_a_description_that_says_so(use_plugins):
    from pwmbench.plugin.registry import IntegratorRegistry

    class Undocumented(good.Ralston):
        pass

    Undocumented.__doc__ = None
    registry = IntegratorRegistry()
    registry.add("undocumented", Undocumented)
    assert "no description: give Undocumented a docstring, or register it with description=" in registry.entry("undocumented").description

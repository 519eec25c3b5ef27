"""Plugin manager: entry-point discovery, autoload switch, blocking, duplicate names, run events, hook docs."""

import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from pwmbench import hookspecs
from pwmbench.api import PluginError, RunEvent, hookimpl
from pwmbench.plugin.manager import Plugins

BUILTINS = {"integrators", "mlp", "flow"}


def write_distribution(root: Path, dist: str, module: str, body: str, ep_name: str) -> None:
    """A real installed-looking distribution on sys.path: module file + dist-info with an entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[pwmbench]\n{ep_name} = {module}\n")


THIRD_PARTY = """
    import torch
    from pwmbench.api import DynamicsModel, hookimpl, mlp, join_inputs

    class Linear(DynamicsModel):
        '''A third party's dynamics model.'''
        def __init__(self, ctx):
            super().__init__(ctx)
            self.net = mlp(ctx.input_dim, ctx.units, ctx.latent_dim)
        def next(self, z, a, emb=None):
            return self.net(join_inputs(z, a, emb))
        def step_loss(self, z, a, target, emb=None, *, teacher=None):
            return ((self.next(z, a, emb) - target) ** 2).mean(-1)

    @hookimpl
    def pwmbench_register_dynamics(registry):
        registry.add("{name}", Linear)
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("thirdparty_")]:
        del sys.modules[mod]


def test_builtins_load_through_entry_points():
    plugins = Plugins()
    assert BUILTINS <= set(plugins.sources)
    assert all(plugins.sources[name].how == "built-in" for name in BUILTINS)
    assert plugins.integrators.names() == ["euler", "heun", "midpoint", "rk4"]
    assert plugins.dynamics.names() == ["flow", "mlp"]


def test_third_party_entry_point_is_discovered_and_described(site):
    write_distribution(site, "thirdparty-dyn", "thirdparty_dyn", THIRD_PARTY.format(name="linear"), "linear_dyn")
    plugins = Plugins()
    entry = plugins.dynamics.entry("linear")
    assert entry.source.how == "entry point" and entry.source.distribution == "thirdparty-dyn" and entry.source.version == "1.2.3"
    described = {row["name"]: row for row in plugins.describe()}
    assert described["linear"]["plugin"] == "linear_dyn" and described["mlp"]["source"] == "built-in"


def test_third_party_model_builds_into_a_world_model(site):
    write_distribution(site, "thirdparty-dyn2", "thirdparty_dyn2", THIRD_PARTY.format(name="linear2"), "linear2")
    from pwmbench.api import build_world_model

    cls = Plugins().dynamics.get("linear2")
    wm = build_world_model("pwm", obs_dim=5, act_dim=2, dynamics=cls, units=[16], encoder_units=[16], latent_dim=16)
    assert wm.dynamics.evals_per_next == 1


def test_autoload_off_keeps_only_builtins(site, monkeypatch):
    write_distribution(site, "thirdparty-off", "thirdparty_off", THIRD_PARTY.format(name="off"), "off_dyn")
    assert "off" not in Plugins(autoload=False).dynamics
    monkeypatch.setenv("PWMBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins = Plugins()
    assert "off" not in plugins.dynamics and BUILTINS <= set(plugins.sources)


def test_duplicate_names_are_an_error_naming_both_sources(site):
    write_distribution(site, "thirdparty-dup", "thirdparty_dup", THIRD_PARTY.format(name="flow"), "dupflow")
    with pytest.raises(PluginError) as err:
        Plugins().dynamics.get("flow")
    msg = str(err.value)
    assert "'flow' is registered twice" in msg and "'flow' (built-in, pwmbench" in msg and "'dupflow' (entry point, thirdparty-dup 1.2.3)" in msg


def test_blocking_a_plugin_by_name(site, monkeypatch):
    write_distribution(site, "thirdparty-dup2", "thirdparty_dup2", THIRD_PARTY.format(name="flow"), "dupflow2")
    monkeypatch.setenv("PWMBENCH_BLOCK_PLUGINS", "dupflow2")
    assert Plugins().dynamics.entry("flow").source.how == "built-in"


def test_plugins_named_in_the_environment_load_without_installing(site, monkeypatch):
    (site / "thirdparty_envmod.py").write_text(textwrap.dedent(THIRD_PARTY.format(name="from_env")))
    monkeypatch.setenv("PWMBENCH_PLUGINS", "thirdparty_envmod")
    assert Plugins().dynamics.entry("from_env").source.how == "module"
    monkeypatch.setenv("PWMBENCH_PLUGINS", "thirdparty_does_not_exist")
    with pytest.raises(PluginError, match="thirdparty_does_not_exist"):
        Plugins()


def test_broken_entry_point_names_itself(site):
    write_distribution(site, "thirdparty-broken", "thirdparty_broken", "raise RuntimeError('boom')\n", "broken")
    with pytest.raises(PluginError, match="'broken'.*boom"):
        Plugins()


def test_unknown_hook_in_a_plugin_is_rejected():
    class Typo:
        @hookimpl
        def pwmbench_register_dynamic(self, registry):
            pass

    plugins = Plugins(extra=[Typo()])
    assert any("'pwmbench_register_dynamic' is marked @hookimpl but is not a pwmbench hook" in p for p in plugins.problems())


def test_run_events_reach_loggers_and_a_raising_logger_is_skipped():
    heard = []

    class Logger:
        @hookimpl
        def pwmbench_run_event(self, event):
            heard.append((event.kind, event.step))

    class Broken:
        calls = 0

        @hookimpl
        def pwmbench_run_event(self, event):
            Broken.calls += 1
            raise RuntimeError("logger down")

    plugins = Plugins(extra=[Logger(), Broken()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3):
            plugins.emit(RunEvent("metrics", {"task": "t"}, step=step, metrics={"rewards": 1.0}))
    assert heard == [("metrics", 0), ("metrics", 1), ("metrics", 2)]
    assert Broken.calls == 1 and len(caught) == 1 and "logger down" in str(caught[0].message)


def test_run_event_kind_is_checked():
    with pytest.raises(ValueError):
        RunEvent("begun", {})


def test_every_hook_has_a_reference_docstring_and_is_documented_in_contributing():
    contributing = (Path(__file__).parents[1] / "CONTRIBUTING.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("pwmbench_")]
    assert len(hooks) == 5
    for name in hooks:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert len(doc.strip()) > 80, f"{name} needs a reference docstring"
        assert f"`{name}(" in contributing, f"CONTRIBUTING.md does not document {name}"

"""The plugin manager: finds plugins, lets them register what they provide, and emits run events.

Order: blocked names → entry points in group ``pwmbench`` (pwmbench's own built-ins always; third-party
ones unless autoload is off) → modules named in ``PWMBENCH_PLUGINS`` → objects passed in. Each plugin's
``pwmbench_*`` names are checked: a ``@hookimpl`` whose name is not a hook ("did you mean ...?") is a problem, a
hook-like function without ``@hookimpl`` (pwmbench would silently ignore it) a warning. Then each registration hook
is called once per plugin, with the registry scoped to that plugin so a duplicate name can be traced to both of its
sources. A plugin's problem (a refused registration, a clash, a hook that raised) is recorded, not raised: using
what it concerns raises it, everything else keeps working, and ``pwmbench plugins`` lists them all.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from pwmbench import hookspecs
from pwmbench.errors import PluginError, suggest
from pwmbench.plugin.registry import (
    DynamicsRegistry,
    ExecutorRegistry,
    IntegratorRegistry,
    PluginSource,
    Registry,
    TaskRegistry,
)

ENTRY_POINT_GROUP = "pwmbench"
OWN_DISTRIBUTION = "pwmbench"
ENV_DISABLE_AUTOLOAD = "PWMBENCH_DISABLE_PLUGIN_AUTOLOAD"
ENV_EXTRA_PLUGINS = "PWMBENCH_PLUGINS"
ENV_BLOCK = "PWMBENCH_BLOCK_PLUGINS"


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class _Hook:
    name: str
    argname: str
    registry_attr: str


_REGISTRATION_HOOKS = (
    _Hook("pwmbench_register_integrators", "registry", "integrators"),
    _Hook("pwmbench_register_dynamics", "registry", "dynamics"),
    _Hook("pwmbench_register_tasks", "registry", "tasks"),
    _Hook("pwmbench_register_executors", "registry", "executors"),
)


class Plugins:
    """Loaded plugins and the registries they filled."""

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        extra: Iterable[Any] = (),
        block: Iterable[str] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.sources: dict[str, PluginSource] = {}
        self.integrators = IntegratorRegistry()
        self.dynamics = DynamicsRegistry()
        self.tasks = TaskRegistry()
        self.executors = ExecutorRegistry()
        self._broken_loggers: set[str] = set()
        self.errors: list[str] = []  # plugin-level problems (a hook name that is not a hook, a hook that raised)
        self.warnings: list[str] = []  # things that are probably mistakes (a hook-like function without @hookimpl)

        autoload = not _env_flag(ENV_DISABLE_AUTOLOAD) if autoload is None else autoload
        for name in [*_env_list(ENV_BLOCK), *block]:
            self.pm.set_blocked(name)
        self._load_entry_points(autoload)
        for module_name in _env_list(ENV_EXTRA_PLUGINS):
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise PluginError(f"cannot import plugin module {module_name!r} named in {ENV_EXTRA_PLUGINS}: {exc}") from exc
            self._register(module, module_name, PluginSource(module_name, how="module"))
        for obj in extra:
            name = getattr(obj, "__name__", None) or type(obj).__name__
            self._register(obj, name, PluginSource(name, how="object"))
        # Registration checks build dynamics models (flow resolves its integrator through get_plugins()): while the
        # hooks run, get_plugins() answers with this manager, whose integrators are registered first.
        _loading.append(self)
        try:
            for hook in _REGISTRATION_HOOKS:
                self._call_registration(hook)
        finally:
            _loading.remove(self)

    # ------------------------------------------------------------------ loading
    def _load_entry_points(self, autoload: bool) -> None:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else None
            builtin = dist is not None and dist.lower() == OWN_DISTRIBUTION
            if not (builtin or autoload) or self.pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(f"plugin {ep.name!r} (entry point {ep.value!r} of {dist}) failed to load: {exc!r}") from exc
            version = ep.dist.version if ep.dist is not None else None
            self._register(plugin, ep.name, PluginSource(ep.name, dist, version, "built-in" if builtin else "entry point"))
        if not any(src.how == "built-in" for src in self.sources.values()):
            warnings.warn("pwmbench's built-in plugins were not found: install the package (`pip install -e .`)")

    def _register(self, plugin: Any, name: str, source: PluginSource) -> None:
        if self.pm.is_blocked(name) or self.pm.is_registered(plugin):
            return  # blocked, or the same object reached us twice (e.g. an entry point also named in PWMBENCH_PLUGINS)
        if name in self.sources:
            raise PluginError(f"two plugins are named {name!r}: {self.sources[name].describe()} and {source.describe()}")
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:  # a hook whose arguments do not match its spec
            with contextlib.suppress(Exception):
                self.pm.unregister(name=name)
            self._error(f"{source.describe()} was not loaded: {exc}")
            return
        self.sources[name] = source
        self._check_hook_names(plugin, source)

    def _check_hook_names(self, plugin: Any, source: PluginSource) -> None:
        """A marked hook with an unknown name is an error with the nearest hook; an unmarked hook-like function
        (pwmbench ignores it) is a warning."""
        hooks = [h for h in dir(hookspecs) if h.startswith("pwmbench_")]
        marked = [n for n in dir(plugin) if self.pm.parse_hookimpl_opts(plugin, n) is not None]
        for name in marked:
            if name not in hooks:
                close = suggest(name, hooks)
                hint = f"did you mean {close!r}?" if close else f"the hooks are {', '.join(hooks)}"
                # pluggy keeps it as a hook without a spec, never called (check_pending() would raise on it)
                self._error(f"{source.describe()}: {name!r} is marked @hookimpl but is not a pwmbench hook, so it is ignored; {hint}")
        for name in dir(plugin):
            if not name.startswith("pwmbench_") or name in marked or not callable(getattr(plugin, name, None)):
                continue
            close = name if name in hooks else next(iter(difflib.get_close_matches(name, hooks, n=1, cutoff=0.85)), None)
            if close is None and any(m in hooks for m in marked):
                continue  # a helper of a plugin that does implement hooks
            meant = "" if close is None else (f" (the hook {close!r})" if close == name else f" (did you mean the hook {close!r}?)")
            self.warnings.append(f"{source.describe()}: function {name!r}{meant} has no @hookimpl, so pwmbench ignores it; "
                                 "decorate it with @pwmbench.api.hookimpl")  # fmt: skip

    def _error(self, message: str) -> None:
        self.errors.append(message)
        for registry in self.registries().values():
            registry.notes.append(message)

    def _call_registration(self, hook: _Hook) -> None:
        registry: Registry = getattr(self, hook.registry_attr)
        caller = getattr(self.pm.hook, hook.name)
        # Oldest registration first (pluggy lists them in registration order), so built-ins register before what
        # extends them and a clash names the built-in first.
        for impl in caller.get_hookimpls():
            source = self.sources.get(impl.plugin_name, PluginSource(impl.plugin_name, how="object"))
            kwargs = {hook.argname: registry} if hook.argname in impl.argnames else {}
            with registry.scope(source, defer=True):
                try:
                    impl.function(**kwargs)
                except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the others
                    lines = str(exc).strip().splitlines()
                    message = f"{source.describe()}: its {hook.name} raised {type(exc).__name__}" + (f": {lines[0]}" if lines else "")
                    self.errors.append(message)
                    registry.notes.append(message)

    # ------------------------------------------------------------------ use
    def emit(self, event: Any) -> None:
        """Send a RunEvent to every logger; a logger that raises is reported once and then skipped."""
        for impl in reversed(self.pm.hook.pwmbench_run_event.get_hookimpls()):
            if impl.plugin_name in self._broken_loggers:
                continue
            try:
                impl.function(event=event)
            except Exception as exc:  # noqa: BLE001 - a logger must never stop training
                self._broken_loggers.add(impl.plugin_name)
                warnings.warn(f"run-event hook of plugin {impl.plugin_name!r} raised {exc!r}; it is skipped from now on")

    def registries(self) -> dict[str, Registry]:
        return {h.registry_attr: getattr(self, h.registry_attr) for h in _REGISTRATION_HOOKS}

    def describe(self) -> list[dict[str, Any]]:
        """Every registered object with its plugin, distribution, version, source and problem (for `pwmbench plugins`):
        both sides of a name two plugins register, and registrations that were refused, are listed too."""
        return [row for reg in self.registries().values() for row in reg.describe_rows()]

    def problems(self) -> list[str]:
        """Every plugin problem, one message each: refused registrations, clashing names, hooks that are not hooks or
        that raised. Each one breaks only what uses it."""
        return [*self.errors, *(p for reg in self.registries().values() for p in reg.problems())]


_default: Plugins | None = None
_loading: list[Plugins] = []  # managers whose registration hooks are running (innermost last)


def get_plugins() -> Plugins:
    """The process-wide plugin manager, created on first use (while a manager's registration hooks run: that one)."""
    global _default
    if _loading:
        return _loading[-1]
    if _default is None:
        _default = Plugins()
    return _default


def set_plugins(plugins: Plugins | None) -> Plugins | None:
    """Replace the process-wide plugin manager (tests, embedding); returns the previous one."""
    global _default
    previous, _default = _default, plugins
    return previous


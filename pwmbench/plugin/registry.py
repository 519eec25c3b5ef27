"""Registries that `pwmbench_register_*` hooks fill.

Hooks receive a registry object instead of returning values (as tox 4 does), so the hook signatures stay
stable while what a plugin registers can grow new options. Every entry remembers which plugin added it,
so a name registered twice is an error that names both sources.

`add` checks what it is given against the plugin API (`pwmbench.plugin.validation`: a DynamicsModel subclass that
implements `next` and `step_loss` and builds on a small context, an Integrator subclass with a `step`, ...) and
raises a PluginError naming the plugin, its distribution and what is wrong. Inside the plugin manager
(`scope(..., defer=True)`) such an error, and a name two plugins register, is recorded against the name instead:
using that name raises it, while everything else keeps working (`pwmbench plugins` lists the problems).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pwmbench.errors import PluginError, unknown_name_message
from pwmbench.plugin.source import _REGISTERED, UNKNOWN_SOURCE, PluginSource, registered_label  # noqa: F401 - re-exported


def plugin_in_traceback(tb: types.TracebackType | None) -> str | None:
    """Which plugin's code an exception came from, for the run row and `run`'s summary: walking from the innermost
    frame out, the first frame that is a method of a registered class (`self` an instance of it: this also catches
    pwmbench's own "must implement" errors raised on a plugin's behalf) or that runs in a registering plugin's package.
    None when no plugin code is on the traceback (pwmbench's own failure)."""
    registered = {f: info for f, info in list(_REGISTERED.items()) if isinstance(f, type)}
    packages = {}
    for factory, (_, _, source) in registered.items():
        package = (getattr(factory, "__module__", None) or "").split(".")[0]
        if package and package != "pwmbench" and source.how != "direct call":
            packages.setdefault(package, source)
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        for cls in type(owner).__mro__ if owner is not None else ():  # the most specific registered class
            if cls in registered:
                return registered_label(cls)
        source = packages.get(str(frame.f_globals.get("__name__", "")).split(".")[0])
        if source is not None:
            return source.describe()
    return None


@dataclass(frozen=True)
class RegistryEntry:
    """One registered thing: its name, the factory that makes it, and who registered it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    description: str
    source: PluginSource
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "plugin": self.source.plugin,
            "distribution": self.source.distribution,
            "version": self.source.version,
            "source": self.source.how,
            "problem": self.meta.get("problem"),
        }


class Registry:
    """Name → factory map for one kind of plugin object (dynamics model, integrator, task, executor)."""

    kind = "object"

    def __init__(self) -> None:
        self._entries: dict[str, RegistryEntry] = {}
        self._clashes: dict[str, list[RegistryEntry]] = {}  # name → the later registrations of a name taken already
        self._rejected: dict[str, RegistryEntry] = {}  # name → an entry refused by validation (meta["problem"] says why)
        self.notes: list[str] = []  # plugin problems that may explain an unknown name (a hook that raised, ...)
        self._source = UNKNOWN_SOURCE
        self._defer = False

    @contextlib.contextmanager
    def scope(self, source: PluginSource, defer: bool = False) -> Iterator[Registry]:
        """Attribute every `add` inside the block to `source` (used by the plugin manager). With `defer`, a rejected
        registration is recorded against its name instead of raised, so one bad plugin breaks only what uses it."""
        previous, self._source = self._source, source
        previous_defer, self._defer = self._defer, defer
        try:
            yield self
        finally:
            self._source, self._defer = previous, previous_defer

    def validate(self, name: str, factory: Callable[..., Any]) -> list[str]:
        """What is wrong with `factory` as a registered `kind` (empty: nothing). Subclasses check the plugin API."""
        return []

    def add(self, name: str, factory: Callable[..., Any], *, description: str = "", **meta: Any) -> None:
        """Register `factory` under `name` after checking it against the plugin API; a PluginError names the plugin,
        its distribution and what is wrong. A name registered by two plugins is unusable until one is blocked."""
        where = self._source.describe()
        if not isinstance(name, str) or not name:
            raise PluginError(f"{self.kind} names must be non-empty strings, got {name!r} from {where}")
        if not description:
            lines = (getattr(factory, "__doc__", None) or "").strip().splitlines()
            description = lines[0] if lines else (f"(no description: give {getattr(factory, '__name__', name)} a docstring, "
                                                  f"or register it with description=...)")  # fmt: skip
        entry = RegistryEntry(self.kind, name, factory, description, self._source, dict(meta))
        if name in self._entries:
            first = self._entries[name].source
            if first == self._source:
                self._reject(entry, f"{self.kind} {name!r} is registered twice by the same {where}")
                return
            self._clashes.setdefault(name, []).append(entry)
            return
        if not callable(factory):
            self._reject(entry, f"{self.kind} {name!r} from {where} is not callable: {factory!r}")
            return
        try:
            _REGISTERED[factory] = (self.kind, name, self._source)
        except TypeError:
            pass
        problems = self.validate(name, factory)
        if problems:
            self._reject(entry, f"{self.kind} {name!r} from {where}: " + "; ".join(problems))
            return
        self._rejected.pop(name, None)
        self._entries[name] = entry

    def _reject(self, entry: RegistryEntry, message: str) -> None:
        if self._defer:
            self._rejected[entry.name] = RegistryEntry(entry.kind, entry.name, entry.factory, entry.description, entry.source,
                                                       {**entry.meta, "problem": message})  # fmt: skip
            return
        raise PluginError(message)

    def clash_message(self, name: str) -> str:
        sources = [self._entries[name].source, *(e.source for e in self._clashes[name])]
        by = " and by ".join(s.describe() for s in sources)
        hints = [h for h in (s.block_hint() for s in sources) if h]
        fix = " or ".join(hints) if hints else "uninstall one of them"
        return f"{self.kind} {name!r} is registered twice: by {by}; it cannot be used until one of them goes: {fix}"

    def entry(self, name: str) -> RegistryEntry:
        if name in self._clashes:
            raise PluginError(self.clash_message(name))
        try:
            return self._entries[name]
        except KeyError:
            pass
        if name in self._rejected:
            raise PluginError(self._rejected[name].meta["problem"])
        message = unknown_name_message(self.kind, name, self._entries)
        if self.notes:
            message += "; plugin problems that may explain it: " + " | ".join(self.notes)
        raise PluginError(message)

    def get(self, name: str) -> Callable[..., Any]:
        """The factory registered under `name` (PluginError with a suggestion when unknown, or naming the plugins
        when two registered it, or saying why it was refused)."""
        return self.entry(name).factory

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[RegistryEntry]:
        return [self._entries[n] for n in self.names()]

    def problems(self) -> list[str]:
        """Every registration refused or clashing in this registry, one message each."""
        return [e.meta["problem"] for e in self._rejected.values()] + [self.clash_message(n) for n in sorted(self._clashes)]

    def describe_rows(self) -> list[dict[str, Any]]:
        """Rows for `pwmbench plugins`: every entry, both sides of a clash, and refused registrations."""
        rows = []
        for entry in self.entries():
            row = entry.to_dict()
            if entry.name in self._clashes:
                row["problem"] = self.clash_message(entry.name)
                rows += [row, *({**e.to_dict(), "problem": row["problem"]} for e in self._clashes[entry.name])]
            else:
                rows.append(row)
        rows += [e.to_dict() for e in self._rejected.values()]
        return rows

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class DynamicsRegistry(Registry):
    """Dynamics models: `add(name, cls)` where `cls` is a `pwmbench.api.DynamicsModel` subclass."""

    kind = "dynamics model"

    def validate(self, name: str, factory: Callable[..., Any]) -> list[str]:
        from pwmbench.plugin.validation import dynamics_problems

        return dynamics_problems(factory)


class IntegratorRegistry(Registry):
    """Integrators: `add(name, cls)` where `cls()` is a `pwmbench.api.Integrator`."""

    kind = "integrator"

    def validate(self, name: str, factory: Callable[..., Any]) -> list[str]:
        from pwmbench.plugin.validation import integrator_problems

        return integrator_problems(factory)


class TaskRegistry(Registry):
    """Tasks and task sets: `add(name, factory)` where `factory()` returns a `pwmbench.api.Task`."""

    kind = "task"

    def validate(self, name: str, factory: Callable[..., Any]) -> list[str]:
        from pwmbench.plugin.validation import task_problems

        return task_problems(factory)


class ExecutorRegistry(Registry):
    """Executors: `add(name, cls)` where `cls` is a `pwmbench.api.Executor` subclass; `cls(workers=N, **options)`."""

    kind = "executor"

    def validate(self, name: str, factory: Callable[..., Any]) -> list[str]:
        from pwmbench.plugin.validation import executor_problems

        return executor_problems(factory)

"""Registries that `pwmbench_register_*` hooks fill.

Hooks receive a registry object instead of returning values (as tox 4 does), so the hook signatures stay
stable while what a plugin registers can grow new options. Every entry remembers which plugin added it,
so a name registered twice is an error that names both sources.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pwmbench.errors import PluginError, unknown_name_message


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin came from: its name, its distribution and version, and how it was found."""

    plugin: str
    distribution: str | None = None
    version: str | None = None
    how: str = "entry point"  # "built-in", "entry point", "module", "object"

    def describe(self) -> str:
        dist = f"{self.distribution} {self.version}" if self.distribution else "no distribution"
        return f"plugin {self.plugin!r} ({self.how}, {dist})"


UNKNOWN_SOURCE = PluginSource(plugin="<direct>", how="direct call")


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
        }


class Registry:
    """Name → factory map for one kind of plugin object (dynamics model, integrator, task, executor)."""

    kind = "object"

    def __init__(self) -> None:
        self._entries: dict[str, RegistryEntry] = {}
        self._source = UNKNOWN_SOURCE

    @contextlib.contextmanager
    def scope(self, source: PluginSource) -> Iterator[Registry]:
        """Attribute every `add` inside the block to `source` (used by the plugin manager)."""
        previous, self._source = self._source, source
        try:
            yield self
        finally:
            self._source = previous

    def add(self, name: str, factory: Callable[..., Any], *, description: str = "", **meta: Any) -> None:
        """Register `factory` under `name`; a name registered twice is a PluginError naming both plugins."""
        if not isinstance(name, str) or not name:
            raise PluginError(f"{self.kind} names must be non-empty strings, got {name!r} from {self._source.describe()}")
        if not callable(factory):
            raise PluginError(f"{self.kind} {name!r} from {self._source.describe()} is not callable: {factory!r}")
        if name in self._entries:
            first = self._entries[name].source
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by {first.describe()} and by {self._source.describe()}; "
                "uninstall or block one of them (PWMBENCH_BLOCK_PLUGINS=name)"
            )
        if not description:
            lines = (getattr(factory, "__doc__", None) or "").strip().splitlines()
            description = lines[0] if lines else ""
        self._entries[name] = RegistryEntry(self.kind, name, factory, description, self._source, dict(meta))

    def entry(self, name: str) -> RegistryEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise PluginError(unknown_name_message(self.kind, name, self._entries)) from None

    def get(self, name: str) -> Callable[..., Any]:
        """The factory registered under `name` (PluginError with a suggestion when unknown)."""
        return self.entry(name).factory

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[RegistryEntry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class DynamicsRegistry(Registry):
    """Dynamics models: `add(name, cls)` where `cls` is a `pwmbench.api.DynamicsModel` subclass."""

    kind = "dynamics model"


class IntegratorRegistry(Registry):
    """Integrators: `add(name, cls)` where `cls()` is a `pwmbench.api.Integrator`."""

    kind = "integrator"


class TaskRegistry(Registry):
    """Tasks and task sets: `add(name, factory)` where `factory()` returns a `pwmbench.api.Task`."""

    kind = "task"


class ExecutorRegistry(Registry):
    """Executors: `add(name, factory)` where `factory(workers=N, **options)` returns a `pwmbench.api.Executor`."""

    kind = "executor"

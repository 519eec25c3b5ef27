"""Where a registered plugin object came from, and its label in error messages.

A leaf module (it imports nothing from pwmbench): the plugin API's base classes (pwmbench.plugin.interfaces), the checks
(pwmbench.plugin.validation) and the registries (pwmbench.plugin.registry, which records registrations here) all name the plugin
an error comes from, and none of them needs the others for it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

__all__ = ["UNKNOWN_SOURCE", "PluginSource", "registered_label"]


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

    def block_hint(self) -> str | None:
        """How a user switches this plugin off, or None for pwmbench's own built-ins."""
        if self.how in ("built-in", "direct call"):
            return None
        if self.how in ("entry point", "module"):
            return f"PWMBENCH_BLOCK_PLUGINS={self.plugin}" + (f" (or uninstall {self.distribution})" if self.distribution else "")
        return f"leave the plugin object {self.plugin!r} out of Plugins(extra=...)"


UNKNOWN_SOURCE = PluginSource(plugin="<direct>", how="direct call")

# factory → (kind, name, source) of its latest registration, so errors raised while building it can name the plugin
_REGISTERED: weakref.WeakKeyDictionary[Any, tuple[str, str, PluginSource]] = weakref.WeakKeyDictionary()


def registered_label(factory: Any, kind: str = "") -> str:
    """'dynamics model 'resmlp' (ResMLP; plugin 'resmlp', my-dist 0.1)' for a registered factory, else its class name."""
    try:
        info = _REGISTERED.get(factory)
    except TypeError:
        info = None
    cls_name = getattr(factory, "__name__", type(factory).__name__)
    if info is None:
        return f"{kind} {cls_name}".strip()
    kind, name, source = info
    dist = f"{source.distribution} {source.version}" if source.distribution else "no distribution"
    return f"{kind} {name!r} ({cls_name}; plugin {source.plugin!r}, {dist})"

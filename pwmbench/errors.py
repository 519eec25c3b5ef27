"""Errors a user can act on: each names what was wrong and, where it can, what was meant."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PwmbenchError(Exception):
    """Base class of every error pwmbench raises on purpose (bad input, bad plugin, bad config)."""


class ConfigError(PwmbenchError, ValueError):
    """A configuration value or key is wrong."""


class PluginError(PwmbenchError):
    """A plugin is missing, broken, or clashes with another."""


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest valid name to `word`, or None when nothing is close."""
    matches = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_message(kind: str, word: str, choices: Iterable[str], where: str | None = None) -> str:
    """'unknown <kind> 'x' (in where); did you mean 'y'? valid: a, b, c'."""
    choices = sorted(choices)
    msg = f"unknown {kind} {word!r}"
    if where:
        msg += f" in {where}"
    close = suggest(word, choices)
    if close is not None:
        msg += f"; did you mean {close!r}?"
    msg += f" (valid: {', '.join(choices) if choices else 'none registered'})"
    return msg


def check_keys(given: Iterable[str], valid: Iterable[str], kind: str = "key", where: str | None = None) -> None:
    """Raise ConfigError naming the first key of `given` that is not in `valid`, with a suggestion."""
    valid = set(valid)
    for key in given:
        if key not in valid:
            raise ConfigError(unknown_name_message(kind, key, valid, where))

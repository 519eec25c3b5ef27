"""Typed plugin options: names checked, values checked against the defaults' types, strings from the CLI coerced.

Every pluggable class (dynamics model, integrator, executor) declares `default_options` — every option it accepts,
with its default — and may declare `option_types` for options whose default does not say enough (a `None`
default, a list that may be empty, a choice among strings). `resolve_options` checks what a suite file, a
`--dynamics name:key=value` spec or `--set executor.key=value` gave against them, so a wrong value is a
`ConfigError` naming the plugin, the option, the expected type and the value — not a traceback from deep inside
the plugin. Strings are coerced, because the command line only has strings: "256" → 256, "true" → True,
"[256, 256]" → [256, 256].

Type specs (in `option_types`): `int`, `float`, `bool`, `str`, `list`, `tuple`, `dict`, `typing.Any`,
`list[int]`, `tuple[int, ...]`, `tuple[float, float]`, `int | None` / `Optional[int]`, `Literal["a", "b"]`, and a
number with limits: `Annotated[int, Range(1, 1000)]` (bounds inclusive; either may be None).
"""

from __future__ import annotations

import json
import math
import numbers
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pwmbench.errors import ConfigError, check_keys

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null")


@dataclass(frozen=True)
class Range:
    """Inclusive limits of a number option, declared in `option_types` as `Annotated[int, Range(1, 1000)]`: a value
    outside them is refused by name before anything is built (a typo'd 1e9 substeps would otherwise hang a run)."""

    low: float | None = None
    high: float | None = None

    def __contains__(self, value: Any) -> bool:
        return math.isfinite(value) and (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"≥ {self.low}"
        return f"≤ {self.high}" if self.low is None else f"in [{self.low}, {self.high}]"


class _Mismatch(Exception):
    """A value does not fit a type spec (internal: turned into a ConfigError naming the option)."""


class _OutOfRange(_Mismatch):
    """A value of the right type outside its declared `Range`."""


def infer_type(default: Any) -> Any:
    """The type spec an option's default implies: 256 → int, 1.0 → float, [512, 512] → list[int], None → Any."""
    if default is None:
        return Any
    if isinstance(default, bool):
        return bool
    if isinstance(default, numbers.Integral):
        return int
    if isinstance(default, numbers.Real):
        return float
    if isinstance(default, str):
        return str
    if isinstance(default, (list, tuple)):
        element = _common_type([infer_type(x) for x in default])
        container = list if isinstance(default, list) else tuple
        if element is Any:
            return container
        return list[element] if container is list else tuple[element, ...]
    if isinstance(default, Mapping):
        return dict
    return type(default)


def _common_type(specs: list[Any]) -> Any:
    if not specs:
        return Any
    if all(s == specs[0] for s in specs):
        return specs[0]
    if set(specs) <= {int, float}:
        return float
    return Any


def describe_type(spec: Any) -> str:
    """A type spec in words, for error messages: list[int] → 'a list of ints'."""
    origin, args = typing.get_origin(spec), typing.get_args(spec)
    if spec is Any:
        return "any value"
    if origin is Annotated:
        return " ".join([describe_type(args[0]), *(str(m) for m in spec.__metadata__ if isinstance(m, Range))])
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or None" if type(None) in args else "")
    if origin in (list, tuple):
        name = "a list" if origin is list else "a tuple"
        if not args:
            return name
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return f"{name} of {len(args)} ({', '.join(_plural(a, one=True) for a in args)})"
        return f"{name} of {_plural(args[0])}"
    return _plural(spec, one=True)


_NAMES = {bool: ("a bool (true/false)", "bools"), int: ("an int", "ints"), float: ("a number", "numbers"),
          str: ("a string", "strings"), list: ("a list", "lists"), tuple: ("a list", "lists"), dict: ("a table", "tables")}  # fmt: skip


def _plural(spec: Any, one: bool = False) -> str:
    if spec in _NAMES:
        return _NAMES[spec][0 if one else 1]
    if typing.get_origin(spec) is not None or spec is Any:
        return describe_type(spec)
    name = getattr(spec, "__name__", str(spec))
    return f"a {name}" if one else f"{name} values"


def coerce(value: Any, spec: Any) -> Any:
    """`value` checked against `spec` and coerced where it is unambiguous (strings, int → float, tuple ↔ list);
    raises ConfigError (without naming the option: `resolve_options` does that)."""
    try:
        return _coerce(value, spec)
    except _OutOfRange:
        raise ConfigError(f"expected {describe_type(spec)}, got {_show(value)}") from None
    except _Mismatch:  # a wrong type: the limits are beside the point
        plain = typing.get_args(spec)[0] if typing.get_origin(spec) is Annotated else spec
        raise ConfigError(f"expected {describe_type(plain)}, got {_show(value)}") from None


def _coerce(value: Any, spec: Any) -> Any:
    origin, args = typing.get_origin(spec), typing.get_args(spec)
    if spec is Any or spec is object:
        return value
    if origin is Annotated:
        value = _coerce(value, args[0])
        if not all(value in m for m in spec.__metadata__ if isinstance(m, Range)):
            raise _OutOfRange
        return value
    if origin is typing.Literal:
        if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
            return value
        if isinstance(value, str):
            for a in args:
                if not isinstance(a, str):
                    try:
                        if _coerce(value, type(a)) == a:
                            return a
                    except _Mismatch:
                        pass
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.strip().lower() in _NONE and type(None) in args:
            return None
        if isinstance(value, str) and str in args:  # "3" stays a string in `int | str`
            return value
        for a in args:
            if a is not type(None):
                try:
                    return _coerce(value, a)
                except _Mismatch:
                    continue
        raise _Mismatch
    if origin in (list, tuple) or spec in (list, tuple):
        container = origin or spec
        if isinstance(value, str):
            value = _parse_text(value)
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if not args:
            items = list(value)
        elif container is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _Mismatch
            items = [_coerce(v, a) for v, a in zip(value, args)]
        else:
            items = [_coerce(v, args[0]) for v in value]
        return items if container is list else tuple(items)
    if spec is dict or origin is dict:
        if isinstance(value, str):
            value = _parse_text(value)
        if not isinstance(value, Mapping):
            raise _Mismatch
        if args:
            return {_coerce(k, args[0]): _coerce(v, args[1]) for k, v in value.items()}
        return dict(value)
    if spec is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise _Mismatch
    if spec is int:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            return int(value)
        raise _Mismatch
    if spec is float:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, numbers.Real):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if spec is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if isinstance(spec, type):
        if isinstance(value, spec):
            return value
        raise _Mismatch
    raise ConfigError(f"unsupported option type spec {spec!r}; see pwmbench.plugin.options for the supported forms")


def _parse_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def option_types(defaults: Mapping[str, Any], declared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The type spec of every option: the declared one (`option_types`) where given, else the default's."""
    declared = dict(declared or {})
    return {name: declared.get(name, infer_type(default)) for name, default in defaults.items()}


def resolve_options(
    given: Mapping[str, Any],
    defaults: Mapping[str, Any],
    types_: Mapping[str, Any] | None = None,
    *,
    owner: str,
    where: str | None = None,
) -> dict[str, Any]:
    """`given` checked against `defaults` (names) and their types (or `types_`), coerced, with the defaults filled in.

    `owner` names who takes the options in errors ("dynamics model 'resmlp' (plugin ...)"). Unknown names are a
    ConfigError with the nearest valid name; a wrong value one naming the owner, option, expected type and value.
    Use it in a plugin's constructor: `opts = resolve_options(options, DEFAULTS, owner="my executor")`."""
    check_keys(given, defaults, kind=f"option of {owner}", where=where)
    specs = option_types(defaults, types_)
    out = dict(defaults)
    for name, value in given.items():
        try:
            out[name] = coerce(value, specs[name])
        except ConfigError as exc:
            prefix = f"{where}: " if where else ""
            text = str(exc)
            if text.startswith("expected "):  # "expected an int, got ..." → "must be an int, got ..."
                raise ConfigError(f"{prefix}option {name!r} of {owner} must be {text.removeprefix('expected ')}") from None
            raise ConfigError(f"{prefix}option {name!r} of {owner} must be {describe_type(specs[name])}, got {_show(value)} ({exc})") from None
    return out


MAX_WIDTH = 65_536  # any hidden width or latent size: 16× the largest preset's (pwm_317M, 4096); more is a typo


def is_int(value: Any, low: int | None = None, high: int | None = None) -> bool:
    """An integer (not a bool: TOML's true is not 1) within the inclusive limits given."""
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and (low is None or value >= low) and (high is None or value <= high))  # fmt: skip


def is_number(value: Any) -> bool:
    """A finite real number (not a bool: TOML's true is not 1)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_widths(value: Any) -> bool:
    """Hidden widths: a non-empty list of integers in [1, MAX_WIDTH] (a 1.7 is not a width, it is a typo)."""
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(is_int(u, 1, MAX_WIDTH) for u in value)


def check_units(value: Any, owner: str = "the world model", where: str | None = None) -> tuple[int, ...]:
    """The dynamics network's hidden widths (`units` dynamics option): a non-empty list of ints in [1, MAX_WIDTH]."""
    parsed = _parse_text(value) if isinstance(value, str) else value
    if not is_widths(parsed):
        prefix = f"{where}: " if where else ""
        hint = f"; for one layer of {parsed} write units = [{parsed}]" if is_int(parsed, 1, MAX_WIDTH) else ""
        raise ConfigError(f"{prefix}option 'units' of {owner} must be a non-empty list of positive ints (hidden widths ≤ {MAX_WIDTH}, e.g. [512, 512]), got {_show(value)}{hint}")
    return tuple(int(u) for u in parsed)

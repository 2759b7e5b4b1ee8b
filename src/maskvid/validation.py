"""Checks that turn a bad configuration value into a ``ConfigError`` naming its dotted key and what it allows.

:func:`typed` checks a value against its field's annotation (``int``, ``float``, ``bool``, ``str``, ``dict``,
``tuple[int, int, int]``, ``X | None``, ...) the way YAML delivers values: ``true`` is not an int, ``2.5`` is not a
batch size, ``.nan`` and ``.inf`` are not numbers anyone means, ``1e-3`` (a string to YAML 1.1) is a float. The range
helpers take ``key=value`` pairs of one section.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing

from maskvid.errors import ConfigError


def _describe(hint) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple and typing.get_args(hint)[-1] is Ellipsis:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if typing.get_origin(hint) is tuple:
        return f"a list of {len(typing.get_args(hint))} ({', '.join(_describe(a) for a in typing.get_args(hint))})"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def typed(hint, value, key: str):
    """``value`` as the annotation ``hint`` wants it (lists become tuples, numeric strings floats), or ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        for inner in (a for a in args if a is not type(None)):
            try:
                return typed(inner, value, key)
            except ConfigError:
                continue
        raise ConfigError(key, f"expected {_describe(hint)}, got {value!r}")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: a list of any length
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list of {_describe(args[0])}, got {value!r}")
        return tuple(typed(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(key, f"expected {_describe(hint)}, got {value!r}")
        return tuple(typed(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if hint is float:
        return _number(value, key)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if hint in (bool, str, dict) or origin is dict:
        wanted = origin or hint
        if not isinstance(value, wanted):
            raise ConfigError(key, f"expected {_describe(wanted)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint) and not isinstance(value, hint):
        raise ConfigError(key, f"expected a section, got {value!r}")
    return value


def _number(value, key: str) -> float:
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(key, f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number, got {value}")
    return float(value)


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def check_fields(obj, section: str) -> None:
    """Type-check (and normalize) every field of the dataclass ``obj``; keys are named ``section.field``."""
    prefix = f"{section}." if section else ""
    for f in dataclasses.fields(obj):
        if f.init:
            object.__setattr__(obj, f.name, typed(_hints(type(obj))[f.name], getattr(obj, f.name), prefix + f.name))


def at_least(section: str, minimum: float, **values) -> None:
    """Each value (None skipped) is >= ``minimum``."""
    for key, value in values.items():
        if value is not None and value < minimum:
            raise ConfigError(f"{section}.{key}", f"must be >= {minimum}, got {value}")


def positive(section: str, **values) -> None:
    """Each value (None skipped) is > 0."""
    for key, value in values.items():
        if value is not None and not value > 0:
            raise ConfigError(f"{section}.{key}", f"must be positive, got {value}")


def within(key: str, value: float | None, low: float, high: float, open_high: bool = False,
           open_low: bool = False) -> None:
    """``value`` (None skipped) lies in the interval ``[low, high]`` (ends opened as asked)."""
    if value is None:
        return
    inside = (low < value if open_low else low <= value) and (value < high if open_high else value <= high)
    if not inside:
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ConfigError(key, f"must be in {interval}, got {value}")


def one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(key, f"{value!r} not in {', '.join(map(str, allowed))}")

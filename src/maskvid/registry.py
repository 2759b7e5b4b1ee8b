"""Name → class registries: mask strategies, targets, methods, encoder layouts and stems all look names up the
same way and refuse unknown names and options with the config key that holds them."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

from maskvid.errors import ConfigError


class Registry(dict):
    """A dict of ``name → class`` (or factory) that builds entries from config values.

    key: the config key naming an entry (``mask.strategy``); options live under ``section`` (``mask``), so an unknown
    option ``variant`` is reported as ``mask.variant``. kind: what an entry is called in messages.
    """

    def __init__(self, kind: str, key: str, entries: dict[str, Callable] | None = None):
        super().__init__(entries or {})
        self.kind, self.key = kind, key
        self.section = key.rsplit(".", 1)[0] if "." in key else key

    def available(self) -> list[str]:
        return list(self)

    def get_entry(self, name: str) -> Callable:
        if name not in self:
            raise ConfigError(self.key, f"unknown {self.kind} {name!r}; available: {', '.join(self)}")
        return self[name]

    def build(self, name: str, **options):
        """``self[name](**options)``; an unknown name or option is a ConfigError naming its key."""
        entry = self.get_entry(name)
        allowed = option_names(entry)
        unknown = [k for k in options if k not in allowed]
        if unknown:
            raise ConfigError(f"{self.section}.{unknown[0]}",
                              f"not an option of {name!r}; its options: {', '.join(allowed)}")
        return entry(**options)


def option_names(entry: Callable) -> list[str]:
    """The keyword options ``entry`` takes: a dataclass's init fields, else its signature's parameters."""
    if dataclasses.is_dataclass(entry):
        return [f.name for f in dataclasses.fields(entry) if f.init]
    return [name for name, p in inspect.signature(entry).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def takes_keyword(function: Callable, name: str) -> bool:
    """Whether ``function`` accepts the keyword argument ``name`` (by name or through ``**kwargs``): a callable
    written before an optional argument existed is then called without it."""
    return any(p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.kind is p.VAR_KEYWORD
               for p in inspect.signature(function).parameters.values())

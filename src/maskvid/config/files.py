"""Configs as files: YAML in (with ``--set`` overrides), typed dataclasses out, and back.

    config = load_config("configs/pretrain/videomae_micro.yaml", ["optim.lr=1e-3", "train.max_steps=50"])

An unknown key or a bad value raises ConfigError naming the dotted key (``heads[1].weight`` inside lists) before
any data is read.
"""

from __future__ import annotations

import dataclasses
import os
import typing

import yaml

from maskvid.config.runs import PretrainConfig
from maskvid.errors import ConfigError


def plain(obj):
    """Dataclasses → nested dicts and lists, as YAML writes them."""
    if dataclasses.is_dataclass(obj):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    return obj


def _section_type(hint):
    """The dataclass a field holds (``DataConfig``, ``MaskConfig | None`` → MaskConfig), or None."""
    if dataclasses.is_dataclass(hint):
        return hint
    inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
    return inner[0] if inner else None


def _list_entry_type(hint):
    """The dataclass of a list of sections (``tuple[PredictionHeadConfig, ...]``), or None."""
    args = typing.get_args(hint)
    variadic = typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis
    return args[0] if variadic and dataclasses.is_dataclass(args[0]) else None


def _section_list(cls, values, key: str) -> tuple:
    """A YAML list of mappings → a tuple of ``cls``; errors name the entry (``heads[1].weight``)."""
    if not isinstance(values, list | tuple):
        raise ConfigError(key, f"expected a list of sections, got {values!r}")
    entries = []
    for i, value in enumerate(values):
        if isinstance(value, cls):
            entries.append(value)
            continue
        try:
            entries.append(from_dict(cls, value, f"{key}[{i}]."))
        except ConfigError as e:
            raise ConfigError(e.key.replace(f"{key}[]", f"{key}[{i}]"), e.problem) from None
    return tuple(entries)


def from_dict(cls, values: dict, prefix: str = "", base=None):
    """Build dataclass ``cls`` from nested dicts, on top of ``base`` (or the field defaults, which for a section
    may differ from its class defaults); unknown keys raise ConfigError with the dotted key."""
    if not isinstance(values, dict):
        raise ConfigError(prefix.rstrip(".") or "config", f"expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(prefix + unknown[0], f"unknown key; known here: {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        entry = _list_entry_type(hints[name])
        if entry is not None and value is not None:
            kwargs[name] = _section_list(entry, value, f"{prefix}{name}")
            continue
        section = _section_type(hints[name])
        if section is None or value is None:
            kwargs[name] = value  # the dataclass checks it against its annotation, naming the key
            continue
        if not isinstance(value, dict):
            raise ConfigError(prefix + name, f"expected a section, got {value!r}")
        field_ = known[name]
        default = field_.default_factory() if field_.default_factory is not dataclasses.MISSING else None
        kwargs[name] = from_dict(section, value, f"{prefix}{name}.", base=default)
    if base is not None:
        kwargs = {**{f.name: getattr(base, f.name) for f in dataclasses.fields(cls) if f.init}, **kwargs}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(prefix.rstrip(".") or "config", str(e)) from e


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """``["optim.lr=1e-3", "mask.options.variant=sparse"]`` → nested dict updates (values parsed as YAML)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(item, "an override is section.key=value")
        node = values
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(key, f"{part!r} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            problem = str(getattr(e, "problem", None) or e).strip()
            raise ConfigError(key, f"the value {text!r} is not valid YAML ({problem})") from None
    return values


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None, kind=None):
    """A :class:`PretrainConfig` (default) or ``kind`` (e.g. :class:`FinetuneConfig`) from YAML + overrides."""
    values = {}
    if path is not None:
        try:
            with open(path) as f:
                values = yaml.safe_load(f) or {}
        except OSError as e:
            raise ConfigError("--config", f"{path}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise ConfigError("--config", f"{path}: not valid YAML ({e})") from e
    return from_dict(kind or PretrainConfig, apply_overrides(values, overrides or []))


def save_config(config: PretrainConfig, path: str) -> None:
    """Write atomically: a run killed mid-write keeps its previous config.yaml."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    os.replace(tmp, path)

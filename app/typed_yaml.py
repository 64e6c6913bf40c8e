"""Frozen dataclasses built from YAML-like values, every error naming the key: the machinery of ``app/settings.py``.

``build`` checks unknown keys, converts scalars strictly (no bool for an int, no number for a bool),
follows ``X | None``, ``Literal``, tuples, mappings and nested dataclasses by their type hints.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class SettingsError(ValueError):
    """A wrong or missing configuration value; the message names the key."""


def read_file(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise SettingsError(f"config file {path} must hold a mapping at the top level")
    return document


def set_path(raw: dict[str, Any], dotted: str, text: str, origin: str) -> None:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise SettingsError(f"{origin}: empty key")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SettingsError(f"{origin}: {part} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{origin}: value {text!r} is not valid") from exc


def build(cls: type[Any], raw: Any, path: str) -> Any:
    if not isinstance(raw, Mapping):
        raise SettingsError(f"{path or 'settings'}: must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    replaced: Mapping[str, str] = getattr(cls, "REPLACED_KEYS", {})  # a removed key: what took its place
    for key in unknown:
        if key in replaced:
            raise SettingsError(f"{_join(path, str(key))}: replaced by {replaced[key]}")
    if unknown:
        raise SettingsError(f"unknown key {_join(path, str(unknown[0]))}")
    values = {name: _convert(hints[name], raw[name], _join(path, name)) for name in names if name in raw}
    return cls(**values)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, path)
    if origin is Literal:
        if value not in args:
            raise SettingsError(f"{path}: must be one of {', '.join(map(str, args))}, not {value!r}")
        return value
    if origin is tuple:
        items = value if isinstance(value, list | tuple) else [value]
        return tuple(_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(items))
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise SettingsError(f"{path}: must be a mapping")
        return {str(k): _convert(args[1], v if v is not None else {}, _join(path, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(typing.cast(type[Any], hint), value if value is not None else {}, path)
    return _convert_scalar(hint, value, path)


def _convert_scalar(hint: Any, value: Any, path: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{path}: must be true or false, not {value!r}")
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    raise SettingsError(f"{path}: must be {getattr(hint, '__name__', hint)}, not {value!r}")

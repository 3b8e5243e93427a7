"""Stage configuration: one dataclass per stage, filled from a YAML file in config/ and from overrides.

The YAML may be a plain mapping or a ROS 2 parameter file (`<node>: {ros__parameters: {...}}`), so the
same file serves `sixdpose` commands and ROS nodes. Nested dataclasses map to nested mappings, and to
dotted names (`renderer.width`) as ROS parameters and overrides.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


def _unwrap_ros_parameters(data: dict[str, Any]) -> dict[str, Any]:
    """Return the `ros__parameters` mapping of a ROS parameter file, or `data` itself if it is plain."""
    if len(data) == 1:
        (inner,) = data.values()
        if isinstance(inner, dict) and set(inner) == {"ros__parameters"}:
            return inner["ros__parameters"]
    return data


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a field annotation, converting where YAML is looser (int for float, list for tuple)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise TypeError("; ".join(errors))
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(annotation, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float) and isinstance(value, bool):
        raise TypeError(f"{where}: expected {annotation.__name__}, got bool")
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise TypeError(f"{where}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type[C], data: dict[str, Any], where: str) -> C:
    """Instantiate dataclass `cls` from a mapping, rejecting unknown keys by name."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    return cls(**kwargs)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Turn dotted keys (`renderer.width`) into nested mappings."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `update` into a copy of `base`."""
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Build configuration dataclass `cls` from defaults, then the YAML at `path`, then dotted `overrides`."""
    data: dict[str, Any] = {}
    where = cls.__name__
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"configuration file not found: {path}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        data = _unwrap_ros_parameters(loaded)
        where = str(path)
    if overrides:
        data = _merge(data, _nest(overrides))
    return _build(cls, data, where)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted-name view of a (nested) configuration dataclass, as ROS parameters: {'renderer.width': 640}."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out

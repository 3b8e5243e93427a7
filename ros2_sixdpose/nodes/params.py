"""Configuration dataclasses as ROS parameters: the YAML gives the defaults, ROS parameters override them.

Every field of a (nested) configuration dataclass becomes one typed ROS parameter under its dotted name
(`ros2_sixdpose.config.flatten`), e.g. `detector.score_threshold`. Declared once, at start-up, with the
value the stage's YAML file gives as default, so a parameter file or `-p name:=value` overrides it; the
result goes back through `load_config`, which checks it as it checks the YAML.
"""
from __future__ import annotations

import array
import dataclasses
import difflib
import types
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeVar

from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter

from ros2_sixdpose.config import flatten, load_config

C = TypeVar("C")

_SCALAR_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}
_ARRAY_TYPES = {
    bool: ParameterType.PARAMETER_BOOL_ARRAY,
    int: ParameterType.PARAMETER_INTEGER_ARRAY,
    float: ParameterType.PARAMETER_DOUBLE_ARRAY,
    str: ParameterType.PARAMETER_STRING_ARRAY,
}


def field_annotations(cls: type, prefix: str = "") -> dict[str, Any]:
    """Type annotation of every leaf field of dataclass `cls`, by dotted name (as `flatten` names them)."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            out.update(field_annotations(annotation, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = annotation
    return out


def parameter_type(annotation: Any) -> tuple[int, bool]:
    """(ParameterType, may be None) of a field annotation: bool/int/float/str, lists or tuples of them, optional."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if len(args) != 1:
            raise TypeError(f"no ROS parameter type for {annotation}: one type or None only")
        return parameter_type(args[0])[0], True
    if typing.get_origin(annotation) in (list, tuple) and args and args[0] in _ARRAY_TYPES:
        return _ARRAY_TYPES[args[0]], False
    if annotation in _SCALAR_TYPES:
        return _SCALAR_TYPES[annotation], False
    raise TypeError(f"no ROS parameter type for {annotation}")


def _ros_value(value: Any, ptype: int) -> Any:
    """`value` as rclpy expects it for `ptype` (float for doubles, a list for arrays)."""
    if value is None:
        return None
    if ptype == ParameterType.PARAMETER_DOUBLE:
        return float(value)
    if ptype == ParameterType.PARAMETER_DOUBLE_ARRAY:
        return [float(v) for v in value]
    if ptype in _ARRAY_TYPES.values():
        return list(value)
    return value


def declare_config(
    node: Node, cls: type[C], path: str | Path | None = None, prefix: str = "", live: Collection[str] = ()
) -> C:
    """Declare the fields of `cls` as ROS parameters `<prefix><dotted name>` and return the config in effect.

    Defaults come from the YAML at `path` (or the dataclass when None); parameter overrides given to the
    node win. Only the dotted names in `live` may change after start-up: stages are built once, so
    their parameters are read-only. Raises what `load_config` raises (FileNotFoundError, ValueError,
    TypeError) for a bad file or value, and rclpy's InvalidParameterTypeException for an override of
    the wrong type.
    """
    defaults = flatten(load_config(cls, path))
    annotations = field_annotations(cls)
    values: dict[str, Any] = {}
    for name, default in defaults.items():
        ptype, optional = parameter_type(annotations[name])
        descriptor = ParameterDescriptor(type=ptype, read_only=name not in live, dynamic_typing=optional)
        # rclpy takes the type of an empty list for a byte array: declare those by type, with no value.
        initial = _ros_value(default, ptype) if default != [] else Parameter.Type(ptype)
        value = node.declare_parameter(f"{prefix}{name}", initial, descriptor).value
        if value is None:
            value = default
        values[name] = list(value) if isinstance(value, (list, tuple, array.array)) else value
    return load_config(cls, path, values)


def refuse_unknown_parameters(node: Node) -> None:
    """Raise ValueError naming each parameter given to `node` (file, `-p`, overrides) that it never declared.

    rclpy drops such values silently, so a misspelt `min_scor` would leave `min_score` at its default. Call
    once every parameter is declared. The message suggests close names and lists all the node has.
    """
    known = set(node.get_parameters_by_prefix(""))
    # rclpy keeps the given values only in this attribute; no public accessor exists (rclpy 9).
    unknown = sorted(name for name in node._parameter_overrides if name not in known
                     and not name.startswith("qos_overrides."))  # declared by publishers that allow them
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=3)
        hints.append(f"{name} (did you mean {' or '.join(close)}?)" if close else name)
    raise ValueError(f"node {node.get_name()} has no parameter {', '.join(hints)}; its parameters: "
                     f"{', '.join(sorted(known))}")

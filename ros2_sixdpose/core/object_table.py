"""A registry's objects as a plain-text table: id, name, size, appearance and symmetries in words."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.objects import ObjectModel, ObjectRegistry


def object_table(registry: ObjectRegistry) -> str:
    """A plain-text table of the registry: id, name, diameter and size (mm), appearance, symmetries."""
    header = ("id", "name", "diameter mm", "size mm", "appearance", "symmetry")
    rows = [header]
    for model in registry:
        size = " x ".join(f"{s * 1000:.1f}" for s in model.bbox_size)
        diameter = f"{model.diameter * 1000:.1f}"
        rows.append((str(model.obj_id), model.name, diameter, size, _appearance(model), describe_symmetries(model)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def describe_symmetries(model: ObjectModel) -> str:
    """Symmetries in words, e.g. `continuous about z; 180 deg about x`, or `none`."""
    parts = [f"continuous about {_axis_name(sym.axis)}" for sym in model.symmetries_continuous]
    for T in model.symmetries_discrete:
        rotvec = Rotation.from_matrix(np.asarray(T)[:3, :3]).as_rotvec()
        angle = np.linalg.norm(rotvec)
        axis = rotvec / max(angle, 1e-12)
        if axis[np.argmax(np.abs(axis))] < 0:  # -90 deg about z reads better as 270 deg about z
            axis, angle = -axis, 2.0 * np.pi - angle
        parts.append(f"{np.degrees(angle):.0f} deg about {_axis_name(axis)}")
    return "; ".join(parts) or "none"


def _axis_name(axis: np.ndarray) -> str:
    """'x', 'y', 'z' (or '-x'...) for a model axis, else the rounded vector."""
    axis = np.asarray(axis, dtype=np.float64)
    index = int(np.argmax(np.abs(axis)))
    if abs(axis[index]) > 1.0 - 1e-6:
        return ("-" if axis[index] < 0 else "") + "xyz"[index]
    return str(np.round(axis, 3).tolist())


def _appearance(model: ObjectModel) -> str:
    """`texture WxH`, `colour #rrggbb` (the mean vertex colour) or `untextured`."""
    if model.texture is not None:
        return f"texture {model.texture.shape[1]}x{model.texture.shape[0]}"
    if model.colors is not None:
        r, g, b = np.round(model.colors.mean(axis=0) * 255).astype(int)
        return f"colour #{r:02x}{g:02x}{b:02x}"
    return "untextured"

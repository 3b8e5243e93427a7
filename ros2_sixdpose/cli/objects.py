"""`sixdpose objects build|list`: make the project's object set, or list the objects of any BOP models folder."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.objects import ObjectModel, ObjectRegistry
from ros2_sixdpose.data.objectset import build_object_set

logger = logging.getLogger(__name__)

DEFAULT_MODELS_DIR = Path("assets/models")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `objects` with its `build` and `list` actions."""
    parser = subparsers.add_parser("objects", help="build the object set or list a BOP models folder")
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="write the object set (from pybullet_data) as a BOP models folder")
    build.add_argument("--out", type=Path, default=DEFAULT_MODELS_DIR, help="models folder to write")
    build.add_argument("--force", action="store_true", help="rebuild even when the folder is up to date")
    listing = actions.add_parser("list", help="print the objects of a BOP models folder")
    listing.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR, help="BOP models folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `objects build` or `objects list`; 1 with a message on bad input."""
    try:
        if args.action == "build":
            built = build_object_set(args.out, force=args.force)
            print(f"{'built' if built else 'up to date'}: {args.out}")
            return 0
        print(object_table(ObjectRegistry.from_dir(args.models)))
        return 0
    except (FileNotFoundError, ValueError, KeyError) as exc:
        logger.error("%s", exc)
        return 1


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

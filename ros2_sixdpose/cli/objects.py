"""`sixdpose objects build|list|add`: make the project's object set, list the objects of any BOP models folder, or
add a new object to one from its mesh (no training: retrieval and refinement work from the model alone)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ros2_sixdpose.paths import models_dir

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `objects` with its `build`, `list` and `add` actions."""
    parser = subparsers.add_parser("objects", help="build the object set or list a BOP models folder")
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="write the object set (from pybullet_data) as a BOP models folder")
    build.add_argument("--out", type=Path, default=models_dir(), help="models folder to write")
    build.add_argument("--force", action="store_true", help="rebuild even when the folder is up to date")
    listing = actions.add_parser("list", help="print the objects of a BOP models folder")
    listing.add_argument("--models", type=Path, default=models_dir(), help="BOP models folder")
    add = actions.add_parser("add", help="add a mesh as a new object (next free id) to a BOP models folder")
    add.add_argument("--models", type=Path, required=True, help="BOP models folder to add to (changed in place)")
    add.add_argument("--mesh", type=Path, required=True, help="mesh file (OBJ, PLY, STL, ... as trimesh reads)")
    add.add_argument("--name", required=True, help="the object's name (its TF frame sixdpose/<name>)")
    add.add_argument("--scale", type=float, default=1.0, help="metres per mesh unit (e.g. 0.001 for mm)")
    add.add_argument("--color", type=_rgb, default=None, help="R,G,B in [0, 1]: a uniform colour instead of a texture")
    parser.set_defaults(func=run)


def _rgb(text: str) -> tuple[float, float, float]:
    """Parse 'R,G,B' with values in [0, 1]."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected R,G,B with values in [0, 1], got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    """Run `objects build`, `list` or `add`; 1 with a message on bad input."""
    from ros2_sixdpose.core.object_table import object_table
    from ros2_sixdpose.core.objects import ObjectRegistry
    from ros2_sixdpose.data.objectset import add_object, build_object_set

    try:
        if args.action == "build":
            built = build_object_set(args.out, force=args.force)
            print(f"{'built' if built else 'up to date'}: {args.out}")
            return 0
        if args.action == "add":
            model = add_object(args.models, args.mesh, args.name, args.scale, args.color)
            print(f"added object {model.obj_id} {model.name!r} ({1000 * model.diameter:.1f} mm) to {args.models}")
            return 0
        print(object_table(ObjectRegistry.from_dir(args.models)))
        return 0
    except (FileNotFoundError, ValueError, KeyError) as exc:
        logger.error("%s", exc)
        return 1

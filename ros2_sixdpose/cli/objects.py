"""`sixdpose objects build|list`: make the project's object set, or list the objects of any BOP models folder."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ros2_sixdpose.paths import models_dir

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `objects` with its `build` and `list` actions."""
    parser = subparsers.add_parser("objects", help="build the object set or list a BOP models folder")
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="write the object set (from pybullet_data) as a BOP models folder")
    build.add_argument("--out", type=Path, default=models_dir(), help="models folder to write")
    build.add_argument("--force", action="store_true", help="rebuild even when the folder is up to date")
    listing = actions.add_parser("list", help="print the objects of a BOP models folder")
    listing.add_argument("--models", type=Path, default=models_dir(), help="BOP models folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `objects build` or `objects list`; 1 with a message on bad input."""
    from ros2_sixdpose.core.object_table import object_table
    from ros2_sixdpose.core.objects import ObjectRegistry
    from ros2_sixdpose.data.objectset import build_object_set

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

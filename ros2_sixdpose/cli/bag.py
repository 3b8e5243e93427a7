"""`sixdpose bag`: write one scene of a BOP split as a rosbag2 (camera topics, depth, ground-truth poses)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bag` sub-parser."""
    parser = subparsers.add_parser("bag", help="write a scene of a BOP split as a rosbag2 for replay", description=(
        "Write one scene as a rosbag2: sensor_msgs/Image rgb8 on /camera/color/image_raw, CameraInfo on "
        "/camera/color/camera_info, 32FC1 depth (m) on /camera/aligned_depth_to_color/image_raw and "
        "ros2_sixdpose/ObjectPoseArray ground truth on /sixdpose/ground_truth, stamped with scene_times.json "
        "(30 Hz by image id without it)."
    ))
    parser.add_argument("--dataset", type=Path, required=True, help="BOP data set folder")
    parser.add_argument("--split", required=True, help="split folder name, e.g. test")
    parser.add_argument("--scene", type=int, required=True, help="scene id")
    parser.add_argument("--out", type=Path, required=True, help="bag folder to create (must not exist)")
    parser.add_argument("--storage", default="sqlite3", help="storage plugin: sqlite3 or mcap")
    parser.add_argument("--models", type=Path, default=None, help="BOP models folder (default DATASET/models)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the bag and print what it holds; exit code 1 with the reason on bad input."""
    from ros2_sixdpose.data.bags import write_bag
    from ros2_sixdpose.data.bop import BopSplit

    try:
        bag = write_bag(BopSplit(args.dataset, args.split), args.scene, args.out, args.storage, args.models)
    except (OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    print(f"wrote {bag.path}: {bag.frames} frames over {bag.duration_s:.3f} s ({args.storage})")
    for topic in bag.topics:
        print(f"  {topic}")
    return 0

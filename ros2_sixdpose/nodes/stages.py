"""What the nodes need from the stages, with no ROS: where relative paths point, and image keys for the oracle.

The oracle detector answers "which image of a BOP split is this?" with ground truth; on a camera topic an
image carries only its header stamp. `OracleKeys` maps the stamps a bag of that split was written with
(`sixdpose bag`: scene_times.json, else image id at 30 Hz) back to image ids, so a replayed bag can be
processed with oracle detections. It needs the bag's original stamps.
"""
from __future__ import annotations

import os
from pathlib import Path

from ros2_sixdpose.data.bags import scene_stamps
from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.detection.base import DetectorConfig, ImageKey

PACKAGE = "ros2_sixdpose"
CHECKOUT = Path(__file__).resolve().parents[2]


def package_root() -> Path:
    """Folder that relative config, weight and model paths resolve against by default.

    The source checkout when running from one (it holds config/, weights/, assets/), else the package's
    installed share folder (ament_index), else the current directory.
    """
    if (CHECKOUT / "config").is_dir() and (CHECKOUT / "setup.py").is_file():
        return CHECKOUT
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return Path.cwd()
    try:
        return Path(get_package_share_directory(PACKAGE))
    except PackageNotFoundError:
        return Path.cwd()


def resolve(root: str | Path, path: str | Path) -> Path:
    """`path` if absolute, else `root / path`; `~` and environment variables expanded."""
    path = Path(os.path.expandvars(os.path.expanduser(str(path))))
    return path if path.is_absolute() else Path(root) / path


class OracleKeys:
    """Image keys of one scene of a BOP split, looked up by the header stamp (ns) its bag gave each image."""

    def __init__(self, config: DetectorConfig, scene_id: int, root: str | Path) -> None:
        split = BopSplit(resolve(root, config.dataset), config.split)
        if scene_id not in split.scene_ids():
            raise ValueError(f"oracle_scene {scene_id} is not a scene of {split.path} (scenes: {split.scene_ids()})")
        stamps = scene_stamps(split, scene_id, split.image_ids(scene_id))
        self.scene_id = scene_id
        self._keys = {stamp: ImageKey(scene_id, im_id) for im_id, stamp in stamps.items()}

    def key(self, stamp_ns: int) -> ImageKey | None:
        """The key of the image stamped `stamp_ns`, or None when no image of the scene has that stamp."""
        return self._keys.get(stamp_ns)

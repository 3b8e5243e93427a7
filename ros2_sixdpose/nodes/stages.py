"""What the nodes need from the stages, with no ROS: image keys for the oracle (paths: `ros2_sixdpose.paths`).

The oracle detector answers "which image of a BOP split is this?" with ground truth; on a camera topic an
image carries only its header stamp. `OracleKeys` maps the stamps a bag of that split was written with
(`sixdpose bag`: scene_times.json, else image id at 30 Hz) back to image ids, so a replayed bag can be
processed with oracle detections. It needs the bag's original stamps.
"""
from __future__ import annotations

from pathlib import Path

from ros2_sixdpose.data.bags import scene_stamps
from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.detection.base import DetectorConfig, ImageKey
from ros2_sixdpose.paths import resolve


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

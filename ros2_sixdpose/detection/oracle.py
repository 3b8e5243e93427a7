"""The oracle detector: a BOP split's ground-truth visible masks as detections, to evaluate pose methods alone."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ros2_sixdpose.core.checks import check_rgb, mask_box
from ros2_sixdpose.data.bop import BopSplit, GtInstance, SceneAnnotations, image_size, read_mask
from ros2_sixdpose.detection.base import Detection, Detector, ImageKey

logger = logging.getLogger(__name__)


class OracleDetector(Detector):
    """Returns every ground-truth instance of an image with a visible pixel: its mask_visib, its box, score 1."""

    def __init__(self, dataset: str | Path, split: str) -> None:
        self.split = BopSplit(Path(dataset), split)
        if not self.split.path.is_dir():
            raise FileNotFoundError(f"{self.split.path}: split folder of the oracle detector not found")
        self._scenes: dict[int, SceneAnnotations] = {}

    def _scene(self, scene_id: int) -> SceneAnnotations:
        """Annotations of a scene, read once."""
        if scene_id not in self._scenes:
            if not self.split.scene_dir(scene_id).is_dir():
                raise KeyError(f"{self.split.scene_dir(scene_id)}: scene {scene_id} not in split {self.split.path}")
            self._scenes[scene_id] = self.split.read_scene(scene_id)
        return self._scenes[scene_id]

    def detect(self, rgb: np.ndarray, key: ImageKey | None = None) -> list[Detection]:
        """Ground-truth detections of image `key`, in scene_gt.json order; `rgb` must have that image's size."""
        return [detection for _, detection in self.detect_with_truth(rgb, key)]

    def detect_with_truth(self, rgb: np.ndarray, key: ImageKey | None) -> list[tuple[GtInstance, Detection]]:
        """`detect`'s detections, each with the ground-truth instance it shows (for evaluations that start from it)."""
        check_rgb(rgb)
        if key is None:
            raise ValueError("the oracle detector needs the image's key (scene_id, im_id) within its BOP split")
        instances = self._scene(key.scene_id).gt.get(key.im_id)
        if instances is None:
            raise KeyError(f"{self.split.scene_gt_path(key.scene_id)}: no image {key.im_id}")
        width, height = image_size(self.split.rgb_path(key.scene_id, key.im_id))
        if rgb.shape[:2] != (height, width):
            raise ValueError(
                f"rgb is {rgb.shape[1]}x{rgb.shape[0]} but image {key.im_id} of scene {key.scene_id} "
                f"is {width}x{height}"
            )
        detections = []
        for index, instance in enumerate(instances):
            mask = read_mask(self.split.mask_visib_path(key.scene_id, key.im_id, index))
            if mask.shape != (height, width):
                raise ValueError(
                    f"{self.split.mask_visib_path(key.scene_id, key.im_id, index)}: mask is "
                    f"{mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}"
                )
            if mask.any():
                detections.append((instance, Detection(instance.obj_id, box=mask_box(mask), mask=mask, score=1.0)))
        return detections

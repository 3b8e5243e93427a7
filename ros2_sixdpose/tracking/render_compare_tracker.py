"""GS-Pose's tracking mode as a per-frame refiner: render-and-compare (refinement/render_compare.py) started from
the previous pose, against each frame's detection mask.

The render-and-compare objective compares a render with the detection's mask and colours, so unlike the
region tracker this refiner needs the detector on every frame: one detection pass per frame (shared by all
instances), the instance's detection being the one of its object whose box overlaps most the box of its
previous pose's projection. Its score is the refiner's render-vs-image similarity in [0, 1].
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.geometry import transform_points
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.detection.base import Detection, Detector
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.refinement.base import PoseRefiner
from ros2_sixdpose.tracking.base import FrameRefiner, RefinedPose
from ros2_sixdpose.tracking.tracker import box_iou


@dataclass
class _Instance:
    object_id: int


class RenderCompareTracker(FrameRefiner):
    """Render-and-compare from the previous pose against the frame's detections (see the module docstring)."""

    method = "render_compare"

    def __init__(self, refiner: PoseRefiner, detector: Detector, models: dict[int, ObjectModel]) -> None:
        self.refiner = refiner
        self.detector = detector
        self.models = models
        self._frame: tuple[int, list[Detection]] | None = None  # (id of the frame's array, its detections)

    def start(self, obj_id: int, rgb: np.ndarray, camera: PinholeCamera, T_cam_obj: np.ndarray) -> _Instance:
        """The instance's state: only its object (the refiner keeps nothing across frames)."""
        if obj_id not in self.models:
            raise ValueError(f"unknown obj_id {obj_id}; the tracker has models of {sorted(self.models)}")
        return _Instance(obj_id)

    def track(self, state: _Instance, rgb: np.ndarray, camera: PinholeCamera, T_cam_obj: np.ndarray,
              others: Sequence[tuple[int, np.ndarray]] = ()) -> RefinedPose:
        """Refine from T_cam_obj (4, 4) against the detection that matches it; score 0 when none does (`others`
        are not needed: the detection masks already leave occluders out)."""
        detection = self._matching_detection(state.object_id, rgb, camera, T_cam_obj)
        if detection is None:
            return RefinedPose(T_cam_obj, 0.0, self._visible(state.object_id, camera, T_cam_obj))
        start = PoseEstimate(state.object_id, T_cam_obj, 1.0, "track")
        (refined,) = self.refiner.refine(rgb, camera, [detection], [start])
        return RefinedPose(refined.T_cam_obj, refined.score, 1.0)

    def _detections(self, rgb: np.ndarray) -> list[Detection]:
        """The frame's detections, computed once per frame for all instances."""
        if self._frame is None or self._frame[0] != id(rgb):
            self._frame = (id(rgb), self.detector.detect(rgb))
        return self._frame[1]

    def _box(self, object_id: int, camera: PinholeCamera, T: np.ndarray) -> np.ndarray:
        """(x0, y0, x1, y1) px of the projected model vertices at T."""
        uv = camera.project(transform_points(T, self.models[object_id].vertices[::10].astype(np.float64)))
        return np.concatenate([uv.min(axis=0), uv.max(axis=0)])

    def _visible(self, object_id: int, camera: PinholeCamera, T: np.ndarray) -> float:
        """Share of the projected box inside the image."""
        box = self._box(object_id, camera, T)
        inside = np.clip(box, 0, [camera.width, camera.height] * 2)
        area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
        return float(max(inside[2] - inside[0], 0) * max(inside[3] - inside[1], 0) / area)

    def _matching_detection(self, object_id: int, rgb: np.ndarray, camera: PinholeCamera,
                            T: np.ndarray) -> Detection | None:
        """The detection of `object_id` whose box overlaps most (IoU > 0.1) the projected box at T."""
        box = self._box(object_id, camera, T)
        best, best_iou = None, 0.1
        for detection in self._detections(rgb):
            if detection.object_id != object_id:
                continue
            iou = box_iou(box, detection.box)
            if iou > best_iou:
                best, best_iou = detection, iou
        return best

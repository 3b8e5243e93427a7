"""RNNPose as the tracker's per-frame refiner: its recurrent render-and-compare started from the previous pose.

RNNPose matches a render with the image itself (learned correspondences and weights), so unlike the render_compare
frame refiner it needs no detection per frame: tracking costs one RNNPose refinement per instance and frame. Its score
(mean correspondence weight x flow consistency, in [0, 1]) is what the state machine compares with `lost_score`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.refinement.rnnpose.references import inside_share, pose_crop
from ros2_sixdpose.refinement.rnnpose.refiner import RNNPoseRefiner
from ros2_sixdpose.tracking.base import FrameRefiner, RefinedPose


class RNNPoseTracker(FrameRefiner):
    """RNNPose from the previous pose (see the module docstring)."""

    method = "rnnpose"

    def __init__(self, refiner: RNNPoseRefiner) -> None:
        self.refiner = refiner

    def start(self, obj_id: int, rgb: np.ndarray, camera: PinholeCamera, T_cam_obj: np.ndarray) -> int:
        """The instance's state: its object id (RNNPose keeps nothing across frames)."""
        if obj_id not in self.refiner.models:
            raise ValueError(f"unknown obj_id {obj_id}; the tracker has models of {sorted(self.refiner.models)}")
        return obj_id

    def track(self, state: int, rgb: np.ndarray, camera: PinholeCamera, T_cam_obj: np.ndarray,
              others: Sequence[tuple[int, np.ndarray]] = ()) -> RefinedPose:
        """Refine from T_cam_obj (4, 4); visible = share of the projected bounding box inside the image (RNNPose's
        weights already discount occluded pixels, so `others` are not needed)."""
        refined = self.refiner.refine_one(rgb, camera, PoseEstimate(state, T_cam_obj, 1.0, "track"))
        box = pose_crop(self.refiner.models[state], refined.T_cam_obj, camera.K, 8, 1.0)
        visible = 0.0 if box is None else inside_share(box, camera.width, camera.height)
        return RefinedPose(refined.T_cam_obj, refined.score, visible)

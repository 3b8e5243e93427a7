"""The per-frame refiner interface of the tracker: start an instance from a pose, then carry it frame to frame.

Unlike `refinement.base.PoseRefiner` (one frame, from detections), a `FrameRefiner` keeps state per tracked
instance (the region tracker's colour histograms) and needs no detection: it starts from the previous (or
predicted) pose alone.
"""
from __future__ import annotations

import abc
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera


@dataclass(frozen=True)
class RefinedPose:
    """A tracked pose: T_cam_obj (4, 4) m, score in [0, 1] (low: lost), visible share of the object's outline."""

    T_cam_obj: np.ndarray
    score: float
    visible: float


class FrameRefiner(abc.ABC):
    """Refines an instance's pose in each new frame from its pose in the previous one."""

    method: str = "base"

    @abc.abstractmethod
    def start(self, obj_id: int, rgb: np.ndarray, camera: PinholeCamera, T_cam_obj: np.ndarray) -> Any:
        """Per-instance state for an instance of `obj_id` at T_cam_obj (4, 4) in `rgb` (H, W, 3) uint8."""

    @abc.abstractmethod
    def track(self, state: Any, rgb: np.ndarray, camera: PinholeCamera, T_cam_obj: np.ndarray,
              others: Sequence[tuple[int, np.ndarray]] = ()) -> RefinedPose:
        """The instance's pose in `rgb`, starting from T_cam_obj (4, 4) (the previous or a predicted pose).

        `others`: the other tracked instances [(obj_id, T_cam_obj (4, 4))], which may occlude this one.
        """

    def copy_state(self, state: Any) -> Any:
        """A copy of an instance's state that later `track` calls on either leave the other unchanged."""
        return copy.deepcopy(state)

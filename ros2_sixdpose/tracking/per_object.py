"""A per-frame refiner that carries each tracked instance with the refiner configured for its object (e.g. RNNPose
for one object, the region tracker for the rest), chosen in configuration alone."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.per_object import PerObjectChoice
from ros2_sixdpose.tracking.base import FrameRefiner, RefinedPose


@dataclass
class PerObjectTrackingConfig(PerObjectChoice):
    """Which per-frame refiner carries which object (the tracker's `per_object` section)."""

    default: str = "region"


@dataclass
class _Routed:
    """An instance's state: the method carrying it and that method's own state."""

    method: str
    state: Any


class PerObjectFrameRefiner(FrameRefiner):
    """Starts each instance with its object's per-frame refiner and keeps it there (see the module docstring)."""

    method = "per_object"

    def __init__(self, refiners: Mapping[str, FrameRefiner], choice: PerObjectChoice) -> None:
        """`refiners`: method -> the per-frame refiner built for the objects that method carries."""
        self.refiners = dict(refiners)
        self.choice = choice

    def start(self, obj_id: int, rgb: np.ndarray, camera: PinholeCamera, T_cam_obj: np.ndarray) -> _Routed:
        """The instance's state, made by its object's refiner."""
        method = self.choice.method_of(obj_id)
        if method not in self.refiners:
            raise ValueError(f"obj_id {obj_id} is carried by {method!r}, which this tracker did not build (it was "
                             f"made for other objects)")
        return _Routed(method, self.refiners[method].start(obj_id, rgb, camera, T_cam_obj))

    def track(self, state: _Routed, rgb: np.ndarray, camera: PinholeCamera, T_cam_obj: np.ndarray,
              others: Sequence[tuple[int, np.ndarray]] = ()) -> RefinedPose:
        """The instance's pose in `rgb` from its object's refiner."""
        return self.refiners[state.method].track(state.state, rgb, camera, T_cam_obj, others)

    def copy_state(self, state: _Routed) -> _Routed:
        """A copy made by the instance's own refiner."""
        return _Routed(state.method, self.refiners[state.method].copy_state(state.state))

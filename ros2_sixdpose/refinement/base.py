"""The refinement stage: its interface.

A `PoseRefiner` takes one colour frame, its camera, the detector's detections and the estimator's
`PoseEstimate`s (one per detection, same order) and returns one refined `PoseEstimate` per detection, in
the same order. A refined estimate keeps the estimator's method name with the refiner's appended
(`"nocs+gs_refine"`) and carries the refiner's own score: the final similarity of render and image, in
[0, 1], the number the tracker uses to declare a track lost. An estimate without a pose may still be
refined from the refiner's own hypotheses (e.g. retrieved templates); where the refiner finds nothing
better it returns the input unchanged.
"""
from __future__ import annotations

import abc
from collections.abc import Collection, Sequence

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate


class PoseRefiner(abc.ABC):
    """Improves the poses of one frame's detections."""

    method: str = "base"

    @abc.abstractmethod
    def refine(
        self,
        rgb: np.ndarray,
        camera: PinholeCamera,
        detections: Sequence[Detection],
        estimates: Sequence[PoseEstimate],
        which: Collection[int] | None = None,
    ) -> list[PoseEstimate]:
        """Refined poses for `detections` in `rgb` (H, W, 3) uint8 seen by `camera`, starting from `estimates`.

        `estimates[i]` belongs to `detections[i]`; the result has one estimate per detection, in order. `which`:
        the positions to refine (default: all); the others come back unchanged but still count as the frame's
        other objects (a refiner may treat their masks as occluders).
        """

    def refined_method(self, estimate: PoseEstimate) -> str:
        """The method name a refined estimate carries: the estimator's, then this refiner's."""
        return f"{estimate.method}+{self.method}"

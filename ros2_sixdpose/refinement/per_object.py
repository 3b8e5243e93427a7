"""A pose refiner that hands each detection to the refiner configured for its object (e.g. RNNPose for a textured
object, render-and-compare for the rest), so the refiner is chosen per object in configuration alone."""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.per_object import PerObjectChoice
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.refinement.base import PoseRefiner


@dataclass
class PerObjectRefinerConfig(PerObjectChoice):
    """Which refiner serves which object (the `per_object` section of config/refiner*.yaml); "none" leaves an
    object's estimates unrefined."""

    default: str = "render_compare"


class PerObjectRefiner(PoseRefiner):
    """Routes each (detection, estimate) to its object's refiner; results come back in the input order.

    `refiners[method]` is None for "none": those objects' estimates are returned as they came.
    """

    method = "per_object"

    def __init__(self, refiners: Mapping[str, PoseRefiner | None], choice: PerObjectChoice) -> None:
        missing = sorted(set(choice.used_methods()) - set(refiners))
        if missing:
            raise ValueError(f"no refiner built for methods {missing}")
        self.refiners = dict(refiners)
        self.choice = choice

    def refine(self, rgb: np.ndarray, camera: PinholeCamera, detections: Sequence[Detection],
               estimates: Sequence[PoseEstimate], which: Collection[int] | None = None) -> list[PoseEstimate]:
        """One refined estimate per detection, in order, each from its object's refiner; every refiner sees the
        whole frame's detections (others' masks are its occluders) and refines only its objects."""
        if len(detections) != len(estimates):
            raise ValueError(f"got {len(detections)} detections but {len(estimates)} estimates")
        refined = list(estimates)
        for method, indices in self.choice.group(d.object_id for d in detections).items():
            refiner = self.refiners[method]
            mine = [i for i in indices if which is None or i in which]
            if refiner is None or not mine:
                continue
            results = refiner.refine(rgb, camera, detections, estimates, which=mine)
            for index in mine:
                refined[index] = results[index]
        return refined

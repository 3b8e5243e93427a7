"""A pose estimator that hands each detection to the method configured for its object (e.g. NOCS for one
object, MRC-Net for another), so the method is chosen per object in configuration alone."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.per_object import PerObjectChoice
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate, PoseEstimator


@dataclass
class PerObjectConfig(PerObjectChoice):
    """Which estimator serves which object (the `per_object` section of config/estimator*.yaml)."""

    default: str = "nocs"


class PerObjectEstimator(PoseEstimator):
    """Routes each detection to its object's estimator and returns the estimates in the detections' order."""

    method = "per_object"

    def __init__(self, estimators: Mapping[str, PoseEstimator], choice: PerObjectChoice) -> None:
        missing = sorted(set(choice.used_methods()) - set(estimators))
        if missing:
            raise ValueError(f"no estimator built for methods {missing}")
        self.estimators = dict(estimators)
        self.choice = choice

    def estimate(self, rgb: np.ndarray, camera: PinholeCamera, detections: Sequence[Detection]) -> list[PoseEstimate]:
        """One `PoseEstimate` per detection, in order, each from its object's method."""
        estimates: list[PoseEstimate | None] = [None] * len(detections)
        for method, indices in self.choice.group(d.object_id for d in detections).items():
            results = self.estimators[method].estimate(rgb, camera, [detections[i] for i in indices])
            for index, estimate in zip(indices, results):
                estimates[index] = estimate
        return [estimate for estimate in estimates if estimate is not None]

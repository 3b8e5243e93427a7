"""A pose estimator that hands each detection to the method configured for its object (e.g. NOCS for one
object, MRC-Net for another), so the method is chosen per object in configuration alone."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate, PoseEstimator


@dataclass
class PerObjectConfig:
    """Which estimator serves which object (the `per_object` section of config/estimator*.yaml).

    `object_ids[i]` is served by `methods[i]` (an estimator type with its own section in the same file);
    every other object by `default`.
    """

    default: str = "nocs"
    object_ids: list[int] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.object_ids) != len(self.methods):
            raise ValueError(f"per_object needs one method per object id, got {len(self.object_ids)} ids and "
                             f"{len(self.methods)} methods")
        if len(set(self.object_ids)) != len(self.object_ids):
            raise ValueError(f"per_object.object_ids has repeats: {self.object_ids}")
        if "per_object" in [self.default, *self.methods]:
            raise ValueError("per_object cannot name itself as an object's method")

    def assignment(self) -> dict[int, str]:
        """Object id -> method of the listed objects."""
        return dict(zip(self.object_ids, self.methods))


class PerObjectEstimator(PoseEstimator):
    """Routes each detection to its object's estimator and returns the estimates in the detections' order."""

    method = "per_object"

    def __init__(self, estimators: Mapping[str, PoseEstimator], assignment: Mapping[int, str], default: str) -> None:
        missing = sorted(({default} | set(assignment.values())) - set(estimators))
        if missing:
            raise ValueError(f"no estimator built for methods {missing}")
        self.estimators = dict(estimators)
        self.assignment = dict(assignment)
        self.default = default

    def estimate(self, rgb: np.ndarray, camera: PinholeCamera, detections: Sequence[Detection]) -> list[PoseEstimate]:
        """One `PoseEstimate` per detection, in order, each from its object's method."""
        groups: dict[str, list[int]] = defaultdict(list)
        for index, detection in enumerate(detections):
            groups[self.assignment.get(detection.object_id, self.default)].append(index)
        estimates: list[PoseEstimate | None] = [None] * len(detections)
        for method, indices in groups.items():
            results = self.estimators[method].estimate(rgb, camera, [detections[i] for i in indices])
            for index, estimate in zip(indices, results):
                estimates[index] = estimate
        return [estimate for estimate in estimates if estimate is not None]

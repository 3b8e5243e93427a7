"""The pose-estimation stage: its result type and its interface.

A `PoseEstimator` takes one colour frame, its camera and the detector's detections, and returns one
`PoseEstimate` per detection, in the same order. A detection that yields no trustworthy pose still gets
an estimate, with `T_cam_obj` None, score 0 and the reason, so callers can log why an object was dropped
without a wrong pose ever travelling downstream. Implementations are built by name with
`ros2_sixdpose.estimation.factory.make_estimator`.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.detection.base import Detection


@dataclass(frozen=True)
class PoseEstimate:
    """One object pose, or the reason there is none.

    Attributes:
        object_id: the object's id in the model registry.
        T_cam_obj: (4, 4) float64 object -> camera transform, metres; None when no pose was found.
        score: confidence in [0, 1]; 0 when there is no pose.
        method: name of the estimator that produced it (e.g. 'nocs_bbdm').
        reason: why there is no pose (empty when there is one).
    """

    object_id: int
    T_cam_obj: np.ndarray | None
    score: float
    method: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.T_cam_obj is None:
            if not self.reason:
                raise ValueError("a PoseEstimate without a pose must give its reason")
            object.__setattr__(self, "score", 0.0)
            return
        T = np.asarray(self.T_cam_obj, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f"T_cam_obj must be a finite (4, 4) matrix, got shape {T.shape}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.score}")
        object.__setattr__(self, "T_cam_obj", T)

    @property
    def found(self) -> bool:
        """True when the estimate holds a pose."""
        return self.T_cam_obj is not None

    @classmethod
    def none(cls, object_id: int, method: str, reason: str) -> "PoseEstimate":
        """An estimate that holds no pose, only the reason."""
        return cls(object_id=object_id, T_cam_obj=None, score=0.0, method=method, reason=reason)


class PoseEstimator(abc.ABC):
    """Turns detections of one frame into object poses."""

    method: str = "base"

    @abc.abstractmethod
    def estimate(
        self, rgb: np.ndarray, camera: PinholeCamera, detections: Sequence[Detection]
    ) -> list[PoseEstimate]:
        """Poses for `detections` in the image `rgb` (H, W, 3) uint8 seen by `camera`; one per detection, in order."""

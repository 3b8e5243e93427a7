"""Frame -> detections -> object poses, with no ROS and no scoring: the code the nodes, the CLI, the benchmarks
and the evaluator share.

`Pipeline.process` runs the configured detector and pose estimator on one `Frame`; running it over a
BOP split and scoring it is `ros2_sixdpose.evaluation.split_run`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.detection.base import Detection, Detector, DetectorConfig, ImageKey
from ros2_sixdpose.detection.factory import make_detector
from ros2_sixdpose.estimation.base import PoseEstimate, PoseEstimator
from ros2_sixdpose.estimation.factory import EstimatorConfig, make_estimator


@dataclass
class Frame:
    """One camera frame.

    rgb: (H, W, 3) uint8 colour image.
    camera: intrinsics and distortion of `rgb`.
    stamp: seconds (the ROS header stamp).
    frame_id: the camera's optical frame.
    depth: (H, W) float32 metres, 0 = no measurement; None without a depth camera.
    key: which image of a BOP split this is (only the oracle detector needs it).
    """

    rgb: np.ndarray
    camera: PinholeCamera
    stamp: float = 0.0
    frame_id: str = ""
    depth: np.ndarray | None = None
    key: ImageKey | None = None


@dataclass
class FrameResult:
    """What the pipeline made of a frame: detections, one estimate per detection, and seconds per stage."""

    detections: list[Detection]
    estimates: list[PoseEstimate]
    seconds: dict[str, float] = field(default_factory=dict)  # "detect", "estimate", "total"

    @property
    def poses(self) -> list[PoseEstimate]:
        """The estimates that hold a pose."""
        return [estimate for estimate in self.estimates if estimate.found]


class Pipeline:
    """A detector followed by a pose estimator."""

    def __init__(self, detector: Detector, estimator: PoseEstimator) -> None:
        self.detector = detector
        self.estimator = estimator

    @classmethod
    def from_configs(
        cls, detector: DetectorConfig, estimator: EstimatorConfig, root: str | Path = "."
    ) -> "Pipeline":
        """Build both stages; relative paths in the configs are resolved against `root`."""
        return cls(make_detector(detector, root), make_estimator(estimator, root))

    def process(self, frame: Frame) -> FrameResult:
        """Detect the objects in `frame` and estimate their poses."""
        start = time.perf_counter()
        detections = self.detector.detect(frame.rgb, frame.key)
        detected = time.perf_counter()
        estimates = self.estimator.estimate(frame.rgb, frame.camera, detections)
        done = time.perf_counter()
        return FrameResult(
            detections, estimates, {"detect": detected - start, "estimate": done - detected, "total": done - start}
        )

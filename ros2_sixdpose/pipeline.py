"""Frame -> detections -> object poses, with no ROS and no scoring: the code the nodes, the CLI, the benchmarks
and the evaluator share.

`Pipeline.process` runs the configured detector, pose estimator and (optional) refiner on one `Frame`; running it over a
BOP split and scoring it is `ros2_sixdpose.evaluation.split_run`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.detection.base import Detection, Detector, DetectorConfig, ImageKey
from ros2_sixdpose.detection.factory import make_detector
from ros2_sixdpose.estimation.base import PoseEstimate, PoseEstimator
from ros2_sixdpose.estimation.factory import EstimatorConfig, make_estimator
from ros2_sixdpose.refinement.base import PoseRefiner
from ros2_sixdpose.refinement.factory import RefinerConfig, make_refiner


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
    """What the pipeline made of a frame: detections, one estimate per detection, and seconds per stage.

    `estimates` are the final poses (refined when there is a refiner); `initial` the estimator's own.
    """

    detections: list[Detection]
    estimates: list[PoseEstimate]
    seconds: dict[str, float] = field(default_factory=dict)  # "detect", "estimate", "refine", "total"
    initial: list[PoseEstimate] = field(default_factory=list)

    @property
    def poses(self) -> list[PoseEstimate]:
        """The estimates that hold a pose."""
        return [estimate for estimate in self.estimates if estimate.found]


class Pipeline:
    """A detector, a pose estimator and, optionally, a pose refiner."""

    def __init__(self, detector: Detector, estimator: PoseEstimator, refiner: PoseRefiner | None = None) -> None:
        self.detector = detector
        self.estimator = estimator
        self.refiner = refiner

    @classmethod
    def from_configs(
        cls, detector: DetectorConfig, estimator: EstimatorConfig, refiner: RefinerConfig | None = None,
        root: str | Path = ".",
    ) -> "Pipeline":
        """Build the stages (no refiner when `refiner` is None); relative paths in the configs resolve against `root`."""
        return cls(make_detector(detector, root), make_estimator(estimator, root),
                   make_refiner(refiner, root) if refiner is not None else None)

    def process(self, frame: Frame,
                select: Callable[[list[Detection]], list[Detection]] | None = None) -> FrameResult:
        """Detect the objects in `frame`, estimate their poses and refine them.

        `select` keeps the detections worth estimating (the tracker's: those no tracked instance explains).
        """
        start = time.perf_counter()
        detections = self.detector.detect(frame.rgb, frame.key)
        if select is not None:
            detections = select(detections)
        detected = time.perf_counter()
        initial = self.estimator.estimate(frame.rgb, frame.camera, detections)
        estimated = time.perf_counter()
        estimates = initial
        if self.refiner is not None:
            estimates = self.refiner.refine(frame.rgb, frame.camera, detections, initial)
        done = time.perf_counter()
        seconds = {"detect": detected - start, "estimate": estimated - detected, "refine": done - estimated,
                   "total": done - start}
        return FrameResult(detections, estimates, seconds, initial)

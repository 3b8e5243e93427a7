"""Frame -> detections -> object poses, with no ROS: the code the nodes, the CLI, the benchmarks and the evaluator share.

`Pipeline.process` runs the configured detector and pose estimator on one `Frame`. `evaluate_pipeline`
runs them over every image of a BOP split, writes the BOP results CSV (the time column is the whole
image's time, as BOP asks) and scores it with the evaluator of `ros2_sixdpose.evaluation`, giving the same
metrics.json as `sixdpose eval --results`.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.bop import BopSplit, PoseResult, read_rgb, write_results_csv
from ros2_sixdpose.detection.base import Detection, Detector, DetectorConfig, ImageKey, make_detector
from ros2_sixdpose.estimation.base import PoseEstimate, PoseEstimator
from ros2_sixdpose.estimation.factory import EstimatorConfig, make_estimator
from ros2_sixdpose.evaluation import EvalConfig, EvalReport, evaluate_split

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.csv"
METRICS_FILE = "metrics.json"


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


def split_frames(split: BopSplit) -> Iterator[Frame]:
    """Every image of a BOP split as a `Frame` (no distortion: BOP images are undistorted), scene by scene."""
    for scene_id in split.scene_ids():
        scene = split.read_scene(scene_id)
        for im_id in sorted(scene.camera):
            rgb = read_rgb(split.rgb_path(scene_id, im_id))
            camera = PinholeCamera(scene.camera[im_id].K, rgb.shape[1], rgb.shape[0])
            yield Frame(rgb=rgb, camera=camera, key=ImageKey(scene_id, im_id))


def run_on_split(pipeline: Pipeline, split: BopSplit, progress: bool = True) -> list[PoseResult]:
    """Pose results of `pipeline` on every image of `split`, in metres, each carrying its image's time."""
    results = []
    n_images = sum(len(split.image_ids(scene_id)) for scene_id in split.scene_ids())
    for frame in tqdm(split_frames(split), total=n_images, desc=f"pipeline {split.split}", unit="img",
                      disable=not progress):
        out = pipeline.process(frame)
        for estimate in out.poses:
            results.append(PoseResult(
                frame.key.scene_id, frame.key.im_id, estimate.object_id, estimate.score, estimate.T_cam_obj,
                out.seconds["total"],
            ))
    return results


def evaluate_pipeline(
    detector: DetectorConfig,
    estimator: EstimatorConfig,
    split: BopSplit,
    models: Mapping[int, ObjectModel],
    out_dir: str | Path,
    eval_config: EvalConfig | None = None,
    root: str | Path = ".",
    progress: bool = True,
) -> EvalReport:
    """Run detector + estimator over `split`, write OUT/results.csv, score it and write OUT/metrics.json.

    An oracle detector without its own data set and split reads the evaluated split.
    """
    if detector.type == "oracle" and not (detector.dataset or detector.split):
        detector = dataclasses.replace(detector, dataset=str(Path(split.root).resolve()), split=split.split)
    pipeline = Pipeline.from_configs(detector, estimator, root)
    results = run_on_split(pipeline, split, progress)
    out_dir = Path(out_dir)
    write_results_csv(out_dir / RESULTS_FILE, results)
    report = evaluate_split(split, results, models, eval_config, progress=progress)
    report.write_json(out_dir / METRICS_FILE)
    logger.info("wrote %s and %s", out_dir / RESULTS_FILE, out_dir / METRICS_FILE)
    return report

"""The pipeline over every image of a BOP split: pose results, the BOP results CSV and their scores.

`evaluate_pipeline` runs the configured detector and pose estimator over a split, writes the BOP results
CSV (the time column is the whole image's time, as BOP asks) and scores it with the evaluator of
`ros2_sixdpose.evaluation.scoring`, giving the same metrics.json as `sixdpose eval --results`.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

from tqdm import tqdm

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.bop import BopSplit, PoseResult, read_rgb, write_results_csv
from ros2_sixdpose.detection.base import DetectorConfig, ImageKey
from ros2_sixdpose.estimation.factory import EstimatorConfig
from ros2_sixdpose.evaluation.scoring import EvalConfig, EvalReport, evaluate_split
from ros2_sixdpose.pipeline import Frame, Pipeline
from ros2_sixdpose.refinement.factory import RefinerConfig

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.csv"
METRICS_FILE = "metrics.json"


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
    refiner: RefinerConfig | None = None,
) -> EvalReport:
    """Run detector + estimator (+ refiner) over `split`, write OUT/results.csv, score it, write OUT/metrics.json.

    An oracle detector without its own data set and split reads the evaluated split.
    """
    if detector.type == "oracle" and not (detector.dataset or detector.split):
        detector = dataclasses.replace(detector, dataset=str(Path(split.root).resolve()), split=split.split)
    return score_pipeline(Pipeline.from_configs(detector, estimator, refiner, root), split, models, out_dir,
                          eval_config, progress)


def score_pipeline(pipeline: Pipeline, split: BopSplit, models: Mapping[int, ObjectModel], out_dir: str | Path,
                   eval_config: EvalConfig | None = None, progress: bool = True) -> EvalReport:
    """Run a built pipeline over `split`, write OUT/results.csv, score it, write OUT/metrics.json."""
    results = run_on_split(pipeline, split, progress)
    out_dir = Path(out_dir)
    write_results_csv(out_dir / RESULTS_FILE, results)
    report = evaluate_split(split, results, models, eval_config, progress=progress)
    report.write_json(out_dir / METRICS_FILE)
    logger.info("wrote %s and %s", out_dir / RESULTS_FILE, out_dir / METRICS_FILE)
    return report

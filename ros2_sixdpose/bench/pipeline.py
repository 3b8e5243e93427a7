"""The pipeline benchmark (`sixdpose bench pipeline`): ms per 640x480 frame of detector + estimator, per stage and end to end, and peak RSS.

Drives `ros2_sixdpose.pipeline.Pipeline` directly (no ROS, no DDS: `sixdpose replay` measures those) on
freshly synthesised scenes holding exactly one and exactly five objects of the set (plus distractors),
with the configured detector and estimator. Stages: `detect`, `estimate` (and, for the NOCS estimator,
its `crop`, `network` and `pnp` parts), `total`, and `total_cpu` (the frame's CPU time over all threads,
steadier than wall time on a shared machine). Peak RSS is the process's high-water mark after each
case (so the five-object figure includes the one-object run and the model loading).
"""
from __future__ import annotations

import dataclasses
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.data.synth import SynthConfig, generate_split
from ros2_sixdpose.detection.base import DetectorConfig
from ros2_sixdpose.detection.factory import make_detector
from ros2_sixdpose.estimation.factory import EstimatorConfig, make_estimator
from ros2_sixdpose.estimation.nocs_estimator import NocsEstimator
from ros2_sixdpose.evaluation.split_run import split_frames
from ros2_sixdpose.pipeline import Frame, Pipeline

OBJECT_COUNTS = (1, 5)
WARMUP_FRAMES = 2
BENCH_SEED = 778  # scenes of this benchmark; no data set of the project is made with it
SCENES, IMAGES_PER_SCENE = 2, 3  # distinct frames per case


def synth_split(root: Path, n_objects: int, config: SynthConfig, models_dir: Path) -> BopSplit:
    """A 640x480 split `objects<n>` of SCENES x IMAGES_PER_SCENE images, each scene holding `n_objects` objects."""
    scene = dataclasses.replace(config.scene, objects_per_scene=(n_objects, n_objects), max_instances_per_object=1)
    camera = dataclasses.replace(config.camera, width=640, height=480)
    config = dataclasses.replace(config, scene=scene, camera=camera)
    name = f"objects{n_objects}"
    generate_split(root, name, SCENES, IMAGES_PER_SCENE, BENCH_SEED + n_objects, config, models_dir, progress=False)
    return BopSplit(root, name)


def _summary(values: list[float]) -> dict[str, float]:
    """Median and p90 of durations in seconds, as ms."""
    ms = 1e3 * np.asarray(values)
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90))}


def time_pipeline(pipeline: Pipeline, frames: list[Frame], n_frames: int) -> dict[str, object]:
    """Per-stage and total ms (median, p90) over `n_frames` runs cycling through `frames`, after warm-up."""
    stages: dict[str, list[float]] = {}
    detections, poses = [], []
    for index in range(n_frames + WARMUP_FRAMES):
        cpu_start = time.process_time()
        result = pipeline.process(frames[index % len(frames)])
        cpu = time.process_time() - cpu_start
        if index < WARMUP_FRAMES:
            continue
        times = {"detect": result.seconds["detect"], "estimate": result.seconds["estimate"]}
        if isinstance(pipeline.estimator, NocsEstimator):
            timing = pipeline.estimator.last_timing
            times.update({"estimate.crop": timing.crop, "estimate.network": timing.network, "estimate.pnp": timing.pnp})
        times["total"] = result.seconds["total"]
        # CPU time of all the process's threads: steadier than wall time on a shared machine.
        times["total_cpu"] = cpu
        for stage, seconds in times.items():
            stages.setdefault(stage, []).append(seconds)
        detections.append(len(result.detections))
        poses.append(len(result.poses))
    return {
        "frames": n_frames,
        "distinct_frames": len(frames),
        "mean_detections": float(np.mean(detections)),
        "mean_poses": float(np.mean(poses)),
        "stages": {stage: _summary(values) for stage, values in stages.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,  # KiB on Linux
    }


def measure(
    detector_config: DetectorConfig, estimator_config: EstimatorConfig, synth: SynthConfig, n_frames: int, root: Path
) -> dict[str, Any]:
    """Time the pipeline with one and with five objects per frame (paths in the configs relative to `root`): the
    figures written as JSON."""
    if n_frames < 1:
        raise ValueError(f"frames must be >= 1, got {n_frames}")
    start = time.perf_counter()
    estimator = make_estimator(estimator_config, root)
    detector = make_detector(detector_config, root) if detector_config.type != "oracle" else None
    load_ms = 1e3 * (time.perf_counter() - start)
    cases = {}
    with tempfile.TemporaryDirectory(prefix="sixdpose_bench_pipeline_") as tmp:
        for n_objects in OBJECT_COUNTS:
            split = synth_split(Path(tmp), n_objects, synth, root / estimator_config.nocs.models_dir)
            if detector_config.type == "oracle":
                detector = make_detector(dataclasses.replace(detector_config, dataset=tmp, split=split.split))
            cases[str(n_objects)] = time_pipeline(Pipeline(detector, estimator), list(split_frames(split)), n_frames)
    figures = {
        "width": 640,
        "height": 480,
        "detector": detector_config.type,
        "estimator": estimator.method,
        "torch_threads": torch.get_num_threads(),
        "load_ms": load_ms,
        "objects": cases,
        "peak_rss_mb": max(case["peak_rss_mb"] for case in cases.values()),
    }
    return figures

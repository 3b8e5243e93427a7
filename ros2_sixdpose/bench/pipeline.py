"""`sixdpose bench pipeline`: ms per 640x480 frame of detector + estimator, per stage and end to end, and peak RSS.

Drives `ros2_sixdpose.pipeline.Pipeline` directly (no ROS, no DDS: `sixdpose replay` measures those) on
freshly synthesised scenes holding exactly one and exactly five objects of the set (plus distractors),
with the configured detector and estimator. Stages: `detect`, `estimate` (and, for the NOCS estimator,
its `crop`, `network` and `pnp` parts), `total`, and `total_cpu` (the frame's CPU time over all threads,
steadier than wall time on a shared machine). Peak RSS is the process's high-water mark after each
case (so the five-object figure includes the one-object run and the model loading).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ros2_sixdpose.config import load_config
from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.data.synth import SynthConfig, generate_split
from ros2_sixdpose.detection.base import DetectorConfig, make_detector
from ros2_sixdpose.estimation.factory import EstimatorConfig, make_estimator
from ros2_sixdpose.estimation.nocs_estimator import NocsEstimator
from ros2_sixdpose.pipeline import Frame, Pipeline, split_frames

OBJECT_COUNTS = (1, 5)
WARMUP_FRAMES = 2
BENCH_SEED = 778  # scenes of this benchmark; no data set of the project is made with it
SCENES, IMAGES_PER_SCENE = 2, 3  # distinct frames per case
ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    parser.add_argument("--out", type=Path, default=Path("out/bench/pipeline.json"), help="JSON file for the figures")
    parser.add_argument("--detector-config", type=Path, default=ROOT / "config" / "detector.yaml",
                        help="detection stage (an oracle reads the synthesised scenes' ground truth)")
    parser.add_argument("--estimator-config", type=Path, default=ROOT / "config" / "estimator.yaml",
                        help="pose-estimation stage")
    parser.add_argument("--frames", type=int, default=20, help=f"timed frames per case (after {WARMUP_FRAMES} warm-up)")
    parser.add_argument("--synth-config", type=Path, default=ROOT / "config" / "synth.yaml", help="scene settings")


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


def run(args: argparse.Namespace) -> int:
    """Time the pipeline with one and with five objects per frame; print a table and write the JSON."""
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    detector_config = load_config(DetectorConfig, args.detector_config)
    estimator_config = load_config(EstimatorConfig, args.estimator_config)
    start = time.perf_counter()
    estimator = make_estimator(estimator_config, ROOT)
    detector = make_detector(detector_config, ROOT) if detector_config.type != "oracle" else None
    load_ms = 1e3 * (time.perf_counter() - start)
    synth = load_config(SynthConfig, args.synth_config)
    cases = {}
    with tempfile.TemporaryDirectory(prefix="sixdpose_bench_pipeline_") as tmp:
        for n_objects in OBJECT_COUNTS:
            split = synth_split(Path(tmp), n_objects, synth, ROOT / estimator_config.nocs.models_dir)
            if detector_config.type == "oracle":
                detector = make_detector(dataclasses.replace(detector_config, dataset=tmp, split=split.split))
            cases[str(n_objects)] = time_pipeline(Pipeline(detector, estimator), list(split_frames(split)), args.frames)
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"{detector_config.type} detector + {estimator.method}, 640x480, {figures['torch_threads']} torch threads, "
          f"{args.frames} frames per case; ms per frame, median / p90")
    print(f"{'stage':<18}" + "".join(f"{n + (' object' if n == '1' else ' objects'):>20}" for n in cases))
    for stage in next(iter(cases.values()))["stages"]:
        cells = [case["stages"].get(stage) for case in cases.values()]
        print(f"{stage:<18}" + "".join(f"{c['median_ms']:>11.1f} / {c['p90_ms']:>6.1f}" if c else f"{'-':>20}"
                                       for c in cells))
    print(f"{'detections':<18}" + "".join(f"{case['mean_detections']:>20.1f}" for case in cases.values()))
    print(f"{'poses':<18}" + "".join(f"{case['mean_poses']:>20.1f}" for case in cases.values()))
    print(f"peak RSS {figures['peak_rss_mb']:.0f} MB; model loading {load_ms:.0f} ms; written to {args.out}")
    return 0


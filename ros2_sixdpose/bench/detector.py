"""The detector benchmark (`sixdpose bench detector`): ms per 640x480 frame of a detector (post-processing included), peak RSS."""
from __future__ import annotations

import multiprocessing
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ros2_sixdpose.data.bop import BopSplit, read_rgb
from ros2_sixdpose.data.synth import SynthConfig, generate_split
from ros2_sixdpose.detection.base import DetectorConfig
from ros2_sixdpose.detection.factory import make_detector

TARGET_MS = 30.0
WARMUP_FRAMES = 3
BENCH_SEED = 777  # scenes of the benchmark; no data set of the project is made with it


def bench_frames(dataset: Path | None, split: str, models_dir: Path) -> list[np.ndarray]:
    """Colour frames (H, W, 3) uint8 of a BOP split, or of a small split synthesised for the benchmark."""
    if dataset is not None:
        bop_split = BopSplit(dataset, split)
        return [read_rgb(bop_split.rgb_path(scene_id, im_id))
                for scene_id in bop_split.scene_ids() for im_id in bop_split.image_ids(scene_id)]
    with tempfile.TemporaryDirectory(prefix="sixdpose_bench_detector_") as tmp:
        # In a child process, so that the renderer and physics engine do not count in this process's peak RSS.
        child = multiprocessing.get_context("spawn").Process(
            target=generate_split,
            args=(tmp, "bench", 2, 5, BENCH_SEED, SynthConfig(), models_dir),
            kwargs={"progress": False},
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"synthesising the benchmark frames failed (exit code {child.exitcode})")
        return bench_frames(Path(tmp), "bench", models_dir)


def measure(config: DetectorConfig, n_frames: int, dataset: Path | None = None, split: str = "test") -> dict[str, Any]:
    """Time `Detector.detect` on 640x480 frames (of `dataset`'s split, else synthesised): the figures written as JSON."""
    if n_frames < 1:
        raise ValueError(f"frames must be >= 1, got {n_frames}")
    start = time.perf_counter()
    detector = make_detector(config)
    load_ms = (time.perf_counter() - start) * 1e3
    frames = bench_frames(dataset, split, Path(config.models_dir))
    wall, cpu, counts = [], [], []
    for index in range(n_frames + WARMUP_FRAMES):
        rgb = frames[index % len(frames)]
        t0, c0 = time.perf_counter(), time.process_time()
        detections = detector.detect(rgb)
        if index >= WARMUP_FRAMES:
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
            counts.append(len(detections))
    height, width = frames[0].shape[:2]
    figures = {
        "detector": config.type,
        "weights": config.weights if config.type == "segmentation" else None,
        "width": width,
        "height": height,
        "input_scale": config.input_scale,
        "threads": torch.get_num_threads(),
        "frames": n_frames,
        "distinct_images": len(frames),
        "mean_detections": float(np.mean(counts)),
        "median_ms": float(np.median(wall)),
        "p90_ms": float(np.percentile(wall, 90)),
        "mean_ms": float(np.mean(wall)),
        # CPU time of all the process's threads: steadier than wall time on a shared machine.
        "cpu_median_ms": float(np.median(cpu)),
        "load_ms": load_ms,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "target_ms": TARGET_MS,
        "meets_target": bool(np.median(wall) <= TARGET_MS),
    }
    return figures

"""`sixdpose bench detector`: ms per 640x480 frame of the configured detector (post-processing included), peak RSS."""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ros2_sixdpose.config import load_config
from ros2_sixdpose.data.bop import BopSplit, read_rgb
from ros2_sixdpose.data.synth import SynthConfig, generate_split
from ros2_sixdpose.detection.base import DetectorConfig, make_detector

TARGET_MS = 30.0
WARMUP_FRAMES = 3
BENCH_SEED = 777  # scenes of the benchmark; no data set of the project is made with it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    parser.add_argument("--out", type=Path, default=Path("out/bench/detector.json"), help="JSON file for the figures")
    parser.add_argument("--config", type=Path, default=Path("config/detector.yaml"), help="detector configuration")
    parser.add_argument("--frames", type=int, default=100, help=f"timed frames (after {WARMUP_FRAMES} warm-up frames)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's)")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="BOP data set to take frames from "
                        "(default: 2 scenes x 5 images synthesised in a temporary folder)")
    parser.add_argument("--split", default="test", help="split of --dataset")


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


def run(args: argparse.Namespace) -> int:
    """Time `Detector.detect` on 640x480 frames; print and write median / p90 ms per frame and peak RSS."""
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    overrides = {"threads": args.threads} if args.threads is not None else None
    config = load_config(DetectorConfig, args.config, overrides)
    start = time.perf_counter()
    detector = make_detector(config)
    load_ms = (time.perf_counter() - start) * 1e3
    frames = bench_frames(args.dataset, args.split, Path(config.models_dir))
    wall, cpu, counts = [], [], []
    for index in range(args.frames + WARMUP_FRAMES):
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
        "frames": args.frames,
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"{config.type} detector, {width}x{height} (network input x{config.input_scale}), "
          f"{figures['threads']} threads, {args.frames} frames, {figures['mean_detections']:.1f} detections per frame")
    print(f"{'median ms':>10}{'p90 ms':>10}{'CPU ms':>10}{'peak RSS MB':>14}")
    print(f"{figures['median_ms']:>10.2f}{figures['p90_ms']:>10.2f}{figures['cpu_median_ms']:>10.2f}"
          f"{figures['peak_rss_mb']:>14.1f}")
    print(f"target <= {TARGET_MS:.0f} ms: {'met' if figures['meets_target'] else 'NOT met'}; written to {args.out}")
    return 0

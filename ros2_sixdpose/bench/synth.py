"""`sixdpose bench synth`: images per second of `sixdpose synth` at 640x480 and where the time goes."""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ros2_sixdpose.config import load_config
from ros2_sixdpose.data.objectset import build_object_set
from ros2_sixdpose.data.synth import SynthConfig, generate_split

TARGET_IMAGES_PER_S = 5.0
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "synth.yaml"
# Stages timed once per scene; the others are per image. "write" runs on the writer thread, overlapping
# the main thread's stages; "wait_for_write" is the main thread's time blocked on it.
SCENE_STAGES = ("physics", "dressing", "scene_files")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    parser.add_argument("--out", type=Path, default=Path("out/bench/synth.json"), help="JSON file for the figures")
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--images-per-scene", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequence", action="store_true", help="time --sequence scenes")
    parser.add_argument("--models", type=Path, default=None,
                        help="BOP models folder (default: the object set, built in a temporary folder)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)


def run(args: argparse.Namespace) -> int:
    """Generate a split in a temporary folder; print and write images/s and seconds per stage."""
    if args.scenes < 1 or args.images_per_scene < 1:
        raise ValueError(f"--scenes and --images-per-scene must be >= 1, got {args.scenes}, {args.images_per_scene}")
    config = load_config(SynthConfig, args.config)
    with tempfile.TemporaryDirectory(prefix="sixdpose-bench-synth-") as tmp:
        models_dir = args.models
        if models_dir is None:
            models_dir = Path(tmp) / "models"
            build_object_set(models_dir)
        start = time.perf_counter()
        stats = generate_split(Path(tmp) / "data", "bench", args.scenes, args.images_per_scene, args.seed, config,
                               models_dir, sequence=args.sequence, progress=False)
        elapsed = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in (Path(tmp) / "data" / "bench").rglob("*") if p.is_file()) / 1e6
    per_image_ms = {stage: 1e3 * s / stats.images for stage, s in stats.seconds.items() if stage not in SCENE_STAGES}
    per_scene_ms = {stage: 1e3 * stats.seconds.get(stage, 0.0) / stats.scenes for stage in SCENE_STAGES}
    figures = {
        "width": config.camera.width,
        "height": config.camera.height,
        "scenes": stats.scenes,
        "images_per_scene": args.images_per_scene,
        "sequence": bool(args.sequence),
        "images": stats.images,
        "instances": stats.instances,
        "seconds": elapsed,
        "images_per_s": stats.images / elapsed,
        "ms_per_image": 1e3 * elapsed / stats.images,
        "per_image_ms": per_image_ms,
        "per_scene_ms": per_scene_ms,
        "megabytes_per_image": size_mb / stats.images,
        "target_images_per_s": TARGET_IMAGES_PER_S,
        "meets_target": stats.images / elapsed >= TARGET_IMAGES_PER_S,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"{stats.images} images ({stats.instances} instances) of {stats.scenes} scenes at "
          f"{config.camera.width}x{config.camera.height} in {elapsed:.1f} s: {figures['images_per_s']:.2f} images/s "
          f"({figures['ms_per_image']:.0f} ms per image, {figures['megabytes_per_image']:.2f} MB per image)")
    print(f"{'per scene':<28}{'ms':>8}")
    for stage, ms in per_scene_ms.items():
        print(f"  {stage:<26}{ms:>8.1f}")
    print(f"{'per image':<28}{'ms':>8}")
    for stage, ms in per_image_ms.items():
        note = "  (writer thread, overlaps the rest)" if stage == "write" else ""
        print(f"  {stage:<26}{ms:>8.1f}{note}")
    print(f"target >= {TARGET_IMAGES_PER_S:.0f} images/s: {'met' if figures['meets_target'] else 'NOT met'}; "
          f"written to {args.out}")
    return 0

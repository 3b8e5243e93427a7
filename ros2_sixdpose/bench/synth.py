"""The synthesis benchmark (`sixdpose bench synth`): images per second of `sixdpose synth` at 640x480 and where the time goes."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ros2_sixdpose.data.objectset import build_object_set
from ros2_sixdpose.data.synth import SynthConfig, generate_split

TARGET_IMAGES_PER_S = 5.0
# Stages timed once per scene; the others are per image. "write" runs on the writer thread, overlapping
# the main thread's stages; "wait_for_write" is the main thread's time blocked on it.
SCENE_STAGES = ("physics", "dressing", "scene_files")


def measure(
    config: SynthConfig, scenes: int, images_per_scene: int, seed: int, sequence: bool, models_dir: Path | None
) -> dict[str, Any]:
    """Generate a split in a temporary folder (object set built there without `models_dir`): images/s and time
    per stage, the figures written as JSON."""
    if scenes < 1 or images_per_scene < 1:
        raise ValueError(f"scenes and images per scene must be >= 1, got {scenes}, {images_per_scene}")
    with tempfile.TemporaryDirectory(prefix="sixdpose-bench-synth-") as tmp:
        if models_dir is None:
            models_dir = Path(tmp) / "models"
            build_object_set(models_dir)
        start = time.perf_counter()
        stats = generate_split(Path(tmp) / "data", "bench", scenes, images_per_scene, seed, config, models_dir,
                               sequence=sequence, progress=False)
        elapsed = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in (Path(tmp) / "data" / "bench").rglob("*") if p.is_file()) / 1e6
    per_image_ms = {stage: 1e3 * s / stats.images for stage, s in stats.seconds.items() if stage not in SCENE_STAGES}
    per_scene_ms = {stage: 1e3 * stats.seconds.get(stage, 0.0) / stats.scenes for stage in SCENE_STAGES}
    figures = {
        "width": config.camera.width,
        "height": config.camera.height,
        "scenes": stats.scenes,
        "images_per_scene": images_per_scene,
        "sequence": bool(sequence),
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
    return figures

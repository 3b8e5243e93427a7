"""The renderer benchmark (`sixdpose bench render`): milliseconds per 640x480 frame of five objects, all outputs read back."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.objects import ObjectModel, load_models
from ros2_sixdpose.core.render import OUTPUTS, Renderer
from ros2_sixdpose.data.objectset import make_object_set

WIDTH, HEIGHT = 640, 480
K_BENCH = np.array([[615.0, 0.0, 319.5], [0.0, 615.0, 239.5], [0.0, 0.0, 1.0]])
TARGET_MS = 20.0
N_OBJECTS = 5


def bench_models(models_dir: Path | None) -> dict[int, ObjectModel]:
    """The first five models of a BOP models folder, or of the project's object set when none is given."""
    if models_dir is None:
        models = {m.obj_id: m for m in make_object_set()[:N_OBJECTS]}
    else:
        models = load_models(models_dir)
        models = {obj_id: models[obj_id] for obj_id in sorted(models)[:N_OBJECTS]}
    if not models:
        raise ValueError(f"{models_dir}: no object models")
    return models


def scene_poses(obj_ids: list[int], rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """Five instances (T_cam_obj, m) of `obj_ids` in turn: random rotations, spread over the view at 0.4-0.7 m."""
    objects = []
    for i in range(N_OBJECTS):
        T = np.eye(4)
        T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
        angle = 2.0 * np.pi * i / N_OBJECTS
        T[:3, 3] = [0.12 * np.cos(angle), 0.08 * np.sin(angle), rng.uniform(0.4, 0.7)]
        objects.append((obj_ids[i % len(obj_ids)], T))
    return objects


def measure(models_dir: Path | None, n_frames: int, seed: int) -> dict[str, Any]:
    """Time `Renderer.render` with every output at 640x480 (poses drawn with `seed`): the figures written as JSON."""
    if n_frames < 1:
        raise ValueError(f"frames must be >= 1, got {n_frames}")
    rng = np.random.default_rng(seed)
    models = bench_models(models_dir)
    t0 = time.perf_counter()
    with Renderer(models) as renderer:
        setup_ms = (time.perf_counter() - t0) * 1e3
        obj_ids = list(models)
        frames = [scene_poses(obj_ids, rng) for _ in range(n_frames + 3)]
        all_ms, all_cpu_ms = _time_frames(renderer, frames, OUTPUTS)
        depth_ms, _ = _time_frames(renderer, frames, ("depth",))
        gl_renderer = renderer.gl_renderer
    figures = {
        "width": WIDTH,
        "height": HEIGHT,
        "n_objects": N_OBJECTS,
        "n_triangles": int(sum(len(models[obj_id].faces) for obj_id, _ in frames[0])),
        "objects": [models[obj_id].name for obj_id, _ in frames[0]],
        "models": str(models_dir) if models_dir else "object set (pybullet_data)",
        "outputs": list(OUTPUTS),
        "frames": n_frames,
        "median_ms": float(np.median(all_ms)),
        "p90_ms": float(np.percentile(all_ms, 90)),
        "mean_ms": float(np.mean(all_ms)),
        # CPU time of all the process's threads (llvmpipe's included): steadier than wall time on a shared machine.
        "cpu_median_ms": float(np.median(all_cpu_ms)),
        "depth_only_median_ms": float(np.median(depth_ms)),
        "depth_only_p90_ms": float(np.percentile(depth_ms, 90)),
        "setup_ms": setup_ms,  # context creation + model upload
        "target_ms": TARGET_MS,
        "meets_target": bool(np.median(all_ms) <= TARGET_MS),
        "gl_renderer": gl_renderer,
    }
    return figures


def _time_frames(
    renderer: Renderer, frames: list[list[tuple[int, np.ndarray]]], outputs: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU milliseconds per frame (640x480, read-back of `outputs` included), after 3 warm-up frames."""
    wall, cpu = [], []
    for i, objects in enumerate(frames):
        t0, c0 = time.perf_counter(), time.process_time()
        renderer.render(K_BENCH, WIDTH, HEIGHT, objects, outputs=outputs)
        if i >= 3:
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
    return np.asarray(wall), np.asarray(cpu)

"""`sixdpose bench render`: milliseconds per 640x480 frame of five objects, all outputs read back."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.objects import ObjectModel, load_models
from ros2_sixdpose.core.render import OUTPUTS, Renderer
from ros2_sixdpose.data.objectset import make_object_set

WIDTH, HEIGHT = 640, 480
K_BENCH = np.array([[615.0, 0.0, 319.5], [0.0, 615.0, 239.5], [0.0, 0.0, 1.0]])
TARGET_MS = 20.0
N_OBJECTS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    parser.add_argument("--out", type=Path, default=Path("out/bench/render.json"), help="JSON file for the figures")
    parser.add_argument("--frames", type=int, default=50, help="timed frames (after 3 warm-up frames)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the object poses")
    parser.add_argument(
        "--models", type=Path, default=None,
        help="BOP models folder (default: the project's object set, built in memory from pybullet_data)",
    )


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


def run(args: argparse.Namespace) -> int:
    """Time `Renderer.render` with every output at 640x480; print and write median / p90 ms per frame."""
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    rng = np.random.default_rng(args.seed)
    models = bench_models(args.models)
    t0 = time.perf_counter()
    with Renderer(models) as renderer:
        setup_ms = (time.perf_counter() - t0) * 1e3
        obj_ids = list(models)
        frames = [scene_poses(obj_ids, rng) for _ in range(args.frames + 3)]
        all_ms, all_cpu_ms = _time_frames(renderer, frames, OUTPUTS)
        depth_ms, _ = _time_frames(renderer, frames, ("depth",))
        gl_renderer = renderer.gl_renderer
    figures = {
        "width": WIDTH,
        "height": HEIGHT,
        "n_objects": N_OBJECTS,
        "n_triangles": int(sum(len(models[obj_id].faces) for obj_id, _ in frames[0])),
        "objects": [models[obj_id].name for obj_id, _ in frames[0]],
        "models": str(args.models) if args.models else "object set (pybullet_data)",
        "outputs": list(OUTPUTS),
        "frames": args.frames,
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"renderer: {gl_renderer}")
    scene = f"{N_OBJECTS} objects ({', '.join(figures['objects'])}; {figures['n_triangles']} triangles)"
    print(f"{WIDTH}x{HEIGHT}, {scene}, {args.frames} frames")
    print(f"{'outputs':<28}{'median ms':>10}{'p90 ms':>10}{'CPU ms':>10}")
    print(f"{'rgb+depth+instance+nocs':<28}{figures['median_ms']:>10.2f}{figures['p90_ms']:>10.2f}"
          f"{figures['cpu_median_ms']:>10.2f}")
    print(f"{'depth':<28}{figures['depth_only_median_ms']:>10.2f}{figures['depth_only_p90_ms']:>10.2f}")
    print(f"target <= {TARGET_MS:.0f} ms: {'met' if figures['meets_target'] else 'NOT met'}; written to {args.out}")
    return 0


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

"""The Gaussian renderer benchmark (`sixdpose bench splat`): milliseconds per 96 x 96 render of each Gaussian
object, the refiner's crop size."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.gaussians import load_ply
from ros2_sixdpose.core.splat import GaussianRenderer

SIZE = 96  # px, square crop
FILL = 0.8  # share of the crop the object's extent spans
TARGET_MS = 3.0  # per render, CPU backend


def measure(gaussians: Path, renders: int, backend: str, seed: int) -> dict[str, Any]:
    """Time `GaussianRenderer.render` on random rotations of every obj_*.ply in `gaussians`; wall and CPU ms."""
    if renders < 1:
        raise ValueError(f"renders must be >= 1, got {renders}")
    paths = sorted(Path(gaussians).glob("obj_*.ply"))
    if not paths:
        raise FileNotFoundError(f"{gaussians}: no obj_*.ply (build them with `sixdpose objects gaussians`)")
    models = {int(p.stem.split("_")[1]): load_ply(p) for p in paths}
    rng = np.random.default_rng(seed)
    rows = []
    with GaussianRenderer(models, backend=backend) as renderer:
        for obj_id, model in models.items():
            center = (model.means.min(axis=0) + model.means.max(axis=0)) / 2
            extent = float(np.linalg.norm(model.means.max(axis=0) - model.means.min(axis=0)))
            distance = 3.0 * extent
            f = FILL * SIZE * distance / extent
            K = np.array([[f, 0.0, (SIZE - 1) / 2], [0.0, f, (SIZE - 1) / 2], [0.0, 0.0, 1.0]])
            times, cpu_times = [], []
            for i in range(renders + 3):
                T = np.eye(4)
                T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
                T[:3, 3] = [0.0, 0.0, distance] - T[:3, :3] @ center
                t0, c0 = time.perf_counter(), time.process_time()
                renderer.render(obj_id, T, K, SIZE, SIZE)
                if i >= 3:
                    times.append((time.perf_counter() - t0) * 1e3)
                    cpu_times.append((time.process_time() - c0) * 1e3)
            # CPU time (one thread) is steadier than wall time on a shared machine.
            rows.append({"obj_id": obj_id, "n_gaussians": len(model), "median_ms": float(np.median(times)),
                         "p90_ms": float(np.percentile(times, 90)), "cpu_median_ms": float(np.median(cpu_times))})
        backend = renderer.backend
    median = float(np.median([r["median_ms"] for r in rows]))
    return {"size": SIZE, "backend": backend, "renders": renders, "objects": rows, "median_ms": median,
            "cpu_median_ms": float(np.median([r["cpu_median_ms"] for r in rows])), "target_ms": TARGET_MS,
            "meets_target": median <= TARGET_MS}

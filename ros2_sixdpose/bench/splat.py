"""`sixdpose bench splat`: milliseconds per 96 x 96 render of each Gaussian object (the refiner's crop size)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.gaussians import load_ply
from ros2_sixdpose.core.splat import GaussianRenderer

SIZE = 96  # px, square crop
FILL = 0.8  # share of the crop the object's extent spans
TARGET_MS = 3.0  # per render, CPU backend


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options."""
    parser.add_argument("--gaussians", type=Path, default=Path("assets/gaussians"),
                        help="folder of obj_XXXXXX.ply Gaussian objects (sixdpose objects gaussians)")
    parser.add_argument("--out", type=Path, default=Path("out/bench/splat.json"), help="JSON file for the figures")
    parser.add_argument("--renders", type=int, default=100, help="timed renders per object (after 3 warm-up)")
    parser.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="cpu", help="renderer backend")
    parser.add_argument("--seed", type=int, default=0, help="seed of the poses")


def run(args: argparse.Namespace) -> int:
    """Time `GaussianRenderer.render` on random rotations; print and write median / p90 ms per object."""
    if args.renders < 1:
        raise ValueError(f"--renders must be >= 1, got {args.renders}")
    paths = sorted(args.gaussians.glob("obj_*.ply"))
    if not paths:
        raise FileNotFoundError(f"{args.gaussians}: no obj_*.ply (build them with `sixdpose objects gaussians`)")
    models = {int(p.stem.split("_")[1]): load_ply(p) for p in paths}
    rng = np.random.default_rng(args.seed)
    rows = []
    with GaussianRenderer(models, backend=args.backend) as renderer:
        for obj_id, model in models.items():
            center = (model.means.min(axis=0) + model.means.max(axis=0)) / 2
            extent = float(np.linalg.norm(model.means.max(axis=0) - model.means.min(axis=0)))
            distance = 3.0 * extent
            f = FILL * SIZE * distance / extent
            K = np.array([[f, 0.0, (SIZE - 1) / 2], [0.0, f, (SIZE - 1) / 2], [0.0, 0.0, 1.0]])
            times, cpu_times = [], []
            for i in range(args.renders + 3):
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
    cpu_median = float(np.median([r["cpu_median_ms"] for r in rows]))
    figures = {"size": SIZE, "backend": backend, "renders": args.renders, "objects": rows, "median_ms": median,
               "cpu_median_ms": cpu_median, "target_ms": TARGET_MS, "meets_target": median <= TARGET_MS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"{SIZE}x{SIZE} renders, backend {backend}, {args.renders} per object")
    print(f"{'obj':>4}{'Gaussians':>11}{'median ms':>11}{'p90 ms':>9}{'CPU ms':>9}")
    for r in rows:
        print(f"{r['obj_id']:>4}{r['n_gaussians']:>11}{r['median_ms']:>11.2f}{r['p90_ms']:>9.2f}"
              f"{r['cpu_median_ms']:>9.2f}")
    print(f"median over objects {median:.2f} ms (CPU {cpu_median:.2f} ms); target <= {TARGET_MS:.0f} ms: "
          f"{'met' if figures['meets_target'] else 'NOT met'}; written to {args.out}")
    return 0

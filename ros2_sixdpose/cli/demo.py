"""`sixdpose demo`: a deterministic run on bundled data that leaves pictures and figures in one folder."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from ros2_sixdpose.config import load_config
from ros2_sixdpose.core.geometry import look_at, invert_pose
from ros2_sixdpose.core.objects import ObjectModel, load_models
from ros2_sixdpose.core.render import Lighting, Renderer
from ros2_sixdpose.data import bop
from ros2_sixdpose.data.synth import SynthConfig, generate_split
from ros2_sixdpose.data.synth_preview import write_contact_sheet

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TILE = 240  # px, one object view on the gallery
VIEWS = ((35.0, 20.0), (35.0, 140.0), (70.0, 260.0))  # (elevation, azimuth) deg of the gallery's cameras


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` parser."""
    parser = subparsers.add_parser("demo", help="run the demo on bundled data; prints its output folder")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--models", type=Path, default=ROOT / "assets" / "models", help="BOP models folder")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthesised test scenes")
    parser.set_defaults(func=run)


def object_gallery(models: dict[int, ObjectModel], renderer: Renderer) -> np.ndarray:
    """Each model seen from `VIEWS`, one row per object, labelled with name, id and diameter: (rows*TILE, 3*TILE, 3)."""
    K = np.array([[TILE * 1.6, 0.0, (TILE - 1) / 2], [0.0, TILE * 1.6, (TILE - 1) / 2], [0.0, 0.0, 1.0]])
    rows = []
    for obj_id, model in sorted(models.items()):
        # Distance at which the bounding sphere fills about 80 % of the tile.
        distance = model.diameter / 0.8 * K[0, 0] / TILE
        tiles = []
        for elevation, azimuth in np.radians(VIEWS):
            eye = distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                       np.sin(elevation)])
            T_cam_obj = invert_pose(look_at(eye, np.zeros(3)))
            rgb = renderer.render(K, TILE, TILE, [(obj_id, T_cam_obj)], Lighting(direction=(0.3, 0.5, 1.0)),
                                  outputs=("rgb",)).rgb
            tiles.append(np.where(rgb.any(axis=2, keepdims=True), rgb, 255).astype(np.uint8))
        row = np.hstack(tiles)
        label = f"{obj_id}: {model.name}  {model.diameter * 1000:.0f} mm"
        cv2.putText(row, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (20, 20, 20), 2, cv2.LINE_AA)
        rows.append(row)
    return np.vstack(rows)


def run(args: argparse.Namespace) -> int:
    """Write the object gallery and a synthesised scene sheet into `args.out`; print where they are."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    models = load_models(args.models)
    with Renderer(models) as renderer:
        gallery = out / "objects.png"
        bop.write_rgb(gallery, object_gallery(models, renderer))
    config = load_config(SynthConfig, ROOT / "config" / "synth.yaml")
    generate_split(out / "data", "test", n_scenes=2, images_per_scene=4, seed=args.seed, config=config,
                   models_dir=args.models, overwrite=True)
    sheet = write_contact_sheet(out / "scenes.png", bop.BopSplit(out / "data", "test"), models, max_images=8)
    print(f"object gallery: {gallery}\nsynthesised scenes with ground truth: {sheet}\noutput folder: {out.resolve()}")
    return 0

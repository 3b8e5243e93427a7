"""Contact sheet of a BOP split as written: images with ground-truth boxes, object names and model axes.

It reads the files back (not the generator's memory), so it shows what a consumer of the split will see.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data import bop

__all__ = ["contact_sheet", "draw_annotations", "write_contact_sheet"]

TILE_WIDTH = 480  # px of one image on the sheet
AXIS_COLORS = ((255, 0, 0), (0, 200, 0), (0, 90, 255))  # x red, y green, z blue (RGB)
BOX_COLOR = (255, 230, 0)
VISIB_BOX_COLOR = (0, 230, 255)


def draw_annotations(rgb: np.ndarray, K: np.ndarray, instances: list[bop.GtInstance], infos: list[bop.GtInfo],
                     models: dict[int, ObjectModel]) -> np.ndarray:
    """A copy of rgb (H, W, 3) uint8 with, per instance, bbox_obj (yellow), bbox_visib (cyan, thin), the model's
    axes (x red, y green, z blue; half the diameter long, from the model origin) and its name and visib_fract."""
    out = rgb.copy()
    height, width = out.shape[:2]
    camera = PinholeCamera(K, width, height)
    for inst, info in zip(instances, infos):
        model = models.get(inst.obj_id)
        name = model.name if model is not None else f"obj {inst.obj_id}"
        x, y, w, h = info.bbox_obj
        if w > 0:
            cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), BOX_COLOR, 2)
        x, y, w, h = info.bbox_visib
        if w > 0:
            cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), VISIB_BOX_COLOR, 1)
        length = 0.5 * (model.diameter if model is not None else 0.1)
        axes = np.vstack([np.zeros(3), np.eye(3) * length])
        uv = camera.project(axes @ inst.T_cam_obj[:3, :3].T + inst.T_cam_obj[:3, 3])
        if np.all(np.isfinite(uv)) and np.abs(uv).max() < 10 * max(width, height):
            origin = tuple(int(round(v)) for v in uv[0])
            for end, color in zip(uv[1:], AXIS_COLORS):
                cv2.line(out, origin, tuple(int(round(v)) for v in end), color, 2, cv2.LINE_AA)
        label = f"{name} {info.visib_fract:.2f}"
        anchor = (max(info.bbox_obj[0], 0), max(info.bbox_obj[1] - 5, 12))
        cv2.putText(out, label, anchor, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, anchor, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def contact_sheet(split: bop.BopSplit, models: dict[int, ObjectModel], max_images: int = 12,
                  columns: int = 4) -> np.ndarray:
    """A grid (rows * h, columns * TILE_WIDTH, 3) uint8 of annotated images spread evenly over scenes and time."""
    scene_ids = split.scene_ids()
    if not scene_ids:
        raise ValueError(f"{split.path}: no scenes to preview")
    per_scene = -(-max_images // len(scene_ids))
    chosen: list[tuple[int, int]] = []
    for scene_id in scene_ids:
        ids = split.image_ids(scene_id)
        picks = np.unique(np.round(np.linspace(0, len(ids) - 1, min(per_scene, len(ids)))).astype(int))
        chosen += [(scene_id, ids[i]) for i in picks]
    chosen = chosen[:max_images]
    tiles = []
    annotations = {scene_id: split.read_scene(scene_id) for scene_id in {s for s, _ in chosen}}
    for scene_id, im_id in chosen:
        scene = annotations[scene_id]
        rgb = bop.read_rgb(split.rgb_path(scene_id, im_id))
        infos = scene.gt_info[im_id] if scene.gt_info is not None else []
        image = draw_annotations(rgb, scene.camera[im_id].K, scene.gt[im_id], infos, models)
        cv2.putText(image, f"scene {scene_id} im {im_id}", (8, image.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX,
                    0.6, (255, 255, 255), 2, cv2.LINE_AA)
        scale = TILE_WIDTH / image.shape[1]
        tiles.append(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (-len(tiles) % columns)
    rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def write_contact_sheet(path: str | Path, split: bop.BopSplit, models: dict[int, ObjectModel],
                        max_images: int = 12) -> Path:
    """Write `contact_sheet` of a split as a PNG; returns the path."""
    path = Path(path)
    bop.write_rgb(path, contact_sheet(split, models, max_images))
    return path

"""Folders of posed reference images of one object, the input of a Gaussian object built from photographs.

Layout (all poses in metres, OpenCV camera; GS-Pose's setting of posed RGB images with masks):

    DIR/poses.json        {"views": [{"image": "images/000000.png", "mask": "masks/000000.png",
                                      "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],
                                      "T_cam_obj": [[r11, r12, r13, tx], ..., [0, 0, 0, 1]]}, ...]}
    DIR/images/*.png      RGB (any background; only pixels inside the mask are used)
    DIR/masks/*.png       8-bit, the object where > 127

The object's frame is whatever the poses say: the Gaussian model is built in it. `sixdpose objects views`
writes such a folder from the bundled meshes as an example.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ros2_sixdpose.core.gaussian_fit import ReferenceView

POSES_FILE = "poses.json"


def save_reference_views(folder: str | Path, views: Sequence[ReferenceView]) -> None:
    """Write `views` as DIR/poses.json + images/ + masks/ (PNG)."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, view in enumerate(views):
        image, mask = f"images/{i:06d}.png", f"masks/{i:06d}.png"
        Image.fromarray(view.rgb).save(folder / image)
        Image.fromarray(view.mask.astype(np.uint8) * 255).save(folder / mask)
        entries.append({"image": image, "mask": mask, "K": view.K.tolist(), "T_cam_obj": view.T_cam_obj.tolist()})
    (folder / POSES_FILE).write_text(json.dumps({"views": entries}, indent=1) + "\n")


def load_reference_views(folder: str | Path) -> list[ReferenceView]:
    """Read a folder written as described in the module docstring; ValueError naming the file and field."""
    folder = Path(folder)
    path = folder / POSES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (a reference-view folder needs poses.json, images/, masks/)")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from exc
    entries = content.get("views") if isinstance(content, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected {{'views': [...]}} with at least one view")
    return [_load_view(folder, path, i, entry) for i, entry in enumerate(entries)]


def _load_view(folder: Path, path: Path, index: int, entry: object) -> ReferenceView:
    """One entry of poses.json with its image and mask."""
    where = f"{path}: views[{index}]"
    if not isinstance(entry, dict) or not {"image", "mask", "K", "T_cam_obj"} <= set(entry):
        raise ValueError(f"{where}: needs 'image', 'mask', 'K' and 'T_cam_obj'")
    K = _matrix(entry["K"], (3, 3), f"{where}.K")
    T = _matrix(entry["T_cam_obj"], (4, 4), f"{where}.T_cam_obj")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
        raise ValueError(f"{where}.K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")
    R = T[:3, :3]
    if not (np.allclose(T[3], [0, 0, 0, 1]) and np.allclose(R.T @ R, np.eye(3), atol=1e-4) and np.linalg.det(R) > 0):
        raise ValueError(f"{where}.T_cam_obj must be a rigid transform (rotation + translation in metres)")
    rgb = _image(folder / entry["image"], f"{where}.image", "RGB")
    mask = _image(folder / entry["mask"], f"{where}.mask", "L") > 127
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"{where}: mask is {mask.shape[::-1]} px but image is {rgb.shape[1::-1]} px")
    if not mask.any():
        raise ValueError(f"{where}: mask is empty")
    return ReferenceView(rgb=rgb, mask=mask, K=K, T_cam_obj=T)


def _matrix(value: object, shape: tuple[int, int], where: str) -> np.ndarray:
    """A finite float64 matrix of `shape` from nested lists."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: not a numeric matrix") from exc
    if array.shape != shape or not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: must be a finite {shape[0]}x{shape[1]} matrix, got shape {array.shape}")
    return array


def _image(path: Path, where: str, mode: str) -> np.ndarray:
    """An image file as a uint8 array in PIL `mode`."""
    if not path.is_file():
        raise FileNotFoundError(f"{where}: {path} not found")
    with Image.open(path) as image:
        return np.asarray(image.convert(mode), dtype=np.uint8)

"""The sparse viewpoint model (RBGT / SRT3D, Stoiber et al.): contour points and normals of an object's silhouette,
precomputed from its mesh for viewing directions all around it.

Each view renders the object's depth from a camera on a sphere around the model's bounding-box centre, walks
the silhouette's outer contour, keeps `n_points` points spread evenly along it and back-projects them to the
model frame with their outward normals (in the view's image plane) and how far (m, at the point's depth)
the silhouette stays foreground inwards and background outwards along the normal. At tracking time the view
closest to the current viewing direction supplies the points, so no rendering happens per frame.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ros2_sixdpose.core.geometry import invert_pose, look_at
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.tracking.settings import RegionConfig

logger = logging.getLogger(__name__)

MODEL_FORMAT = "sixdpose-sparse-view-model-1"
# The settings a sparse viewpoint model depends on (the rest only steer tracking).
_MODEL_SETTINGS = ("n_viewpoints", "n_points", "sphere_radius", "render_size")

@dataclass(frozen=True)
class SparseViewModel:
    """Contour points of one object for V viewing directions, N points each, all in the model frame.

    directions: (V, 3) unit vectors from the bounding-box centre towards each view's camera.
    points: (V, N, 3) m, contour points on the surface.
    normals: (V, N, 3) unit outward contour normals (perpendicular to the view's optical axis).
    foreground: (V, N) m the silhouette stays foreground inward along the normal (at the point's depth).
    background: (V, N) m it stays background outward.
    center: (3,) the bounding-box centre the views look at.
    """

    obj_id: int
    directions: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    foreground: np.ndarray
    background: np.ndarray
    center: np.ndarray

    def closest_view(self, T_cam_obj: np.ndarray) -> int:
        """Index of the view whose direction is closest to the camera's direction from the object at T (4, 4)."""
        camera_in_obj = invert_pose(T_cam_obj)[:3, 3] - self.center
        return int(np.argmax(self.directions @ camera_in_obj))


def model_key(model: ObjectModel, config: RegionConfig) -> str:
    """A short hash of the model's geometry and the settings the views depend on: the cache file's name."""
    digest = hashlib.sha1(MODEL_FORMAT.encode())
    for array in (model.vertices, model.faces):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(repr([getattr(config, name) for name in _MODEL_SETTINGS]).encode())
    return digest.hexdigest()[:16]


def load_or_build_models(models: Mapping[int, ObjectModel], config: RegionConfig, cache_dir: Path | None,
                         progress: bool = False) -> dict[int, SparseViewModel]:
    """Sparse viewpoint models of `models`, read from `cache_dir` where cached, else built (and cached there)."""
    out: dict[int, SparseViewModel] = {}
    missing = []
    for obj_id, model in models.items():
        path = None if cache_dir is None else cache_dir / f"views_{obj_id:06d}_{model_key(model, config)}.npz"
        if path is not None and path.is_file():
            with np.load(path) as data:
                out[obj_id] = SparseViewModel(obj_id, **{f.name: data[f.name] for f in fields(SparseViewModel)
                                                         if f.name != "obj_id"})
        else:
            missing.append((obj_id, path))
    if missing:
        with Renderer({obj_id: models[obj_id] for obj_id, _ in missing}) as renderer:
            for obj_id, path in missing:
                out[obj_id] = build_model(models[obj_id], renderer, config, progress)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    arrays = {k: v for k, v in asdict(out[obj_id]).items() if k != "obj_id"}
                    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
                    np.savez(tmp, **arrays)
                    os.replace(tmp, path)  # whole files only, also with two nodes starting at once
                    logger.info("cached the sparse viewpoint model of object %d in %s", obj_id, path)
    return out


def fibonacci_sphere(n: int) -> np.ndarray:
    """n (n, 3) nearly evenly spread unit vectors (the golden-angle spiral)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def build_model(model: ObjectModel, renderer: Renderer, config: RegionConfig,
                progress: bool = False) -> SparseViewModel:
    """Render `config.n_viewpoints` depth views of `model` (uploaded to `renderer` under model.obj_id) and keep
    `config.n_points` contour points of each."""
    center = np.asarray(model.bbox_min, dtype=np.float64) + np.asarray(model.bbox_size, dtype=np.float64) / 2.0
    size = config.render_size
    # The object's bounding sphere fills ~80 % of the render: contours are long enough for n_points.
    focal = 0.8 * size * config.sphere_radius / float(model.diameter)
    K = np.array([[focal, 0.0, (size - 1) / 2.0], [0.0, focal, (size - 1) / 2.0], [0.0, 0.0, 1.0]])
    directions = fibonacci_sphere(config.n_viewpoints)
    shape = (config.n_viewpoints, config.n_points)
    points, normals = np.zeros(shape + (3,)), np.zeros(shape + (3,))
    foreground, background = np.zeros(shape), np.zeros(shape)
    for v, direction in enumerate(tqdm(directions, desc=f"views of object {model.obj_id}", disable=not progress)):
        # Any up vector not parallel to the viewing direction: the roll of a view does not matter.
        up = (0.0, 0.0, 1.0) if abs(direction[2]) < 0.9 else (0.0, 1.0, 0.0)
        T_obj_cam = look_at(center + config.sphere_radius * direction, center, up)
        T_cam_obj = invert_pose(T_obj_cam)
        depth = renderer.render(K, size, size, [(model.obj_id, T_cam_obj)], outputs="depth").depth
        uv, normal_2d, fg_px, bg_px = _contour_points(depth > 0, config.n_points)
        z = depth[uv[:, 1], uv[:, 0]]
        rays = np.column_stack([(uv - K[:2, 2]) / focal, np.ones(len(uv))])
        points_cam = rays * z[:, None]
        R_obj_cam = T_obj_cam[:3, :3]
        points[v] = points_cam @ R_obj_cam.T + T_obj_cam[:3, 3]
        normals[v] = np.column_stack([normal_2d, np.zeros(len(uv))]) @ R_obj_cam.T
        foreground[v] = fg_px * z / focal
        background[v] = bg_px * z / focal
    return SparseViewModel(model.obj_id, directions, points, normals, foreground, background, center)


def _contour_points(mask: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n points evenly spaced along the longest outer contour of `mask` (H, W) bool.

    Returns uv (n, 2) int pixels inside the mask, outward unit normals (n, 2), and the pixel runs (n,) that
    the mask stays set inwards and clear outwards along each normal.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise ValueError("a model view rendered empty: is the model inside the render's frustum?")
    contour = max(contours, key=len)[:, 0, :].astype(np.float64)  # (M, 2) u, v; cv2 walks it counter-clockwise
    m = len(contour)
    index = np.round(np.linspace(0, m, n, endpoint=False)).astype(int) % m
    # Tangent from neighbours 3 steps apart smooths the pixel staircase.
    step = min(3, max(1, m // 8))
    tangent = contour[(index + step) % m] - contour[(index - step) % m]
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    normal = np.column_stack([tangent[:, 1], -tangent[:, 0]])
    uv = contour[index]
    # Orientation conventions differ between image and maths axes: flip the normals that point inwards.
    probe = np.round(uv + 2.0 * normal).astype(int)
    h, w = mask.shape
    inside = mask[np.clip(probe[:, 1], 0, h - 1), np.clip(probe[:, 0], 0, w - 1)]
    if np.mean(inside) > 0.5:
        normal = -normal
    runs = np.arange(1, max(mask.shape) + 1)  # far enough to cross any silhouette
    samples_in = np.round(uv[:, None, :] - runs[None, :, None] * normal[:, None, :]).astype(int)
    samples_out = np.round(uv[:, None, :] + runs[None, :, None] * normal[:, None, :]).astype(int)
    fg_px = _run_length(mask, samples_in, True)
    bg_px = _run_length(mask, samples_out, False)
    return uv.astype(int), normal, fg_px, bg_px


def _run_length(mask: np.ndarray, samples: np.ndarray, value: bool) -> np.ndarray:
    """Per row of `samples` (n, R, 2) pixel positions, how many leading samples have mask == value (n,) float."""
    h, w = mask.shape
    outside = (samples[..., 0] < 0) | (samples[..., 0] >= w) | (samples[..., 1] < 0) | (samples[..., 1] >= h)
    hit = mask[np.clip(samples[..., 1], 0, h - 1), np.clip(samples[..., 0], 0, w - 1)]
    # Beyond the render's border counts as background.
    ok = np.where(outside, not value, hit == value)
    broken = ~ok
    first = np.where(broken.any(axis=1), broken.argmax(axis=1), samples.shape[1])
    return first.astype(np.float64)

"""The crop RNNPose works in and the reference render of the object at the current pose inside it.

The crop is square around the projection of the model's bounding box at the starting pose (as RNNPose crops around
its rendered reference), `crop_scale` times its longer side, resampled to `size` px; it stays fixed while the pose
is refined, so only the reference is rendered again. The reference holds colour, depth and, through the renderer's
model-coordinate (NOCS) output, the 3D model point seen at every pixel: the points the pose solver reprojects.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.core.camera import CropTransform, square_box
from ros2_sixdpose.core.geometry import transform_points
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import Lighting, Renderer

# The corners of the unit cube, scaled into a model's bounding box.
_CORNERS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64)


@dataclass(frozen=True)
class Reference:
    """The object rendered alone at one pose in the crop camera.

    rgb: (S, S, 3) uint8 (black background); mask: (S, S) bool; points: (S, S, 3) float32 model-frame metres of the
    surface seen at each pixel (0 off the object).
    """

    rgb: np.ndarray
    mask: np.ndarray
    points: np.ndarray


def pose_crop(model: ObjectModel, T_cam_obj: np.ndarray, K: np.ndarray, size: int, crop_scale: float) -> CropTransform | None:
    """The square crop around the model's projected bounding box at T_cam_obj (4, 4); None when it is behind the camera."""
    corners = transform_points(T_cam_obj, model.bbox_min + _CORNERS * model.bbox_size)
    if np.any(corners[:, 2] <= 1e-3):
        return None
    uv = corners[:, :2] / corners[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
    box = np.concatenate([uv.min(0) + 0.5, uv.max(0) + 0.5])  # pixel centres -> pixel edges
    if not np.all(np.isfinite(box)) or np.any(box[2:] - box[:2] <= 0):
        return None
    return CropTransform(tuple(square_box(box, crop_scale)), (size, size))


def inside_share(crop: CropTransform, width: int, height: int) -> float:
    """The share of the crop's area that lies inside a width x height image (0: the crop shows nothing)."""
    x0, y0, x1, y1 = crop.box
    inside = max(0.0, min(x1, width) - max(x0, 0.0)) * max(0.0, min(y1, height) - max(y0, 0.0))
    return inside / ((x1 - x0) * (y1 - y0))


def render_reference(renderer: Renderer, model: ObjectModel, T_cam_obj: np.ndarray, K_crop: np.ndarray,
                     size: int, lighting: Lighting | None = None) -> Reference:
    """Render the model at T_cam_obj (4, 4) in the crop camera K_crop (3, 3), `size` px square."""
    out = renderer.render(K_crop, size, size, [(model.obj_id, T_cam_obj)], lighting=lighting,
                          outputs=("rgb", "depth", "nocs"))
    mask = out.depth > 0
    points = np.where(mask[..., None], model.nocs_to_points(out.nocs), 0.0).astype(np.float32)
    return Reference(out.rgb, mask, points)

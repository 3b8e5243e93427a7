"""Overlay images for people watching the nodes: detection masks and boxes; projected model contours and axes.

Pure NumPy / OpenCV on RGB (H, W, 3) uint8 copies; no renderer, so it runs on any executor thread (an
OpenGL context belongs to the thread that made it). A model's silhouette is the union of its projected
triangles, filled one by one with OpenCV, which needs no depth test; occlusion between objects is not drawn.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.messages import InstancePose
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.detection.base import Detection

AXIS_COLOURS = ((255, 0, 0), (0, 200, 0), (0, 90, 255))  # x red, y green, z blue (RGB)
MASK_OPACITY = 0.45
# Projections farther than this many image sizes off the image are not drawn: OpenCV's integer drawing
# overflows, and the distortion polynomial folds far-away points back into the image.
_MAX_OFFSET_IMAGES = 4


def object_colour(object_id: int) -> tuple[int, int, int]:
    """A bright RGB colour of an object id, the same in every image (golden-angle hues)."""
    hue = int((object_id * 137.508) % 360) // 2  # OpenCV's 8-bit hue is degrees / 2
    rgb = cv2.cvtColor(np.array([[[hue, 220, 255]]], dtype=np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def _label(image: np.ndarray, text: str, anchor: tuple[int, int]) -> None:
    """White text with a dark outline at `anchor` (bottom-left, pixels), clamped into the image."""
    x = min(max(anchor[0], 0), image.shape[1] - 8)
    y = min(max(anchor[1], 12), image.shape[0] - 2)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def draw_detections(rgb: np.ndarray, detections: Sequence[Detection], names: Mapping[int, str]) -> np.ndarray:
    """A copy of `rgb` (H, W, 3) uint8 with each detection's mask tinted in its object's colour, box and label."""
    out = rgb.copy()
    for detection in detections:
        colour = np.array(object_colour(detection.object_id), dtype=np.float32)
        pixels = out[detection.mask].astype(np.float32)
        out[detection.mask] = ((1 - MASK_OPACITY) * pixels + MASK_OPACITY * colour).astype(np.uint8)
        x0, y0, x1, y1 = (int(round(v)) for v in detection.box)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), tuple(int(c) for c in colour), 1)
        name = names.get(detection.object_id, f"obj {detection.object_id}")
        _label(out, f"{name} {detection.score:.2f}", (x0, y0 - 4))
    return out


def _drawable(uv: np.ndarray, camera: PinholeCamera) -> bool:
    """True when every projected point (N, 2) is finite and not far off the image."""
    limit = _MAX_OFFSET_IMAGES * max(camera.width, camera.height)
    return bool(np.all(np.isfinite(uv)) and np.abs(uv).max(initial=0.0) < limit)


def silhouette(model: ObjectModel, T_cam_obj: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """(H, W) uint8 mask (255 inside) of the model's projection at pose T_cam_obj (4, 4), distortion applied."""
    mask = np.zeros((camera.height, camera.width), dtype=np.uint8)
    points = model.vertices.astype(np.float64) @ T_cam_obj[:3, :3].T + T_cam_obj[:3, 3]
    triangles = camera.project(points)[model.faces]  # (F, 3, 2)
    keep = np.all(np.isfinite(triangles), axis=(1, 2))
    limit = _MAX_OFFSET_IMAGES * max(camera.width, camera.height)
    keep &= np.abs(np.nan_to_num(triangles)).max(axis=(1, 2)) < limit
    # One triangle at a time: fillPoly given them all would fill overlaps with the even-odd rule (holes).
    for triangle in np.round(triangles[keep]).astype(np.int32):
        cv2.fillConvexPoly(mask, triangle, 255)
    return mask


def draw_poses(
    rgb: np.ndarray, camera: PinholeCamera, poses: Sequence[InstancePose], models: Mapping[int, ObjectModel]
) -> np.ndarray:
    """A copy of `rgb` (H, W, 3) uint8 with each pose's model contour, its axes (half a diameter long) and label."""
    out = rgb.copy()
    for pose in poses:
        model = models.get(pose.object_id)
        if model is None:
            continue
        colour = object_colour(pose.object_id)
        contours, _ = cv2.findContours(silhouette(model, pose.T_cam_obj, camera), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 2, cv2.LINE_AA)
        axes = np.vstack([np.zeros(3), np.eye(3) * 0.5 * model.diameter])
        uv = camera.project(axes @ pose.T_cam_obj[:3, :3].T + pose.T_cam_obj[:3, 3])
        if not _drawable(uv, camera):
            continue
        origin = tuple(int(round(v)) for v in uv[0])
        for end, axis_colour in zip(uv[1:], AXIS_COLOURS, strict=True):
            cv2.line(out, origin, tuple(int(round(v)) for v in end), axis_colour, 2, cv2.LINE_AA)
        _label(out, f"{pose.frame_name} {pose.score:.2f}", (origin[0] + 6, origin[1] - 6))
    return out

"""Cast shadows of objects on the surfaces they stand on, by shadow mapping with the scene renderer.

The renderer has one directional light and no shadows; contact shadows are, however, one of the strongest
cues that an object rests on a surface, and a detector trained without them learns to expect objects
floating on flat colour. So: render the depth of the shadow casters (objects and distractors) from the
light (a distant pinhole camera, nearly orthographic), look up every receiver pixel (floor, tray, table)
in that map, and darken those the casters hide from the light by the light's diffuse share.

Casters are not receivers: object-on-object shadows are left out, which avoids self-shadowing artefacts
and the double darkening of faces the renderer already shades as turned away from the light.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ros2_sixdpose.core.geometry import invert_pose, look_at
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data.randomize import WorldLight

__all__ = ["shadow_factor"]

# The light's camera stands this far (m) from the casters: far enough that its perspective barely differs
# from the parallel rays of a directional light, near enough for float32 depth precision.
LIGHT_DISTANCE = 4.0
# Receiver points closer than this (m) to the shadow map's depth are lit: absorbs the depth quantisation
# of a map texel seen at a grazing angle.
SHADOW_BIAS = 0.003
_STRIDE = 2  # px between shadow tests


def shadow_factor(
    renderer: Renderer,
    casters: Sequence[tuple[int, np.ndarray]],
    light: WorldLight,
    T_world_cam: np.ndarray,
    K: np.ndarray,
    depth: np.ndarray,
    receivers: np.ndarray,
    map_size: int,
) -> np.ndarray:
    """Per-pixel colour factor (H, W) float32 in (0, 1]: < 1 where casters shadow a receiver pixel.

    Args:
        casters: [(obj_id, T_world_obj (4, 4) m)] of models uploaded to `renderer`.
        light: the world light (its direction and how much of the light is diffuse).
        T_world_cam: (4, 4) camera pose; K: (3, 3) intrinsics of the image.
        depth: (H, W) float32 m, the rendered scene's depth (z), 0 where empty.
        receivers: (H, W) bool, pixels that may receive shadows (horizontal surfaces: floor, tray, table).
        map_size: shadow map side, px.
    """
    height, width = depth.shape
    factor = np.ones((height, width), np.float32)
    if not casters or not receivers.any():
        return factor
    centers = np.stack([T[:3, 3] for _, T in casters])
    center = centers.mean(axis=0)
    radius = float(np.linalg.norm(centers - center, axis=1).max()) + 0.25  # + the largest object's reach
    direction = light.direction / np.linalg.norm(light.direction)
    up = (1.0, 0.0, 0.0) if abs(direction[2]) > 0.95 else (0.0, 0.0, 1.0)
    T_world_light = look_at(center - LIGHT_DISTANCE * direction, center, up=up)
    T_light_world = invert_pose(T_world_light)
    focal = map_size / 2.0 * LIGHT_DISTANCE / radius
    K_light = np.array([[focal, 0.0, (map_size - 1) / 2.0], [0.0, focal, (map_size - 1) / 2.0], [0.0, 0.0, 1.0]])
    light_depth = renderer.render(
        K_light, map_size, map_size, [(obj_id, T_light_world @ T) for obj_id, T in casters], outputs=("depth",),
        near=LIGHT_DISTANCE - radius - 0.5, far=LIGHT_DISTANCE + radius + 0.5,
    ).depth

    # The test runs on every second pixel of every second row: the penumbra blur hides the difference and
    # it costs a quarter of the full-resolution lookup.
    z = depth[::_STRIDE, ::_STRIDE]
    v, u = np.mgrid[0:height:_STRIDE, 0:width:_STRIDE].astype(np.float32)
    T_light_cam = (T_light_world @ T_world_cam).astype(np.float32)
    x = (u - np.float32(K[0, 2])) * (z / np.float32(K[0, 0]))
    y = (v - np.float32(K[1, 2])) * (z / np.float32(K[1, 1]))
    R, t = T_light_cam[:3, :3], T_light_cam[:3, 3]
    xl = R[0, 0] * x + R[0, 1] * y + R[0, 2] * z + t[0]
    yl = R[1, 0] * x + R[1, 1] * y + R[1, 2] * z + t[1]
    zl = R[2, 0] * x + R[2, 1] * y + R[2, 2] * z + t[2]
    ul = np.rint(xl / zl * np.float32(focal) + np.float32(K_light[0, 2])).astype(np.int32)
    vl = np.rint(yl / zl * np.float32(focal) + np.float32(K_light[1, 2])).astype(np.int32)
    inside = receivers[::_STRIDE, ::_STRIDE] & (ul >= 0) & (ul < map_size) & (vl >= 0) & (vl < map_size)
    occluder = np.zeros(z.shape, np.float32)
    occluder[inside] = light_depth[vl[inside], ul[inside]]
    shadowed = ((occluder > 0) & (occluder < zl - SHADOW_BIAS)).astype(np.float32)

    mask = cv2.resize(shadowed, (width, height), interpolation=cv2.INTER_LINEAR)
    mask = cv2.GaussianBlur(mask, (0, 0), light.shadow_blur_px)
    # A horizontal receiver in shadow keeps only the ambient part of its light.
    lambert = max(float(-direction[2]), 0.0)
    lit_share = light.diffuse * lambert / (light.ambient + light.diffuse * lambert)
    factor[receivers] -= lit_share * mask[receivers]
    return factor

"""Viewpoints of a template bank: directions spread evenly over the sphere, and the rotations they stand for."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.geometry import invert_pose, look_at


def fibonacci_sphere(n: int) -> np.ndarray:
    """n unit directions (n, 3) on the Fibonacci (golden-angle) spiral: nearly equal areas, no pole clusters."""
    if n < 1:
        raise ValueError(f"need at least one viewpoint, got {n}")
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    radius = np.sqrt(1.0 - z**2)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i
    return np.stack([radius * np.cos(phi), radius * np.sin(phi), z], axis=1)


def view_rotations(directions: np.ndarray) -> np.ndarray:
    """R_cam_obj (n, 3, 3) of cameras on the unit `directions` (n, 3) (object frame) looking at the object's origin.

    The roll about the optical axis is fixed by keeping the object's +z towards the image top (+x near the
    poles, where z is along the view); a bank covers the other rolls by in-plane rotation.
    """
    directions = np.asarray(directions, dtype=np.float64)
    up = np.where(np.abs(directions[:, 2:3]) > 0.999, [1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    T_obj_cam = look_at(directions, np.zeros(3), up)
    return invert_pose(T_obj_cam)[:, :3, :3]


def inplane_rotation(angles: np.ndarray) -> np.ndarray:
    """Rotations (A, 3, 3) about the camera's optical axis (z) by `angles` (A,) radians.

    Convention (the one `crops.normalised_crops` follows): Rz(a) turns image content about the principal
    point by a from +u (right) towards +v (down), i.e. clockwise on screen.
    """
    return Rotation.from_euler("z", np.asarray(angles, dtype=np.float64).reshape(-1, 1)).as_matrix()


def axis_to_ray(rays: np.ndarray) -> np.ndarray:
    """Smallest rotations (*, 3, 3) taking the optical axis (0, 0, 1) onto `rays` (*, 3) (any length, z > 0).

    An object seen along a ray looks like the same object on the optical axis after this camera turn, so
    R_cam_obj = axis_to_ray(ray) @ R_on_axis (the "allocentric" correction of off-centre crops).
    """
    rays = np.asarray(rays, dtype=np.float64)
    unit = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    axis = np.cross([0.0, 0.0, 1.0], unit)
    sin = np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.arctan2(sin, unit[..., 2:3])
    rotvec = np.divide(axis, sin, out=np.zeros_like(axis), where=sin > 1e-12) * angle
    return Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(rays.shape[:-1] + (3, 3))

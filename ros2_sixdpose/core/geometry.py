"""Rigid-body geometry: SE(3) poses, rotation conversions and distances, random rotations, camera placement.

All arrays are float64. Poses are 4x4 homogeneous transforms named by their frames: `T_a_b` maps points
from frame b to frame a (`p_a = T_a_b @ p_b`), so poses compose with plain `@`:
`T_cam_obj = invert_pose(T_world_cam) @ T_world_obj`. Rotation maths goes through SciPy's `Rotation`.
Quaternions exist only for the ROS boundary and are in ROS order (x, y, z, w).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

__all__ = [
    "checked_array",
    "invert_pose",
    "look_at",
    "make_pose",
    "matrix_from_quat_xyzw",
    "quat_xyzw_from_matrix",
    "random_rotations",
    "rotation_angle",
    "transform_points",
]

# Largest deviation of R^T R from identity accepted as a rotation at the ROS boundary; loose enough for
# float32 round trips, tight enough to catch a scaled or sheared matrix.
_ROTATION_ATOL = 1e-5


def checked_array(array: ArrayLike, shape: str, name: str) -> np.ndarray:
    """Return `array` as float64 after checking it against `shape`, else raise ValueError naming it.

    `shape` lists comma-separated dims: an integer must match exactly, a name ("N", "H") matches any size,
    and a leading "*" matches any number (including none) of batch dims.

    Example:
        >>> checked_array(np.eye(3), "*,3,3", "R").shape
        (3, 3)
    """
    out = np.asarray(array, dtype=np.float64)
    dims = [d.strip() for d in shape.split(",")]
    batched = dims[0] == "*"
    core = dims[1:] if batched else dims
    ok = out.ndim >= len(core) if batched else out.ndim == len(core)
    if ok:
        tail = out.shape[out.ndim - len(core):]
        ok = all(not d.isdigit() or int(d) == n for d, n in zip(core, tail))
    if not ok:
        raise ValueError(f"{name} must have shape ({', '.join(dims)}), got {out.shape}")
    return out


def make_pose(R: ArrayLike, t: ArrayLike) -> np.ndarray:
    """Build homogeneous transforms (*, 4, 4) from rotations R (*, 3, 3) and translations t (*, 3) metres."""
    R = checked_array(R, "*,3,3", "R")
    t = checked_array(t, "*,3", "t")
    batch = np.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    T = np.zeros(batch + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def invert_pose(T: ArrayLike) -> np.ndarray:
    """Invert rigid transforms (*, 4, 4) exactly via (R^T, -R^T t), e.g. T_world_cam -> T_cam_world."""
    T = checked_array(T, "*,4,4", "T")
    R_inv = np.swapaxes(T[..., :3, :3], -1, -2)
    return make_pose(R_inv, -(R_inv @ T[..., :3, 3:4])[..., 0])


def transform_points(T: ArrayLike, points: ArrayLike) -> np.ndarray:
    """Apply transforms T (*, 4, 4) to points (*, N, 3) metres, giving (*, N, 3); batch dims broadcast."""
    T = checked_array(T, "*,4,4", "T")
    points = checked_array(points, "*,N,3", "points")
    return points @ np.swapaxes(T[..., :3, :3], -1, -2) + T[..., None, :3, 3]


def quat_xyzw_from_matrix(R: ArrayLike) -> np.ndarray:
    """Unit quaternions (*, 4) in ROS order (x, y, z, w), w >= 0, from rotation matrices R (*, 3, 3).

    Raises ValueError when R is not finite or not a proper rotation (orthonormal within 1e-5, det +1):
    SciPy would otherwise silently replace a scaled or sheared matrix by its nearest rotation.
    """
    R = checked_array(R, "*,3,3", "R")
    if not np.all(np.isfinite(R)):
        raise ValueError("R must be finite, got NaN or inf")
    gram_error = np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(3)).max(initial=0.0)
    if gram_error > _ROTATION_ATOL or np.any(np.linalg.det(R) <= 0):
        raise ValueError(
            f"R is not a rotation matrix: max |R^T R - I| = {gram_error:.3g}, det = {np.linalg.det(R)}"
        )
    return Rotation.from_matrix(R).as_quat(canonical=True)


def matrix_from_quat_xyzw(q: ArrayLike) -> np.ndarray:
    """Rotation matrices (*, 3, 3) from quaternions q (*, 4) in ROS order (x, y, z, w), normalised first.

    Raises ValueError for zero-norm, NaN or infinite quaternions (an unset ROS Quaternion is all zeros).
    """
    q = checked_array(q, "*,4", "q")
    norm = np.linalg.norm(q, axis=-1)
    if not np.all(np.isfinite(q)) or np.any(norm < 1e-12):
        raise ValueError(f"quaternion must be finite and non-zero, got norms {norm}")
    return Rotation.from_quat(q).as_matrix()


def rotation_angle(R_a: ArrayLike, R_b: ArrayLike) -> np.ndarray:
    """Geodesic distance (*,) radians in [0, pi] between rotations R_a and R_b (*, 3, 3); batch dims broadcast.

    The angle of R_a^T R_b, taken from its quaternion as 2 atan2(|v|, |w|) (SciPy), which stays accurate
    near 0 and near pi where arccos((trace - 1) / 2) loses precision.
    """
    R_a = checked_array(R_a, "*,3,3", "R_a")
    R_b = checked_array(R_b, "*,3,3", "R_b")
    return np.asarray(Rotation.from_matrix(np.swapaxes(R_a, -1, -2) @ R_b).magnitude())


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw n rotations (n, 3, 3) uniformly (Haar measure) on SO(3); deterministic for a seeded `rng`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return Rotation.random(n, rng=rng).as_matrix()


def look_at(eye: ArrayLike, target: ArrayLike, up: ArrayLike = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera poses T_world_cam (*, 4, 4) for a camera at `eye` (*, 3) m looking at `target` (*, 3) m.

    The camera frame is the OpenCV optical frame: z along the viewing direction, x to the right in the
    image and y down, so `up` (*, 3) (world frame, any length) points towards the top of the image.
    Batch dims of eye, target and up broadcast. Raises ValueError when eye equals target or the viewing
    direction is parallel to `up` (the image roll is then undefined).

    Example:
        >>> T = look_at([0.0, 0.0, 1.0], [0.0, 0.0, 0.0], up=[0.0, 1.0, 0.0])
        >>> T[:3, 2]  # optical axis points down the world z axis
        array([ 0.,  0., -1.])
    """
    eye = checked_array(eye, "*,3", "eye")
    target = checked_array(target, "*,3", "target")
    up = checked_array(up, "*,3", "up")
    forward = target - eye
    distance = np.linalg.norm(forward, axis=-1, keepdims=True)
    if np.any(distance < 1e-12):
        raise ValueError("look_at: eye and target coincide, the viewing direction is undefined")
    z = forward / distance
    right = np.cross(z, up)
    right_norm = np.linalg.norm(right, axis=-1, keepdims=True)
    if np.any(right_norm <= 1e-9 * np.linalg.norm(up, axis=-1, keepdims=True)):
        raise ValueError("look_at: viewing direction is parallel to `up`, choose another up vector")
    x = right / right_norm
    y = np.cross(z, x)
    return make_pose(np.stack([x, y, z], axis=-1), eye)

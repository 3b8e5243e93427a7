"""Seeded pose disturbances as RNNPose trains and tests with: a turn about the object's centre, then a shift.

`uniform`: every axis angle in [-rot_deg, rot_deg] and every shift component in [-trans_m[i], trans_m[i]] (the
evaluation's "up to 15 degrees per axis and 1 / 1 / 5 cm"); `gaussian`: each drawn from N(0, sigma) with the total
angle capped (the training distribution: 15 degrees per axis capped at 45, 1 / 1 / 5 cm).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.geometry import checked_array

# The pattern: 1 cm across the image, 5 cm along the optical axis (depth is the hardest to see).
TRANSLATION_PATTERN_M = (0.01, 0.01, 0.05)


def perturb_pose(T_cam_obj: ArrayLike, center_obj: ArrayLike, rng: np.random.Generator, rot_deg: float,
                 trans_m: ArrayLike = TRANSLATION_PATTERN_M, gaussian: bool = False, cap_deg: float = 45.0) -> np.ndarray:
    """T_cam_obj (4, 4) turned about its model point `center_obj` (3,) m by per-axis angles (camera axes) and shifted.

    Uniform draws (default): angles in [-rot_deg, rot_deg] per axis, shift i in [-trans_m[i], trans_m[i]] m.
    gaussian: angles ~ N(0, rot_deg) per axis with the rotation's total angle capped at `cap_deg`, shift ~ N(0, trans_m).
    """
    T = checked_array(T_cam_obj, "4,4", "T_cam_obj")
    center = checked_array(center_obj, "3", "center_obj")
    scale = checked_array(trans_m, "3", "trans_m")
    if rot_deg < 0 or np.any(scale < 0):
        raise ValueError(f"rot_deg and trans_m must be >= 0, got {rot_deg}, {scale.tolist()}")
    if gaussian:
        rotvec = np.radians(rng.normal(0.0, rot_deg, 3)) if rot_deg > 0 else np.zeros(3)
        angle = np.linalg.norm(rotvec)
        if angle > np.radians(cap_deg):
            rotvec *= np.radians(cap_deg) / angle
        R_delta = Rotation.from_rotvec(rotvec).as_matrix()
        shift = rng.normal(0.0, 1.0, 3) * scale
    else:
        R_delta = Rotation.from_euler("xyz", rng.uniform(-rot_deg, rot_deg, 3), degrees=True).as_matrix()
        shift = rng.uniform(-1.0, 1.0, 3) * scale
    center_cam = T[:3, :3] @ center + T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R_delta @ T[:3, :3]
    out[:3, 3] = center_cam + shift - out[:3, :3] @ center
    return out

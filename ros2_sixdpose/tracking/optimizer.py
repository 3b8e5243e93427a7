"""One regularised Newton step over a pose variation (SRT3D / ICG, Stoiber et al.).

The variation theta = [rotation (3,) rad, translation (3,) m] acts in the model frame: T' = T exp(theta).
Tikhonov regularisation adds lambda_r to the rotation and lambda_t to the translation diagonal of the
negative Hessian, which damps each step towards the previous pose (the prior that the object moved little).
"""
from __future__ import annotations

import cv2
import numpy as np

from ros2_sixdpose.tracking.settings import RegionConfig


def newton_step(gradient: np.ndarray, hessian: np.ndarray, config: RegionConfig) -> np.ndarray:
    """theta (6,) = (-H + diag(lambda_r I3, lambda_t I3))^-1 g, from the log-likelihood's gradient g (6,) and
    Hessian H (6, 6)."""
    regularised = -hessian + np.diag([config.tikhonov_rotation] * 3 + [config.tikhonov_translation] * 3)
    try:
        return np.linalg.solve(regularised, gradient)
    except np.linalg.LinAlgError:
        # No line (all occluded or outside the image): keep the pose.
        return np.zeros(6)


def apply_variation(T: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """T (4, 4) composed with the model-frame variation theta (6,): T exp(theta) (rotation by Rodrigues)."""
    step = np.eye(4)
    step[:3, :3] = cv2.Rodrigues(np.asarray(theta[:3], dtype=np.float64))[0]
    step[:3, 3] = theta[3:]
    return T @ step

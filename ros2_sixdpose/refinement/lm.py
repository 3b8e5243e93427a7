"""Levenberg-Marquardt over a 6-DoF pose delta, with Jacobians from finite differences of rendered residuals.

Why finite differences and not autograd through a differentiable rasteriser (GS-Pose's AdamW on a
photometric loss, up to 400 steps): on a CPU one forward + backward pass of a pure-torch splatting renderer
costs about 1 s for 1k Gaussians at 64 px, while a hardware-style rasteriser renders a 96 px crop in 1-3 ms
but gives no gradient. Six extra renders per iteration give the whole Jacobian of the residual vector, and
a Gauss-Newton / LM step uses its curvature, so a pose converges in ~5-15 iterations (~50-100 renders)
instead of hundreds of first-order steps.

The delta is parameterised in crop pixels so that every coordinate moves the object's image by about one
pixel per unit (`PoseDelta`); that keeps J^T J well conditioned whatever the object's size and distance.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class PoseDelta:
    """Maps 6 unitless parameters to a pose near `T0`: rotation about the object's centre, then a shift.

    x[:3] rotate the object about its centre by x[:3] * rot_step (rad, camera axes); x[3:5] shift the centre
    across the image by xy_step (m) each; x[5] moves it along the optical axis by z_step (m). The steps are
    chosen so one unit moves the object's outline by about one crop pixel.
    """

    T0: np.ndarray  # (4, 4) T_cam_obj at x = 0
    center_obj: np.ndarray  # (3,) m, model frame: the point the rotation turns about
    rot_step: float  # rad per unit
    xy_step: float  # m per unit
    z_step: float  # m per unit

    @classmethod
    def for_crop(cls, T0: np.ndarray, center_obj: np.ndarray, radius: float, f_crop: float) -> "PoseDelta":
        """Steps for an object of `radius` (m) seen at T0 in a crop of focal length `f_crop` (px)."""
        z = max(float((T0[:3, :3] @ center_obj + T0[:3, 3])[2]), 1e-3)
        radius_px = max(f_crop * radius / z, 1.0)
        return cls(np.asarray(T0, dtype=np.float64), np.asarray(center_obj, dtype=np.float64),
                   rot_step=1.0 / radius_px, xy_step=z / f_crop, z_step=z / radius_px)

    def pose(self, x: np.ndarray) -> np.ndarray:
        """T_cam_obj (4, 4) for parameters x (6,)."""
        R0, t0 = self.T0[:3, :3], self.T0[:3, 3]
        center_cam = R0 @ self.center_obj + t0
        R = Rotation.from_rotvec(x[:3] * self.rot_step).as_matrix() @ R0
        center_new = center_cam + np.array([x[3] * self.xy_step, x[4] * self.xy_step, x[5] * self.z_step])
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = center_new - R @ self.center_obj
        return T


@dataclass(frozen=True)
class LMResult:
    """Where LM stopped: the parameters, the cost 0.5 |r|^2 there, and how many iterations / residual calls."""

    x: np.ndarray  # (6,)
    cost: float
    iterations: int
    evaluations: int


def levenberg_marquardt(
    residuals: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    max_iterations: int = 10,
    fd_step: float = 1.0,
    damping: float = 1e-2,
    min_step: float = 0.05,
    min_relative_decrease: float = 1e-4,
) -> LMResult:
    """Minimise 0.5 |residuals(x)|^2 from x0 (6,) by LM with forward-difference Jacobians.

    Each iteration costs 6 residual calls for the Jacobian plus one per trial step. Stops early (as
    GS-Pose's refiner does on a flat loss) when a step is shorter than `min_step` units or lowers the
    cost by less than `min_relative_decrease`, or after `max_iterations`. `damping` is the initial lambda of
    the Marquardt scaling (J^T J + lambda diag(J^T J)); it shrinks by 3 on success and grows by 5 on failure.
    """
    x = np.asarray(x0, dtype=np.float64).copy()
    r = residuals(x)
    cost = 0.5 * float(r @ r)
    evaluations, lam = 1, damping
    for iteration in range(1, max_iterations + 1):
        J = np.empty((r.size, x.size))
        for i in range(x.size):
            dx = np.zeros_like(x)
            dx[i] = fd_step
            J[:, i] = (residuals(x + dx) - r) / fd_step
        evaluations += x.size
        JtJ, Jtr = J.T @ J, J.T @ r
        diag = np.maximum(np.diag(JtJ), 1e-9)
        improved = False
        for _ in range(4):
            step = -np.linalg.solve(JtJ + lam * np.diag(diag), Jtr)
            r_new = residuals(x + step)
            evaluations += 1
            cost_new = 0.5 * float(r_new @ r_new)
            if cost_new < cost:
                decrease = (cost - cost_new) / max(cost, 1e-12)
                x, r, cost = x + step, r_new, cost_new
                lam = max(lam / 3.0, 1e-6)
                improved = True
                break
            lam *= 5.0
        if not improved or np.linalg.norm(step) < min_step or decrease < min_relative_decrease:
            return LMResult(x, cost, iteration, evaluations)
    return LMResult(x, cost, max_iterations, evaluations)

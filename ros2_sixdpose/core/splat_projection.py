"""EWA projection of 3D Gaussians to image-plane conics (Zwicker et al. 2002), as gsplat computes it.

This is the maths of gsplat's `fully_fused_projection` for a pinhole camera (its pure-torch reference is
`gsplat.cuda._torch_impl._fully_fused_projection`, against which test_splat.py checks this module): the
camera-frame covariance R S S^T R^T goes through the Jacobian of the perspective map, with the point's
x/z and y/z clamped to 1.3 x the field of view, then gets a 0.3 px^2 low-pass dilation; the footprint
extends 3.33 sigma along x and y. Written in numpy because the CPU rasteriser (splat_gl.py) needs it at
every render and gsplat's fast projection is a CUDA kernel.

Pixel convention is gsplat's here: pixel (i, j) is centred at (i + 0.5, j + 0.5); `gsplat_K` turns the
project's K (pixel centres at integers) into it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS2D = 0.3  # px^2 added to the 2D covariance (gsplat's eps2d): no footprint is thinner than a pixel
EXTENT_SIGMAS = 3.33  # gsplat's footprint half-size in standard deviations
NEAR = 0.01  # m; Gaussians nearer than this are dropped (gsplat's default near_plane)


@dataclass
class ProjectedGaussians:
    """Image-plane footprints of N Gaussians (gsplat's pixel convention); radii 0 marks one not drawn.

    means2d: (N, 2) px. conics: (N, 3) upper triangle (a, b, c) of the inverse 2D covariance, 1/px^2.
    covars2d: (N, 2, 2) px^2 (dilated). depths: (N,) camera z, m. radii: (N, 2) int32 px along x and y.
    """

    means2d: np.ndarray
    conics: np.ndarray
    covars2d: np.ndarray
    depths: np.ndarray
    radii: np.ndarray


def gsplat_K(K: np.ndarray) -> np.ndarray:
    """K (3, 3) with pixel centres at integers (the project's, OpenCV's) -> gsplat's (centres at +0.5)."""
    K = np.array(K, dtype=np.float64)
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


def quat_to_rotmat(quats: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) from quaternions (N, 4), w, x, y, z, normalised first."""
    q = quats / np.linalg.norm(quats, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    R = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], axis=-1)
    return R.reshape(q.shape[:-1] + (3, 3))


def covariance_factors(quats: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """M = R(q) diag(s) (N, 3, 3), the factor of the 3D covariance M M^T (m^2), in the inputs' dtype."""
    return quat_to_rotmat(quats) * scales[:, None, :]


def project_gaussians(
    means: np.ndarray,
    factors: np.ndarray,
    T_cam_obj: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    eps2d: float = EPS2D,
    near: float = NEAR,
) -> ProjectedGaussians:
    """Project Gaussians (means (N, 3) m and covariance factors (N, 3, 3) m, model frame) seen at T_cam_obj.

    K (3, 3) is in gsplat's pixel convention (see `gsplat_K`). Computed in the dtype of `means` (float32
    for rendering, float64 for the comparison with gsplat's reference).
    """
    dtype = means.dtype
    R = np.asarray(T_cam_obj, dtype=dtype)[:3, :3]
    t = np.asarray(T_cam_obj, dtype=dtype)[:3, 3]
    fx, fy, cx, cy = (dtype.type(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    p = means @ R.T + t
    tz = p[:, 2]
    safe_z = np.where(np.abs(tz) > 1e-12, tz, dtype.type(1e-12))
    # gsplat clamps the Jacobian's x/z, y/z to 1.3 x the half field of view so off-screen Gaussians stay sane.
    lim_x_pos = (width - cx) / fx + 0.3 * 0.5 * width / fx
    lim_x_neg = cx / fx + 0.3 * 0.5 * width / fx
    lim_y_pos = (height - cy) / fy + 0.3 * 0.5 * height / fy
    lim_y_neg = cy / fy + 0.3 * 0.5 * height / fy
    inv_z = 1 / safe_z
    tx = np.clip(p[:, 0] * inv_z, -lim_x_neg, lim_x_pos)
    ty = np.clip(p[:, 1] * inv_z, -lim_y_neg, lim_y_pos)
    # Rows of J R M (N, 2, 3), with J the perspective Jacobian (2, 3) and R M the camera-frame covariance
    # factor, so Sigma_2d = (J R M)(J R M)^T without a 3x3 covariance; written as (3N, 3) products because
    # numpy's batched 3x3 matmul is slow.
    RMt = (factors.transpose(0, 2, 1).reshape(-1, 3) @ R.T).reshape(-1, 3, 3)  # (R M)^T: [n, column, row]
    row0 = (fx * inv_z)[:, None] * (RMt[:, :, 0] - tx[:, None] * RMt[:, :, 2])
    row1 = (fy * inv_z)[:, None] * (RMt[:, :, 1] - ty[:, None] * RMt[:, :, 2])
    cov = np.empty((len(means), 2, 2), dtype=dtype)
    cov[:, 0, 0] = np.einsum("ij,ij->i", row0, row0)
    cov[:, 0, 1] = cov[:, 1, 0] = np.einsum("ij,ij->i", row0, row1)
    cov[:, 1, 1] = np.einsum("ij,ij->i", row1, row1)
    cov[:, 0, 0] += eps2d
    cov[:, 1, 1] += eps2d
    det = np.maximum(cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] * cov[:, 1, 0], 1e-10)
    conics = np.stack([cov[:, 1, 1], -0.5 * (cov[:, 0, 1] + cov[:, 1, 0]), cov[:, 0, 0]], axis=1) / det[:, None]
    means2d = np.stack([fx * p[:, 0] * inv_z + cx, fy * p[:, 1] * inv_z + cy], axis=1)
    radii = np.ceil(EXTENT_SIGMAS * np.sqrt(np.stack([cov[:, 0, 0], cov[:, 1, 1]], axis=1)))
    valid = (tz > near) & (det > 0)
    inside = ((means2d + radii > 0) & (means2d - radii < np.array([width, height], dtype=dtype))).all(axis=1)
    radii[~(valid & inside)] = 0
    return ProjectedGaussians(means2d, conics, cov, tz, radii.astype(np.int32))

"""EWA projection of 3D Gaussians to image-plane conics (Zwicker et al. 2002), as gsplat computes it.

This is the maths of gsplat's `fully_fused_projection` for a pinhole camera (its pure-torch reference is
`gsplat.cuda._torch_impl._fully_fused_projection`, against which test_splat.py checks this module): the
camera-frame covariance R S S^T R^T goes through the Jacobian of the perspective map, with the point's
x/z and y/z clamped to 1.3 x the field of view, then gets a 0.3 px^2 low-pass dilation; the footprint
extends 3.33 sigma along x and y. Written here (numba) because the CPU rasteriser (splat_cpu.py) needs it
at every render and gsplat's fast projection is a CUDA kernel.

Pixel convention is gsplat's here: pixel (i, j) is centred at (i + 0.5, j + 0.5); `gsplat_K` turns the
project's K (pixel centres at integers) into it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
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
    compensations: np.ndarray


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

    K (3, 3) is in gsplat's pixel convention (see `gsplat_K`). Outputs have the dtype of `means` (float32
    for rendering, float64 for the comparison with gsplat's reference); a compiled loop, because at a few
    thousand Gaussians numpy's per-call overhead over some forty array operations cost more than the maths.
    """
    n, dtype = len(means), means.dtype
    out = ProjectedGaussians(np.empty((n, 2), dtype), np.empty((n, 3), dtype), np.empty((n, 2, 2), dtype),
                             np.empty(n, dtype), np.empty((n, 2), np.int32), np.empty(n, dtype))
    T = np.asarray(T_cam_obj, dtype=np.float64)
    _project(np.ascontiguousarray(means), np.ascontiguousarray(factors, dtype=dtype), T[:3, :3].copy(), T[:3, 3].copy(),
             float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), width, height, eps2d, near,
             out.means2d, out.conics, out.covars2d, out.depths, out.radii, out.compensations)
    return out


@numba.njit(cache=True, nogil=True)
def _project(means, factors, R, t, fx, fy, cx, cy, width, height, eps2d, near,
             means2d, conics, covars2d, depths, radii, compensations):
    """Per Gaussian: camera-frame mean, Sigma_2d = (J R M)(J R M)^T + eps I with J the perspective Jacobian at
    x/z, y/z clamped to 1.3 x the half field of view (gsplat's guard for off-screen Gaussians), conic, radii
    (0: not drawn) and the antialiasing compensation."""
    lim_x_pos = (width - cx) / fx + 0.15 * width / fx
    lim_x_neg = cx / fx + 0.15 * width / fx
    lim_y_pos = (height - cy) / fy + 0.15 * height / fy
    lim_y_neg = cy / fy + 0.15 * height / fy
    p = np.empty(3)
    rm = np.empty((3, 3))
    for i in range(len(means)):
        for r in range(3):
            p[r] = R[r, 0] * means[i, 0] + R[r, 1] * means[i, 1] + R[r, 2] * means[i, 2] + t[r]
            for c in range(3):
                rm[r, c] = R[r, 0] * factors[i, 0, c] + R[r, 1] * factors[i, 1, c] + R[r, 2] * factors[i, 2, c]
        z = p[2] if abs(p[2]) > 1e-12 else 1e-12
        tx = min(max(p[0] / z, -lim_x_neg), lim_x_pos)
        ty = min(max(p[1] / z, -lim_y_neg), lim_y_pos)
        a = 0.0
        b = 0.0
        d = 0.0
        for c in range(3):
            row0 = fx / z * (rm[0, c] - tx * rm[2, c])
            row1 = fy / z * (rm[1, c] - ty * rm[2, c])
            a += row0 * row0
            b += row0 * row1
            d += row1 * row1
        det_orig = a * d - b * b
        a += eps2d
        d += eps2d
        det = max(a * d - b * b, 1e-10)
        covars2d[i, 0, 0] = a
        covars2d[i, 0, 1] = b
        covars2d[i, 1, 0] = b
        covars2d[i, 1, 1] = d
        conics[i, 0] = d / det
        conics[i, 1] = -b / det
        conics[i, 2] = a / det
        compensations[i] = np.sqrt(max(det_orig / det, 0.0))
        mx = fx * p[0] / z + cx
        my = fy * p[1] / z + cy
        means2d[i, 0] = mx
        means2d[i, 1] = my
        depths[i] = p[2]
        rx = np.ceil(EXTENT_SIGMAS * np.sqrt(a))
        ry = np.ceil(EXTENT_SIGMAS * np.sqrt(d))
        visible = p[2] > near and mx + rx > 0 and mx - rx < width and my + ry > 0 and my - ry < height
        radii[i, 0] = int(rx) if visible else 0
        radii[i, 1] = int(ry) if visible else 0


def log_scale_gradient(
    means: np.ndarray,
    quats: np.ndarray,
    scales: np.ndarray,
    T_cam_obj: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    grad_conics: np.ndarray,
) -> np.ndarray:
    """Gradient (N, 3) w.r.t. log scales of Gaussians (means (N, 3) m, quats (N, 4), scales (N, 3) m) given
    the gradient w.r.t. their conics (N, 3), for `project_gaussians` (default eps2d; K from `gsplat_K`).

    Sigma = sum_k s_k^2 a_k a_k^T + eps I with a_k = J R r_k (r_k: the Gaussian's k-th axis) and the conic
    Q = Sigma^-1, so dL/dSigma = -Q G Q and dL/dlog s_k = 2 s_k^2 a_k^T (dL/dSigma) a_k.
    """
    R = np.asarray(T_cam_obj, dtype=np.float64)[:3, :3]
    p = np.asarray(means, dtype=np.float64) @ R.T + np.asarray(T_cam_obj, dtype=np.float64)[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    inv_z = 1.0 / p[:, 2]
    tx = np.clip(p[:, 0] * inv_z, -(cx / fx + 0.15 * width / fx), (width - cx) / fx + 0.15 * width / fx)
    ty = np.clip(p[:, 1] * inv_z, -(cy / fy + 0.15 * height / fy), (height - cy) / fy + 0.15 * height / fy)
    RR = np.einsum("ij,njk->nik", R, quat_to_rotmat(np.asarray(quats, dtype=np.float64)))
    a = np.stack([(fx * inv_z)[:, None] * (RR[:, 0] - tx[:, None] * RR[:, 2]),
                  (fy * inv_z)[:, None] * (RR[:, 1] - ty[:, None] * RR[:, 2])], axis=1)  # (N, 2, 3)
    s2 = np.asarray(scales, dtype=np.float64) ** 2
    Q = np.linalg.inv((a * s2[:, None, :]) @ a.transpose(0, 2, 1) + EPS2D * np.eye(2))
    G = np.stack([grad_conics[:, 0], 0.5 * grad_conics[:, 1], 0.5 * grad_conics[:, 1], grad_conics[:, 2]],
                 axis=1).reshape(-1, 2, 2)
    return 2 * s2 * np.einsum("nik,nij,njk->nk", a, -Q @ G @ Q, a)

"""CPU backend of `GaussianRenderer`: gsplat's forward rasterisation, written as a numba-compiled loop.

Why by hand: gsplat's rasteriser is a CUDA kernel only. Here numpy projects the Gaussians
(splat_projection.py, gsplat's maths), drops those facing away when their normals are known, and sorts them
near to far; a compiled loop then composites each one over the pixels of its 3.33-sigma box as gsplat's
kernel does per pixel: alpha = min(0.999, o exp(-d^T conic d / 2)) at the pixel centre, skipped below 1/255,
C = sum_i c_i alpha_i T_i with T_i = prod_{j<i} (1 - alpha_j), and a pixel stops once T would fall to 1e-4.
An OpenGL version (one blended point sprite per Gaussian on llvmpipe) was measured first and cost 10-40 ms
per 96 x 96 render of 5k Gaussians, about 2.6 us per primitive before any pixel is drawn; this loop costs
a few ms. The same pass, run again with the image's gradient, gives the gradients of the colours and
opacities (`composite_backward`), which the CPU fit of a Gaussian object uses.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from ros2_sixdpose.core.gaussians import GaussianModel
from ros2_sixdpose.core.splat import SplatRender, finish_depth
from ros2_sixdpose.core.splat_projection import covariance_factors, gsplat_K, project_gaussians

ALPHA_MIN = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD
ALPHA_MAX = 0.999
T_MIN = 1e-4  # transmittance at which gsplat stops a pixel
# cos of the angle past 90 deg up to which a Gaussian with a known normal still counts as facing the camera.
BACKFACE_SLACK = 0.2


@dataclass
class Footprints:
    """Drawn Gaussians near to far: means2d (M, 2) px (gsplat convention), conics (M, 3), radii (M, 2) int32,
    colors (M, 3), opacities (M,), depths (M,) m, all float32 but radii; index (M,) into the model."""

    means2d: np.ndarray
    conics: np.ndarray
    radii: np.ndarray
    colors: np.ndarray
    opacities: np.ndarray
    depths: np.ndarray
    index: np.ndarray


def footprints(model: GaussianModel, factors: np.ndarray, T: np.ndarray, K: np.ndarray,
               width: int, height: int) -> Footprints:
    """Project `model` (covariance factors (N, 3, 3) from `covariance_factors`) at T_cam_obj (4, 4), K (3, 3)."""
    proj = project_gaussians(model.means, factors, T, gsplat_K(K), width, height)
    drawn = proj.radii.any(axis=1)
    camera_center = (-T[:3, :3].T @ T[:3, 3]).astype(np.float32)
    if model.normals is not None:
        # A flat surface Gaussian facing away is hidden behind the near side of the object: skipping it
        # halves the work; the slack keeps the ones near the silhouette, where normals are least exact.
        view = model.means - camera_center
        drawn &= np.einsum("ij,ij->i", model.normals, view) < BACKFACE_SLACK * np.linalg.norm(view, axis=1)
    keep = np.flatnonzero(drawn)
    keep = keep[np.argsort(proj.depths[keep], kind="stable")]
    return Footprints(
        means2d=np.ascontiguousarray(proj.means2d[keep], dtype=np.float32),
        conics=np.ascontiguousarray(proj.conics[keep], dtype=np.float32),
        radii=np.ascontiguousarray(proj.radii[keep]),
        colors=np.ascontiguousarray(model.colors(camera_center)[keep]),
        opacities=np.ascontiguousarray(model.opacities[keep]),
        depths=np.ascontiguousarray(proj.depths[keep], dtype=np.float32),
        index=keep,
    )


def composite(fp: Footprints, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Front-to-back compositing: colour (H, W, 3), transmittance (H, W), sum of w z (H, W), float32."""
    color = np.zeros((height, width, 3), np.float32)
    trans = np.ones((height, width), np.float32)
    wdepth = np.zeros((height, width), np.float32)
    _composite(fp.means2d, fp.conics, fp.radii, fp.colors, fp.opacities, fp.depths, color, trans, wdepth)
    return color, trans, wdepth


def composite_backward(fp: Footprints, color: np.ndarray, trans: np.ndarray,
                       grad_color: np.ndarray, grad_alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of a loss w.r.t. the footprints' colours (M, 3) and opacities (M,), given its gradient
    w.r.t. the composited colour (H, W, 3) and alpha = 1 - T (H, W) of `composite`'s outputs."""
    grad_c = np.zeros((len(fp.opacities), 3), np.float32)
    grad_o = np.zeros(len(fp.opacities), np.float32)
    _composite_backward(fp.means2d, fp.conics, fp.radii, fp.colors, fp.opacities, color, trans,
                        np.ascontiguousarray(grad_color, np.float32), np.ascontiguousarray(grad_alpha, np.float32),
                        grad_c, grad_o)
    return grad_c, grad_o


@numba.njit(cache=True, nogil=True, inline="always")
def _box(m, r, size):
    """First and one-past-last pixel index x with x in [m - r, m + r] (m shifted to integer centres), clipped."""
    return max(0, int(np.ceil(m - r))), min(size, int(np.floor(m + r)) + 1)


@numba.njit(cache=True, nogil=True)
def _composite(means2d, conics, radii, colors, opacities, depths, color, trans, wdepth):
    """In-place front-to-back compositing of Gaussians sorted near to far (see the module docstring)."""
    height, width = trans.shape
    for g in range(len(opacities)):
        mx, my = means2d[g, 0] - 0.5, means2d[g, 1] - 0.5  # so that pixel x's centre is at d = x - mx
        ca, cb, cc, opacity = 0.5 * conics[g, 0], conics[g, 1], 0.5 * conics[g, 2], opacities[g]
        x0, x1 = _box(mx, radii[g, 0], width)
        y0, y1 = _box(my, radii[g, 1], height)
        for y in range(y0, y1):
            dy = y - my
            for x in range(x0, x1):
                T = trans[y, x]
                if T <= T_MIN:
                    continue
                dx = x - mx
                sigma = ca * dx * dx + cc * dy * dy + cb * dx * dy
                if sigma < 0.0:
                    continue
                alpha = min(ALPHA_MAX, opacity * np.exp(-sigma))
                if alpha < ALPHA_MIN:
                    continue
                next_T = T * (1.0 - alpha)
                if next_T <= T_MIN:
                    # gsplat stops here without adding this Gaussian; mark the pixel done, keeping T's sign.
                    trans[y, x] = -T
                    continue
                w = alpha * T
                for c in range(3):
                    color[y, x, c] += w * colors[g, c]
                wdepth[y, x] += w * depths[g]
                trans[y, x] = next_T
    for y in range(height):
        for x in range(width):
            trans[y, x] = abs(trans[y, x])


@numba.njit(cache=True, nogil=True)
def _composite_backward(means2d, conics, radii, colors, opacities, color, trans, grad_color, grad_alpha,
                        grad_c, grad_o):
    """Replays the compositing; dL/dc_i = sum_p w_ip g_p, and dL/dalpha_i from the colour behind i (3DGS)."""
    height, width = trans.shape
    T_run = np.ones((height, width), np.float32)
    acc = np.zeros((height, width, 3), np.float32)
    done = np.zeros((height, width), np.bool_)
    for g in range(len(opacities)):
        mx, my = means2d[g, 0] - 0.5, means2d[g, 1] - 0.5
        ca, cb, cc, opacity = 0.5 * conics[g, 0], conics[g, 1], 0.5 * conics[g, 2], opacities[g]
        x0, x1 = _box(mx, radii[g, 0], width)
        y0, y1 = _box(my, radii[g, 1], height)
        for y in range(y0, y1):
            dy = y - my
            for x in range(x0, x1):
                if done[y, x]:
                    continue
                dx = x - mx
                sigma = ca * dx * dx + cc * dy * dy + cb * dx * dy
                if sigma < 0.0:
                    continue
                raw = opacity * np.exp(-sigma)
                alpha = min(ALPHA_MAX, raw)
                if alpha < ALPHA_MIN:
                    continue
                T = T_run[y, x]
                next_T = T * (1.0 - alpha)
                if next_T <= T_MIN:
                    done[y, x] = True
                    continue
                w = alpha * T
                # C = acc_before + w c_i + (colour behind i); the part behind scales with 1 / (1 - alpha_i).
                d_alpha = 0.0
                for c in range(3):
                    acc[y, x, c] += w * colors[g, c]
                    behind = color[y, x, c] - acc[y, x, c]
                    grad_c[g, c] += w * grad_color[y, x, c]
                    d_alpha += grad_color[y, x, c] * (T * colors[g, c] - behind / (1.0 - alpha))
                d_alpha += grad_alpha[y, x] * trans[y, x] / (1.0 - alpha)
                if raw < ALPHA_MAX:
                    grad_o[g] += d_alpha * raw / opacity
                T_run[y, x] = next_T


class CpuSplatBackend:
    """Models with their covariance factors precomputed; renders with `footprints` + `composite`."""

    def __init__(self, models: dict[int, GaussianModel]) -> None:
        """Precompute each model's covariance factors (float32)."""
        self._models = {obj_id: (m, covariance_factors(m.quats, m.scales)) for obj_id, m in models.items()}
        self._lock = threading.Lock()

    @property
    def object_ids(self) -> tuple[int, ...]:
        """Ids of the models."""
        return tuple(self._models)

    def render(self, obj_id: int, T: np.ndarray, K: np.ndarray, width: int, height: int) -> SplatRender:
        """Project, sort and composite one model."""
        model, factors = self._models[obj_id]
        color, trans, wdepth = composite(footprints(model, factors, T, K, width, height), width, height)
        alpha = 1.0 - trans
        return SplatRender(rgb=color, alpha=alpha, depth=finish_depth(wdepth, alpha))

    def close(self) -> None:
        """Nothing to free."""

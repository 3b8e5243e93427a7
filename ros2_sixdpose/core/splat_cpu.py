"""CPU backend of `GaussianRenderer`: gsplat's forward rasterisation, written as a numba-compiled loop.

Why by hand: gsplat's rasteriser is a CUDA kernel only. Here numpy projects the Gaussians
(splat_projection.py, gsplat's maths), drops those facing away when their normals are known, and sorts them
near to far; a compiled loop then composites each one over the pixels of its 3.33-sigma box as gsplat's
kernel does per pixel: alpha = min(0.999, o c exp(-d^T conic d / 2)) at the pixel centre (c: the
antialiasing compensation of splat_projection.py), skipped below 1/255,
C = sum_i c_i alpha_i T_i with T_i = prod_{j<i} (1 - alpha_j), and a pixel stops once T would fall to 1e-4.
An OpenGL version (one blended point sprite per Gaussian on llvmpipe) was measured first and cost 10-40 ms
per 96 x 96 render of 5k Gaussians, about 2.6 us per primitive before any pixel is drawn; this loop costs
a few ms. The same pass, run again with the image's gradient, gives the gradients of the colours,
opacities and conics (`composite_backward`), which the CPU fit of a Gaussian object uses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ros2_sixdpose.core.gaussians import GaussianModel
from ros2_sixdpose.core.splat_result import BACKFACE_SLACK, SplatRender, finish_depth
from ros2_sixdpose.core.splat_projection import covariance_factors, gsplat_K, project_gaussians

ALPHA_MIN = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD
ALPHA_MAX = 0.999
T_MIN = 1e-4  # transmittance at which gsplat stops a pixel


@dataclass
class Footprints:
    """Drawn Gaussians near to far: means2d (M, 2) px (gsplat convention), conics (M, 3), radii (M, 2) int32,
    colors (M, 3), opacities (M,) (the model's times `compensations`, gsplat's antialiased mode), depths (M,) m,
    all float32 but radii; index (M,) into the model."""

    means2d: np.ndarray
    conics: np.ndarray
    radii: np.ndarray
    colors: np.ndarray
    opacities: np.ndarray
    depths: np.ndarray
    index: np.ndarray
    compensations: np.ndarray


def footprints(model: GaussianModel, factors: np.ndarray, T: np.ndarray, K: np.ndarray,
               width: int, height: int) -> Footprints:
    """Project `model` (covariance factors (N, 3, 3) from `covariance_factors`) at T_cam_obj (4, 4), K (3, 3)."""
    camera_center = (-T[:3, :3].T @ T[:3, 3]).astype(np.float32)
    candidates = np.arange(len(model))
    if model.normals is not None:
        # A flat surface Gaussian facing away is hidden behind the near side of the object: skipping it
        # halves the work; the slack keeps the ones near the silhouette, where normals are least exact.
        view = model.means - camera_center
        distance = np.sqrt(np.einsum("ij,ij->i", view, view))
        facing = np.einsum("ij,ij->i", model.normals, view) < BACKFACE_SLACK * distance
        candidates = np.flatnonzero(facing)
    proj = project_gaussians(model.means[candidates], factors[candidates], T, gsplat_K(K), width, height)
    order = np.flatnonzero(proj.radii[:, 0] > 0)
    order = order[np.argsort(proj.depths[order], kind="stable")]
    keep = candidates[order]
    return Footprints(
        means2d=np.ascontiguousarray(proj.means2d[order], dtype=np.float32),
        conics=np.ascontiguousarray(proj.conics[order], dtype=np.float32),
        radii=np.ascontiguousarray(proj.radii[order]),
        colors=model.colors(camera_center, keep),
        opacities=np.ascontiguousarray(model.opacities[keep] * proj.compensations[order], dtype=np.float32),
        depths=np.ascontiguousarray(proj.depths[order], dtype=np.float32),
        index=keep,
        compensations=proj.compensations[order],
    )


def composite(fp: Footprints, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Front-to-back compositing: colour (H, W, 3), transmittance (H, W), sum of w z (H, W), float32."""
    color = np.zeros((height, width, 3), np.float32)
    trans = np.ones((height, width), np.float32)
    wdepth = np.zeros((height, width), np.float32)
    _composite(fp.means2d, fp.conics, fp.radii, _f32(fp.colors), _f32(fp.opacities), fp.depths, color, trans, wdepth)
    return color, trans, wdepth


@dataclass
class FootprintGradients:
    """Gradients of a loss w.r.t. the footprints' colors (M, 3), opacities (M,) and conics (M, 3)."""

    colors: np.ndarray
    opacities: np.ndarray
    conics: np.ndarray


def composite_backward(fp: Footprints, color: np.ndarray, trans: np.ndarray,
                       grad_color: np.ndarray, grad_alpha: np.ndarray) -> FootprintGradients:
    """Gradients w.r.t. the footprints given the loss's gradient w.r.t. the composited colour (H, W, 3) and
    alpha = 1 - T (H, W) of `composite`'s outputs `color` and `trans`."""
    m = len(fp.opacities)
    grads = FootprintGradients(np.zeros((m, 3)), np.zeros(m), np.zeros((m, 3)))
    _composite_backward(fp.means2d, fp.conics, fp.radii, _f32(fp.colors), _f32(fp.opacities), color, trans,
                        np.ascontiguousarray(grad_color, np.float32), np.ascontiguousarray(grad_alpha, np.float32),
                        grads.colors, grads.opacities, grads.conics)
    return grads


def _f32(array: np.ndarray) -> np.ndarray:
    """float32 C-contiguous, the one signature the compiled loops are built (and cached) for."""
    return np.ascontiguousarray(array, dtype=np.float32)


@numba.njit(cache=True, nogil=True, inline="always")
def _box(m, r, size):
    """First and one-past-last pixel index x with x in [m - r, m + r] (m shifted to integer centres), clipped."""
    return max(0, int(np.ceil(m - r))), min(size, int(np.floor(m + r)) + 1)


@numba.njit(cache=True, nogil=True, inline="always")
def _row_span(ca, cb, cc, dy, limit, m, x0, x1):
    """Pixels x in [x0, x1) of one row where the Gaussian's power ca dx^2 + cb dx dy + cc dy^2 stays below
    `limit` (dx = x - m): the row's chord of the ellipse, so pixels whose alpha is under 1/255 cost nothing."""
    b = cb * dy
    disc = b * b - 4.0 * ca * (cc * dy * dy - limit)
    if disc < 0.0 or ca <= 0.0:
        return x0, x0
    root = np.sqrt(disc)
    lo = max(x0, int(np.ceil(m + (-b - root) / (2.0 * ca))))
    hi = min(x1, int(np.floor(m + (-b + root) / (2.0 * ca))) + 1)
    return lo, max(lo, hi)


@numba.njit(cache=True, nogil=True)
def _composite(means2d, conics, radii, colors, opacities, depths, color, trans, wdepth):
    """In-place front-to-back compositing of Gaussians sorted near to far (see the module docstring)."""
    height, width = trans.shape
    for g in range(len(opacities)):
        mx, my = means2d[g, 0] - 0.5, means2d[g, 1] - 0.5  # so that pixel x's centre is at d = x - mx
        ca, cb, cc, opacity = 0.5 * conics[g, 0], conics[g, 1], 0.5 * conics[g, 2], opacities[g]
        if opacity < ALPHA_MIN:
            continue
        limit = np.log(opacity / ALPHA_MIN)  # power beyond which alpha < 1/255
        x0, x1 = _box(mx, radii[g, 0], width)
        y0, y1 = _box(my, radii[g, 1], height)
        for y in range(y0, y1):
            dy = y - my
            xa, xb = _row_span(ca, cb, cc, dy, limit, mx, x0, x1)
            for x in range(xa, xb):
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
                        grad_c, grad_o, grad_conic):
    """Replays the compositing; dL/dc_i = sum_p w_ip g_p, dL/dalpha_i from the colour behind i (3DGS), and
    through alpha = o exp(-power) the opacity and the conic."""
    height, width = trans.shape
    T_run = np.ones((height, width), np.float32)
    acc = np.zeros((height, width, 3), np.float32)
    done = np.zeros((height, width), np.bool_)
    for g in range(len(opacities)):
        mx, my = means2d[g, 0] - 0.5, means2d[g, 1] - 0.5
        ca, cb, cc, opacity = 0.5 * conics[g, 0], conics[g, 1], 0.5 * conics[g, 2], opacities[g]
        if opacity < ALPHA_MIN:
            continue
        limit = np.log(opacity / ALPHA_MIN)
        x0, x1 = _box(mx, radii[g, 0], width)
        y0, y1 = _box(my, radii[g, 1], height)
        for y in range(y0, y1):
            dy = y - my
            xa, xb = _row_span(ca, cb, cc, dy, limit, mx, x0, x1)
            for x in range(xa, xb):
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
                    d_power = -d_alpha * alpha
                    grad_conic[g, 0] += d_power * 0.5 * dx * dx
                    grad_conic[g, 1] += d_power * dx * dy
                    grad_conic[g, 2] += d_power * 0.5 * dy * dy
                T_run[y, x] = next_T


class CpuSplatBackend:
    """Models with their covariance factors precomputed; renders with `footprints` + `composite`.

    Safe to call from several threads: nothing is shared but read-only arrays, and the compiled loop
    releases the GIL.
    """

    def __init__(self, models: dict[int, GaussianModel]) -> None:
        """Precompute each model's covariance factors (float32)."""
        self._models = {obj_id: (m, covariance_factors(m.quats, m.scales)) for obj_id, m in models.items()}

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

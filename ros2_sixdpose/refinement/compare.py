"""What render-and-compare compares: a crop's observation, the residuals of a render against it, and a score.

Two kinds of evidence, both blurred so that a one-pixel move of the render changes them smoothly (the
refiner differentiates them by finite differences):
- silhouette: the render's coverage against the detection's mask, ignoring pixels that other detections
  claim (there the object may be hidden behind a neighbour, so a missing mask pixel says nothing). Rendered
  pixels outside the mask weigh `outside_weight` (< 1) against mask pixels the render misses (1): a mask
  pixel not covered is always an error, while a covered pixel outside the mask may be hidden behind an
  occluder that no detector knows (a distractor), and at full weight the search shrinks the render into
  the visible part, pushing partly occluded objects away from the camera;
- shading: the render gives each pixel its surface colour (albedo, lit by ambient light only) and its
  normal (from the rendered depth); a Lambertian model per colour channel,
  I_c = albedo_c * (a_c + b_c . n), is fitted to the observed colours by linear least squares, and the
  residual is what that model cannot explain. Fitting the light to each render makes the term blind to
  how the image was lit (direction, colour, intensity), but not to the pose: at a wrong pose the normal
  field and the albedo pattern do not fit the image's shading and texture under any light. Raw colour
  differences, per-channel normalised colours and chromaticity all made the search worse on the
  synthetic split (issue 12's experiment; measured again while building this: ADD(-S) from 15 deg / 2 cm
  starts fell from 0.72 with the silhouette alone to 0.21-0.67), because images and renders are lit
  differently.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ros2_sixdpose.refinement.views import ObjectView

# Shading residuals are clipped here (colour units): specular highlights and cast shadows, which the
# Lambertian model cannot explain, must not outweigh the rest of the object.
_SHADING_CLIP = 0.15
# Below this many overlapping pixels there is too little to fit a light to: the silhouette alone speaks.
_MIN_OVERLAP = 16.0


@dataclass
class CompareConfig:
    """Weights and blur of the comparison (the `compare` section of config/refiner.yaml)."""

    blur_sigma: float = 1.5  # px of the crop; smooths both images and masks
    outside_weight: float = 0.25  # weight of rendered pixels outside the mask in the silhouette residual and IoU
    shading_weight: float = 0.0  # per-pixel weight of the shading residual beside the silhouette's (1)
    score_shading_share: float = 0.5  # score = (1 - shares) IoU + shading share x shading fit ...
    score_detail_share: float = 0.3  # ... + detail share x detail correlation

    def __post_init__(self) -> None:
        shares = (self.score_shading_share, self.score_detail_share)
        if not (self.blur_sigma >= 0 and self.shading_weight >= 0 and 0 < self.outside_weight <= 1
                and min(shares) >= 0 and sum(shares) <= 1):
            raise ValueError(
                "need blur_sigma >= 0, shading_weight >= 0, 0 < outside_weight <= 1 and score shares >= 0 summing "
                f"to at most 1 (the rest weighs the IoU), got {self.blur_sigma}, {self.shading_weight}, "
                f"{self.outside_weight}, {shares}"
            )


@dataclass(frozen=True)
class Observation:
    """The observed crop, ready to compare with renders.

    rgb: (S, S, 3) float32 colours in [0, 1], blurred within the mask.
    mask: (S, S) float32 blurred detection mask in [0, 1].
    care: (S, S) float32, 0 where another detection claims the pixel, else 1.
    K: (3, 3) intrinsics of the crop.
    """

    rgb: np.ndarray
    mask: np.ndarray
    care: np.ndarray
    K: np.ndarray


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (S, S) or (S, S, C) float32 (identity for sigma <= 0)."""
    return image if sigma <= 0 else cv2.GaussianBlur(image, (0, 0), sigma)


def _masked_blur(rgb: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Blur of colours (S, S, 3) under a coverage (S, S) only (normalised convolution).

    A plain blur mixes the background into the object's border: the image's background in the observation,
    black in a render, so border pixels would differ however well the pose fits.
    """
    if sigma <= 0:
        return rgb
    total = _blur(weight, sigma)[..., None]
    return (_blur(rgb * weight[..., None], sigma) / np.maximum(total, 1e-3)).astype(np.float32)


def _difference(points: np.ndarray, valid: np.ndarray, axis: int) -> np.ndarray:
    """Derivative of points (S, S, 3) along `axis`: central where both neighbours are on the object, else one-sided.

    Differences across the silhouette's edge (to an empty pixel) would tilt every border normal.
    """
    fwd = np.zeros_like(points)
    bwd = np.zeros_like(points)
    ok_f = np.zeros_like(valid)
    ok_b = np.zeros_like(valid)
    here = [slice(None)] * 2
    there = [slice(None)] * 2
    here[axis], there[axis] = slice(0, -1), slice(1, None)
    step = points[tuple(there)] - points[tuple(here)]
    both = valid[tuple(there)] & valid[tuple(here)]
    fwd[tuple(here)], ok_f[tuple(here)] = step, both
    bwd[tuple(there)], ok_b[tuple(there)] = step, both
    n_ok = (ok_f.astype(np.float32) + ok_b)[..., None]
    return (fwd * ok_f[..., None] + bwd * ok_b[..., None]) / np.maximum(n_ok, 1.0)


def normals_from_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Unit surface normals (S, S, 3), camera frame, facing the camera, from depth (S, S) m; 0 where empty."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    points = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], axis=-1)
    valid = depth > 0
    n = np.cross(_difference(points, valid, 1), _difference(points, valid, 0))
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(norm > 1e-12, n / np.maximum(norm, 1e-12), 0.0)
    n *= -np.sign(np.sum(n * points, axis=-1, keepdims=True) + 1e-12)  # towards the camera
    return np.where(valid[..., None], n, 0.0).astype(np.float32)


def observe(rgb: np.ndarray, mask: np.ndarray, others: np.ndarray, K: np.ndarray,
            config: CompareConfig) -> Observation:
    """An observation from a crop's colours (S, S, 3) uint8, detection mask (S, S) bool, others' (S, S) bool, K."""
    colours = _masked_blur(rgb.astype(np.float32) / 255.0, mask.astype(np.float32), config.blur_sigma)
    soft_mask = _blur(mask.astype(np.float32), config.blur_sigma)
    care = 1.0 - _blur((others & ~mask).astype(np.float32), config.blur_sigma)
    return Observation(colours, soft_mask, care.astype(np.float32), np.asarray(K, dtype=np.float64))


def _shading_residual(view: ObjectView, obs: Observation, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Observed colours minus the best Lambertian shading of the render's albedo and normals, (S, S, 3)."""
    albedo = _masked_blur(view.rgb, view.alpha, sigma)
    normals = normals_from_depth(view.depth, obs.K)
    normals = _masked_blur(normals, view.alpha, sigma)
    basis = np.concatenate([np.ones_like(normals[..., :1]), normals], axis=-1)  # (S, S, 4): ambient, n
    w = weight.ravel()
    out = np.zeros_like(obs.rgb)
    for c in range(3):
        A = (albedo[..., c:c + 1] * basis).reshape(-1, 4)
        Aw = A * w[:, None]
        coef = np.linalg.lstsq(Aw.T @ A + 1e-6 * np.eye(4), Aw.T @ obs.rgb[..., c].ravel(), rcond=None)[0]
        out[..., c] = obs.rgb[..., c] - (A @ coef).reshape(obs.rgb.shape[:2])
    return out


def _overlap(view: ObjectView, obs: Observation, sigma: float) -> np.ndarray:
    """Soft overlap (S, S) float32 of the blurred render coverage and the blurred mask."""
    return (_blur(view.alpha, sigma) * obs.mask).astype(np.float32)


def residuals(view: ObjectView, obs: Observation, config: CompareConfig) -> np.ndarray:
    """Residual vector of a render against the observation: silhouette (S^2,), then shading (3 S^2,) if weighted."""
    difference = _blur(view.alpha, config.blur_sigma) - obs.mask
    # Squared residuals weigh outside_weight where the render covers more than the mask: scale by its root.
    silhouette = (np.where(difference > 0, np.sqrt(config.outside_weight), 1.0) * difference * obs.care).ravel()
    if config.shading_weight == 0:
        return silhouette
    overlap = _overlap(view, obs, config.blur_sigma)
    if overlap.sum() < _MIN_OVERLAP:
        return np.concatenate([silhouette, np.zeros(overlap.size * 3)])
    shading = _shading_residual(view, obs, overlap, config.blur_sigma)
    clipped = np.clip(shading, -_SHADING_CLIP, _SHADING_CLIP) * np.sqrt(overlap * config.shading_weight)[..., None]
    return np.concatenate([silhouette, clipped.ravel()])


def score(view: ObjectView, obs: Observation, config: CompareConfig) -> float:
    """Similarity in [0, 1]: silhouette IoU (pixels no other detection claims) blended with the shading fit.

    The IoU counts rendered pixels outside the mask at `outside_weight`: |R & M| / (|M| + w |R - M|).

    The shading fit is 1 - RMS shading residual / RMS colour variation of the observed overlap, clipped to
    [0, 1]: how much of the object's appearance the render's albedo and normals explain under the best light.
    """
    rendered, observed, care = view.alpha > 0.5, obs.mask > 0.5, obs.care > 0.5
    union = (observed & care).sum() + config.outside_weight * (rendered & ~observed & care).sum()
    iou = float((rendered & observed & care).sum() / union) if union else 0.0
    overlap = _overlap(view, obs, config.blur_sigma)
    total = float(overlap.sum())
    fit = 0.0
    if total >= _MIN_OVERLAP:
        shading = _shading_residual(view, obs, overlap, config.blur_sigma)
        mean = (obs.rgb * overlap[..., None]).sum(axis=(0, 1)) / total
        variation = np.sqrt(((obs.rgb - mean) ** 2 * overlap[..., None]).sum() / total)
        rms = np.sqrt((shading ** 2 * overlap[..., None]).sum() / total)
        fit = float(np.clip(1.0 - rms / max(variation, 1e-3), 0.0, 1.0))
    detail = _detail_correlation(view, obs, overlap, config.blur_sigma) if total >= _MIN_OVERLAP else 0.0
    share, dshare = config.score_shading_share, config.score_detail_share
    return float((1.0 - share - dshare) * iou + share * fit + dshare * max(detail, 0.0))


def _detail(grey: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Fine detail (S, S) of a grey image: itself minus its blur within `weight` (texture, creases; not shading)."""
    return grey - _masked_blur(grey[..., None], weight, 3.0 * max(sigma, 1.0))[..., 0]


def _detail_correlation(view: ObjectView, obs: Observation, overlap: np.ndarray, sigma: float) -> float:
    """Normalised correlation in [-1, 1] of the fine detail of the render's albedo and of the image, in the overlap.

    Smooth shading, which depends on the light, is removed; texture and crease edges, which depend on the
    pose, stay. This tells apart poses whose silhouette and normals agree, e.g. a box turned 180 degrees.
    """
    inner = (overlap > 0.5).astype(np.float32)
    if inner.sum() < _MIN_OVERLAP:
        return 0.0
    rendered = _detail(_masked_blur(view.rgb, view.alpha, sigma).mean(axis=-1), inner, sigma)
    observed = _detail(obs.rgb.mean(axis=-1), inner, sigma)
    a = (rendered - (rendered * inner).sum() / inner.sum()) * inner
    b = (observed - (observed * inner).sum() / inner.sum()) * inner
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 1e-9 else 0.0

"""The region modality (SRT3D, Stoiber et al. IJCV 2022): colour histograms, correspondence lines along the
contour normals, and the gradient and Hessian of the pose's log-likelihood.

A correspondence line starts at a projected contour point of the sparse viewpoint model and runs along its
projected normal (outwards). Its pixels, grouped into segments of `scale` pixels, give per segment the
probability of belonging to the object (from the foreground / background colour histograms); a smoothed
step function then gives a discrete distribution over where on the line the contour lies. Its mean and
variance turn into a Gaussian on the distance of the projected model point along the line, whose gradient
and Hessian with respect to a pose variation feed one Newton step (`optimizer.py`).
"""
from __future__ import annotations

import copy

from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.tracking.model import SparseViewModel
from ros2_sixdpose.tracking.settings import RegionConfig

_EPS = 1e-6


@dataclass
class Lines:
    """Correspondence lines of one iteration, L valid lines.

    view: index of the model view they came from; index: (L,) its points used.
    centers: (L, 2) px, normals: (L, 2) unit outward image directions.
    mean: (L,) px along the normal where the contour most likely is; variance: (L,) px^2.
    """

    view: int
    index: np.ndarray
    centers: np.ndarray
    normals: np.ndarray
    mean: np.ndarray
    variance: np.ndarray


class ColourHistograms:
    """Foreground and background RGB histograms (n_bins^3 bins each, normalised) learnt along the contour."""

    def __init__(self, config: RegionConfig) -> None:
        self.config = config
        self.shift = 8 - int(np.log2(config.n_histogram_bins))
        n = config.n_histogram_bins ** 3
        self.foreground = np.full(n, 1.0 / n)
        self.background = np.full(n, 1.0 / n)
        self.initialised = False

    def bins(self, rgb: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """Histogram bin (*) of the pixels at integer positions uv (*, 2) of `rgb` (H, W, 3) uint8."""
        colour = rgb[uv[..., 1], uv[..., 0]] >> self.shift
        b = self.config.n_histogram_bins
        return (colour[..., 0].astype(np.int32) * b + colour[..., 1]) * b + colour[..., 2]

    def log_likelihoods(self, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log p(colour | foreground) and log p(colour | background) of histogram bins (*)."""
        return np.log(self.foreground[bins] + _EPS), np.log(self.background[bins] + _EPS)

    def foreground_posterior(self, bins: np.ndarray) -> np.ndarray:
        """p(foreground | colour) (*) with equal priors."""
        f, b = self.foreground[bins], self.background[bins]
        return (f + _EPS) / (f + b + 2 * _EPS)

    def update(self, foreground_bins: np.ndarray, background_bins: np.ndarray) -> None:
        """Blend in the histograms of new foreground / background pixels (SRT3D's learning rates; first call: set)."""
        n = len(self.foreground)
        if len(foreground_bins) == 0 or len(background_bins) == 0:
            return
        new_f = np.bincount(foreground_bins, minlength=n) / len(foreground_bins)
        new_b = np.bincount(background_bins, minlength=n) / len(background_bins)
        if not self.initialised:
            self.foreground, self.background, self.initialised = new_f, new_b, True
            return
        self.foreground = (1 - self.config.learning_rate_f) * self.foreground + self.config.learning_rate_f * new_f
        self.background = (1 - self.config.learning_rate_b) * self.background + self.config.learning_rate_b * new_b


@dataclass
class Projection:
    """The model view's points at one pose: camera-frame points (N, 3) m, pixels (N, 2), image normals (N, 2),
    and the foreground / background run lengths (N,) in px."""

    points_cam: np.ndarray
    uv: np.ndarray
    normals: np.ndarray
    foreground_px: np.ndarray
    background_px: np.ndarray


def project_view(model: SparseViewModel, view: int, T: np.ndarray, K: np.ndarray) -> Projection:
    """Project view `view` of `model` with T_cam_obj (4, 4) through K (3, 3)."""
    R, t = T[:3, :3], T[:3, 3]
    points_cam = model.points[view] @ R.T + t
    z = np.maximum(points_cam[:, 2], 1e-6)
    uv = points_cam[:, :2] / z[:, None] * K[[0, 1], [0, 1]] + K[:2, 2]
    normals = model.normals[view] @ R.T
    normals = normals[:, :2] / np.maximum(np.linalg.norm(normals[:, :2], axis=1, keepdims=True), 1e-9)
    focal = K[0, 0]
    return Projection(points_cam, uv, normals, model.foreground[view] * focal / z,
                      model.background[view] * focal / z)


class RegionModality:
    """Correspondence search, gradient / Hessian and histogram learning of one tracked object."""

    def __init__(self, model: SparseViewModel, config: RegionConfig) -> None:
        self.model = model
        self.config = config
        self.histograms = ColourHistograms(config)
        F = config.function_length
        x = np.arange(F) - (F - 1) / 2.0  # segment centres relative to a candidate contour position
        slope = max(config.function_slope, 1e-6)
        self._h_f = 0.5 - config.function_amplitude * np.tanh(x / (2.0 * slope))
        self._h_b = 1.0 - self._h_f
        self._n_segments = F + config.distribution_length - 1
        # Segment k covers [k - first, k + 1 - first) scale px from the line centre, so a segment boundary lies
        # on the centre itself: with the contour in the middle of a segment, that segment's pixels would be
        # half object, half background, and the distribution would pick either neighbouring boundary (scale / 2
        # off, in our measurements mostly inwards, which drove the pose away from the camera).
        self._first = F // 2 + config.distribution_length // 2
        # Candidate contour positions (segment boundaries), in segments from the line centre.
        self._positions = np.arange(config.distribution_length) + F / 2.0 - self._first

    def copy(self) -> RegionModality:
        """This modality with a copy of its histograms (learning rebinds their arrays, so a shallow copy is one)."""
        twin = copy.copy(self)
        twin.histograms = copy.copy(self.histograms)
        return twin

    def correspondences(self, rgb: np.ndarray, T: np.ndarray, K: np.ndarray, iteration: int,
                        occlusion: np.ndarray | None = None) -> Lines:
        """The correspondence lines of `rgb` (H, W, 3) uint8 at pose T (4, 4), for correspondence iteration k;
        a line whose central window (the step function's length) meets `occlusion` (H, W) bool is left out."""
        cfg = self.config
        k = min(iteration, len(cfg.scales) - 1)
        scale, sigma_min = cfg.scales[k], cfg.standard_deviations[k]
        view = self.model.closest_view(T)
        p = project_view(self.model, view, T, K)
        S = self._n_segments
        # Pixel offsets along the line (pixel centres): segment k covers [(k - first) scale, (k + 1 - first) scale).
        offsets = np.arange(S * scale) + 0.5 - self._first * scale
        valid = (p.foreground_px >= cfg.min_continuous_distance) & (p.background_px >= cfg.min_continuous_distance)
        valid &= p.points_cam[:, 2] > 0
        samples = np.round(p.uv[:, None, :] + offsets[None, :, None] * p.normals[:, None, :]).astype(np.int64)
        h, w = rgb.shape[:2]
        inside = ((samples[..., 0] >= 0) & (samples[..., 0] < w) & (samples[..., 1] >= 0)
                  & (samples[..., 1] < h)).all(axis=1)
        valid &= inside
        if occlusion is not None:
            F = cfg.function_length
            window = np.abs(offsets) <= F / 2.0 * scale
            central = np.clip(samples[:, window], 0, [w - 1, h - 1])
            valid &= ~occlusion[central[..., 1], central[..., 0]].any(axis=1)
        index = np.flatnonzero(valid)
        samples = samples[index]
        log_f, log_b = self.histograms.log_likelihoods(self.histograms.bins(rgb, samples))
        # Segment posterior of foreground from the product of its pixels' likelihoods (SRT3D, eq. for segments).
        diff = (log_f - log_b).reshape(len(index), S, scale).sum(axis=2)
        p_f = 1.0 / (1.0 + np.exp(-np.clip(diff, -50, 50)))
        windows = np.lib.stride_tricks.sliding_window_view(p_f, cfg.function_length, axis=1)  # (L, D, F)
        log_p = np.log(self._h_f * windows + self._h_b * (1.0 - windows) + _EPS).sum(axis=2)
        log_p -= log_p.max(axis=1, keepdims=True)
        prob = np.exp(log_p)
        prob /= prob.sum(axis=1, keepdims=True)
        mean = prob @ self._positions
        variance = prob @ self._positions ** 2 - mean ** 2
        return Lines(view, index, p.uv[index], p.normals[index], mean * scale,
                     np.maximum(variance * scale ** 2, sigma_min ** 2))

    def gradient_hessian(self, lines: Lines, T: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient (6,) and Hessian (6, 6) of the log-likelihood w.r.t. a variation [rotation, translation] of T
        in the model frame (T' = T exp(theta)), with the lines fixed."""
        R, t = T[:3, :3], T[:3, 3]
        X = self.model.points[lines.view, lines.index]  # (L, 3) model frame
        Xc = X @ R.T + t
        z = Xc[:, 2]
        fx, fy = K[0, 0], K[1, 1]
        uv = Xc[:, :2] / z[:, None] * np.array([fx, fy]) + K[:2, 2]
        distance = np.einsum("lk,lk->l", lines.normals, uv - lines.centers)
        # d distance / d camera point: n^T d(uv)/d(Xc).
        nu, nv = lines.normals[:, 0] * fx, lines.normals[:, 1] * fy
        dd_dXc = np.column_stack([nu / z, nv / z, -(nu * Xc[:, 0] + nv * Xc[:, 1]) / z ** 2])
        # d Xc / d theta_t = R, d Xc / d theta_r = -R [X]x, so d / d theta_r = (X x (R^T g)) ... row form below.
        a = dd_dXc @ R  # (L, 3): gradient w.r.t. a model-frame translation
        J = np.column_stack([np.cross(X, a), a])  # (L, 6)
        weight = 1.0 / lines.variance
        residual = distance - lines.mean
        gradient = -(J * (weight * residual)[:, None]).sum(axis=0)
        hessian = -(J * weight[:, None]).T @ J
        return gradient, hessian

    def learn(self, rgb: np.ndarray, T: np.ndarray, K: np.ndarray, occlusion: np.ndarray | None = None) -> None:
        """Update the colour histograms from the pixels inside and outside the contour at pose T (not occluded)."""
        cfg = self.config
        p = project_view(self.model, self.model.closest_view(T), T, K)
        steps = np.arange(np.ceil(cfg.unconsidered_line_length), np.floor(cfg.max_considered_line_length) + 1)
        f_bins = self._run_bins(rgb, p, -steps, np.minimum(p.foreground_px, cfg.max_considered_line_length), occlusion)
        b_bins = self._run_bins(rgb, p, steps, np.minimum(p.background_px, cfg.max_considered_line_length), occlusion)
        self.histograms.update(f_bins, b_bins)

    def score(self, rgb: np.ndarray, T: np.ndarray, K: np.ndarray,
              occlusion: np.ndarray | None = None) -> tuple[float, float]:
        """(contrast, visible share) at pose T: how well the histograms separate the pixels just inside from those
        just outside the contour (0: not at all, 1: perfectly), and the share of contour points in the image and
        not under `occlusion` (H, W) bool."""
        n = self.config.score_length
        p = project_view(self.model, self.model.closest_view(T), T, K)
        steps = np.arange(1, n + 1, dtype=np.float64)
        h, w = rgb.shape[:2]
        inner = np.round(p.uv[:, None, :] - steps[None, :, None] * p.normals[:, None, :]).astype(np.int64)
        outer = np.round(p.uv[:, None, :] + steps[None, :, None] * p.normals[:, None, :]).astype(np.int64)
        ok = np.ones(len(p.uv), dtype=bool)
        for s in (inner, outer):
            ok &= ((s[..., 0] >= 0) & (s[..., 0] < w) & (s[..., 1] >= 0) & (s[..., 1] < h)).all(axis=1)
        ok &= p.points_cam[:, 2] > 0
        if occlusion is not None:
            centre = np.clip(np.round(p.uv).astype(np.int64), 0, [w - 1, h - 1])
            ok &= ~occlusion[centre[:, 1], centre[:, 0]]
        visible = float(ok.mean())
        if not ok.any():
            return 0.0, 0.0
        posterior = self.histograms.foreground_posterior
        agreement = 0.5 * (posterior(self.histograms.bins(rgb, inner[ok])).mean()
                           + 1.0 - posterior(self.histograms.bins(rgb, outer[ok])).mean())
        return float(np.clip(2.0 * agreement - 1.0, 0.0, 1.0)), visible

    def _run_bins(self, rgb: np.ndarray, p: Projection, steps: np.ndarray, limit: np.ndarray,
                  occlusion: np.ndarray | None) -> np.ndarray:
        """Histogram bins of the pixels at `steps` (S,) px along each normal, up to each line's `limit` (N,) px,
        leaving out those under `occlusion`."""
        h, w = rgb.shape[:2]
        uv = np.round(p.uv[:, None, :] + steps[None, :, None] * p.normals[:, None, :]).astype(np.int64)
        keep = (np.abs(steps)[None, :] <= limit[:, None]) & (uv[..., 0] >= 0) & (uv[..., 0] < w) & (
            uv[..., 1] >= 0) & (uv[..., 1] < h) & (p.points_cam[:, None, 2] > 0)
        if occlusion is not None:
            keep[keep] &= ~occlusion[uv[keep][:, 1], uv[keep][:, 0]]
        return self.histograms.bins(rgb, uv[keep])

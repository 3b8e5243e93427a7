"""Pose from a NOCS map: mask pixels become 2D-3D pairs, RANSAC-PnP finds a pose, Levenberg-Marquardt refines it.

The NOCS map of a crop gives, for every object pixel, the normalised object coordinates of the surface
point seen there; `ObjectModel.nocs_to_points` scales them back to model coordinates (metres). The crop's
pixels are mapped back to the full image with the crop transform and the pose is solved with the full
camera (K and distortion), so the crop never has to be undistorted. The score is the RANSAC inlier
fraction, damped when the inlier count is small; every way of failing returns no pose with a reason.

Symmetric objects: any map that is consistent with one of the object's symmetric poses gives that pose
(the estimators are trained on symmetry-canonicalised maps, see `estimation/train.py`); poses of
symmetric objects are therefore only defined up to the symmetry, as ADD-S and MSSD assume.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ros2_sixdpose.core.camera import CropTransform, PinholeCamera
from ros2_sixdpose.core.geometry import checked_array, make_pose
from ros2_sixdpose.core.objects import ObjectModel

# OpenCV's EPnP needs 4 points and its RANSAC draws samples of 5; fewer correspondences are never attempted.
MIN_POINTS_ANY_SOLVER = 6


@dataclass(frozen=True)
class PnPConfig:
    """RANSAC-PnP settings; thresholds in crop pixels scale with the crop's magnification."""

    min_correspondences: int = 30  # fewer mask pixels with NOCS than this: no pose
    max_correspondences: int = 1500  # evenly subsampled above this (time grows with the count)
    # Thresholds chosen on the validation split (seed 601) with the trained networks: their maps are rough,
    # and a tighter threshold or ratio rejected most poses that were right to 0.1 d.
    # Crop pixels; a 64-px crop of a 120-px box gives ~11 full-image pixels. Pix2Pix val ADD(-S) 10.9/15.0/16.3/17.7 %
    # at 1.5/3/6/10 (config/estimator.yaml).
    ransac_threshold: float = 6.0
    ransac_iterations: int = 200
    ransac_confidence: float = 0.999
    min_inliers: int = 20
    min_inlier_ratio: float = 0.1
    confident_inliers: int = 100  # the score stops growing with the inlier count here

    def __post_init__(self) -> None:
        if self.min_correspondences < MIN_POINTS_ANY_SOLVER:
            raise ValueError(f"min_correspondences must be >= {MIN_POINTS_ANY_SOLVER}, got {self.min_correspondences}")
        if self.max_correspondences < self.min_correspondences:
            raise ValueError(
                f"max_correspondences ({self.max_correspondences}) must be >= min_correspondences "
                f"({self.min_correspondences})"
            )
        if not self.ransac_threshold > 0 or self.ransac_iterations < 1 or not 0 < self.ransac_confidence < 1:
            raise ValueError(
                "need ransac_threshold > 0, ransac_iterations >= 1 and 0 < ransac_confidence < 1, got "
                f"{self.ransac_threshold}, {self.ransac_iterations}, {self.ransac_confidence}"
            )
        if self.min_inliers < 4 or not 0.0 <= self.min_inlier_ratio <= 1.0 or self.confident_inliers < 1:
            raise ValueError(
                "need min_inliers >= 4, 0 <= min_inlier_ratio <= 1 and confident_inliers >= 1, got "
                f"{self.min_inliers}, {self.min_inlier_ratio}, {self.confident_inliers}"
            )


@dataclass(frozen=True)
class PnPResult:
    """Outcome of one PnP solve.

    Attributes:
        T_cam_obj: (4, 4) float64 object -> camera, metres; None when no pose was accepted.
        score: in [0, 1], inlier fraction x min(1, inliers / confident_inliers); 0 without a pose.
        n_correspondences: 2D-3D pairs given to RANSAC.
        n_inliers: pairs within the threshold of the final pose.
        reprojection_rmse: RMS reprojection error of the inliers, full-image pixels (nan without a pose).
        reason: why there is no pose ('' when there is one).
    """

    T_cam_obj: np.ndarray | None
    score: float
    n_correspondences: int
    n_inliers: int
    reprojection_rmse: float
    reason: str = ""


def _failure(reason: str, n_correspondences: int, n_inliers: int = 0) -> PnPResult:
    """A result without a pose."""
    return PnPResult(None, 0.0, n_correspondences, n_inliers, float("nan"), reason)


def nocs_correspondences(
    nocs: np.ndarray, mask: np.ndarray, model: ObjectModel
) -> tuple[np.ndarray, np.ndarray]:
    """2D-3D pairs from a NOCS map (H, W, 3) in [0, 1] and a mask (H, W) bool.

    Returns (points (N, 3) float64 model frame metres, uv (N, 2) float64 pixel centres of the map), one
    pair per mask pixel with finite NOCS.
    """
    nocs = checked_array(nocs, "H,W,3", "nocs")
    mask = np.asarray(mask)
    if mask.shape != nocs.shape[:2]:
        raise ValueError(f"mask must have the NOCS map's shape {nocs.shape[:2]}, got {mask.shape}")
    valid = mask.astype(bool) & np.all(np.isfinite(nocs), axis=2)
    v, u = np.nonzero(valid)
    points = model.nocs_to_points(nocs[v, u])
    return points, np.stack([u, v], axis=1).astype(np.float64)


def solve_pnp(
    points: np.ndarray, uv: np.ndarray, camera: PinholeCamera, threshold_px: float, config: PnPConfig
) -> PnPResult:
    """Pose from 2D-3D pairs: model points (N, 3) m and their pixels uv (N, 2) in `camera`'s image.

    RANSAC over EPnP solves of random 5-point samples, then Levenberg-Marquardt on the inliers;
    `threshold_px` is the inlier reprojection threshold in pixels of that image.
    """
    points = checked_array(points, "N,3", "points")
    uv = checked_array(uv, "N,2", "uv")
    if len(points) != len(uv):
        raise ValueError(f"points and uv must pair up, got {len(points)} and {len(uv)}")
    n = len(points)
    if n == 0:
        return _failure("empty mask: no pixel with a NOCS value", 0)
    if n < config.min_correspondences:
        return _failure(f"only {n} correspondences, need >= {config.min_correspondences}", n)
    if n > config.max_correspondences:
        # An even stride keeps the pixels spread over the whole mask and the result deterministic.
        keep = np.linspace(0, n - 1, config.max_correspondences).round().astype(int)
        points, uv, n = points[keep], uv[keep], config.max_correspondences
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(
        points, uv, camera.K, camera.dist,
        iterationsCount=config.ransac_iterations,
        reprojectionError=float(threshold_px),
        confidence=config.ransac_confidence,
        flags=cv2.SOLVEPNP_EPNP,
    )
    if not ok or inliers is None or len(inliers) < config.min_inliers:
        found = 0 if inliers is None else len(inliers)
        return _failure(f"RANSAC found {found} inliers of {n}, need >= {config.min_inliers}", n, found)
    inliers = inliers.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(points[inliers], uv[inliers], camera.K, camera.dist, rvec, tvec)
    # Inliers of the refined pose, so that the score describes the pose that is returned.
    projected = cv2.projectPoints(points, rvec, tvec, camera.K, camera.dist)[0].reshape(-1, 2)
    errors = np.linalg.norm(projected - uv, axis=1)
    inlier = errors < threshold_px
    n_inliers = int(inlier.sum())
    ratio = n_inliers / n
    if n_inliers < config.min_inliers or ratio < config.min_inlier_ratio:
        return _failure(
            f"{n_inliers} of {n} correspondences agree with the pose (need >= {config.min_inliers} and a "
            f"fraction >= {config.min_inlier_ratio})", n, n_inliers,
        )
    R = cv2.Rodrigues(rvec)[0]
    t = tvec.ravel()
    depths = points[inlier] @ R[2] + t[2]
    if np.any(depths <= 0):
        return _failure("PnP pose puts part of the object behind the camera", n, n_inliers)
    score = ratio * min(1.0, n_inliers / config.confident_inliers)
    rmse = float(np.sqrt(np.mean(errors[inlier] ** 2)))
    return PnPResult(make_pose(R, t), float(score), n, n_inliers, rmse)


def pose_from_nocs(
    nocs: np.ndarray,
    mask: np.ndarray,
    model: ObjectModel,
    crop: CropTransform,
    camera: PinholeCamera,
    config: PnPConfig,
) -> PnPResult:
    """Pose of `model` from the NOCS map (h, w, 3) and mask (h, w) bool of `crop`, a crop of `camera`'s image.

    The map's pixels go back to full-image pixels through the crop transform; the RANSAC threshold,
    given in crop pixels, is scaled by the crop's magnification.
    """
    nocs = checked_array(nocs, "H,W,3", "nocs")
    if nocs.shape[:2] != (crop.size[1], crop.size[0]):
        raise ValueError(f"nocs must be the crop's size {crop.size[1]}x{crop.size[0]}, got {nocs.shape[:2]}")
    points, uv_crop = nocs_correspondences(nocs, mask, model)
    magnification = crop.size[0] / (crop.box[2] - crop.box[0])
    return solve_pnp(points, crop.to_full(uv_crop), camera, config.ransac_threshold / magnification, config)

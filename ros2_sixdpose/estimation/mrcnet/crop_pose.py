"""Crop-relative pose coordinates of MRC-Net: allocentric rotation, centre offset and scale-free depth.

For a crop of side S px with intrinsics K_crop (crop pixels, centres at 0..S-1):
- offset o (2,): the projected object origin minus the crop centre ((S - 1) / 2), in crop sides;
- depth ratio q: z S / (f_crop diameter), the object's distance in units that do not depend on its size or
  on how large the crop was cut (close to the crop side over the object's extent, ~1 for a tight crop);
- allocentric rotation R_allo = axis_to_ray(ray)^T R_cam_obj with the ray through the crop centre: an
  object seen off the optical axis looks like the same object on the axis seen by a camera turned onto
  that ray, so the appearance of a crop depends on R_allo, not on where the crop was cut.
`CropPoseGrid` bins o (per axis) and log q; each bin carries a residual in bin widths, as in MRC-Net's
translation head (Li et al. 2024), which classifies the image centre and the depth before regressing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.core.geometry import checked_array, make_pose
from ros2_sixdpose.estimation.retrieval.viewpoints import axis_to_ray


def crop_focal(K_crop: np.ndarray) -> float:
    """Geometric mean focal length (px) of a crop's intrinsics (3, 3)."""
    return float(np.sqrt(K_crop[0, 0] * K_crop[1, 1]))


def centre_ray_turn(K_crop: np.ndarray, size: int) -> np.ndarray:
    """(3, 3) camera turn taking the optical axis onto the ray through the crop's centre pixel."""
    centre = (size - 1) / 2.0
    return axis_to_ray(np.linalg.solve(checked_array(K_crop, "3,3", "K_crop"), [centre, centre, 1.0]))


def encode_pose(T_cam_obj: np.ndarray, K_crop: np.ndarray, size: int, diameter: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(R_allo (3, 3), offset (2,) crop sides, depth ratio q) of T_cam_obj (4, 4) m in a crop of side `size`."""
    T = checked_array(T_cam_obj, "4,4", "T_cam_obj")
    t = T[:3, 3]
    if t[2] <= 0:
        raise ValueError(f"the object must lie in front of the camera, got z = {t[2]}")
    uv = (K_crop @ t)[:2] / t[2]
    offset = (uv - (size - 1) / 2.0) / size
    q = t[2] * size / (crop_focal(K_crop) * diameter)
    return centre_ray_turn(K_crop, size).T @ T[:3, :3], offset, float(q)


def decode_pose(R_allo: np.ndarray, offset: np.ndarray, q: float, K_crop: np.ndarray, size: int, diameter: float) -> np.ndarray:
    """T_cam_obj (4, 4) m from the crop-relative coordinates `encode_pose` returns."""
    uv = np.asarray(offset, dtype=np.float64) * size + (size - 1) / 2.0
    z = q * crop_focal(K_crop) * diameter / size
    t = z * np.linalg.solve(K_crop, [uv[0], uv[1], 1.0])
    return make_pose(centre_ray_turn(K_crop, size) @ R_allo, t)


@dataclass(frozen=True)
class CropPoseGrid:
    """Bins of the centre offset (per axis) and of log depth ratio; residuals are in bin widths, [-0.5, 0.5]."""

    offset_bins: int = 8
    offset_range: float = 0.4  # offsets in [-r, r] crop sides (clamped beyond)
    depth_bins: int = 12
    depth_range: tuple[float, float] = (0.4, 2.0)  # q range, log-spaced

    def __post_init__(self) -> None:
        low, high = self.depth_range
        if self.offset_bins < 1 or self.depth_bins < 1 or self.offset_range <= 0 or not 0 < low < high:
            raise ValueError(f"bad CropPoseGrid {self}")

    def _edges(self, kind: str) -> tuple[float, float, int]:
        if kind == "offset":
            return -self.offset_range, self.offset_range, self.offset_bins
        return float(np.log(self.depth_range[0])), float(np.log(self.depth_range[1])), self.depth_bins

    def encode(self, value: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(bin (*,) int64, residual (*,) in bin widths) of offsets (kind 'offset') or depth ratios ('depth')."""
        low, high, count = self._edges(kind)
        x = np.log(value) if kind == "depth" else np.asarray(value, dtype=np.float64)
        position = (np.clip(x, low, high - 1e-9) - low) / (high - low) * count
        index = np.floor(position).astype(np.int64)
        return index, position - index - 0.5

    def decode(self, index: np.ndarray, residual: np.ndarray, kind: str) -> np.ndarray:
        """Values (*,) from bins (*,) and residuals (*,) in bin widths (the inverse of `encode` inside the range)."""
        low, high, count = self._edges(kind)
        x = low + (np.asarray(index) + 0.5 + np.asarray(residual)) * (high - low) / count
        return np.exp(x) if kind == "depth" else x

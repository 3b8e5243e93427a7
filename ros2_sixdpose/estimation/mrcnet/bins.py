"""Rotation bins of MRC-Net: an equal-area sphere grid of viewing directions x in-plane angles.

Directions are the pixel centres of a HEALPix grid (Gorski et al. 2005, ring scheme): 12 nside^2 cells of
equal area. MRC-Net (Li et al. 2024) uses nside 4 (192 directions) x 24 in-plane angles = 4608 bins; this
CPU-sized version defaults to nside 2 (48 directions, ~29 deg apart) x 12 angles (30 deg) = 576 bins, so
that a classifier trained for an hour sees each bin a few dozen times; the residual stage covers the
larger half-bin (~15 deg). The centres are computed here (a dozen lines of the published ring formulae)
rather than with healpy, which would bring astropy along for one function.

A bin rotation is the allocentric R_cam_obj of a camera that looks at the object's origin from direction
`d` (object frame), its image turned by the in-plane angle `a`: R = Rz(a) @ R_view(d). R_view takes the
object's z axis as "up", which makes it equivariant under turns about z (R_view(Rz d) = R_view(d) Rz^T);
HEALPix is invariant under quarter turns about z, so a quarter-turn (or half-turn) symmetry about the
model's z axis maps bins exactly onto bins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.core.geometry import checked_array


def healpix_directions(nside: int) -> np.ndarray:
    """Unit vectors (12 nside^2, 3) at the centres of the HEALPix cells (ring scheme), north to south."""
    if nside < 1:
        raise ValueError(f"nside must be >= 1, got {nside}")
    z, phi = [], []
    for ring in range(1, 4 * nside):
        if ring < nside:  # north polar cap: 4 ring cells
            count, zr, shift = 4 * ring, 1.0 - ring**2 / (3.0 * nside**2), 0.5
        elif ring <= 3 * nside:  # equatorial belt: 4 nside cells, alternate rings shifted by half a cell
            count, zr, shift = 4 * nside, 4.0 / 3.0 - 2.0 * ring / (3.0 * nside), 0.5 * ((ring - nside + 1) % 2)
        else:  # south polar cap mirrors the north one
            south = 4 * nside - ring
            count, zr, shift = 4 * south, -(1.0 - south**2 / (3.0 * nside**2)), 0.5
        z += [zr] * count
        phi += list((np.arange(count) + shift) * 2.0 * np.pi / count)
    z, phi = np.array(z), np.array(phi)
    r = np.sqrt(1.0 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def view_rotation(directions: np.ndarray) -> np.ndarray:
    """R_cam_obj (*, 3, 3) of cameras on `directions` (*, 3) (object frame, unit, not along z) looking at the origin.

    The camera's z axis points at the origin (-d); its y axis (image down) is the object's -z projected
    onto the image plane, so the object's z axis points up in the image.
    """
    d = np.asarray(directions, dtype=np.float64)
    z_cam = -d / np.linalg.norm(d, axis=-1, keepdims=True)
    x_cam = np.cross(z_cam, [0.0, 0.0, 1.0])
    norm = np.linalg.norm(x_cam, axis=-1, keepdims=True)
    if np.any(norm < 1e-9):
        raise ValueError("a viewing direction along the object's z axis has no defined 'up'")
    x_cam /= norm
    y_cam = np.cross(z_cam, x_cam)
    return np.stack([x_cam, y_cam, z_cam], axis=-2)


def inplane_turn(angles: np.ndarray) -> np.ndarray:
    """Rotations (*, 3, 3) about the camera's optical axis by `angles` (*,) radians."""
    a = np.asarray(angles, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(a.shape + (3, 3))
    R[..., 0, 0], R[..., 0, 1], R[..., 1, 0], R[..., 1, 1], R[..., 2, 2] = c, -s, s, c, 1.0
    return R


@dataclass(frozen=True)
class RotationBins:
    """The bin grid: `nside` HEALPix directions x `inplane` angles; bin index = direction * inplane + angle."""

    nside: int = 2
    inplane: int = 12

    def __post_init__(self) -> None:
        if self.nside < 1 or self.inplane < 1:
            raise ValueError(f"need nside >= 1 and inplane >= 1, got {self.nside}, {self.inplane}")
        directions = healpix_directions(self.nside)
        angles = np.arange(self.inplane) * 2.0 * np.pi / self.inplane
        R = inplane_turn(angles)[None] @ view_rotation(directions)[:, None]
        object.__setattr__(self, "_rotations", R.reshape(-1, 3, 3))

    @property
    def count(self) -> int:
        """Number of bins."""
        return 12 * self.nside**2 * self.inplane

    @property
    def rotations(self) -> np.ndarray:
        """(count, 3, 3) allocentric R_cam_obj at the bin centres."""
        return self._rotations  # type: ignore[attr-defined]

    def rotation(self, index: int | np.ndarray) -> np.ndarray:
        """Centre rotation(s) (*, 3, 3) of bin `index` (*,)."""
        index = np.asarray(index)
        if np.any(index < 0) or np.any(index >= self.count):
            raise ValueError(f"bin index must be in [0, {self.count}), got {index}")
        return self.rotations[index]

    def nearest(self, R: np.ndarray) -> np.ndarray:
        """Index (*,) of the bin whose centre is the smallest rotation away from R (*, 3, 3) (no symmetry)."""
        R = checked_array(R, "*,3,3", "R")
        # trace(R_bin^T R) = 1 + 2 cos(angle): the largest trace is the closest bin.
        traces = np.einsum("bij,...ij->...b", self.rotations, R)
        return np.argmax(traces, axis=-1)


def symmetric_vertex_distances(
    R_bins: np.ndarray, R_gt: np.ndarray, points: np.ndarray, symmetries: np.ndarray
) -> np.ndarray:
    """RMS vertex distance (B,) m between each R_bins (B, 3, 3) and R_gt (3, 3), the smallest over `symmetries`.

    ADD-S-like: min over S of sqrt(mean_p |R_bin p - R_gt (S_R p + S_t)|^2) for model points (P, 3) m and
    symmetry transforms (K, 4, 4) (identity included); translation is left out (rotation bins only). The
    squared mean needs only the points' mean and second moment, so a torus's ~130 sampled symmetries x 576
    bins cost milliseconds (the mean of norms took seconds per crop).
    """
    R_bins = checked_array(R_bins, "B,3,3", "R_bins")
    R_gt = checked_array(R_gt, "3,3", "R_gt")
    points = checked_array(points, "P,3", "points")
    symmetries = checked_array(symmetries, "K,4,4", "symmetries")
    mean = points.mean(axis=0)
    moment = points.T @ points / len(points)
    # mean_p |D p - c|^2 = tr(D M D^T) - 2 c.(D mean) + |c|^2 with D = R_bin - R_gt S_R, c = R_gt S_t.
    D = R_bins[:, None] - (R_gt @ symmetries[:, :3, :3])[None]  # (B, K, 3, 3)
    c = symmetries[:, :3, 3] @ R_gt.T  # (K, 3)
    squared = np.einsum("bkij,jl,bkil->bk", D, moment, D) - 2.0 * np.einsum("ki,bkij,j->bk", c, D, mean) \
        + (c**2).sum(axis=1)[None]
    return np.sqrt(np.maximum(squared, 0.0).min(axis=1))


def soft_labels(distances: np.ndarray, sigma: float) -> np.ndarray:
    """Bin probabilities (B,) proportional to exp(-(distance / sigma)^2 / 2) for vertex distances (B,) m.

    Equal distances (bins equivalent under a symmetry) get equal mass.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    logits = -0.5 * (np.asarray(distances, dtype=np.float64) / sigma) ** 2
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()

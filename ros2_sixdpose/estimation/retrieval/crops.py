"""Scale- and position-normalised crops of one object's mask and colour, optionally turned in the image plane.

A crop is the square around the bounding box of the (turned) mask, its side the box's longer side, resized
to S x S: the object fills the crop whatever its distance and position, so a detection and a template
compare pixel by pixel. Turning the query by -a and comparing it with the bank's upright templates is the
same as comparing it with templates turned by +a (`viewpoints.inplane_rotation`), and 36 warps of one query
cost far less than 36 x V turned templates.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class NormalisedCrops:
    """Crops of one mask at A in-plane angles (S = crop side).

    rgb: (A, S, S, 3) uint8, zero off the mask.
    mask: (A, S, S) bool.
    centre: (A, 2) float64, the crop centre in the turned image frame, full-image pixels.
    side: (A,) float64, the crop side in full-image pixels.
    pivot: (2,) float64, full-image pixel about which the image was turned.
    angles: (A,) float64 radians; crop a shows the image turned by -angles[a] about `pivot`.
    """

    rgb: np.ndarray
    mask: np.ndarray
    centre: np.ndarray
    side: np.ndarray
    pivot: np.ndarray
    angles: np.ndarray


def rotation_2d(angle: float) -> np.ndarray:
    """(2, 2) rotation of pixel offsets (u right, v down) by `angle` radians from +u towards +v."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def normalised_crops(rgb: np.ndarray, mask: np.ndarray, angles: np.ndarray, size: int) -> NormalisedCrops:
    """Crops (see `NormalisedCrops`) of the object whose visible pixels are `mask` (H, W) bool in `rgb` (H, W, 3).

    For each angle a the image is turned by -a about the mask's box centre, then cut to the square around
    the turned mask's box. Raises ValueError for an empty mask or one of another size than `rgb`.
    """
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask is {mask.shape}, image is {rgb.shape[:2]}")
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("the mask is empty: no pixel to retrieve a pose from")
    points = np.stack([cols, rows], axis=1).astype(np.float64)
    pivot = (points.min(axis=0) + points.max(axis=0)) / 2
    # The turned box of the pixel centres is the turned box of their convex hull: a few dozen points.
    points = cv2.convexHull(points.astype(np.float32))[:, 0].astype(np.float64)
    angles = np.atleast_1d(np.asarray(angles, dtype=np.float64))
    masked = np.where(mask[..., None], rgb, 0).astype(np.uint8)
    mask_u8 = mask.astype(np.uint8)
    out_rgb = np.empty((len(angles), size, size, 3), np.uint8)
    out_mask = np.empty((len(angles), size, size), bool)
    centres = np.empty((len(angles), 2))
    sides = np.empty(len(angles))
    for a, angle in enumerate(angles):
        R = rotation_2d(-angle)
        turned = (points - pivot) @ R.T + pivot
        # Pixel centres span the box; its edges lie half a pixel further out.
        low, high = turned.min(axis=0) - 0.5, turned.max(axis=0) + 0.5
        centre, side = (low + high) / 2, float((high - low).max())
        scale = size / side
        # Full-image pixel p -> turned p' = pivot + R (p - pivot) -> crop q = scale (p' - centre) + (size - 1) / 2.
        M = np.empty((2, 3))
        M[:, :2] = scale * R
        M[:, 2] = scale * (pivot - R @ pivot - centre) + (size - 1) / 2
        out_rgb[a] = cv2.warpAffine(masked, M, (size, size), flags=cv2.INTER_LINEAR)
        out_mask[a] = cv2.warpAffine(mask_u8, M, (size, size), flags=cv2.INTER_NEAREST) > 0
        centres[a], sides[a] = centre, side
    return NormalisedCrops(out_rgb, out_mask, centres, sides, pivot, angles)

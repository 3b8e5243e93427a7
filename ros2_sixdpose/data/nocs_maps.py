"""NOCS map files: `<scene>/nocs/<im_id:06d>.png`, the visible surface of every annotated object in object coordinates.

Encoding: a 16-bit RGB PNG (channels in R, G, B order as images are everywhere in the package). A pixel
showing an annotated object holds `1 + round(nocs * 65534)` per channel, where `nocs` in [0, 1]^3 is
`ObjectModel.points_to_nocs` of the surface point seen there (model coordinates normalised by the model's
bounding box from models_info.json); every other pixel is 0. The offset keeps 0 free to mean "no object",
so a surface point on the bounding box's minimum corner stays valid. Resolution is 1/65534 of the box per
axis (a few micrometres for the objects here). Which object a pixel belongs to is in the mask_visib files.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["NOCS_LEVELS", "encode_nocs", "decode_nocs", "write_nocs", "read_nocs"]

NOCS_LEVELS = 65534  # code values 1..65535 span NOCS 0..1


def encode_nocs(nocs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """NOCS (H, W, 3) float in [0, 1] and validity (H, W) bool -> (H, W, 3) uint16 codes (0 = no object)."""
    nocs = np.asarray(nocs)
    valid = np.asarray(valid, dtype=bool)
    if nocs.ndim != 3 or nocs.shape[2] != 3 or valid.shape != nocs.shape[:2]:
        raise ValueError(f"nocs must be (H, W, 3) and valid (H, W), got {nocs.shape} and {valid.shape}")
    codes = 1.0 + np.round(np.clip(nocs, 0.0, 1.0) * NOCS_LEVELS)
    return np.where(valid[..., None], codes, 0.0).astype(np.uint16)


def decode_nocs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint16 codes -> (NOCS (H, W, 3) float32 in [0, 1], 0 where invalid; valid (H, W) bool)."""
    codes = np.asarray(codes)
    if codes.ndim != 3 or codes.shape[2] != 3 or codes.dtype != np.uint16:
        raise ValueError(f"NOCS codes must be (H, W, 3) uint16, got {codes.shape} {codes.dtype}")
    valid = np.all(codes > 0, axis=2)
    nocs = (codes.astype(np.float32) - 1.0) / NOCS_LEVELS
    nocs[~valid] = 0.0
    return nocs, valid


def write_nocs(path: str | Path, nocs: np.ndarray, valid: np.ndarray) -> None:
    """Write a NOCS map (H, W, 3) in [0, 1] with validity (H, W) as a 16-bit RGB PNG (see the module docstring)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: NOCS maps are 16-bit PNG files; use a .png suffix")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(encode_nocs(nocs, valid), cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the NOCS map")


def read_nocs(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a NOCS map file: (NOCS (H, W, 3) float32 in [0, 1], valid (H, W) bool)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: NOCS map not found")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 3 or raw.shape[2] != 3 or raw.dtype != np.uint16:
        shape = None if raw is None else (raw.shape, raw.dtype)
        raise ValueError(f"{path}: not a 16-bit 3-channel NOCS PNG (got {shape})")
    return decode_nocs(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB))

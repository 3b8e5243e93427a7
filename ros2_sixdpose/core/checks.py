"""Checks of values the stages take in: colour images, masks, and numbers read from BOP JSON files (errors name what was wrong)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class BopFormatError(ValueError):
    """A BOP file exists but its content is malformed; the message names the file and the field."""


def number_list(path: Path, where: str, key: str, value: Any, count: int) -> np.ndarray:
    """`value` checked to be a list of `count` finite numbers (a bare number when count is 1), as float64 (count,)."""
    values = [value] if count == 1 and not isinstance(value, list) else value
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise BopFormatError(f"{path}: {where}: '{key}' must be a list of {count} numbers, got {value!r}")
    if len(values) != count:
        raise BopFormatError(f"{path}: {where}: '{key}' has {len(values)} values, expected {count}")
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise BopFormatError(f"{path}: {where}: '{key}' has non-finite values: {value!r}")
    return array


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Return `rgb` if it is a non-empty (H, W, 3) uint8 image, else raise ValueError saying what was received."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"rgb must be a numpy array (H, W, 3) uint8, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must have shape (H, W, 3), got {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8, got {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"rgb is empty: shape {rgb.shape}")
    return rgb


def mask_box(mask: np.ndarray) -> np.ndarray:
    """(4,) float64 (x0, y0, x1, y1) box of the True pixels of an (H, W) mask (x1, y1 exclusive); zeros if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros(4)
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)

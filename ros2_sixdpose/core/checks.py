"""Checks of values read from BOP JSON files (models_info, scene ground truth, results), errors naming file and field."""
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

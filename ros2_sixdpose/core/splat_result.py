"""What a Gaussian render gives back (`SplatRender`), shared by `GaussianRenderer` and its backends."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Alpha above which a pixel counts as covered (its depth is reported, it is in the silhouette).
ALPHA_COVERED = 0.5


@dataclass
class SplatRender:
    """One rendered object on black.

    rgb: (H, W, 3) float32 in [0, 1], premultiplied by alpha (black background).
    alpha: (H, W) float32 in [0, 1], accumulated opacity.
    depth: (H, W) float32, metres, alpha-weighted expected camera z where alpha > 0.5, else 0.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray


# cos of the angle past 90 deg up to which a Gaussian with a known normal still counts as facing the camera.
BACKFACE_SLACK = 0.2


def finish_depth(weighted_depth: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Expected z (H, W) float32 from sum(w z) and alpha, 0 where alpha <= ALPHA_COVERED."""
    covered = alpha > ALPHA_COVERED
    depth = np.zeros_like(alpha, dtype=np.float32)
    depth[covered] = weighted_depth[covered] / alpha[covered]
    return depth

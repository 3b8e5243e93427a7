"""Gaussian-splatting renderer of `GaussianModel`s: one interface, a CPU backend and a CUDA backend.

`GaussianRenderer.render(obj_id, T_cam_obj, K, width, height)` gives colour, alpha and expected depth of
one object, in the project's camera convention (OpenCV; pixel (u, v) centred at integer (u, v), as the mesh
`Renderer`). The backends:
- "cuda": `gsplat.rasterization`, gsplat's tile rasteriser; needs an NVIDIA GPU.
- "cpu": the project's own rasteriser (splat_gl.py): gsplat's rasteriser is a CUDA kernel only, so on a
  machine without CUDA (this one, CI, most robot PCs) the footprints are drawn as depth-sorted, alpha-blended
  quads through OpenGL (Mesa's llvmpipe on EGL), after the EWA projection of splat_projection.py, which
  reproduces gsplat's.
"auto" takes CUDA when torch sees a GPU and gsplat's kernels load, else the CPU backend.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.core.gaussians import GaussianModel

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "cpu", "cuda")
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


def cuda_available() -> bool:
    """True when torch sees a CUDA device and gsplat imports."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


class GaussianRenderer:
    """Renders `GaussianModel`s keyed by obj_id; a context manager that closes its backend."""

    def __init__(self, models: Mapping[int, GaussianModel], backend: str = "auto") -> None:
        """Upload every model to the chosen backend ("auto", "cpu" or "cuda")."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
        if backend == "auto":
            backend = "cuda" if cuda_available() else "cpu"
        if backend == "cuda":
            if not cuda_available():
                raise ValueError("backend 'cuda' needs torch with a CUDA device and gsplat; use 'cpu' or 'auto'")
            from ros2_sixdpose.core.splat_cuda import CudaSplatBackend as Backend
        else:
            from ros2_sixdpose.core.splat_cpu import CpuSplatBackend as Backend
        for obj_id, model in models.items():
            if not isinstance(model, GaussianModel):
                raise ValueError(f"models[{obj_id}] must be a GaussianModel, got {type(model).__name__}")
        self.backend = backend
        self._impl = Backend({int(k): v for k, v in models.items()})
        logger.debug("Gaussian renderer: backend %s, %d models", backend, len(models))

    @property
    def object_ids(self) -> tuple[int, ...]:
        """Ids of the uploaded models."""
        return self._impl.object_ids

    def render(self, obj_id: int, T_cam_obj: np.ndarray, K: np.ndarray, width: int, height: int) -> SplatRender:
        """Render object `obj_id` at T_cam_obj (4, 4) m seen by K (3, 3) into a width x height image."""
        if int(obj_id) not in self._impl.object_ids:
            raise ValueError(f"unknown obj_id {obj_id}; renderer has {sorted(self._impl.object_ids)}")
        T = np.asarray(T_cam_obj, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f"T_cam_obj must be a finite (4, 4) matrix, got shape {T.shape}")
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"K must be a finite (3, 3) pinhole matrix with fx, fy > 0, got {K.tolist()}")
        for value in (width, height):
            if not isinstance(value, (int, np.integer)) or not 0 < value <= 8192:
                raise ValueError(f"image size must be integers in [1, 8192], got {width!r} x {height!r}")
        return self._impl.render(int(obj_id), T, K, int(width), int(height))

    def close(self) -> None:
        """Free the backend's resources; idempotent."""
        self._impl.close()

    def __enter__(self) -> "GaussianRenderer":
        """The renderer itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the renderer."""
        self.close()


def finish_depth(weighted_depth: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Expected z (H, W) float32 from sum(w z) and alpha, 0 where alpha <= ALPHA_COVERED."""
    covered = alpha > ALPHA_COVERED
    depth = np.zeros_like(alpha, dtype=np.float32)
    depth[covered] = weighted_depth[covered] / alpha[covered]
    return depth

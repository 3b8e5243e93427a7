"""Gaussian-splatting renderer of `GaussianModel`s: one interface, a CPU backend and a CUDA backend.

`GaussianRenderer.render(obj_id, T_cam_obj, K, width, height)` gives colour, alpha and expected depth of
one object, in the project's camera convention (OpenCV; pixel (u, v) centred at integer (u, v), as the mesh
`Renderer`). The backends:
- "cuda": `gsplat.rasterization`, gsplat's tile rasteriser; needs an NVIDIA GPU.
- "cpu": the project's own rasteriser (splat_cpu.py): gsplat's rasteriser is a CUDA kernel only, so on a
  machine without CUDA (this one, CI, most robot PCs) the EWA projection of splat_projection.py (gsplat's
  maths, tested against its pure-torch reference) feeds a numba-compiled copy of gsplat's per-pixel
  front-to-back compositing.
Both render gsplat's "antialiased" mode (opacity compensated for the 0.3 px^2 low-pass dilation).
"auto" takes CUDA when torch sees a GPU and gsplat's kernels load, else the CPU backend.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from ros2_sixdpose.core.gaussians import GaussianModel
from ros2_sixdpose.core.splat_result import ALPHA_COVERED, SplatRender

__all__ = ["ALPHA_COVERED", "BACKENDS", "GaussianRenderer", "SplatRender", "cuda_available"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "cpu", "cuda")


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

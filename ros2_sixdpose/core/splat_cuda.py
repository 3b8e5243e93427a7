"""CUDA backend of `GaussianRenderer`: gsplat's own rasteriser (`gsplat.rasterization`), models kept on the GPU.

Imported only when the CUDA backend is chosen, so gsplat's kernels are never needed on a CPU-only machine.
It draws what the CPU backend draws: the same Gaussians (those facing away skipped when normals are known),
the project's pixel convention (gsplat centres pixels at +0.5, hence `gsplat_K`), expected depth.
"""
from __future__ import annotations

import numpy as np
import torch
from gsplat import rasterization

from ros2_sixdpose.core.gaussians import GaussianModel
from ros2_sixdpose.core.splat_result import BACKFACE_SLACK, SplatRender, finish_depth
from ros2_sixdpose.core.splat_projection import NEAR, gsplat_K


class CudaSplatBackend:
    """Each model's tensors on the CUDA device; one `gsplat.rasterization` call per render."""

    def __init__(self, models: dict[int, GaussianModel]) -> None:
        """Upload every model."""
        self._device = torch.device("cuda")
        self._models = {obj_id: self._upload(m) for obj_id, m in models.items()}

    @property
    def object_ids(self) -> tuple[int, ...]:
        """Ids of the models."""
        return tuple(self._models)

    def _upload(self, model: GaussianModel) -> dict[str, torch.Tensor | int | None]:
        """The model's arrays as float32 CUDA tensors."""
        def gpu(array: np.ndarray | None) -> torch.Tensor | None:
            return None if array is None else torch.as_tensor(array, dtype=torch.float32, device=self._device)

        return {"means": gpu(model.means), "quats": gpu(model.quats), "scales": gpu(model.scales),
                "opacities": gpu(model.opacities), "sh": gpu(model.sh), "normals": gpu(model.normals),
                "sh_degree": model.sh_degree}

    @torch.no_grad()
    def render(self, obj_id: int, T: np.ndarray, K: np.ndarray, width: int, height: int) -> SplatRender:
        """Rasterise one model with gsplat ("RGB+ED", antialiased mode as the CPU backend, black background)."""
        m = self._models[obj_id]
        viewmat = torch.as_tensor(T, dtype=torch.float32, device=self._device)
        keep = slice(None)
        if m["normals"] is not None:
            center = -viewmat[:3, :3].T @ viewmat[:3, 3]
            view = m["means"] - center
            keep = (m["normals"] * view).sum(-1) < BACKFACE_SLACK * view.norm(dim=-1)
        colors, alphas, _ = rasterization(
            m["means"][keep], m["quats"][keep], m["scales"][keep], m["opacities"][keep], m["sh"][keep],
            viewmat[None], torch.as_tensor(gsplat_K(K), dtype=torch.float32, device=self._device)[None],
            width, height, near_plane=NEAR, sh_degree=m["sh_degree"], render_mode="RGB+ED", packed=False,
            rasterize_mode="antialiased",
        )
        out = colors[0].cpu().numpy()
        alpha = np.ascontiguousarray(alphas[0, ..., 0].cpu().numpy())
        # gsplat's "ED" is already divided by alpha; finish_depth wants sum(w z).
        return SplatRender(rgb=np.ascontiguousarray(out[..., :3]), alpha=alpha,
                           depth=finish_depth(out[..., 3] * alpha, alpha))

    def close(self) -> None:
        """Drop the GPU tensors."""
        self._models.clear()

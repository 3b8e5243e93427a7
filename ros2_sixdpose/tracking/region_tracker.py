"""The region-based tracker: per frame, correspondence iterations over decreasing line scales, each followed by
regularised Newton steps, then a histogram update (the loop of SRT3D, Stoiber et al. IJCV 2022).

`RegionTracker` keeps one sparse viewpoint model per object (built once from the mesh, `model.py`) and one
`RegionModality` per tracked instance (its colour histograms are the instance's appearance).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.tracking.base import FrameRefiner, RefinedPose
from ros2_sixdpose.tracking.model import SparseViewModel, load_or_build_models
from ros2_sixdpose.tracking.optimizer import apply_variation, newton_step
from ros2_sixdpose.tracking.region import RegionModality, project_view
from ros2_sixdpose.tracking.settings import RegionConfig

logger = logging.getLogger(__name__)


class RegionTracker(FrameRefiner):
    """Region-based per-frame refiner over the sparse viewpoint models of `models` (see the module docstring)."""

    method = "region"

    def __init__(self, models: Mapping[int, ObjectModel], config: RegionConfig | None = None,
                 cache_dir: Path | None = None, progress: bool = False) -> None:
        """Every object's sparse viewpoint model, from `cache_dir` where cached there, else built."""
        self.config = config or RegionConfig()
        self.views: dict[int, SparseViewModel] = load_or_build_models(models, self.config, cache_dir, progress)

    def start(self, obj_id: int, rgb: np.ndarray, camera: PinholeCamera, T_cam_obj: np.ndarray) -> RegionModality:
        """A new instance's modality, its histograms learnt from `rgb` at its initial pose."""
        if obj_id not in self.views:
            raise ValueError(f"unknown obj_id {obj_id}; the tracker has models of {sorted(self.views)}")
        modality = RegionModality(self.views[obj_id], self.config)
        modality.learn(rgb, T_cam_obj, camera.K)
        return modality

    def track(self, state: RegionModality, rgb: np.ndarray, camera: PinholeCamera, T_cam_obj: np.ndarray,
              others: Sequence[tuple[int, np.ndarray]] = ()) -> RefinedPose:
        """The pose in `rgb` reached from T_cam_obj (4, 4), its score, and the histograms updated at it; lines and
        pixels that the silhouettes of `others` nearer the camera cover are left out."""
        K = camera.K
        T = np.asarray(T_cam_obj, dtype=np.float64)
        occlusion = self.occlusion_mask(T, camera, others)
        for iteration in range(len(self.config.scales)):
            lines = state.correspondences(rgb, T, K, iteration, occlusion)
            if len(lines.index) < 6:
                break  # too few lines to pin six degrees of freedom: keep the pose, the score tells
            for _ in range(self.config.n_update_iterations):
                gradient, hessian = state.gradient_hessian(lines, T, K)
                T = apply_variation(T, newton_step(gradient, hessian, self.config))
        contrast, visible = state.score(rgb, T, K, occlusion)
        if visible > 0:
            state.learn(rgb, T, K, occlusion)
        return RefinedPose(T, contrast * visible, visible)

    def copy_state(self, state: RegionModality) -> RegionModality:
        """The modality with its own histograms (the sparse viewpoint model, read-only, is shared)."""
        return state.copy()

    def occlusion_mask(self, T: np.ndarray, camera: PinholeCamera,
                   others: Sequence[tuple[int, np.ndarray]]) -> np.ndarray | None:
        """(H, W) bool: the silhouettes (closest view's contour polygons) of the `others` nearer than T, or None."""
        nearer = [(obj_id, T_o) for obj_id, T_o in others if obj_id in self.views and T_o[2, 3] < T[2, 3]]
        if not nearer:
            return None
        mask = np.zeros((camera.height, camera.width), dtype=np.uint8)
        for obj_id, T_o in nearer:
            model = self.views[obj_id]
            uv = project_view(model, model.closest_view(T_o), T_o, camera.K).uv
            cv2.fillPoly(mask, [np.round(uv).astype(np.int32)], 1)
        return mask.astype(bool)

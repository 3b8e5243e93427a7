"""GS-Pose's render-and-compare refiner (Cai et al. 2024), solved by Levenberg-Marquardt on a CPU.

For each detection: cut a square crop around it; gather starting poses (the estimator's and any the
hypothesis source adds, e.g. retrieved templates); score each with one render at the coarse crop size;
refine the best few by LM over a pose delta (`lm.py`) and keep the best by score; refine that one's
180-degree flips a little too, as a silhouette can hardly tell them apart, and keep the best by score;
refine the winner at the fine crop size. The refined estimate's score is the final render-vs-image
similarity (`compare.score`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ros2_sixdpose.core.camera import CropTransform, PinholeCamera, square_box
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.refinement.base import PoseRefiner
from ros2_sixdpose.refinement.compare import CompareConfig, Observation, observe, residuals, score
from ros2_sixdpose.refinement.lm import PoseDelta, levenberg_marquardt
from ros2_sixdpose.refinement.views import ViewRenderer

logger = logging.getLogger(__name__)

# Extra pose hypotheses for a detection: [(T_cam_obj (4, 4), prior score)] from e.g. template retrieval.
HypothesisSource = Callable[[np.ndarray, PinholeCamera, Detection], list[tuple[np.ndarray, float]]]


@dataclass
class RenderCompareConfig:
    """Settings of the render-and-compare refiner (config/refiner.yaml)."""

    crop_scale: float = 1.4  # crop side / the detection box's longer side
    coarse_size: int = 64  # px; LM on the surviving hypotheses at this crop size
    fine_size: int = 96  # px; LM on the best one at this size, and the final score
    keep_hypotheses: int = 3  # how many of the scored hypotheses get the coarse LM
    coarse_iterations: int = 15
    fine_iterations: int = 10
    flips: bool = True  # also try the best coarse pose turned 180 deg about each model axis through its centre
    flip_iterations: int = 5  # coarse LM iterations for each flip
    compare: CompareConfig = field(default_factory=CompareConfig)

    def __post_init__(self) -> None:
        if not (self.crop_scale > 1.0 and 16 <= self.coarse_size <= self.fine_size and self.keep_hypotheses >= 1
                and self.coarse_iterations >= 0 and self.fine_iterations >= 0):
            raise ValueError(
                "need crop_scale > 1, 16 <= coarse_size <= fine_size, keep_hypotheses >= 1 and iterations >= 0, got "
                f"{self.crop_scale}, {self.coarse_size}, {self.fine_size}, {self.keep_hypotheses}, "
                f"{self.coarse_iterations}, {self.fine_iterations}"
            )


@dataclass(frozen=True)
class _Crop:
    """One detection's crop at one size: its intrinsics and what is observed in it."""

    K: np.ndarray  # (3, 3)
    size: int
    obs: Observation


def _flips(T: np.ndarray, center: np.ndarray) -> list[np.ndarray]:
    """T (4, 4) turned 180 deg about each model axis through the model point `center` (3,)."""
    out = []
    for axis in np.eye(3):
        R_flip = 2.0 * np.outer(axis, axis) - np.eye(3)  # rotation by pi about `axis`
        F = np.eye(4)
        F[:3, :3] = R_flip
        F[:3, 3] = center - R_flip @ center
        out.append(T @ F)
    return out


class RenderCompareRefiner(PoseRefiner):
    """Refines each detection's pose by matching renders of its model to the crop (see the module docstring)."""

    method = "gs_refine"

    def __init__(
        self,
        views: ViewRenderer,
        models: dict[int, ObjectModel],
        config: RenderCompareConfig | None = None,
        hypotheses: HypothesisSource | None = None,
    ) -> None:
        self.views = views
        self.models = models
        self.config = config or RenderCompareConfig()
        self.hypotheses = hypotheses

    def refine(
        self,
        rgb: np.ndarray,
        camera: PinholeCamera,
        detections: Sequence[Detection],
        estimates: Sequence[PoseEstimate],
        which: Collection[int] | None = None,
    ) -> list[PoseEstimate]:
        """One refined estimate per detection (see `PoseRefiner.refine`)."""
        if len(detections) != len(estimates):
            raise ValueError(f"got {len(detections)} detections but {len(estimates)} estimates")
        out = []
        for i, (detection, estimate) in enumerate(zip(detections, estimates)):
            if which is not None and i not in which:
                out.append(estimate)
                continue
            others = np.zeros(rgb.shape[:2], dtype=bool)
            for j, other in enumerate(detections):
                if j != i:
                    others |= other.mask
            out.append(self._refine_one(rgb, camera, detection, estimate, others))
        return out

    def _crop(self, rgb: np.ndarray, camera: PinholeCamera, detection: Detection, others: np.ndarray,
              size: int) -> _Crop:
        """The detection's square crop at `size` px; crop pixels beyond the image count as claimed by others."""
        crop = CropTransform(tuple(square_box(detection.box, self.config.crop_scale)), (size, size))
        K = crop.K_crop(camera.K)
        # An object cut by the image's border goes on beyond it: there the mask's absence says nothing.
        outside = ~crop.warp(np.ones(rgb.shape[:2], dtype=bool), cv2.INTER_NEAREST)
        obs = observe(crop.warp(rgb), crop.warp(detection.mask, cv2.INTER_NEAREST),
                      crop.warp(others, cv2.INTER_NEAREST) | outside, K, self.config.compare)
        return _Crop(K, size, obs)

    def _residual_fn(self, obj_id: int, crop: _Crop, delta: PoseDelta) -> Callable[[np.ndarray], np.ndarray]:
        """x (6,) -> residual vector of the render at `delta.pose(x)`."""
        colour = self.config.compare.shading_weight > 0

        def fn(x: np.ndarray) -> np.ndarray:
            view = self.views.render_view(obj_id, delta.pose(x), crop.K, crop.size, colour)
            return residuals(view, crop.obs, self.config.compare)
        return fn

    def _lm(self, obj_id: int, crop: _Crop, T: np.ndarray, iterations: int) -> np.ndarray:
        """The pose LM reaches from T at one crop size."""
        model = self.models[obj_id]
        center = np.asarray(model.bbox_min) + np.asarray(model.bbox_size) / 2.0
        delta = PoseDelta.for_crop(T, center, model.diameter / 2.0, crop.K[0, 0])
        result = levenberg_marquardt(self._residual_fn(obj_id, crop, delta), np.zeros(6), max_iterations=iterations)
        return delta.pose(result.x)

    def _score(self, obj_id: int, crop: _Crop, T: np.ndarray) -> float:
        """Similarity of the render at T with the crop (`compare.score`)."""
        view = self.views.render_view(obj_id, T, crop.K, crop.size)
        return score(view, crop.obs, self.config.compare)

    def _refine_one(self, rgb: np.ndarray, camera: PinholeCamera, detection: Detection,
                    estimate: PoseEstimate, others: np.ndarray) -> PoseEstimate:
        """The refined estimate of one detection, or `estimate` unchanged when there is nothing to start from."""
        obj_id = detection.object_id
        if obj_id not in self.models or not detection.mask.any():  # nothing to compare a render with
            return estimate
        model = self.models[obj_id]
        center = np.asarray(model.bbox_min) + np.asarray(model.bbox_size) / 2.0
        starts: list[np.ndarray] = []
        if estimate.found:
            starts.append(estimate.T_cam_obj)
        if self.hypotheses is not None:
            try:
                starts += [T for T, _ in self.hypotheses(rgb, camera, detection)]
            except ValueError as exc:  # e.g. a mask too small to retrieve from: refine the estimate alone
                logger.debug("object %d: no retrieved starts (%s)", obj_id, exc)
        if not starts:
            return estimate
        coarse = self._crop(rgb, camera, detection, others, self.config.coarse_size)
        ranked = sorted(starts, key=lambda T: -self._score(obj_id, coarse, T))[: self.config.keep_hypotheses]
        refined = [self._lm(obj_id, coarse, T, self.config.coarse_iterations) for T in ranked]
        best = max(refined, key=lambda T: self._score(obj_id, coarse, T))
        if self.config.flips:
            # The winner's 180-degree flips share its silhouette closely (a mug upside down, a box face turned):
            # refine each a little and let the score (shading, detail) decide.
            flipped = [self._lm(obj_id, coarse, T, self.config.flip_iterations) for T in _flips(best, center)]
            best = max([best, *flipped], key=lambda T: self._score(obj_id, coarse, T))
        fine = self._crop(rgb, camera, detection, others, self.config.fine_size)
        T = self._lm(obj_id, fine, best, self.config.fine_iterations)
        method = self.refined_method(estimate) if estimate.found else self.method
        return PoseEstimate(obj_id, T, self._score(obj_id, fine, T), method)

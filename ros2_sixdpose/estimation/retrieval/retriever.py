"""Top-k initial poses of a detection by retrieval from the object's template bank (the refiner's hypotheses)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.checks import check_rgb
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.retrieval.bank import BankConfig, TemplateBank
from ros2_sixdpose.estimation.retrieval.crops import NormalisedCrops, normalised_crops
from ros2_sixdpose.estimation.retrieval.translation import DEPTH_SOURCES, TemplateMatch, pose_from_match
from ros2_sixdpose.estimation.retrieval.viewpoints import inplane_rotation

logger = logging.getLogger(__name__)

SCORERS = ("silhouette", "learned")
# Symmetries are sampled at this fraction of the diameter for telling hypotheses apart (coarser than the
# metrics' 0.01: ~60 turns per continuous axis keep the check fast and are far finer than the separation).
_SYMMETRY_STEP = 0.05


@dataclass
class RetrievalConfig:
    """Settings of retrieval (`config/estimator_retrieval.yaml`, key `retrieval`)."""

    # silhouette: training-free mask IoU (the default: needs no weights); learned: the rotation-aware encoder,
    # better on the held-out split (docs/retrieval_study.md) and what config/estimator_retrieval.yaml picks.
    scorer: str = "silhouette"
    weights: str = "weights/retrieval_encoder.pt"  # encoder of the "learned" scorer
    # Learned scorer: share of the mask IoU blended into its score (val split: top-1 ADD(-S) 0.61 / 0.63 at
    # 0 / 0.6, within 15 degrees 0.66 / 0.67).
    silhouette_weight: float = 0.6
    models_dir: str = "assets/models"
    cache_dir: str = "out/retrieval_banks"  # banks and their embeddings are cached here ("": made at every start)
    inplane_steps: int = 36  # in-plane angles searched (10 degrees apart)
    depth_from: str = "area"  # "area": sqrt of the mask area ratio (GS-Pose); "box": ratio of the crop sides
    min_separation_deg: float = 10.0  # hypotheses closer than this (symmetry-aware) count as one
    threads: int = 1  # torch threads of the encoder
    bank: BankConfig = field(default_factory=BankConfig)

    def __post_init__(self) -> None:
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}, got {self.scorer!r}")
        if self.depth_from not in DEPTH_SOURCES:
            raise ValueError(f"depth_from must be one of {DEPTH_SOURCES}, got {self.depth_from!r}")
        if not 0.0 <= self.silhouette_weight <= 1.0:
            raise ValueError(f"silhouette_weight must be in [0, 1], got {self.silhouette_weight}")
        if self.inplane_steps < 1 or self.min_separation_deg < 0 or self.threads < 0:
            raise ValueError(
                "need inplane_steps >= 1, min_separation_deg >= 0, threads >= 0, got "
                f"{self.inplane_steps}, {self.min_separation_deg}, {self.threads}"
            )


class Scorer(Protocol):
    """Similarity of a query's turned crops to every template of an object."""

    name: str

    def scores(self, obj_id: int, crops: NormalisedCrops) -> np.ndarray:
        """(A, V) scores in [0, 1], higher is more alike, for A crops and the V templates of `obj_id`."""


class Hypothesis(NamedTuple):
    """One retrieved pose: T_cam_obj (4, 4) m and its retrieval score in [0, 1]."""

    T_cam_obj: np.ndarray
    score: float


class Retriever:
    """Retrieves initial poses of detections from template banks with a `Scorer`."""

    def __init__(
        self, models: Mapping[int, ObjectModel], banks: Mapping[int, TemplateBank], scorer: Scorer,
        config: RetrievalConfig,
    ) -> None:
        self.models = dict(models)
        self.banks = dict(banks)
        self.scorer = scorer
        self.config = config
        self.angles = np.arange(config.inplane_steps) * 2 * np.pi / config.inplane_steps
        self._inplane = inplane_rotation(self.angles)
        self._symmetries = {
            obj_id: model.symmetry_transforms(_SYMMETRY_STEP)[:, :3, :3] for obj_id, model in self.models.items()
        }

    def hypotheses(
        self, rgb: np.ndarray, camera: PinholeCamera, detection: Detection, k: int
    ) -> list[Hypothesis]:
        """Up to k distinct poses of `detection` in `rgb` (H, W, 3) uint8, best first.

        Rotation from the template and in-plane angle, translation from the detection's mask. Raises
        ValueError for an unknown object, an empty mask or box, or an image of another size than the camera.
        """
        check_rgb(rgb)
        if rgb.shape[:2] != (camera.height, camera.width):
            raise ValueError(f"rgb is {rgb.shape[1]}x{rgb.shape[0]} but the camera is {camera.width}x{camera.height}")
        if detection.object_id not in self.banks:
            raise ValueError(f"object {detection.object_id} has no template bank (objects: {sorted(self.banks)})")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if np.any(detection.box[2:] <= detection.box[:2]):
            raise ValueError(f"the detection box {detection.box.tolist()} has zero area")
        if detection.mask.shape != rgb.shape[:2]:
            raise ValueError(f"the detection mask is {detection.mask.shape}, the image {rgb.shape[:2]}")
        if not detection.mask.any():
            raise ValueError("the detection mask is empty: no pixel to retrieve a pose from")
        crops = normalised_crops(rgb, detection.mask, self.angles, self.config.bank.crop_size)
        scores = self.scorer.scores(detection.object_id, crops)
        bank = self.banks[detection.object_id]
        area = float(detection.mask.sum())
        hypotheses = []
        for a, v, score in self._distinct(detection.object_id, scores, k):
            match = TemplateMatch(
                R_template=bank.R_cam_obj[v], offset=bank.offset[v], side=float(bank.side[v]),
                area=float(bank.area[v]), focal=bank.focal, distance=bank.distance, centre=crops.centre[a],
                side_query=float(crops.side[a]), pivot=crops.pivot, angle=float(self.angles[a]), area_query=area,
            )
            hypotheses.append(Hypothesis(pose_from_match(match, camera, self.config.depth_from), float(score)))
        return hypotheses

    def _distinct(self, obj_id: int, scores: np.ndarray, k: int) -> list[tuple[int, int, float]]:
        """(angle index, view index, score) of the k best (A, V) `scores` at least min_separation apart."""
        flat = scores.ravel()
        # Far more candidates than k: neighbours of a peak score almost as high and are skipped.
        count = min(flat.size, 64 * k)
        top = np.argpartition(-flat, count - 1)[:count]
        top = top[np.argsort(-flat[top], kind="stable")]
        views = len(self.banks[obj_id])
        angle, view = np.divmod(top, views)
        R = self._inplane[angle] @ self.banks[obj_id].R_cam_obj[view]  # (C, 3, 3)
        symmetries = self._symmetries[obj_id]
        min_trace = 1.0 + 2.0 * np.cos(np.radians(self.config.min_separation_deg))
        free = np.ones(len(top), bool)
        chosen: list[tuple[int, int, float]] = []
        while len(chosen) < k and free.any():
            best = int(np.argmax(free))  # candidates are in decreasing score order
            chosen.append((int(angle[best]), int(view[best]), float(flat[top[best]])))
            # trace(R_best^T R_c S) = 1 + 2 cos(angle): candidates this close under some symmetry S are dropped.
            relative = R[best].T @ R[free]
            traces = np.einsum("cij,sji->cs", relative, symmetries).max(axis=1)
            free[np.flatnonzero(free)[traces > min_trace]] = False
        return chosen

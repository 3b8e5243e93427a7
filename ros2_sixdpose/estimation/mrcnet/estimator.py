"""`MrcNetEstimator`: MRC-Net's pose of each detection as a `PoseEstimator` (method "mrcnet").

Each detection is cut as in training (a square `crop_scale` times the box's longer side, resized to the
network's crop size); all crops of a frame go through the classifier as one batch, their classified poses
are rendered with the project's mesh renderer, and the residual stage corrects them.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ros2_sixdpose.core.camera import CropTransform, PinholeCamera, square_box
from ros2_sixdpose.core.checks import check_rgb
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate, PoseEstimator
from ros2_sixdpose.estimation.mrcnet.predictor import MrcPredictor, load_mrcnet
from ros2_sixdpose.paths import MODELS_DIR, WEIGHTS_DIR

logger = logging.getLogger(__name__)


@dataclass
class MrcNetEstimatorConfig:
    """Settings of the MRC-Net estimator (the `mrcnet` section of config/estimator*.yaml)."""

    weights: str = f"{WEIGHTS_DIR}/mrcnet.pt"
    models_dir: str = MODELS_DIR
    crop_scale: float = 1.2  # square crop side / longer side of the detection box, as in training
    residual: bool = True  # false: the classified pose without the residual stage (for studies)
    threads: int = 1  # torch intra-op threads (0 keeps torch's default); see NocsEstimatorConfig.threads

    def __post_init__(self) -> None:
        if self.crop_scale <= 0 or self.threads < 0:
            raise ValueError(f"need crop_scale > 0 and threads >= 0, got {self.crop_scale}, {self.threads}")


class MrcNetEstimator(PoseEstimator):
    """Classify, render, correct: one pose per detection of a known object."""

    method = "mrcnet"

    def __init__(self, predictor: MrcPredictor, config: MrcNetEstimatorConfig) -> None:
        self.predictor = predictor
        self.config = config
        self.last_seconds = 0.0  # wall time of the last `estimate` call

    @classmethod
    def from_config(cls, config: MrcNetEstimatorConfig, root: str | Path = ".") -> "MrcNetEstimator":
        """Load the weights and models named in `config` and open a renderer; relative paths against `root`."""
        if config.threads:
            torch.set_num_threads(config.threads)
        net, bins, grid, object_ids = load_mrcnet(Path(root) / config.weights)
        models = load_models(Path(root) / config.models_dir)
        known = [o for o in object_ids if o in models]
        renderer = Renderer({o: models[o] for o in known})
        return cls(MrcPredictor(net, bins, grid, object_ids, models, renderer), config)

    def estimate(self, rgb: np.ndarray, camera: PinholeCamera, detections: Sequence[Detection]) -> list[PoseEstimate]:
        """One `PoseEstimate` per detection, in order; the score is the top-5 rotation bins' probability."""
        check_rgb(rgb)
        if rgb.shape[:2] != (camera.height, camera.width):
            raise ValueError(f"rgb is {rgb.shape[1]}x{rgb.shape[0]} but the camera is {camera.width}x{camera.height}")
        start = time.perf_counter()
        estimates: list[PoseEstimate | None] = [None] * len(detections)
        known = set(self.predictor.object_ids) & set(self.predictor.models)
        size = self.predictor.size
        crops: list[tuple[int, CropTransform]] = []
        for index, detection in enumerate(detections):
            if detection.object_id not in known:
                reason = f"object {detection.object_id} is not among the estimator's objects {sorted(known)}"
            elif np.any(detection.box[2:] <= detection.box[:2]):
                reason = "empty detection box"
            else:
                box = square_box(detection.box, self.config.crop_scale)
                crops.append((index, CropTransform(tuple(box), (size, size))))
                continue
            logger.debug("object %d: no pose (%s)", detection.object_id, reason)
            estimates[index] = PoseEstimate.none(detection.object_id, self.method, reason)
        if crops:
            batch = np.stack([crop.warp(rgb, cv2.INTER_LINEAR) for _, crop in crops])
            K_crops = np.stack([crop.K_crop(camera.K) for _, crop in crops])
            obj_ids = [detections[index].object_id for index, _ in crops]
            prediction = self.predictor.predict(batch, K_crops, obj_ids, residual=self.config.residual)
            top5 = np.sort(prediction.rotation_probs, axis=1)[:, -5:].sum(axis=1)
            for row, (index, _) in enumerate(crops):
                score = float(np.clip(top5[row], 0.0, 1.0))
                estimates[index] = PoseEstimate(obj_ids[row], prediction.T_final[row], score, self.method)
        self.last_seconds = time.perf_counter() - start
        return [estimate for estimate in estimates if estimate is not None]

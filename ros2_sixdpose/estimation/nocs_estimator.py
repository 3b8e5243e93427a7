"""The dense-correspondence pose estimator: crop each detection, predict its NOCS map and mask, solve RANSAC-PnP.

Crops are cut as in training (`CropSpec` of the weights file: a square `scale` times the detection box's
longer side, resized with the core crop transform), all detections of a frame go through the network as
one batch, and each map is turned into a pose by `estimation.pnp` with the full camera.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ros2_sixdpose.core.camera import CropTransform, PinholeCamera, square_box
from ros2_sixdpose.core.checks import check_rgb
from ros2_sixdpose.core.objects import ObjectModel, load_models
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate, PoseEstimator
from ros2_sixdpose.estimation.bbdm import BBDM
from ros2_sixdpose.estimation.nocs_net import CropSpec, NocsNet
from ros2_sixdpose.estimation.nocs_weights import load_nocs_net
from ros2_sixdpose.estimation.pnp import PnPConfig, PnPResult, pose_from_nocs
from ros2_sixdpose.paths import MODELS_DIR, WEIGHTS_DIR

logger = logging.getLogger(__name__)


@dataclass
class NocsEstimatorConfig:
    """Settings of the NOCS estimator (the `nocs` section of config/estimator*.yaml)."""

    weights: str = f"{WEIGHTS_DIR}/nocs_pix2pix.pt"
    models_dir: str = MODELS_DIR
    sample_steps: int = 10  # BBDM sampler passes (0 keeps the weights file's setting); Pix2Pix ignores it
    mask_threshold: float = 0.5  # pixels whose predicted mask probability exceeds this give correspondences
    # Keep only correspondences inside the detection's own mask too (where it has one): pixels of a neighbour
    # or of the background that the network's mask lets through otherwise pull PnP off.
    use_detection_mask: bool = True
    # torch intra-op threads (0 keeps torch's default); with 2 threads on 2 cores shared with other processes,
    # OpenMP spin-waits stalled a 64x64 forward pass from 8 ms to 1 s (`sixdpose bench estimator`).
    threads: int = 1
    pnp: PnPConfig = field(default_factory=PnPConfig)

    def __post_init__(self) -> None:
        if self.sample_steps < 0 or not 0.0 < self.mask_threshold < 1.0 or self.threads < 0:
            raise ValueError(
                "need sample_steps >= 0, 0 < mask_threshold < 1 and threads >= 0, got "
                f"{self.sample_steps}, {self.mask_threshold}, {self.threads}"
            )


@dataclass
class CropResult:
    """Everything the estimator made for one detection.

    crop: the crop of the full image the network saw.
    nocs: (S, S, 3) float32 predicted NOCS in [0, 1].
    mask: (S, S) float32 predicted mask probability.
    pnp: the PnP outcome (None when the object is unknown).
    estimate: the pose estimate handed downstream.
    """

    crop: CropTransform | None
    nocs: np.ndarray | None
    mask: np.ndarray | None
    pnp: PnPResult | None
    estimate: PoseEstimate


@dataclass
class FrameTiming:
    """Seconds spent on one frame's detections: cropping, network, PnP."""

    crop: float = 0.0
    network: float = 0.0
    pnp: float = 0.0


class NocsEstimator(PoseEstimator):
    """NOCS map (Pix2Pix or BBDM) + RANSAC-PnP, for the objects of a models folder."""

    def __init__(self, net: NocsNet, crop: CropSpec, models: Mapping[int, ObjectModel], config: NocsEstimatorConfig):
        self.net = net.eval()
        self.crop_spec = crop
        self.models = dict(models)
        self.config = config
        self.method = f"nocs_{net.kind}"
        # Objects with both a model (to scale NOCS back to metres) and a place in the network's conditioning.
        self.known_objects = sorted(set(self.models) & set(net.object_ids))
        self.last_timing = FrameTiming()
        if config.sample_steps and isinstance(net, BBDM):
            # The sampler's step count is a run-time choice, not a property of the weights.
            net.bridge = dataclasses.replace(net.bridge, sample_steps=config.sample_steps)

    @classmethod
    def from_config(cls, config: NocsEstimatorConfig, root: str | Path = ".") -> "NocsEstimator":
        """Load the weights and the models named in `config`; relative paths are resolved against `root`."""
        if config.threads:
            torch.set_num_threads(config.threads)
        net, crop = load_nocs_net(Path(root) / config.weights)
        return cls(net, crop, load_models(Path(root) / config.models_dir), config)

    def estimate(self, rgb: np.ndarray, camera: PinholeCamera, detections: Sequence[Detection]) -> list[PoseEstimate]:
        """One `PoseEstimate` per detection, in order (no pose, with the reason, where PnP fails)."""
        return [result.estimate for result in self.run(rgb, camera, detections)]

    def run(self, rgb: np.ndarray, camera: PinholeCamera, detections: Sequence[Detection]) -> list[CropResult]:
        """Crops, predicted maps, PnP outcomes and estimates of every detection; timings in `last_timing`."""
        check_rgb(rgb)
        if rgb.shape[:2] != (camera.height, camera.width):
            raise ValueError(f"rgb is {rgb.shape[1]}x{rgb.shape[0]} but the camera is {camera.width}x{camera.height}")
        timing = FrameTiming()
        start = time.perf_counter()
        results: list[CropResult | None] = [None] * len(detections)
        crops: list[tuple[int, CropTransform]] = []
        for index, detection in enumerate(detections):
            if detection.object_id not in self.known_objects:
                reason = f"object {detection.object_id} is not among the estimator's objects {self.known_objects}"
                results[index] = CropResult(None, None, None, None, self._none(detection, reason))
                continue
            if np.any(detection.box[2:] <= detection.box[:2]):
                results[index] = CropResult(None, None, None, None, self._none(detection, "empty detection box"))
                continue
            box = square_box(detection.box, self.crop_spec.scale)
            crops.append((index, CropTransform(tuple(box), (self.crop_spec.size, self.crop_spec.size))))
        batch = np.stack([crop.warp(rgb, cv2.INTER_LINEAR) for _, crop in crops]) if crops else None
        timing.crop = time.perf_counter() - start
        if batch is not None:
            start = time.perf_counter()
            with torch.no_grad():
                tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
                obj_id = torch.tensor([detections[index].object_id for index, _ in crops])
                prediction = self.net.predict(tensor, obj_id)
            nocs = prediction.nocs.permute(0, 2, 3, 1).numpy()
            masks = prediction.mask[:, 0].numpy()
            timing.network = time.perf_counter() - start
            start = time.perf_counter()
            for row, (index, crop) in enumerate(crops):
                detection = detections[index]
                model = self.models[detection.object_id]
                pnp = pose_from_nocs(nocs[row], self._correspondence_mask(masks[row], detection, crop), model, crop,
                                     camera, self.config.pnp)
                if pnp.T_cam_obj is None:
                    estimate = self._none(detection, pnp.reason)
                else:
                    estimate = PoseEstimate(detection.object_id, pnp.T_cam_obj, pnp.score, self.method)
                results[index] = CropResult(crop, nocs[row], masks[row], pnp, estimate)
            timing.pnp = time.perf_counter() - start
        self.last_timing = timing
        return results

    def _correspondence_mask(self, predicted: np.ndarray, detection: Detection, crop: CropTransform) -> np.ndarray:
        """(S, S) bool: the crop pixels that give 2D-3D pairs, from the predicted mask probability (S, S)."""
        mask = predicted > self.config.mask_threshold
        if self.config.use_detection_mask and detection.mask.any():
            mask &= crop.warp(detection.mask, cv2.INTER_NEAREST)
        return mask

    def _none(self, detection: Detection, reason: str) -> PoseEstimate:
        """A no-pose estimate for `detection`, logged at debug level."""
        logger.debug("object %d: no pose (%s)", detection.object_id, reason)
        return PoseEstimate.none(detection.object_id, self.method, reason)

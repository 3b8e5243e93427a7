"""Starts from disturbed ground truth (`sixdpose eval --init perturbed`), so that refiners are compared from the same starts.

`PerturbedTruth` is the detector and the pose estimator of a pipeline at once: it detects with the split's ground-truth
masks (the oracle) and "estimates" each instance's ground-truth pose disturbed as RNNPose's tests do: every axis angle
uniform in [-rot_deg, rot_deg] (about the object's centre) and a shift uniform within +-(1, 1, 5) x trans_cm cm
(x, y, z). Draws are seeded per image (`seed`, scene id, image id), so every refiner gets the very same starts.
Evaluation code only: it reads the ground truth.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.perturb import TRANSLATION_PATTERN_M, perturb_pose
from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.detection.base import Detection, Detector, ImageKey
from ros2_sixdpose.detection.oracle import OracleDetector
from ros2_sixdpose.estimation.base import PoseEstimate, PoseEstimator


@dataclass(frozen=True)
class Perturbation:
    """Largest per-axis angle (degrees) and the scale of the 1 / 1 / 5 cm shift pattern (1.0: that pattern)."""

    rot_deg: float = 15.0
    trans_scale: float = 1.0

    def __post_init__(self) -> None:
        if not (0 <= self.rot_deg <= 180 and self.trans_scale >= 0):
            raise ValueError(f"need 0 <= rot_deg <= 180 and trans_scale >= 0, got {self.rot_deg}, {self.trans_scale}")

    @classmethod
    def parse(cls, text: str) -> "Perturbation":
        """'perturbed', 'perturbed:30' or 'perturbed:30,2' (degrees, then cm of the x / y shift: 2 -> 2 / 2 / 10 cm)."""
        name, _, values = text.partition(":")
        if name != "perturbed":
            raise ValueError(f"--init must be 'perturbed[:ROT_DEG[,TRANS_CM]]', got {text!r}")
        try:
            numbers = [float(v) for v in values.split(",")] if values else []
        except ValueError:
            raise ValueError(f"--init: ROT_DEG and TRANS_CM must be numbers, got {values!r}") from None
        if len(numbers) > 2:
            raise ValueError(f"--init takes at most ROT_DEG,TRANS_CM, got {values!r}")
        rot = numbers[0] if numbers else cls.rot_deg
        scale = numbers[1] / (100 * TRANSLATION_PATTERN_M[0]) if len(numbers) == 2 else cls.trans_scale
        return cls(rot, scale)

    @property
    def label(self) -> str:
        """'ground truth + 15 deg, 1 / 1 / 5 cm'."""
        cm = [100 * t * self.trans_scale for t in TRANSLATION_PATTERN_M]
        return f"ground truth + {self.rot_deg:g} deg, {cm[0]:g} / {cm[1]:g} / {cm[2]:g} cm"


class PerturbedTruth(Detector, PoseEstimator):
    """Ground-truth detections of a BOP split with their poses disturbed (see the module docstring)."""

    method = "perturbed"

    def __init__(self, split: BopSplit, models: Mapping[int, ObjectModel], perturbation: Perturbation,
                 seed: int = 0) -> None:
        self.oracle = OracleDetector(split.root, split.split)
        self.models, self.perturbation, self.seed = models, perturbation, seed
        self._starts: list[tuple[Detection, np.ndarray]] = []

    def detect(self, rgb: np.ndarray, key: ImageKey | None = None) -> list[Detection]:
        """The oracle's detections of image `key`; draws their starting poses for `estimate`."""
        pairs = self.oracle.detect_with_truth(rgb, key)
        rng = np.random.default_rng([self.seed, key.scene_id, key.im_id])
        scale = np.asarray(TRANSLATION_PATTERN_M) * self.perturbation.trans_scale
        self._starts = []
        for instance, detection in pairs:
            model = self.models[instance.obj_id]
            center = model.bbox_min + model.bbox_size / 2
            T = perturb_pose(instance.T_cam_obj, center, rng, self.perturbation.rot_deg, scale)
            self._starts.append((detection, T))
        return [detection for detection, _ in self._starts]

    def estimate(self, rgb: np.ndarray, camera: PinholeCamera,
                 detections: Sequence[Detection]) -> list[PoseEstimate]:
        """The disturbed ground truth of each detection `detect` returned last (score 1)."""
        starts = {id(detection): T for detection, T in self._starts}
        out = []
        for detection in detections:
            if id(detection) not in starts:
                raise ValueError("PerturbedTruth.estimate takes only the detections its own detect() returned last")
            out.append(PoseEstimate(detection.object_id, starts[id(detection)], 1.0, self.method))
        return out

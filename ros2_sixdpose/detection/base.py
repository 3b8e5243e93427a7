"""The detection stage: its result type, its configuration and its interface (`detection/factory.py` builds one).

A `Detector` takes one colour image and returns the object instances it finds, each as a `Detection` with
a full-image box and a full-image mask. Implementations are chosen by `DetectorConfig.type`:
`segmentation` (the learned detector, `detection/segmentation.py`) or `oracle` (ground-truth masks of a
BOP split, `detection/oracle.py`, for evaluating pose methods apart from detection).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.paths import MODELS_DIR, WEIGHTS_DIR

DETECTOR_TYPES = ("segmentation", "oracle")
MASK_REFINEMENTS = ("none", "grabcut")


@dataclass(frozen=True)
class Detection:
    """One detected object instance.

    Attributes:
        object_id: the object's id in the model registry (BOP obj_id).
        box: (4,) float64 (x0, y0, x1, y1), pixels of the full image; the mask's pixels lie in columns
            x0 .. x1 - 1 and rows y0 .. y1 - 1 (the convention of BOP's `bbox_visib` x, y, x + w, y + h).
        mask: (H, W) bool, full image size: the visible pixels of the instance.
        score: confidence in [0, 1].
    """

    object_id: int
    box: np.ndarray
    mask: np.ndarray
    score: float

    def __post_init__(self) -> None:
        box = np.asarray(self.box, dtype=np.float64)
        if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"box must be 4 finite values (x0, y0, x1, y1) with x1 >= x0, y1 >= y0, got {self.box!r}")
        mask = np.asarray(self.mask)
        if mask.ndim != 2 or mask.dtype != np.bool_:
            raise ValueError(f"mask must be (H, W) bool, got {mask.shape} {mask.dtype}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.score}")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))


@dataclass(frozen=True)
class ImageKey:
    """Which image of a BOP split a frame is; detectors that read annotations (the oracle) need it."""

    scene_id: int
    im_id: int


@dataclass
class DetectorConfig:
    """Configuration of the detection stage (`config/detector.yaml`)."""

    type: str = "segmentation"  # one of DETECTOR_TYPES
    models_dir: str = MODELS_DIR  # BOP models folder: the objects the learned detector must know
    # segmentation
    weights: str = f"{WEIGHTS_DIR}/detector.pt"
    input_scale: float = 0.5  # the network sees the image resized by this factor
    score_threshold: float = 0.32  # detections scoring less are dropped
    center_threshold: float = 0.1  # centre-heatmap peaks below this are not instances
    center_window: int = 7  # peaks are local maxima over this many output cells (odd)
    max_instances: int = 30  # at most this many centre peaks per image
    min_area: int = 64  # full-image pixels; smaller instance fragments are dropped
    full_score_area: int = 2400  # full-image pixels; smaller instances score less, by sqrt(area / this); 0: off
    threads: int = 1  # torch intra-op threads at inference (0 keeps torch's default); two stall on 2 shared cores
    # Masks re-labelled near their boundary by colour (detection/mask_refinement.py), for the learned detector.
    mask_refinement: str = "grabcut"  # one of MASK_REFINEMENTS
    grabcut_band: int = 4  # px either side of the mask boundary that GrabCut may re-label
    grabcut_iterations: int = 1  # validation: mask IoU the same as with 3 (0.904 mean), half the time
    # oracle
    dataset: str = ""  # BOP data set root whose ground truth the oracle returns
    split: str = ""  # split of that data set, e.g. "test"

    def __post_init__(self) -> None:
        if self.type not in DETECTOR_TYPES:
            raise ValueError(f"detector type must be one of {DETECTOR_TYPES}, got {self.type!r}")
        if not 0.05 <= self.input_scale <= 1.0:
            raise ValueError(f"input_scale must be in [0.05, 1], got {self.input_scale}")
        for name in ("score_threshold", "center_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.center_window < 1 or self.center_window % 2 == 0:
            raise ValueError(f"center_window must be a positive odd integer, got {self.center_window}")
        if self.mask_refinement not in MASK_REFINEMENTS:
            raise ValueError(f"mask_refinement must be one of {MASK_REFINEMENTS}, got {self.mask_refinement!r}")
        if self.grabcut_band < 1 or self.grabcut_iterations < 1:
            raise ValueError(f"need grabcut_band >= 1 and grabcut_iterations >= 1, got {self.grabcut_band}, "
                             f"{self.grabcut_iterations}")
        if self.max_instances < 1 or self.min_area < 0 or self.full_score_area < 0 or self.threads < 0:
            raise ValueError(
                f"need max_instances >= 1, min_area >= 0, full_score_area >= 0, threads >= 0; got "
                f"{self.max_instances}, {self.min_area}, {self.full_score_area}, {self.threads}"
            )


class Detector(abc.ABC):
    """Finds the known objects in a colour image."""

    @abc.abstractmethod
    def detect(self, rgb: np.ndarray, key: ImageKey | None = None) -> list[Detection]:
        """Detections in `rgb` (H, W, 3) uint8, highest score first.

        `key` names the image within a BOP split; learned detectors ignore it, the oracle requires it.
        Raises ValueError for an image that is not non-empty (H, W, 3) uint8.
        """

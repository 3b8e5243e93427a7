"""Detector evaluation on a BOP split: precision and recall at mask IoU 0.5, mean mask IoU, ms per frame.

Matching is one-to-one and greedy by score, per image and object: each detection, best first, takes the
unmatched ground-truth instance of its object with the highest mask IoU if that reaches the threshold.
Ground-truth instances less visible than `min_visib` (visib_fract) are not counted in recall, and a
detection that matches one of them is neither a true nor a false positive (as COCO treats its "ignore"
regions): finding a barely visible object is not an error, missing it is not scored.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from ros2_sixdpose.data.bop import BopSplit, read_mask, read_rgb
from ros2_sixdpose.detection.base import Detection, Detector, ImageKey

logger = logging.getLogger(__name__)

METRICS_FILE = "detector_metrics.json"


@dataclass
class GtMask:
    """One ground-truth instance: object id, visible mask (H, W) bool, visible fraction in [0, 1]."""

    obj_id: int
    mask: np.ndarray
    visib_fract: float


@dataclass
class EvalFrame:
    """One image of a BOP split with its ground truth."""

    key: ImageKey
    rgb: np.ndarray  # (H, W, 3) uint8
    gt: list[GtMask]


@dataclass
class ObjectCounts:
    """Matching counts of one object (or of all): true / false positives, ground truths, summed IoU of matches."""

    tp: int = 0
    fp: int = 0
    n_gt: int = 0
    iou_sum: float = 0.0

    def add(self, other: "ObjectCounts") -> None:
        """Accumulate another count into this one."""
        self.tp += other.tp
        self.fp += other.fp
        self.n_gt += other.n_gt
        self.iou_sum += other.iou_sum

    def summary(self) -> dict[str, Any]:
        """Counts plus precision, recall and mean IoU of matches (None where undefined)."""
        detections = self.tp + self.fp
        return {
            "n_gt": self.n_gt,
            "n_detections": detections,
            "tp": self.tp,
            "fp": self.fp,
            "precision": self.tp / detections if detections else None,
            "recall": self.tp / self.n_gt if self.n_gt else None,
            "mean_mask_iou": self.iou_sum / self.tp if self.tp else None,
        }


@dataclass
class DetectorMetrics:
    """What `evaluate` measured: overall and per-object summaries, and detector time per frame."""

    overall: dict[str, Any]
    per_object: dict[int, dict[str, Any]]
    n_images: int
    ms_per_frame: dict[str, float] = field(default_factory=dict)


def iter_frames(split: BopSplit, max_images: int | None = None) -> Iterator[EvalFrame]:
    """Images of a split with their ground-truth visible masks and visible fractions, scene by scene."""
    count = 0
    for scene_id in split.scene_ids():
        scene = split.read_scene(scene_id)
        if scene.gt_info is None:
            raise FileNotFoundError(f"{split.scene_gt_info_path(scene_id)}: needed for visib_fract")
        for im_id in sorted(scene.gt):
            if max_images is not None and count >= max_images:
                return
            gt = [
                GtMask(inst.obj_id, read_mask(split.mask_visib_path(scene_id, im_id, index)), info.visib_fract)
                for index, (inst, info) in enumerate(zip(scene.gt[im_id], scene.gt_info[im_id]))
            ]
            yield EvalFrame(ImageKey(scene_id, im_id), read_rgb(split.rgb_path(scene_id, im_id)), gt)
            count += 1


def mask_ious(detections: Sequence[Detection], gt: Sequence[GtMask]) -> np.ndarray:
    """(D, G) mask IoU of every detection with every ground-truth instance (0 across different objects)."""
    ious = np.zeros((len(detections), len(gt)))
    for d, det in enumerate(detections):
        for g, inst in enumerate(gt):
            if det.object_id != inst.obj_id:
                continue
            if det.mask.shape != inst.mask.shape:
                raise ValueError(f"detection mask is {det.mask.shape}, ground-truth mask is {inst.mask.shape}")
            union = np.count_nonzero(det.mask | inst.mask)
            ious[d, g] = np.count_nonzero(det.mask & inst.mask) / union if union else 0.0
    return ious


def match_frame(
    detections: Sequence[Detection], gt: Sequence[GtMask], min_visib: float, iou_threshold: float
) -> dict[int, ObjectCounts]:
    """Per-object counts of one image (greedy one-to-one matching by score; see the module docstring)."""
    counts: dict[int, ObjectCounts] = defaultdict(ObjectCounts)
    scored = [inst.visib_fract >= min_visib for inst in gt]
    for inst, is_scored in zip(gt, scored):
        counts[inst.obj_id].n_gt += int(is_scored)
    ious = mask_ious(detections, gt)
    for d, g in enumerate(greedy_match(ious, [det.score for det in detections], iou_threshold)):
        obj = counts[detections[d].object_id]
        if g < 0:
            obj.fp += 1
        elif scored[g]:
            obj.tp += 1
            obj.iou_sum += float(ious[d, g])
    return counts


def greedy_match(ious: np.ndarray, scores: Sequence[float], iou_threshold: float) -> np.ndarray:
    """(D,) int: the ground-truth index each detection matches, -1 for none (see the module docstring).

    Args:
        ious: (D, G) mask IoU of each detection with each ground-truth instance.
        scores: (D,) detection scores; the best detection picks first.
    """
    match = np.full(len(ious), -1)
    taken = np.zeros(ious.shape[1], dtype=bool)
    for d in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        candidates = np.where(~taken & (ious[d] >= iou_threshold), ious[d], -1.0)
        if candidates.size and candidates.max() >= 0:
            match[d] = int(np.argmax(candidates))
            taken[match[d]] = True
    return match


def evaluate(
    detector: Detector,
    frames: Iterator[EvalFrame] | Sequence[EvalFrame],
    min_visib: float = 0.3,
    iou_threshold: float = 0.5,
    progress: bool = False,
) -> DetectorMetrics:
    """Run `detector` on every frame and score it; time is measured around `detect` alone (no file reading)."""
    per_object: dict[int, ObjectCounts] = defaultdict(ObjectCounts)
    times = []
    for frame in tqdm(frames, desc="detector eval", unit="img", disable=not progress):
        start = time.perf_counter()
        detections = detector.detect(frame.rgb, frame.key)
        times.append(time.perf_counter() - start)
        for obj_id, counts in match_frame(detections, frame.gt, min_visib, iou_threshold).items():
            per_object[obj_id].add(counts)
    overall = ObjectCounts()
    for counts in per_object.values():
        overall.add(counts)
    ms = np.asarray(times) * 1000.0
    timing = {}
    if len(ms):
        timing = {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)), "mean": float(ms.mean())}
    return DetectorMetrics(
        overall=overall.summary(),
        per_object={obj_id: per_object[obj_id].summary() for obj_id in sorted(per_object)},
        n_images=len(times),
        ms_per_frame=timing,
    )

"""The region-based tracker's optimisation as a single-frame refiner, so it can be compared with the other refiners
from the same starts (`sixdpose study refine`) or used as the pipeline's refiner.

Each estimate starts a region modality whose colour histograms are learnt at the start pose, then the tracker's
per-frame optimisation (correspondence lines over decreasing scales, Newton steps, histogram update) runs `passes`
times on the same frame, as if the frame repeated. The other estimates of the frame nearer the camera are its
occluders, as in tracking. Without a detection mask the histograms learn from the start pose's silhouette: a wrong
start teaches them partly wrong colours, which is what this refiner meets in a tracker's first frame too.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.paths import resolve
from ros2_sixdpose.refinement.base import PoseRefiner
from ros2_sixdpose.tracking.region_tracker import RegionTracker
from ros2_sixdpose.tracking.settings import RegionConfig


@dataclass
class RegionRefinerConfig:
    """Passes of the region tracker's per-frame optimisation on the one frame, and its settings."""

    passes: int = 3
    cache_dir: str = "out/tracking_models"  # sparse viewpoint models cached here, as the tracker's
    settings: RegionConfig = field(default_factory=RegionConfig)

    def __post_init__(self) -> None:
        if self.passes < 1:
            raise ValueError(f"passes must be >= 1, got {self.passes}")


class RegionRefiner(PoseRefiner):
    """The region tracker run from each estimate on one frame (see the module docstring)."""

    method = "region"

    def __init__(self, tracker: RegionTracker, passes: int) -> None:
        self.tracker = tracker
        self.passes = passes

    @classmethod
    def from_config(cls, config: RegionRefinerConfig, models: Mapping[int, ObjectModel],
                    root: str | Path = ".") -> "RegionRefiner":
        """Sparse viewpoint models of `models` (cached under `config.cache_dir`, relative to `root`)."""
        cache = resolve(root, config.cache_dir) if config.cache_dir else None
        return cls(RegionTracker(models, config.settings, cache), config.passes)

    def refine(self, rgb: np.ndarray, camera: PinholeCamera, detections: Sequence[Detection],
               estimates: Sequence[PoseEstimate], which: Collection[int] | None = None) -> list[PoseEstimate]:
        """One refined estimate per detection (see `PoseRefiner.refine`); score = the tracker's (contour contrast x
        visible share), 0 where the object has no viewpoint model (returned unchanged, with the reason)."""
        if len(detections) != len(estimates):
            raise ValueError(f"got {len(detections)} detections but {len(estimates)} estimates")
        out = list(estimates)
        for i, estimate in enumerate(estimates):
            if (which is not None and i not in which) or not estimate.found:
                continue
            if estimate.object_id not in self.tracker.views:
                out[i] = replace(estimate, score=0.0, reason=f"object {estimate.object_id} has no viewpoint model")
                continue
            others = [(e.object_id, e.T_cam_obj) for j, e in enumerate(estimates) if j != i and e.found]
            state = self.tracker.start(estimate.object_id, rgb, camera, estimate.T_cam_obj)
            T = estimate.T_cam_obj
            for _ in range(self.passes):
                result = self.tracker.track(state, rgb, camera, T, others)
                T = result.T_cam_obj
            out[i] = PoseEstimate(estimate.object_id, T, result.score, self.refined_method(estimate))
        return out

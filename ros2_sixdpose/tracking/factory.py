"""Build the configured tracker (config/tracker.yaml): its per-frame refiner by name and its state machine."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ros2_sixdpose.config import load_config
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.detection.base import Detector, DetectorConfig
from ros2_sixdpose.detection.factory import make_detector
from ros2_sixdpose.paths import MODELS_DIR, resolve
from ros2_sixdpose.refinement.factory import RefinerConfig, make_refiner
from ros2_sixdpose.refinement.render_compare import RenderCompareConfig
from ros2_sixdpose.tracking.base import FrameRefiner
from ros2_sixdpose.tracking.per_object import PerObjectFrameRefiner, PerObjectTrackingConfig
from ros2_sixdpose.tracking.region_tracker import RegionTracker
from ros2_sixdpose.tracking.render_compare_tracker import RenderCompareTracker
from ros2_sixdpose.tracking.rnnpose_tracker import RNNPoseTracker
from ros2_sixdpose.tracking.settings import RegionConfig
from ros2_sixdpose.tracking.tracker import Tracker, TrackerConfig

FRAME_REFINERS = ("region", "render_compare", "rnnpose", "per_object")


def _tracking_refiner() -> RefinerConfig:
    """Render-and-compare as a tracking step: from the previous pose only, no flips, few LM iterations."""
    return RefinerConfig(retrieval_hypotheses=0, render_compare=RenderCompareConfig(
        keep_hypotheses=1, coarse_iterations=4, fine_iterations=3, flips=False))


@dataclass
class TrackingConfig:
    """Which per-frame refiner carries the tracks (`refiner`), its settings, and the state machine's."""

    # region: the region-based tracker (Stoiber et al.); render_compare: GS-Pose's render-and-compare from the
    # previous pose against each frame's detections (runs the detector every frame); rnnpose: RNNPose from the
    # previous pose (no detector); per_object: the refiner `per_object` names for each object.
    refiner: str = "region"
    models_dir: str = MODELS_DIR
    cache_dir: str = "out/tracking_models"  # sparse viewpoint models are cached here ("" builds them at every start)
    region: RegionConfig = field(default_factory=RegionConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    render_compare: RefinerConfig = field(default_factory=_tracking_refiner)
    detector_config: str = "config/detector.yaml"  # render_compare only: the per-frame detector
    # refiner rnnpose: its settings (config/refiner_rnnpose.yaml's)
    rnnpose: RefinerConfig = field(default_factory=lambda: RefinerConfig(type="rnnpose"))
    per_object: PerObjectTrackingConfig = field(default_factory=PerObjectTrackingConfig)  # refiner per_object only

    def __post_init__(self) -> None:
        if self.refiner not in FRAME_REFINERS:
            raise ValueError(f"tracking refiner must be one of {FRAME_REFINERS}, got {self.refiner!r}")
        if self.refiner == "per_object":
            self.per_object.check_methods(FRAME_REFINERS)


def make_frame_refiner(config: TrackingConfig, root: str | Path = ".", object_ids: Iterable[int] | None = None,
                       progress: bool = False, detector: Detector | None = None) -> FrameRefiner:
    """The per-frame refiner `config.refiner` names, for `object_ids` (default: every model); render_compare
    uses `detector` (default: one built from `config.detector_config`)."""
    models = load_models(resolve(root, config.models_dir), object_ids)
    if config.refiner == "per_object":
        ids = list(models)
        # Each method is built for the objects it carries only (the region tracker's viewpoint models cost time).
        refiners = {method: make_frame_refiner(dataclasses.replace(config, refiner=method), root,
                                               [ids[i] for i in indices], progress, detector)
                    for method, indices in config.per_object.group(ids).items()}
        return PerObjectFrameRefiner(refiners, config.per_object)
    if config.refiner == "rnnpose":
        return RNNPoseTracker(make_refiner(config.rnnpose, root))
    if config.refiner == "render_compare":
        if detector is None:
            detector = make_detector(load_config(DetectorConfig, resolve(root, config.detector_config)), root)
        return RenderCompareTracker(make_refiner(config.render_compare, root), detector, models)
    cache_dir = resolve(root, config.cache_dir) if config.cache_dir else None
    return RegionTracker(models, config.region, cache_dir, progress)


def make_tracker(config: TrackingConfig, root: str | Path = ".", object_ids: Iterable[int] | None = None,
                 progress: bool = False, detector: Detector | None = None) -> Tracker:
    """The tracker over the configured per-frame refiner, for `object_ids` (default: every model)."""
    models = load_models(resolve(root, config.models_dir), object_ids)
    return Tracker(make_frame_refiner(config, root, list(models), progress, detector), models, config.tracker)

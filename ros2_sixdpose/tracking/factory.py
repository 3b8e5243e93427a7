"""Build the configured tracker (config/tracker.yaml): its per-frame refiner by name and its state machine."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.paths import MODELS_DIR, resolve
from ros2_sixdpose.tracking.base import FrameRefiner
from ros2_sixdpose.tracking.region_tracker import RegionTracker
from ros2_sixdpose.tracking.settings import RegionConfig
from ros2_sixdpose.tracking.tracker import Tracker, TrackerConfig

FRAME_REFINERS = ("region",)


@dataclass
class TrackingConfig:
    """Which per-frame refiner carries the tracks (`refiner`), its settings, and the state machine's."""

    refiner: str = "region"  # region: the region-based tracker (Stoiber et al.)
    models_dir: str = MODELS_DIR
    cache_dir: str = "out/tracking_models"  # sparse viewpoint models are cached here ("" builds them at every start)
    region: RegionConfig = field(default_factory=RegionConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)

    def __post_init__(self) -> None:
        if self.refiner not in FRAME_REFINERS:
            raise ValueError(f"tracking refiner must be one of {FRAME_REFINERS}, got {self.refiner!r}")


def make_frame_refiner(config: TrackingConfig, root: str | Path = ".", object_ids: Iterable[int] | None = None,
                       progress: bool = False) -> FrameRefiner:
    """The per-frame refiner `config.refiner` names, for `object_ids` (default: every model)."""
    models = load_models(resolve(root, config.models_dir), object_ids)
    cache_dir = resolve(root, config.cache_dir) if config.cache_dir else None
    return RegionTracker(models, config.region, cache_dir, progress)


def make_tracker(config: TrackingConfig, root: str | Path = ".", object_ids: Iterable[int] | None = None,
                 progress: bool = False) -> Tracker:
    """The tracker over the configured per-frame refiner, for `object_ids` (default: every model)."""
    models = load_models(resolve(root, config.models_dir), object_ids)
    return Tracker(make_frame_refiner(config, root, list(models), progress), models, config.tracker)

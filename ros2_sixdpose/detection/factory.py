"""Build the configured detector by name (config/detector.yaml)."""
from __future__ import annotations

from pathlib import Path

from ros2_sixdpose.detection.base import Detector, DetectorConfig
from ros2_sixdpose.detection.mask_refinement import GrabCutDetector
from ros2_sixdpose.detection.oracle import OracleDetector
from ros2_sixdpose.detection.segmentation import SegmentationDetector


def make_detector(config: DetectorConfig, root: str | Path = ".") -> Detector:
    """Build the detector `config.type` names; relative paths in `config` are resolved against `root`."""
    root = Path(root)
    if config.type == "segmentation":
        detector = SegmentationDetector.from_config(config, root / config.weights, root / config.models_dir)
        if config.mask_refinement == "grabcut":
            return GrabCutDetector(detector, config.grabcut_band, config.grabcut_iterations)
        return detector
    if not config.dataset or not config.split:
        raise ValueError("the oracle detector needs 'dataset' and 'split' (a BOP split with mask_visib) in its config")
    return OracleDetector(root / config.dataset, config.split)

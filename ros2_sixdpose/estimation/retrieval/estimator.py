"""`RetrievalEstimator`: the top-1 retrieved pose of each detection as a `PoseEstimator` (method "retrieval")."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate, PoseEstimator
from ros2_sixdpose.estimation.retrieval.bank import load_or_build_banks
from ros2_sixdpose.estimation.retrieval.retriever import RetrievalConfig, Retriever, Scorer
from ros2_sixdpose.estimation.retrieval.silhouette import SilhouetteScorer

logger = logging.getLogger(__name__)


def make_retriever(config: RetrievalConfig, root: str | Path = ".") -> Retriever:
    """Load the models, their template banks (cached under `cache_dir`) and the configured scorer."""
    root = Path(root)
    models = load_models(root / config.models_dir)
    cache_dir = root / config.cache_dir if config.cache_dir else None
    banks = load_or_build_banks(models, config.bank, cache_dir)
    scorer: Scorer
    if config.scorer == "learned":
        from ros2_sixdpose.estimation.retrieval.embedding import EmbeddingScorer

        scorer = EmbeddingScorer.from_weights(
            root / config.weights, banks, config.threads, config.silhouette_weight, cache_dir
        )
    else:
        scorer = SilhouetteScorer(banks)
    return Retriever(models, banks, scorer, config)


class RetrievalEstimator(PoseEstimator):
    """Each detection's best retrieved pose; a detection retrieval cannot serve gets no pose and the reason."""

    method = "retrieval"

    def __init__(self, retriever: Retriever) -> None:
        self.retriever = retriever

    @classmethod
    def from_config(cls, config: RetrievalConfig, root: str | Path = ".") -> "RetrievalEstimator":
        """Build from settings; relative paths are resolved against `root`."""
        return cls(make_retriever(config, root))

    def estimate(self, rgb: np.ndarray, camera: PinholeCamera, detections: Sequence[Detection]) -> list[PoseEstimate]:
        """One `PoseEstimate` per detection, in order; the score is the retrieval score of the best template."""
        estimates = []
        for detection in detections:
            try:
                (best,) = self.retriever.hypotheses(rgb, camera, detection, 1)
            except ValueError as exc:
                logger.debug("object %d: no pose (%s)", detection.object_id, exc)
                estimates.append(PoseEstimate.none(detection.object_id, self.method, str(exc)))
                continue
            estimates.append(PoseEstimate(detection.object_id, best.T_cam_obj, best.score, self.method))
        return estimates

"""Build the configured pose estimator by name (config/estimator*.yaml)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ros2_sixdpose.estimation.base import PoseEstimator
from ros2_sixdpose.estimation.nocs_estimator import NocsEstimator, NocsEstimatorConfig
from ros2_sixdpose.estimation.retrieval.estimator import RetrievalEstimator
from ros2_sixdpose.estimation.retrieval.retriever import RetrievalConfig


@dataclass
class EstimatorConfig:
    """Which estimator to build (`type`) and the settings of each kind; only the chosen kind's are used."""

    type: str = "nocs"
    nocs: NocsEstimatorConfig = field(default_factory=NocsEstimatorConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)

    def __post_init__(self) -> None:
        if self.type not in ESTIMATORS:
            raise ValueError(f"estimator type must be one of {sorted(ESTIMATORS)}, got {self.type!r}")


# Estimator type -> builder(config, root). A new method adds one entry here and one settings field above.
ESTIMATORS: dict[str, Callable[[EstimatorConfig, Path], PoseEstimator]] = {
    "nocs": lambda config, root: NocsEstimator.from_config(config.nocs, root),
    "retrieval": lambda config, root: RetrievalEstimator.from_config(config.retrieval, root),
}


def make_estimator(config: EstimatorConfig, root: str | Path = ".") -> PoseEstimator:
    """Build the estimator `config.type` names; relative paths in `config` are resolved against `root`."""
    return ESTIMATORS[config.type](config, Path(root))

"""Build the configured pose estimator by name (config/estimator*.yaml)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ros2_sixdpose.estimation.base import PoseEstimator
from ros2_sixdpose.estimation.mrcnet.estimator import MrcNetEstimator, MrcNetEstimatorConfig
from ros2_sixdpose.estimation.nocs_estimator import NocsEstimator, NocsEstimatorConfig
from ros2_sixdpose.estimation.per_object import PerObjectConfig, PerObjectEstimator
from ros2_sixdpose.estimation.retrieval.estimator import RetrievalEstimator
from ros2_sixdpose.estimation.retrieval.retriever import RetrievalConfig


@dataclass
class EstimatorConfig:
    """Which estimator to build (`type`) and the settings of each kind; only the chosen kind's are used."""

    type: str = "nocs"
    nocs: NocsEstimatorConfig = field(default_factory=NocsEstimatorConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    mrcnet: MrcNetEstimatorConfig = field(default_factory=MrcNetEstimatorConfig)
    per_object: PerObjectConfig = field(default_factory=PerObjectConfig)  # type per_object: a method per object

    def __post_init__(self) -> None:
        if self.type not in ESTIMATORS:
            raise ValueError(f"estimator type must be one of {sorted(ESTIMATORS)}, got {self.type!r}")
        if self.type == "per_object":
            self.per_object.check_methods(ESTIMATORS)


def _per_object(config: EstimatorConfig, root: Path) -> PoseEstimator:
    """A `PerObjectEstimator` over one estimator per method named in `config.per_object`, each from its section."""
    estimators = {m: make_estimator(dataclasses.replace(config, type=m), root) for m in config.per_object.used_methods()}
    return PerObjectEstimator(estimators, config.per_object)


# Estimator type -> builder(config, root). A new method adds one entry here and one settings field above.
ESTIMATORS: dict[str, Callable[[EstimatorConfig, Path], PoseEstimator]] = {
    "nocs": lambda config, root: NocsEstimator.from_config(config.nocs, root),
    "retrieval": lambda config, root: RetrievalEstimator.from_config(config.retrieval, root),
    "mrcnet": lambda config, root: MrcNetEstimator.from_config(config.mrcnet, root),
    "per_object": _per_object,
}


def make_estimator(config: EstimatorConfig, root: str | Path = ".") -> PoseEstimator:
    """Build the estimator `config.type` names; relative paths in `config` are resolved against `root`."""
    return ESTIMATORS[config.type](config, Path(root))

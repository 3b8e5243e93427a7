"""Build the configured pose refiner by name (config/refiner.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.estimation.retrieval.estimator import make_retriever
from ros2_sixdpose.estimation.retrieval.retriever import RetrievalConfig
from ros2_sixdpose.refinement.base import PoseRefiner
from ros2_sixdpose.refinement.render_compare import RenderCompareConfig, RenderCompareRefiner
from ros2_sixdpose.refinement.views import MeshViews

REFINER_TYPES = ("none", "render_compare")


@dataclass
class RefinerConfig:
    """Which refiner to build (`type`; "none" for no refinement) and the settings of each kind."""

    type: str = "render_compare"
    models_dir: str = "assets/models"  # BOP models folder of the objects to refine
    # Retrieved templates as extra starting poses beside the estimator's (GS-Pose's initialisation); 0: none.
    retrieval_hypotheses: int = 5
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    render_compare: RenderCompareConfig = field(default_factory=RenderCompareConfig)

    def __post_init__(self) -> None:
        if self.type not in REFINER_TYPES:
            raise ValueError(f"refiner type must be one of {REFINER_TYPES}, got {self.type!r}")


def make_refiner(config: RefinerConfig, root: str | Path = ".") -> PoseRefiner | None:
    """The refiner `config.type` names (None for "none"); relative paths are resolved against `root`."""
    if config.type == "none":
        return None
    models = load_models(Path(root) / config.models_dir)
    hypotheses = None
    if config.retrieval_hypotheses > 0:
        retriever, k = make_retriever(config.retrieval, root), config.retrieval_hypotheses

        def hypotheses(rgb, camera, detection):
            return [tuple(h) for h in retriever.hypotheses(rgb, camera, detection, k)]
    return RenderCompareRefiner(MeshViews(Renderer(models)), models, config.render_compare, hypotheses)

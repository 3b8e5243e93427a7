"""Build the configured pose refiner by name (config/refiner.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.refinement.base import PoseRefiner
from ros2_sixdpose.refinement.render_compare import RenderCompareConfig, RenderCompareRefiner
from ros2_sixdpose.refinement.views import MeshViews

REFINER_TYPES = ("none", "render_compare")


@dataclass
class RefinerConfig:
    """Which refiner to build (`type`; "none" for no refinement) and the settings of each kind."""

    type: str = "render_compare"
    models_dir: str = "assets/models"  # BOP models folder of the objects to refine
    render_compare: RenderCompareConfig = field(default_factory=RenderCompareConfig)

    def __post_init__(self) -> None:
        if self.type not in REFINER_TYPES:
            raise ValueError(f"refiner type must be one of {REFINER_TYPES}, got {self.type!r}")


def make_refiner(config: RefinerConfig, root: str | Path = ".") -> PoseRefiner | None:
    """The refiner `config.type` names (None for "none"); relative paths are resolved against `root`."""
    if config.type == "none":
        return None
    models = load_models(Path(root) / config.models_dir)
    return RenderCompareRefiner(MeshViews(Renderer(models)), models, config.render_compare)

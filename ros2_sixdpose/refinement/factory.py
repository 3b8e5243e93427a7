"""Build the configured pose refiner by name (config/refiner.yaml)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ros2_sixdpose.core.gaussians import load_ply
from ros2_sixdpose.core.objects import load_models, model_file_name
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.core.splat import GaussianRenderer
from ros2_sixdpose.estimation.retrieval.estimator import make_retriever
from ros2_sixdpose.estimation.retrieval.retriever import RetrievalConfig
from ros2_sixdpose.paths import GAUSSIANS_DIR, MODELS_DIR, resolve
from ros2_sixdpose.refinement.base import PoseRefiner
from ros2_sixdpose.refinement.per_object import PerObjectRefiner, PerObjectRefinerConfig
from ros2_sixdpose.refinement.region import RegionRefiner, RegionRefinerConfig
from ros2_sixdpose.refinement.render_compare import RenderCompareConfig, RenderCompareRefiner
from ros2_sixdpose.refinement.rnnpose.refiner import RNNPoseConfig, RNNPoseRefiner, load_network
from ros2_sixdpose.refinement.views import GaussianViews, MeshViews, ViewRenderer

REFINER_TYPES = ("none", "render_compare", "rnnpose", "region", "per_object")
VIEWS = ("mesh", "gaussian")


@dataclass
class RefinerConfig:
    """Which refiner to build (`type`; "none" for no refinement) and the settings of each kind.

    rnnpose (config/refiner_rnnpose.yaml) renders with the mesh renderer and reads only models_dir and `rnnpose`;
    region (config/refiner_region.yaml) runs the region-based tracker on the one frame and reads models_dir and `region`;
    per_object builds each refiner `per_object` names from this same configuration and routes objects to them.
    """

    type: str = "render_compare"
    models_dir: str = MODELS_DIR  # BOP models folder of the objects to refine
    # What the refiner renders: "mesh" (OpenGL rasteriser) or "gaussian" (3D Gaussian objects, GS-Pose's model,
    # which also serves objects known only from posed images).
    views: str = "mesh"
    gaussians_dir: str = GAUSSIANS_DIR  # obj_XXXXXX.ply per object, for views "gaussian"
    # Retrieved templates as extra starting poses beside the estimator's (GS-Pose's initialisation); 0: none.
    retrieval_hypotheses: int = 5
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    render_compare: RenderCompareConfig = field(default_factory=RenderCompareConfig)
    rnnpose: RNNPoseConfig = field(default_factory=RNNPoseConfig)
    region: RegionRefinerConfig = field(default_factory=RegionRefinerConfig)
    per_object: PerObjectRefinerConfig = field(default_factory=PerObjectRefinerConfig)  # type per_object only

    def __post_init__(self) -> None:
        if self.type not in REFINER_TYPES:
            raise ValueError(f"refiner type must be one of {REFINER_TYPES}, got {self.type!r}")
        if self.type == "per_object":
            self.per_object.check_methods(REFINER_TYPES)
        if self.views not in VIEWS:
            raise ValueError(f"refiner views must be one of {VIEWS}, got {self.views!r}")
        if self.retrieval_hypotheses < 0:
            raise ValueError(f"retrieval_hypotheses must be >= 0, got {self.retrieval_hypotheses}")


def make_refiner(config: RefinerConfig, root: str | Path = ".") -> PoseRefiner | None:
    """The refiner `config.type` names (None for "none"); relative paths are resolved against `root`."""
    if config.type == "none":
        return None
    if config.type == "per_object":
        refiners = {m: make_refiner(dataclasses.replace(config, type=m), root) for m in config.per_object.used_methods()}
        return PerObjectRefiner(refiners, config.per_object)
    models = load_models(resolve(root, config.models_dir))
    if config.type == "rnnpose":
        return RNNPoseRefiner(load_network(resolve(root, config.rnnpose.weights)), Renderer(models), models,
                              config.rnnpose)
    if config.type == "region":
        return RegionRefiner.from_config(config.region, models, root)
    views: ViewRenderer
    if config.views == "gaussian":
        folder = resolve(root, config.gaussians_dir)
        views = GaussianViews(GaussianRenderer({k: load_ply(folder / model_file_name(k)) for k in models}))
    else:
        views = MeshViews(Renderer(models))
    hypotheses = None
    if config.retrieval_hypotheses > 0:
        retriever, k = make_retriever(config.retrieval, root), config.retrieval_hypotheses

        def hypotheses(rgb, camera, detection):
            return [tuple(h) for h in retriever.hypotheses(rgb, camera, detection, k)]
    return RenderCompareRefiner(views, models, config.render_compare, hypotheses)

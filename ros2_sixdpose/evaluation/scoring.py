"""Scoring of 6D pose estimates against ground truth: ADD(-S) recall and the BOP 2019+ average recalls.

Matching follows the BOP toolkit (Hodan et al., ECCV 2018 / ECCVW 2020): per image and object, only the
n best-scored estimates count, n being the number of ground-truth instances of that object kept for
evaluation; for each correctness threshold (and each VSD tau), estimates in decreasing score order each
take the not yet matched instance with the lowest error below the threshold. A recall is the fraction of
kept instances matched; a ground-truth pose without an estimate is a miss. AR_x is the recall averaged over
x's thresholds (and taus), AR the mean of AR_VSD, AR_MSSD and AR_MSPD.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ros2_sixdpose.core import metrics
from ros2_sixdpose.core.metrics import VSD_DELTA
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data.bop import BopSplit, GtInstance, PoseResult, image_size, read_depth
from ros2_sixdpose.evaluation import BOP_MIN_VISIB, METRICS

logger = logging.getLogger(__name__)

# Correctness thresholds of the normalised errors (see `Evaluator._pose_error`).
_THRESHOLDS = {
    "add": np.array([metrics.ADD_THRESHOLD]),
    "mssd": metrics.MSSD_THRESHOLDS,
    "mspd": metrics.MSPD_THRESHOLDS_PX,
    "vsd": metrics.VSD_THRESHOLDS,
}


@dataclass(frozen=True)
class EvalConfig:
    """What to compute and which ground truth counts."""

    metrics: tuple[str, ...] = METRICS
    min_visib: float = BOP_MIN_VISIB  # ground-truth instances with visib_fract below this are left out
    max_sym_disc_step: float = 0.01  # continuous symmetries sampled every 0.01 x diameter (as BOP)
    vsd_delta: float = VSD_DELTA  # m

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown or not self.metrics:
            raise ValueError(f"metrics must be a non-empty subset of {METRICS}, got {list(self.metrics)}")
        if not 0.0 <= self.min_visib <= 1.0:
            raise ValueError(f"min_visib must be in [0, 1], got {self.min_visib}")
        if not self.max_sym_disc_step > 0 or not self.vsd_delta > 0:
            raise ValueError(
                f"max_sym_disc_step and vsd_delta must be > 0, got {self.max_sym_disc_step}, {self.vsd_delta}"
            )


@dataclass(frozen=True)
class EvalImage:
    """Ground truth of one test image."""

    scene_id: int
    im_id: int
    K: np.ndarray  # (3, 3) float64, pixels
    width: int  # pixels
    height: int  # pixels
    gt: Sequence[GtInstance]
    visib_fract: Sequence[float] | None = None  # one per gt instance; None when unknown
    depth: np.ndarray | None = None  # (H, W) float32, metres, 0 = no measurement; needed for VSD


@dataclass(frozen=True)
class Scores:
    """Recalls over a set of ground-truth instances; None where the metric was not computed."""

    n_instances: int
    add_s_recall: float | None  # ADD-S for objects with any symmetry, ADD otherwise, at 0.1 x diameter
    ar_mssd: float | None
    ar_mspd: float | None
    ar_vsd: float | None
    ar: float | None  # mean of ar_vsd, ar_mssd, ar_mspd


@dataclass(frozen=True)
class EvalReport:
    """Scores over all kept instances and per object, with what was computed and why anything is missing."""

    overall: Scores
    per_object: dict[int, Scores]
    object_names: dict[int, str]
    n_images: int
    n_estimates: int  # estimates of the evaluated images, before keeping the n best per image and object
    config: EvalConfig
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The metrics.json content: overall scores at the top level, then per_object, settings and notes."""
        return {
            **asdict(self.overall),
            "per_object": {
                str(obj_id): {"name": self.object_names[obj_id], **asdict(scores)}
                for obj_id, scores in sorted(self.per_object.items())
            },
            "n_images": self.n_images,
            "n_estimates": self.n_estimates,
            "metrics": list(self.config.metrics),
            "min_visib": self.config.min_visib,
            "notes": list(self.notes),
        }

    def write_json(self, path: str | Path) -> None:
        """Write `to_dict()` as JSON to `path`, creating its folder."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def match_greedy(errors: np.ndarray, threshold: float) -> np.ndarray:
    """Ground-truth instances (G,) bool matched by estimates with errors (E, G), rows in decreasing score order.

    Each estimate in turn takes the unmatched instance with the lowest error strictly below `threshold`.
    """
    matched = np.zeros(errors.shape[1], dtype=bool)
    for row in errors:
        candidates = np.where(~matched & (row < threshold), row, np.inf)
        if candidates.size and np.isfinite(candidates.min()):
            matched[np.argmin(candidates)] = True
    return matched


class Evaluator:
    """Scores pose estimates of images against their ground truth for a set of object models."""

    def __init__(
        self, models: Mapping[int, ObjectModel], config: EvalConfig | None = None, renderer: Renderer | None = None
    ) -> None:
        """Keep the models; a renderer (for VSD) is created on first need unless one is given."""
        self.models = models
        self.config = EvalConfig() if config is None else config
        self._renderer = renderer
        self._owns_renderer = False
        self._points: dict[int, np.ndarray] = {}
        self._syms: dict[int, np.ndarray] = {}

    def close(self) -> None:
        """Release the renderer this evaluator created."""
        if self._owns_renderer and self._renderer is not None:
            self._renderer.close()
            self._renderer = None
            self._owns_renderer = False

    def __enter__(self) -> "Evaluator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def evaluate(
        self,
        images: Iterable[EvalImage],
        results: Iterable[PoseResult],
        notes: Sequence[str] = (),
        progress: bool = False,
        total: int | None = None,
    ) -> EvalReport:
        """Score `results` against `images`; `notes` are passed into the report; `progress` shows a tqdm bar."""
        by_image: dict[tuple[int, int], list[PoseResult]] = defaultdict(list)
        for res in results:
            by_image[(res.scene_id, res.im_id)].append(res)
        hits: dict[str, list[np.ndarray]] = {name: [] for name in self.config.metrics}
        obj_ids: list[int] = []
        seen: set[tuple[int, int]] = set()
        n_estimates = 0
        for image in tqdm(images, total=total, desc="eval", unit="image", disable=not progress):
            key = (image.scene_id, image.im_id)
            seen.add(key)
            estimates = by_image.get(key, [])
            n_estimates += len(estimates)
            for obj_id, image_hits in self._evaluate_image(image, estimates):
                obj_ids.append(obj_id)
                for name in hits:
                    hits[name].append(image_hits[name])
        unmatched = sum(len(v) for k, v in by_image.items() if k not in seen)
        if unmatched:
            logger.warning("%d estimates refer to images that are not in the evaluated set; ignored", unmatched)
        if not obj_ids:
            raise ValueError(
                f"no ground-truth instance to evaluate (min_visib={self.config.min_visib}); "
                "check the split and the visibility threshold"
            )
        per_object = {
            obj_id: self._scores({k: [h for h, o in zip(v, obj_ids) if o == obj_id] for k, v in hits.items()})
            for obj_id in sorted(set(obj_ids))
        }
        return EvalReport(
            overall=self._scores(hits),
            per_object=per_object,
            object_names={obj_id: self.models[obj_id].name for obj_id in per_object},
            n_images=len(seen),
            n_estimates=n_estimates,
            config=self.config,
            notes=list(notes),
        )

    def _evaluate_image(
        self, image: EvalImage, estimates: Sequence[PoseResult]
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Per kept ground-truth instance of one image: (obj_id, {metric: hits over thresholds (and taus)})."""
        gt = list(image.gt)
        visib = self._visibility(image, len(gt))
        if image.depth is not None and image.depth.shape != (image.height, image.width):
            raise ValueError(
                f"scene {image.scene_id} image {image.im_id}: depth has shape {image.depth.shape}, "
                f"expected ({image.height}, {image.width})"
            )
        for obj_id in sorted({inst.obj_id for inst in gt}):
            kept = [inst for inst, v in zip(gt, visib) if inst.obj_id == obj_id and v >= self.config.min_visib]
            if not kept:
                continue
            model = self._model(obj_id)
            ranked = sorted((e for e in estimates if e.obj_id == obj_id), key=lambda e: e.score, reverse=True)
            ranked = ranked[: len(kept)]
            per_metric = {name: self._hits(name, image, model, ranked, kept) for name in self.config.metrics}
            for index in range(len(kept)):
                yield obj_id, {name: h[index] for name, h in per_metric.items()}

    def _hits(
        self, name: str, image: EvalImage, model: ObjectModel, ranked: Sequence[PoseResult], kept: Sequence[GtInstance]
    ) -> np.ndarray:
        """Hits (G, V x T) of one metric: G instances, V error variants (VSD taus, else 1), T thresholds."""
        if name == "vsd":
            errors = self._vsd_errors(image, model, ranked, kept)
        else:
            error = self._pose_error(name, image, model)
            errors = np.array([[error(est.T_cam_obj, inst.T_cam_obj) for inst in kept] for est in ranked])
            errors = errors.reshape(len(ranked), len(kept), 1)
        columns = [match_greedy(errors[:, :, v], th) for v in range(errors.shape[2]) for th in _THRESHOLDS[name]]
        return np.stack(columns, axis=1)

    def _pose_error(
        self, name: str, image: EvalImage, model: ObjectModel
    ) -> Callable[[np.ndarray, np.ndarray], float]:
        """Error of metric `name` between an estimated and a true pose T_cam_obj (4, 4), normalised as BOP does.

        ADD(-S) and MSSD are divided by the diameter, MSPD is scaled to a 640 px wide image.
        """
        pts = self._pts(model)
        if name == "add":
            return lambda T_est, T_gt: metrics.add_s(T_est, T_gt, pts, model.is_symmetric) / model.diameter
        syms = self._sym(model)
        if name == "mssd":
            return lambda T_est, T_gt: metrics.mssd(*_split(T_est), *_split(T_gt), pts, syms) / model.diameter
        scale = metrics.MSPD_REFERENCE_WIDTH / image.width
        return lambda T_est, T_gt: metrics.mspd(*_split(T_est), *_split(T_gt), image.K, pts, syms) * scale

    def _vsd_errors(
        self, image: EvalImage, model: ObjectModel, ranked: Sequence[PoseResult], kept: Sequence[GtInstance]
    ) -> np.ndarray:
        """VSD errors (E, G, len(VSD_TAUS)), each pose rendered once; taus are fractions of the diameter."""
        errors = np.empty((len(ranked), len(kept), len(metrics.VSD_TAUS)))
        if not ranked:
            return errors
        depth_gt = [self._render_depth(image, model, inst.T_cam_obj) for inst in kept]
        for e, est in enumerate(ranked):
            depth_est = self._render_depth(image, model, est.T_cam_obj)
            for g, depth in enumerate(depth_gt):
                errors[e, g] = metrics.vsd(
                    depth_est, depth, image.depth, image.K, self.config.vsd_delta, metrics.VSD_TAUS,
                    normalized_by_diameter=True, diameter=model.diameter,
                )
        return errors

    def _scores(self, hits: Mapping[str, list[np.ndarray]]) -> Scores:
        """Recalls from per-instance hits of each computed metric."""
        n = len(next(iter(hits.values())))
        ar = {name: float(np.mean(np.stack(h))) for name, h in hits.items()}
        ar_all = None
        if all(name in ar for name in ("vsd", "mssd", "mspd")):
            ar_all = metrics.average_recall_bop(ar["vsd"], ar["mssd"], ar["mspd"])
        return Scores(
            n_instances=n,
            add_s_recall=ar.get("add"),
            ar_mssd=ar.get("mssd"),
            ar_mspd=ar.get("mspd"),
            ar_vsd=ar.get("vsd"),
            ar=ar_all,
        )

    def _visibility(self, image: EvalImage, n_gt: int) -> Sequence[float]:
        """Visible fractions of the image's instances (all 1 when unknown and no threshold is set)."""
        if image.visib_fract is None:
            if self.config.min_visib > 0:
                raise ValueError(
                    f"scene {image.scene_id} image {image.im_id}: min_visib={self.config.min_visib} needs "
                    "visib_fract (scene_gt_info.json), which is missing"
                )
            return [1.0] * n_gt
        if len(image.visib_fract) != n_gt:
            raise ValueError(
                f"scene {image.scene_id} image {image.im_id}: {len(image.visib_fract)} visib_fract values "
                f"for {n_gt} ground-truth instances"
            )
        return image.visib_fract

    def _model(self, obj_id: int) -> ObjectModel:
        """The model of `obj_id`, or an error listing the known ids."""
        if obj_id not in self.models:
            raise ValueError(f"ground truth has obj_id {obj_id}, but the models are {sorted(self.models)}")
        return self.models[obj_id]

    def _pts(self, model: ObjectModel) -> np.ndarray:
        """Model vertices (N, 3) float64 m, cached."""
        if model.obj_id not in self._points:
            self._points[model.obj_id] = np.asarray(model.vertices, dtype=np.float64)
        return self._points[model.obj_id]

    def _sym(self, model: ObjectModel) -> np.ndarray:
        """Symmetry transforms (S, 4, 4) m of a model, cached."""
        if model.obj_id not in self._syms:
            self._syms[model.obj_id] = model.symmetry_transforms(self.config.max_sym_disc_step)
        return self._syms[model.obj_id]

    def _render_depth(self, image: EvalImage, model: ObjectModel, T_cam_obj: np.ndarray) -> np.ndarray:
        """Depth (H, W) float32 m of the model alone in pose `T_cam_obj`, in the image's camera."""
        if image.depth is None:
            raise ValueError(f"scene {image.scene_id} image {image.im_id}: VSD needs the depth image")
        if self._renderer is None:
            self._renderer = Renderer(self.models)
            self._owns_renderer = True
        objects = [(model.obj_id, T_cam_obj)]
        return self._renderer.render(image.K, image.width, image.height, objects, outputs=("depth",)).depth


def evaluate_split(
    split: BopSplit,
    results: Sequence[PoseResult],
    models: Mapping[int, ObjectModel],
    config: EvalConfig | None = None,
    renderer: Renderer | None = None,
    progress: bool = False,
    only: Collection[tuple[int, int]] | None = None,
) -> EvalReport:
    """Score `results` against every annotated image of a BOP split (or the (scene_id, im_id) in `only`).

    Without depth images, VSD is left out (noted).
    """
    config = EvalConfig() if config is None else config
    scenes = {scene_id: split.read_scene(scene_id) for scene_id in split.scene_ids()}
    if not scenes:
        raise ValueError(f"{split.path}: no scene folders")
    image_keys = [(s, i) for s, scene in scenes.items() for i in sorted(scene.gt) if only is None or (s, i) in only]
    notes = [f"metric '{name}' not requested" for name in METRICS if name not in config.metrics]
    if "vsd" in config.metrics:
        missing = [split.depth_path(s, i) for s, i in image_keys if not split.depth_path(s, i).is_file()]
        if missing:
            notes.append(
                f"VSD not computed: {len(missing)} of {len(image_keys)} images have no depth image "
                f"(e.g. {missing[0]}); VSD needs the test depth, so ar_vsd and ar are null"
            )
            config = dataclasses.replace(config, metrics=tuple(m for m in config.metrics if m != "vsd"))
    with_depth = "vsd" in config.metrics

    def images() -> Iterator[EvalImage]:
        for scene_id, im_id in image_keys:
            scene = scenes[scene_id]
            camera = scene.camera[im_id]
            depth = read_depth(split.depth_path(scene_id, im_id), camera.depth_scale) if with_depth else None
            if depth is not None:
                height, width = depth.shape
            else:
                width, height = image_size(split.rgb_path(scene_id, im_id))
            visib = None if scene.gt_info is None else [info.visib_fract for info in scene.gt_info[im_id]]
            yield EvalImage(scene_id, im_id, camera.K, width, height, scene.gt[im_id], visib, depth)

    with Evaluator(models, config, renderer) as evaluator:
        return evaluator.evaluate(images(), results, notes=notes, progress=progress, total=len(image_keys))


def _split(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R (3, 3), t (3,)) of a pose (4, 4)."""
    return T[:3, :3], T[:3, 3]

"""The refinement study (`sixdpose study refine`): each estimator with and without each refiner, on a held-out split.

For every (estimator, detector) case and refiner the pipeline runs once over the split; it keeps the estimator's own
poses beside the refined ones (`FrameResult.initial`), so "without" and "with" come from the same
detections. A case may also start from disturbed ground truth (`perturbed_init`) instead of an estimator, so that
refiners are compared from the very same starts. Both sets are scored by the project's evaluator (ADD(-S) recall,
AR_MSSD, AR_MSPD); per ground-truth instance the study also takes the rotation and translation error of the estimate matched to it
(same object, nearest centre), the share of instances the refiner turned from right (ADD(-S) < 0.1 d) to
wrong, ADD(-S) per visibility bin (VISIB_BINS, from those per-instance matches), and how well the refiner's score
separates right from wrong poses (ROC and its area).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ros2_sixdpose.core.metrics import ADD_THRESHOLD, add_s, re, te
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.bop import BopSplit, PoseResult
from ros2_sixdpose.detection.base import DetectorConfig
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.estimation.factory import EstimatorConfig
from ros2_sixdpose.evaluation.scoring import EvalConfig, evaluate_split
from ros2_sixdpose.evaluation.perturbed_init import Perturbation, PerturbedTruth
from ros2_sixdpose.evaluation.rnnpose_maps import occluded_maps_figure
from ros2_sixdpose.evaluation.split_run import split_frames
from ros2_sixdpose.pipeline import Pipeline
from ros2_sixdpose.refinement.factory import RefinerConfig, make_refiner

STUDY_METRICS = ("add", "mssd", "mspd")  # VSD would render every estimate again: left to `sixdpose eval`
VISIB_BINS = ((0.5, 0.7), (0.7, 0.9), (0.9, 1.01))  # visib_fract bins of the occlusion columns ([low, high))


@dataclass(frozen=True)
class Case:
    """One row pair of the study: an estimator configuration and a detector, or disturbed ground truth (`init`)."""

    estimator_name: str
    estimator: EstimatorConfig
    detector_name: str  # "ground-truth masks" or "learned detector"
    detector: DetectorConfig
    init: Perturbation | None = None  # start from ground truth disturbed so (ground-truth masks); estimator unused


@dataclass(frozen=True)
class Row:
    """Scores of one case, without or with refinement."""

    estimator: str
    detector: str
    refiner: str  # the refiner's name; "" for the estimator's own poses
    refined: bool
    n_instances: int
    add_s: float
    ar_mssd: float
    ar_mspd: float
    median_rotation_deg: float  # over instances with a matched estimate
    median_translation_cm: float
    made_worse: float | None  # share of instances right before refinement and wrong after; None unrefined
    ms_per_object: float  # estimator (+ refiner) seconds per detection
    add_s_by_visib: tuple[float, ...] = ()  # ADD(-S) recall per VISIB_BINS bin (nan: no instance)
    n_by_visib: tuple[int, ...] = ()


@dataclass
class _Matched:
    """Per ground-truth instance: ADD(-S) error / diameter, symmetry-aware rotation error deg, translation error m,
    and the matched estimate's score."""

    obj_id: int
    visib: float
    error: float = np.inf
    rotation: float = np.nan
    translation: float = np.nan
    score: float = np.nan


def _match(estimates: Sequence[PoseEstimate], gt_T: np.ndarray, obj_id: int, model: ObjectModel,
           visib: float) -> _Matched:
    """The estimate of `obj_id` whose centre is nearest the ground truth's, with its errors (none: inf error)."""
    candidates = [e for e in estimates if e.found and e.object_id == obj_id]
    if not candidates:
        return _Matched(obj_id, visib)
    best = min(candidates, key=lambda e: np.linalg.norm(e.T_cam_obj[:3, 3] - gt_T[:3, 3]))
    T = best.T_cam_obj
    # Rotation error to the nearest pose equivalent under the model's symmetries (0.05 d sampling is plenty here).
    rotation = min(re(T[:3, :3], gt_T[:3, :3] @ S[:3, :3]) for S in model.symmetry_transforms(0.05))
    return _Matched(
        obj_id, visib, add_s(T, gt_T, model.vertices, model.is_symmetric) / model.diameter, rotation,
        te(T[:3, 3], gt_T[:3, 3]), best.score,
    )


def _by_visib(matched: Sequence[_Matched]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """ADD(-S) recall and instance count per VISIB_BINS bin."""
    recalls, counts = [], []
    for low, high in VISIB_BINS:
        errors = [m.error for m in matched if low <= m.visib < high]
        recalls.append(float(np.mean(np.array(errors) < ADD_THRESHOLD)) if errors else float("nan"))
        counts.append(len(errors))
    return tuple(recalls), tuple(counts)


def case_pipeline(case: Case, refiner: RefinerConfig, split: BopSplit, models: Mapping[int, ObjectModel],
                  root: Path) -> Pipeline:
    """The pipeline of one case with one refiner."""
    if case.init is not None:
        starts = PerturbedTruth(split, models, case.init)
        return Pipeline(starts, starts, make_refiner(refiner, root))
    detector = case.detector
    if detector.type == "oracle":
        detector = dataclasses.replace(detector, dataset=str(Path(split.root).resolve()), split=split.split)
    return Pipeline.from_configs(detector, case.estimator, refiner, root)


def run_case(
    case: Case, refiner_name: str, refiner: RefinerConfig, split: BopSplit, models: Mapping[int, ObjectModel],
    min_visib: float, max_images: int | None, root: Path,
) -> tuple[list[Row], dict[str, Any]]:
    """Run one case with one refiner over the split; its two rows (without, with refinement) and its raw data."""
    pipeline = case_pipeline(case, refiner, split, models, root)
    results: dict[bool, list[PoseResult]] = {False: [], True: []}
    matched: dict[bool, list[_Matched]] = {False: [], True: []}
    seconds = {False: 0.0, True: 0.0}
    n_detections = 0
    frames = list(itertools.islice(split_frames(split), max_images))  # reads only the images it keeps
    scenes = {s: split.read_scene(s) for s in split.scene_ids()}
    for frame in tqdm(frames, desc=f"{case.estimator_name}, {case.detector_name}", unit="img"):
        out = pipeline.process(frame)
        n_detections += len(out.detections)
        seconds[False] += out.seconds["estimate"]
        seconds[True] += out.seconds["estimate"] + out.seconds["refine"]
        scene = scenes[frame.key.scene_id]
        for refined, estimates in ((False, out.initial), (True, out.estimates)):
            for e in estimates:
                if e.found:
                    results[refined].append(PoseResult(frame.key.scene_id, frame.key.im_id, e.object_id, e.score,
                                                       e.T_cam_obj, out.seconds["total"]))
            for gt, info in zip(scene.gt[frame.key.im_id], scene.gt_info[frame.key.im_id]):
                if info.visib_fract >= min_visib:
                    matched[refined].append(_match(estimates, gt.T_cam_obj, gt.obj_id, models[gt.obj_id],
                                                   info.visib_fract))
    kept = {(f.key.scene_id, f.key.im_id) for f in frames}
    rows = []
    for refined in (False, True):
        report = evaluate_split(split, results[refined], models, EvalConfig(STUDY_METRICS, min_visib), only=kept)
        errors = matched[refined]
        found = [m for m in errors if np.isfinite(m.error)]
        worse = None
        if refined:
            before = np.array([m.error for m in matched[False]]) < ADD_THRESHOLD
            after = np.array([m.error for m in errors]) < ADD_THRESHOLD
            worse = float(np.mean(before & ~after)) if len(before) else 0.0
        rows.append(Row(
            case.estimator_name, case.detector_name, refiner_name if refined else "", refined,
            report.overall.n_instances,
            report.overall.add_s_recall, report.overall.ar_mssd, report.overall.ar_mspd,
            float(np.median([m.rotation for m in found])) if found else float("nan"),
            100 * float(np.median([m.translation for m in found])) if found else float("nan"),
            worse, 1e3 * seconds[refined] / max(n_detections, 1), *_by_visib(errors),
        ))
    raw = {"instances": [asdict(m) for m in matched[True]], "initial": [asdict(m) for m in matched[False]]}
    return rows, raw


def roc(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC of `scores` (N,) separating `correct` (N,) bool: false / true positive rates at every threshold, AUC."""
    order = np.argsort(-scores, kind="stable")
    hits = correct[order].astype(float)
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(hits.sum(), 1.0)])
    fpr = np.concatenate([[0.0], np.cumsum(1.0 - hits) / max((1.0 - hits).sum(), 1.0)])
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def run_study(
    cases: Sequence[Case], refiners: Mapping[str, RefinerConfig], split: BopSplit, models: Mapping[int, ObjectModel],
    min_visib: float, max_images: int | None, root: Path, out_md: Path, command: str,
) -> list[Row]:
    """Run every case with every refiner (named); write the Markdown report, its JSON and its figure (ROC of the
    refiners' scores)."""
    started = time.time()
    rows, raw = [], {}
    for case in cases:
        for k, (name, refiner) in enumerate(refiners.items()):
            case_rows, case_raw = run_case(case, name, refiner, split, models, min_visib, max_images, root)
            rows += case_rows if k == 0 else case_rows[1:]  # the estimator's own poses once per case
            raw[f"{case.estimator_name} / {case.detector_name} / {name}"] = case_raw
    scores, correct = [], []
    for case_raw in raw.values():
        for m in case_raw["instances"]:
            if np.isfinite(m["score"]):
                scores.append(m["score"])
                correct.append(m["error"] < ADD_THRESHOLD)
    fpr, tpr, auc = roc(np.array(scores), np.array(correct, bool))
    content = {
        "command": command, "split": str(split.path), "min_visib": min_visib, "max_images": max_images,
        "refiners": {name: asdict(r) for name, r in refiners.items()}, "rows": [asdict(r) for r in rows],
        "visib_bins": VISIB_BINS, "score_roc_auc": auc,
        "minutes": (time.time() - started) / 60, "load_average": list(os.getloadavg()), "per_instance": raw,
    }
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.with_suffix(".json").write_text(json.dumps(content, indent=1) + "\n")
    _figure(fpr, tpr, auc, rows, out_md.with_suffix(".png"))
    for name, refiner in refiners.items():
        if refiner.type == "rnnpose":  # what its correspondence weights make of occlusion
            maps = out_md.with_name(out_md.stem + "_rnnpose_maps.png")
            occluded_maps_figure(make_refiner(refiner, root), split, models, maps)
            content["rnnpose_maps"] = maps.name
    out_md.write_text(markdown_report(rows, content, out_md))
    return rows


def _figure(fpr: np.ndarray, tpr: np.ndarray, auc: float, rows: Sequence[Row], path: Path) -> None:
    """Left: ADD(-S) of every case without / with refinement; right: ROC of the refined score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    cases = [(r.estimator, r.detector) for r in rows if not r.refined]
    series = ["", *dict.fromkeys(r.refiner for r in rows if r.refined)]
    x = np.arange(len(cases))
    width = 0.8 / len(series)
    for k, name in enumerate(series):
        values = [next((r.add_s for r in rows if (r.estimator, r.detector) == c and r.refiner == name), np.nan)
                  for c in cases]
        left.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name or "start / estimator alone")
    left.set_xticks(x, [f"{e}\n{d}" for e, d in cases], fontsize=7)
    left.set_ylabel("ADD(-S) recall at 0.1 d")
    left.set_ylim(0, 1)
    left.legend()
    right.plot(fpr, tpr)
    right.plot([0, 1], [0, 1], "k:", lw=0.8)
    right.set_xlabel("false positive rate (wrong poses kept)")
    right.set_ylabel("true positive rate (right poses kept)")
    right.set_title(f"refined scores: right vs wrong pose, AUC {auc:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_report(rows: Sequence[Row], content: Mapping[str, Any], out_md: Path) -> str:
    """The study as Markdown: how it was run, the table, and the score's ROC."""
    lines = [
        "# Refinement study: estimators with and without refinement",
        "",
        f"Written by `{content['command']}` in {content['minutes']:.0f} min on this 2-core CPU machine. "
        f"Split `{content['split']}` (held out from all training), instances with visib_fract >= "
        f"{content['min_visib']}" + (f", first {content['max_images']} images" if content["max_images"] else "")
        + f". Figures: `{out_md.with_suffix('.json').name}`, `{out_md.with_suffix('.png').name}`. Load average at the end "
        f"{content['load_average'][0]:.1f} (1 min) / {content['load_average'][2]:.1f} (15 min) on the 2 cores: the ms figures "
        "are wall time and grow with the load; `sixdpose bench refiner` times the refiner alone.",
        "",
        "| start | detections | refiner | n | ADD(-S) | AR_MSSD | AR_MSPD | median rot. err. (deg) | "
        "median transl. err. (cm) | made worse | ms per object | "
        + " | ".join(f"ADD(-S) visib {_bin_label(b)}" for b in VISIB_BINS) + " |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(VISIB_BINS),
    ]
    for r in rows:
        worse = "" if r.made_worse is None else f"{r.made_worse:.3f}"
        bins = " | ".join("-" if not n else f"{v:.3f} ({n})" for v, n in zip(r.add_s_by_visib, r.n_by_visib))
        lines.append(
            f"| {r.estimator} | {r.detector} | {r.refiner or 'none'} | {r.n_instances} | {r.add_s:.3f} | "
            f"{r.ar_mssd:.3f} | {r.ar_mspd:.3f} | {r.median_rotation_deg:.1f} | {r.median_translation_cm:.1f} | "
            f"{worse} | {r.ms_per_object:.0f} | {bins} |"
        )
    lines += [
        "",
        "The visibility columns count instances by visib_fract bin (instances in brackets), matched by nearest centre.",
        "",
        f"The refined score separates right poses (ADD(-S) < 0.1 d) from wrong ones with ROC AUC "
        f"{content['score_roc_auc']:.3f} over all refined instances (right panel of the figure).",
        "",
        f"![study]({out_md.with_suffix('.png').name})",
        "",
    ]
    if "rnnpose_maps" in content:
        lines += ["RNNPose's flow and correspondence weights on occluded instances (visib_fract 0.5-0.7):", "",
                  f"![RNNPose maps]({content['rnnpose_maps']})", ""]
    return "\n".join(lines)


def _bin_label(bin_: tuple[float, float]) -> str:
    """'0.5-0.7', or '> 0.9' for the last bin."""
    low, high = bin_
    return f"> {low:g}" if high > 1.0 else f"{low:g}-{high:g}"

"""The NOCS study: Pix2Pix vs BBDM, each trained with and without online augmentation, on one held-out split.

Every variant runs through the real estimator (crop, network, RANSAC-PnP) on the oracle detector's
detections of every image. Per ground-truth instance with visib_fract >= `min_visib` it measures:
- NOCS error: mean absolute difference between predicted and true NOCS over the true visible mask of the
  crop, in NOCS units (fractions of the bounding box per axis), the smallest over the object's symmetries;
- mask IoU of the predicted mask (probability > the estimator's threshold) with the true visible mask;
- the pose metrics of `ros2_sixdpose.evaluation.scoring` (ADD(-S) recall at 0.1 d, AR_MSSD, AR_MSPD) on the
  estimator's poses, a missing pose counting as a miss;
- time per crop: cropping + network + PnP of an image divided by its detections (crops of an image run
  as one batch).
The report is a Markdown file, a JSON file and a figure of example crops with true and predicted maps.
"""
from __future__ import annotations

import json
import platform
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.bop import BopSplit, PoseResult, read_mask
from ros2_sixdpose.data.nocs_maps import read_nocs
from ros2_sixdpose.data.views import nocs_path
from ros2_sixdpose.detection.oracle import OracleDetector
from ros2_sixdpose.estimation.nocs_estimator import CropResult, NocsEstimator, NocsEstimatorConfig
from ros2_sixdpose.estimation.nocs_net import NocsNet, NocsPrediction
from ros2_sixdpose.estimation.nocs_weights import load_nocs_net
from ros2_sixdpose.estimation.symmetry import symmetric_nocs_error
from ros2_sixdpose.estimation.visualize import save_examples
from ros2_sixdpose.evaluation.scoring import EvalConfig, EvalReport, evaluate_split
from ros2_sixdpose.evaluation.split_run import split_frames


# What the report says about the set-up (the numbers come from the run).
METHOD_NOTES = (
    "One U-Net shape for both models (estimation/unet.py); Pix2Pix uses it as generator with a PatchGAN "
    "discriminator on 34x34 patches that judges the NOCS map inside the true mask, BCE GAN loss + 100 x (NOCS L1 "
    "inside the mask + mask BCE) (Isola et al. 2017); "
    "BBDM uses it, time-conditioned, as the Brownian-bridge denoiser between the RGB crop and the NOCS map + mask "
    "in pixel space, L1 objective, deterministic sampler (Li et al. 2023).",
    "Both networks also see which object the detector reports (one-hot planes) and each pixel's crop position "
    "(CoordConv planes), and the BBDM denoiser sees the clean RGB crop beside x_t.",
    "Symmetric objects (lego: 4-fold about z; torus: continuous about z and a flip): every training map is redrawn "
    "in the canonical symmetric pose, the one whose rotation is closest to the camera frame (Pitteri et al. 2019), "
    "so one appearance has one target; the NOCS error here is the smallest over the symmetries and poses are "
    "scored with ADD-S / MSSD / MSPD, which accept any symmetric pose.",
    "Augmentation 'on' is data/augment.py with its defaults (background swap, occluding patches whose pixels leave "
    "the targets, colour jitter, blur, noise); 'off' trains on the rendered crops as they are.",
    "PnP: mask pixels (probability > 0.5) give 2D-3D pairs through the crop transform and the full camera; "
    "OpenCV EPnP-RANSAC then Levenberg-Marquardt on the inliers; score = inlier fraction x min(1, inliers / 100).",
)


@dataclass(frozen=True)
class Variant:
    """One trained network of the study."""

    name: str  # e.g. "BBDM, augmentation on"
    weights: Path


@dataclass
class VariantScores:
    """What the study measured for one variant (means over the kept instances; recalls in [0, 1])."""

    name: str
    weights: str
    model: str
    parameters: int
    n_instances: int
    nocs_error: float
    mask_iou: float
    add_s_recall: float
    ar_mssd: float
    ar_mspd: float
    ms_per_crop: float
    no_pose: int  # kept instances for which the estimator returned no pose
    per_object: dict[str, dict[str, float]] = field(default_factory=dict)
    train_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Example:
    """One crop of the figure: its RGB and true maps, and every variant's prediction."""

    rgb: torch.Tensor  # (3, S, S) in [0, 1]
    nocs: torch.Tensor  # (3, S, S)
    mask: torch.Tensor  # (1, S, S)
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name -> (nocs, mask)


@dataclass
class _VariantRun:
    """What one variant's pass over the split collected."""

    results: list[PoseResult] = field(default_factory=list)  # the poses found, for the evaluator
    instances: list[dict[str, float]] = field(default_factory=list)  # obj_id, nocs_error, mask_iou, no_pose
    seconds: float = 0.0  # cropping + network + PnP over all images
    crops: int = 0


def evaluate_variant(
    variant: Variant, split: BopSplit, models: dict[int, ObjectModel], config: NocsEstimatorConfig,
    min_visib: float, examples: dict[tuple[int, int, int], _Example], progress: bool = True,
) -> VariantScores:
    """Run one variant over the split with oracle detections; fills the predictions of `examples` (keyed by
    scene, image, gt index) and, when `examples` is empty, picks them."""
    net, crop_spec = load_nocs_net(variant.weights)
    estimator = NocsEstimator(net, crop_spec, models, config)
    run = _run_variant(variant.name, estimator, split, models, min_visib, examples, progress)
    if not run.instances:
        raise ValueError(f"{split.path}: no instance with visib_fract >= {min_visib}")
    report = evaluate_split(split, run.results, models, EvalConfig(metrics=("add", "mssd", "mspd"), min_visib=min_visib))
    return _variant_scores(variant, net, run, report, models)


def _run_variant(
    name: str, estimator: NocsEstimator, split: BopSplit, models: dict[int, ObjectModel], min_visib: float,
    examples: dict[tuple[int, int, int], _Example], progress: bool,
) -> _VariantRun:
    """The estimator over every image of `split` on the oracle's detections: poses, per-instance maps, time."""
    oracle = OracleDetector(split.root, split.split)
    pick_examples = not examples
    run = _VariantRun()
    n_images = sum(len(split.image_ids(s)) for s in split.scene_ids())
    scenes = {scene_id: split.read_scene(scene_id) for scene_id in split.scene_ids()}
    for frame in tqdm(split_frames(split), total=n_images, desc=name, unit="img", disable=not progress):
        key = frame.key
        scene = scenes[key.scene_id]
        detections = oracle.detect(frame.rgb, key)
        outputs = estimator.run(frame.rgb, frame.camera, detections)
        timing = estimator.last_timing
        image_time = timing.crop + timing.network + timing.pnp
        run.seconds += image_time
        run.crops += len(detections)
        for out in outputs:
            if out.estimate.found:
                run.results.append(PoseResult(key.scene_id, key.im_id, out.estimate.object_id, out.estimate.score,
                                              out.estimate.T_cam_obj, image_time))
        true_nocs, valid = read_nocs(nocs_path(split, key.scene_id, key.im_id))
        gt_indices = _detection_gt_indices(split, key.scene_id, key.im_id, len(scene.gt[key.im_id]), detections)
        for out, detection, gt_index in zip(outputs, detections, gt_indices):
            if scene.gt_info[key.im_id][gt_index].visib_fract < min_visib or out.crop is None:
                continue
            mask_true = out.crop.warp(detection.mask & valid, cv2.INTER_NEAREST)
            nocs_true = out.crop.warp(true_nocs, cv2.INTER_NEAREST)
            run.instances.append(
                _instance_scores(out, mask_true, nocs_true, models[out.estimate.object_id], estimator.config)
            )
            example_key = (key.scene_id, key.im_id, gt_index)
            if pick_examples and len(examples) < 8 and len(run.instances) % 7 == 1:
                examples[example_key] = _Example(
                    rgb=torch.from_numpy(out.crop.warp(frame.rgb, cv2.INTER_LINEAR)).permute(2, 0, 1).float() / 255,
                    nocs=torch.from_numpy(nocs_true * mask_true[..., None]).permute(2, 0, 1),
                    mask=torch.from_numpy(mask_true[None].astype(np.float32)),
                )
            if example_key in examples:
                examples[example_key].predictions[name] = (out.nocs, out.mask)
    return run


def _instance_scores(
    out: CropResult, mask_true: np.ndarray, nocs_true: np.ndarray, model: ObjectModel, config: NocsEstimatorConfig
) -> dict[str, float]:
    """NOCS error, mask IoU and whether a pose is missing, for one crop against its true (S, S) mask and map."""
    mask_pred = out.mask > config.mask_threshold
    union = np.count_nonzero(mask_pred | mask_true)
    return {
        "obj_id": model.obj_id,
        "nocs_error": symmetric_nocs_error(out.nocs[mask_true], nocs_true[mask_true], model),
        "mask_iou": np.count_nonzero(mask_pred & mask_true) / union if union else 0.0,
        "no_pose": float(not out.estimate.found),
    }


def _variant_scores(
    variant: Variant, net: NocsNet, run: _VariantRun, report: EvalReport, models: dict[int, ObjectModel]
) -> VariantScores:
    """The variant's table row: the evaluator's recalls with the run's map errors, time and training record."""
    per_object = {}
    for obj_id, scores in sorted(report.per_object.items()):
        rows = [r for r in run.instances if r["obj_id"] == obj_id]
        per_object[models[obj_id].name] = {
            "n_instances": scores.n_instances,
            "nocs_error": float(np.nanmean([r["nocs_error"] for r in rows])),
            "mask_iou": float(np.mean([r["mask_iou"] for r in rows])),
            "add_s_recall": scores.add_s_recall,
            "ar_mssd": scores.ar_mssd,
            "ar_mspd": scores.ar_mspd,
        }
    info_path = variant.weights.with_name(variant.weights.name + ".json")
    return VariantScores(
        name=variant.name,
        weights=str(variant.weights),
        model=net.kind,
        parameters=sum(p.numel() for p in net.parameters()),
        n_instances=report.overall.n_instances,
        nocs_error=float(np.nanmean([r["nocs_error"] for r in run.instances])),
        mask_iou=float(np.mean([r["mask_iou"] for r in run.instances])),
        add_s_recall=report.overall.add_s_recall,
        ar_mssd=report.overall.ar_mssd,
        ar_mspd=report.overall.ar_mspd,
        ms_per_crop=1000.0 * run.seconds / max(run.crops, 1),
        no_pose=int(sum(r["no_pose"] for r in run.instances)),
        per_object=per_object,
        train_info=json.loads(info_path.read_text()) if info_path.is_file() else {},
    )


def _detection_gt_indices(split: BopSplit, scene_id: int, im_id: int, n_gt: int, detections: list) -> list[int]:
    """Ground-truth index of each oracle detection (the oracle keeps scene_gt order and skips invisible instances)."""
    indices = []
    for gt_index in range(n_gt):
        if read_mask(split.mask_visib_path(scene_id, im_id, gt_index)).any():
            indices.append(gt_index)
    if len(indices) != len(detections):
        raise ValueError(f"scene {scene_id} image {im_id}: {len(detections)} oracle detections for {len(indices)} visible instances")
    return indices


def run_study(
    variants: list[Variant], split: BopSplit, models: dict[int, ObjectModel], config: NocsEstimatorConfig,
    min_visib: float, out_md: Path, out_json: Path, out_figure: Path, command: str, progress: bool = True,
) -> list[VariantScores]:
    """Evaluate every variant and write the Markdown report, the JSON and the figure."""
    examples: dict[tuple[int, int, int], _Example] = {}
    scores = [evaluate_variant(v, split, models, config, min_visib, examples, progress) for v in variants]
    keys = sorted(examples)
    predictions = {
        v.name: NocsPrediction(
            nocs=torch.stack([torch.from_numpy(examples[k].predictions[v.name][0]).permute(2, 0, 1) for k in keys]),
            mask=torch.stack([torch.from_numpy(examples[k].predictions[v.name][1])[None] for k in keys]),
        )
        for v in variants
    }
    save_examples(
        out_figure,
        torch.stack([examples[k].rgb for k in keys]),
        torch.stack([examples[k].nocs for k in keys]),
        torch.stack([examples[k].mask for k in keys]),
        predictions,
        title=f"{split.split}: example crops (scene, image, instance) {', '.join(str(k) for k in keys)}",
    )
    content = {
        "split": str(split.path),
        "min_visib": min_visib,
        "estimator": asdict(config),
        "command": command,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "variants": [asdict(s) for s in scores],
    }
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(content, indent=2, default=str) + "\n")
    curves: Path | None = out_figure.with_name(out_figure.stem + "_curves.png")
    if not plot_validation(scores, curves):
        curves.unlink(missing_ok=True)  # an earlier run's figure would no longer match the report
        curves = None
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(markdown_report(scores, content, out_json, out_figure, curves))
    return scores


def plot_validation(scores: list[VariantScores], path: Path) -> bool:
    """Validation NOCS L1 and mask IoU against training steps of every variant whose weights JSON records them, as
    a PNG; False (nothing written) when none does."""
    recorded = [(s.name, s.train_info["val_history"]) for s in scores if s.train_info.get("val_history")]
    if not recorded:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, label in zip(axes, ("nocs_l1", "mask_iou"), ("NOCS L1 (NOCS units)", "mask IoU")):
        for name, history in recorded:
            ax.plot([v["step"] for v in history], [v.get(metric, float("nan")) for v in history], marker="o",
                    markersize=3, label=name)
        ax.set_xlabel("training step")
        ax.set_title(f"validation {label}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def markdown_report(scores: list[VariantScores], content: dict[str, Any], out_json: Path, out_figure: Path,
                    curves: Path | None = None) -> str:
    """The study as Markdown: set-up, main table, per-object ADD(-S), findings derived from the numbers."""
    lines = [
        "# NOCS study: Pix2Pix vs BBDM, with and without online augmentation",
        "",
        f"Generated by `{content['command']}`; numbers also in [{out_json.name}]({out_json.name}).",
        "",
        f"Held-out split `{content['split']}`, oracle detections (ground-truth visible masks and boxes), "
        f"instances with visib_fract >= {content['min_visib']}; {content['machine']}. Each variant runs through "
        "the real estimator: 64x64 crop, network, RANSAC-PnP with LM refinement. NOCS error is the mean absolute "
        "error inside the true visible mask in % of the bounding box per axis (smallest over the object's "
        "symmetries); mask IoU uses the predicted mask; ADD(-S) uses ADD-S for symmetric objects; a missing pose "
        "is a miss.",
        "",
        "| variant | params | NOCS error (% box) | mask IoU | ADD(-S) @0.1d | AR_MSSD | AR_MSPD | ms / crop | no pose |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        lines.append(
            f"| {s.name} | {s.parameters / 1e6:.2f} M | {100 * s.nocs_error:.2f} | {s.mask_iou:.3f} | "
            f"{s.add_s_recall:.3f} | {s.ar_mssd:.3f} | {s.ar_mspd:.3f} | {s.ms_per_crop:.1f} | "
            f"{s.no_pose} / {s.n_instances} |"
        )
    names = list(scores[0].per_object)
    lines += ["", "ADD(-S) recall at 0.1 d per object:", "",
              "| variant | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for s in scores:
        lines.append(f"| {s.name} | " + " | ".join(f"{s.per_object[n]['add_s_recall']:.2f}" for n in names) + " |")
    lines += ["", "Instances per object: " + ", ".join(f"{n} {scores[0].per_object[n]['n_instances']}" for n in names) + "."]
    lines += ["", "## Findings (derived from the table)", ""] + [f"- {f}" for f in findings(scores)]
    lines += ["", "## Training", "",
              "Validation: NOCS L1 of the validation crops (NOCS units) at 80 % of the steps and at the end; the "
              "learning rate decays on a cosine to a tenth at the last step.", "",
              "| variant | command | steps | train crops | hours | validation NOCS L1 at 80 % -> 100 % |",
              "|---|---|---:|---:|---:|---|"]
    for s in scores:
        info = s.train_info
        seconds = info.get("seconds_total")
        hours = "?" if seconds is None else f"{seconds / 3600:.1f}"
        late = late_validation(info)
        change = "not recorded" if late is None else f"{late[0]:.3f} -> {late[1]:.3f} ({100 * (late[1] / late[0] - 1):+.1f} %)"
        lines.append(f"| {s.name} | `{info.get('command', '?')}` | {info.get('steps', '?')} | "
                     f"{info.get('train_crops', '?')} | {hours} | {change} |")
    if curves is not None:
        lines += ["", f"![validation NOCS L1 and mask IoU against training steps]({curves.name})"]
    lines += ["", f"![example crops: RGB, true NOCS and mask, then each variant's NOCS and mask]({out_figure.name})", ""]
    lines += ["## How the variants were built", ""] + [f"- {note}" for note in METHOD_NOTES] + [""]
    return "\n".join(lines)


LEVELLED = 0.02  # validation error falling by less than this fraction over the last fifth of training: levelled off


def late_validation(train_info: dict[str, Any], metric: str = "nocs_l1") -> tuple[float, float] | None:
    """(`metric` at the last validation at or before 80 % of the steps, at the end) from a weights JSON's
    `val_history`; None when the JSON has none (weights trained before it was recorded)."""
    history = [v for v in train_info.get("val_history") or [] if metric in v]
    steps = train_info.get("steps")
    early = [v for v in history if steps and v["step"] <= 0.8 * steps]
    if not early or history[-1]["step"] != steps:
        return None
    return float(early[-1][metric]), float(history[-1][metric])


def _better(diffusion: float, gan: float, higher: bool) -> str:
    """'better', 'worse' or 'equal' for the diffusion model's value against the GAN's."""
    if diffusion == gan:
        return "equal"
    return "better" if (diffusion > gan) == higher else "worse"


def findings(scores: list[VariantScores]) -> list[str]:
    """Plain statements comparing the variants: the best per metric, what augmentation changed per model, GAN vs
    diffusion at equal steps, which model gains more from augmentation, and whether validation had levelled off."""
    out = []
    for metric, label, higher in (("add_s_recall", "ADD(-S) recall", True), ("ar_mssd", "AR_MSSD", True),
                                  ("mask_iou", "mask IoU", True), ("nocs_error", "NOCS error", False)):
        best = (max if higher else min)(scores, key=lambda s: getattr(s, metric))
        unit = " % of the box" if metric == "nocs_error" else " %"
        out.append(f"Best {label}: {best.name} ({100 * getattr(best, metric):.2f}{unit}).")
    by_model: dict[str, dict[bool, VariantScores]] = defaultdict(dict)
    for s in scores:
        augmented = s.train_info.get("augment")
        if augmented in ("on", "off"):
            by_model[s.model][augmented == "on"] = s
    gains: dict[str, float] = {}
    for model, pair in sorted(by_model.items()):
        if len(pair) == 2:
            on, off = pair[True], pair[False]
            steps_on, steps_off = on.train_info.get("steps"), off.train_info.get("steps")
            if steps_on != steps_off:
                out.append(f"{model}: augmentation not compared, the variants were trained {steps_on} (on) and "
                           f"{steps_off} (off) steps.")
                continue
            gains[model] = on.add_s_recall - off.add_s_recall
            out.append(
                f"{model}: augmentation changes ADD(-S) recall by {100 * gains[model]:+.1f} "
                f"points, NOCS error by {100 * (on.nocs_error - off.nocs_error):+.2f} % of the box and mask IoU by "
                f"{on.mask_iou - off.mask_iou:+.3f}."
            )
    for augmented in (False, True):
        gan, diffusion = by_model.get("pix2pix", {}).get(augmented), by_model.get("bbdm", {}).get(augmented)
        if gan is None or diffusion is None or gan.train_info.get("steps") != diffusion.train_info.get("steps"):
            continue
        out.append(
            f"Augmentation {'on' if augmented else 'off'}, {gan.train_info.get('steps')} steps each: the diffusion "
            f"model (BBDM) gives {_better(diffusion.nocs_error, gan.nocs_error, False)} maps (NOCS error "
            f"{100 * diffusion.nocs_error:.2f} vs {100 * gan.nocs_error:.2f} % of the box), "
            f"{_better(diffusion.mask_iou, gan.mask_iou, True)} masks (IoU {diffusion.mask_iou:.3f} vs "
            f"{gan.mask_iou:.3f}) and {_better(diffusion.add_s_recall, gan.add_s_recall, True)} poses (ADD(-S) "
            f"{100 * diffusion.add_s_recall:.1f} vs {100 * gan.add_s_recall:.1f} %) than the GAN (Pix2Pix)."
        )
    steps = {s.train_info.get("steps") for s in scores}
    if len(gains) == 2 and len(steps) == 1:
        more = max(gains, key=gains.get)
        out.append(f"{'BBDM' if more == 'bbdm' else 'Pix2Pix'} gains more from augmentation: ADD(-S) "
                   f"{100 * gains['pix2pix']:+.1f} points for Pix2Pix, {100 * gains['bbdm']:+.1f} for BBDM.")
    crops = {s.name: s.train_info.get("train_crops") for s in scores}
    if len(set(crops.values())) > 1:
        out.append("The training sets differ (" + ", ".join(f"{name}: {n} crops" for name, n in crops.items())
                   + "): the same command and seed, synthesised and cut by different versions of the code, so "
                   "comparisons across them mix the data with the method.")
    late = {s.name: late_validation(s.train_info) for s in scores}
    falling = [f"{name} ({100 * (v[1] / v[0] - 1):+.1f} %)" for name, v in late.items()
               if v is not None and v[1] < (1 - LEVELLED) * v[0]]
    if falling:
        out.append("Not levelled off: validation NOCS L1 still fell over the last fifth of training for "
                   + ", ".join(falling) + "; longer training may change the comparison.")
    elif all(v is not None for v in late.values()):
        out.append(f"Validation NOCS L1 changed by less than {100 * LEVELLED:.0f} % over the last fifth of training "
                   "for every variant: levelled off.")
    return out

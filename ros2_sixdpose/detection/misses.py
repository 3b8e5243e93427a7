"""Why the learned detector misses what it misses: one outcome per ground-truth instance, binned, with a figure.

Every ground-truth instance of a BOP split is matched as `evaluate` matches it (greedy by score, mask IoU
0.5). A missed one gets the first cause of this list that holds:
- `background` / `other object`: most of its visible pixels take the background class (or another object's
  class) in the network's class map, so no instance of its object can cover it;
- `merged`: a detection of its object covers at least `MERGE_SHARE` of it and of another instance of the same
  object (their centre peaks merged, or one centre took both);
- `score`: with the score threshold at 0, an instance of its object would match it (mask IoU >= 0.5), so it was
  found and then dropped for scoring below `score_threshold`;
- `no peak`: no centre-heatmap peak (above `center_threshold`) lies inside its mask;
- `mask IoU`: the rest: peaks and class are there, but the instance's mask overlaps it by IoU < 0.5
  (an instance split in two, or a mask spilling over a neighbour).
Each instance also records what might explain a cause: visible fraction, visible area, box size, distance of
its box to the image border, and whether another instance of its object (or any other instance) touches it.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ros2_sixdpose.core.checks import mask_box
from ros2_sixdpose.detection.base import Detection, DetectorConfig
from ros2_sixdpose.detection.evaluate import EvalFrame, GtMask, greedy_match, mask_ious
from ros2_sixdpose.detection.segmentation import SegmentationDetector, decode_instances, find_peaks

CAUSES = ("found", "background", "other object", "merged", "score", "no peak", "mask IoU")
MERGE_SHARE = 0.3  # share of each of two instances one detection must cover to count as merging them
TOUCH_PX = 3  # instances closer than this (full-image pixels) touch


@dataclass
class InstanceOutcome:
    """One ground-truth instance: where it is, what surrounds it, and whether (or why not) it was found."""

    scene_id: int
    im_id: int
    obj_id: int
    visib_fract: float
    area: int  # visible pixels
    box_size: float  # sqrt(width x height) of the visible box, pixels
    border: int  # pixels from the visible box to the nearest image border (0: cut by it)
    same_object: bool  # another instance of its object is in the image
    touches_same: bool  # ... and touches it
    touches_other: bool  # an instance of another object touches it
    cause: str  # one of CAUSES


def matched_gt(detections: Sequence[Detection], gt: Sequence[GtMask], iou_threshold: float) -> np.ndarray:
    """(G,) bool: which ground-truth instances a detection matches (greedy by score, as `match_frame`)."""
    match = greedy_match(mask_ious(detections, gt), [det.score for det in detections], iou_threshold)
    found = np.zeros(len(gt), dtype=bool)
    found[match[match >= 0]] = True
    return found


def frame_outcomes(
    detector: SegmentationDetector, frame: EvalFrame, iou_threshold: float = 0.5
) -> list[InstanceOutcome]:
    """The outcome of every ground-truth instance of one frame, from the detector's network outputs."""
    out = detector.predict(frame.rgb)
    return instance_outcomes(
        frame, out.class_logits[0].contiguous().numpy(), torch.sigmoid(out.center_logits[0, 0]).contiguous().numpy(),
        out.offsets[0].contiguous().numpy(), detector.object_ids, detector.config, iou_threshold,
    )


def instance_outcomes(
    frame: EvalFrame,
    class_logits: np.ndarray,
    heatmap: np.ndarray,
    offsets: np.ndarray,
    object_ids: list[int],
    config: DetectorConfig,
    iou_threshold: float = 0.5,
) -> list[InstanceOutcome]:
    """The outcome of every ground-truth instance of `frame` (causes: see the module docstring).

    class_logits (C, h2, w2), heatmap (h4, w4) and offsets (2, h4, w4) are the network outputs
    `decode_instances` takes; `config` holds the decoding thresholds.
    """
    height, width = frame.rgb.shape[:2]
    detections = decode_instances(class_logits, heatmap, offsets, (height, width), object_ids, config)
    unthresholded = decode_instances(class_logits, heatmap, offsets, (height, width), object_ids,
                                     dataclasses.replace(config, score_threshold=0.0))
    found = matched_gt(detections, frame.gt, iou_threshold)
    found_unthresholded = matched_gt(unthresholded, frame.gt, iou_threshold)
    classes = cv2.resize(class_logits.argmax(axis=0).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    peaks = np.zeros(heatmap.shape, dtype=np.uint8)
    centers, _ = find_peaks(heatmap, config)
    peaks[centers[:, 1].astype(int), centers[:, 0].astype(int)] = 1
    peaks = cv2.resize(peaks, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    near = [cv2.dilate(g.mask.astype(np.uint8), np.ones((2 * TOUCH_PX + 1,) * 2, np.uint8)).astype(bool)
            for g in frame.gt]
    outcomes = []
    for index, inst in enumerate(frame.gt):
        area = int(np.count_nonzero(inst.mask))
        same = [j for j, other in enumerate(frame.gt) if j != index and other.obj_id == inst.obj_id and other.mask.any()]
        touching = [j for j, other in enumerate(frame.gt) if j != index and (other.mask & near[index]).any()]
        x0, y0, x1, y1 = mask_box(inst.mask)
        if found[index]:
            cause = "found"
        else:
            labels = np.bincount(classes[inst.mask], minlength=len(object_ids) + 1)
            own = labels[object_ids.index(inst.obj_id) + 1]
            merged = any(
                det.object_id == inst.obj_id and _share(det.mask, inst.mask) >= MERGE_SHARE
                and any(_share(det.mask, frame.gt[j].mask) >= MERGE_SHARE for j in same)
                for det in detections
            )
            if area and 2 * own < area:
                cause = "background" if 2 * labels[0] >= area else "other object"
            elif merged:
                cause = "merged"
            elif found_unthresholded[index]:
                cause = "score"
            elif not peaks[inst.mask].any():
                cause = "no peak"
            else:
                cause = "mask IoU"
        outcomes.append(InstanceOutcome(
            scene_id=frame.key.scene_id, im_id=frame.key.im_id, obj_id=inst.obj_id,
            visib_fract=round(float(inst.visib_fract), 4), area=area,
            box_size=round(float(np.sqrt((x1 - x0) * (y1 - y0))), 1),
            border=int(min(x0, y0, width - x1, height - y1)) if area else 0,
            same_object=bool(same), touches_same=any(j in same for j in touching),
            touches_other=any(frame.gt[j].obj_id != inst.obj_id for j in touching), cause=cause,
        ))
    return outcomes


def _share(mask: np.ndarray, of: np.ndarray) -> float:
    """Share of the pixels of `of` (H, W) bool that `mask` (H, W) bool covers; 0 for an empty `of`."""
    total = np.count_nonzero(of)
    return np.count_nonzero(mask & of) / total if total else 0.0


def collect_outcomes(
    detector: SegmentationDetector, frames: Iterable[EvalFrame], iou_threshold: float = 0.5
) -> list[InstanceOutcome]:
    """Outcomes of every ground-truth instance of every frame."""
    outcomes = []
    for frame in tqdm(frames, desc="detector misses", unit="img"):
        outcomes.extend(frame_outcomes(detector, frame, iou_threshold))
    return outcomes


# Bins of the report: (title, label of each bin, which bin an outcome falls in or None).
BINS = {
    "visib_fract": (("0.3-0.5", "0.5-0.7", "0.7-0.9", ">= 0.9"),
                    lambda o: int(np.searchsorted([0.5, 0.7, 0.9], o.visib_fract, side="right"))),
    "visible area, px": (("< 1k", "1-2k", "2-4k", "4-8k", ">= 8k"),
                         lambda o: int(np.searchsorted([1000, 2000, 4000, 8000], o.area, side="right"))),
    "box size, px": (("< 40", "40-60", "60-90", ">= 90"),
                     lambda o: int(np.searchsorted([40, 60, 90], o.box_size, side="right"))),
    "to image border, px": (("cut", "1-20", ">= 20"), lambda o: int(np.searchsorted([1, 20], o.border, side="right"))),
    "neighbours": (("alone", "other object touches", "same object in image", "same object touches"),
                   lambda o: 3 if o.touches_same else 2 if o.same_object else 1 if o.touches_other else 0),
}


def summarise(outcomes: Sequence[InstanceOutcome], names: dict[int, str], min_visib: float) -> dict[str, Any]:
    """Counts of causes overall, per object and per bin of `BINS`, over instances with visib_fract >= min_visib."""
    scored = [o for o in outcomes if o.visib_fract >= min_visib]
    groups: dict[str, dict[str, list[InstanceOutcome]]] = {
        "object": {names.get(obj, str(obj)): [o for o in scored if o.obj_id == obj]
                   for obj in sorted({o.obj_id for o in scored})},
    }
    for title, (labels, which) in BINS.items():
        groups[title] = {label: [o for o in scored if which(o) == k] for k, label in enumerate(labels)}

    def counts(group: Sequence[InstanceOutcome]) -> dict[str, Any]:
        by_cause = Counter(o.cause for o in group)
        return {"n": len(group), "recall": by_cause["found"] / len(group) if group else None,
                **{cause: by_cause[cause] for cause in CAUSES}}

    below = [o for o in outcomes if o.visib_fract < min_visib]
    return {
        "min_visib_fract": min_visib,
        "overall": counts(scored),
        "groups": {title: {label: counts(g) for label, g in group.items()} for title, group in groups.items()},
        "not_scored": {"n": len(below), "found": sum(o.cause == "found" for o in below)},
    }


def plot_summary(summary: dict[str, Any], path: Path, title: str) -> None:
    """One panel per grouping: stacked bars of found and of each miss cause, as shares of the bin's instances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = summary["groups"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    colours = dict(zip(CAUSES, ("#4caf50", "#424242", "#9e9e9e", "#e91e63", "#ff9800", "#2196f3", "#9c27b0")))
    for ax, (group_title, bins) in zip(axes.flat, groups.items()):
        labels = list(bins)
        bottom = np.zeros(len(labels))
        for cause in CAUSES:
            share = np.array([bins[b][cause] / bins[b]["n"] if bins[b]["n"] else 0.0 for b in labels])
            ax.bar(labels, share, bottom=bottom, color=colours[cause], label=cause)
            bottom += share
        for k, b in enumerate(labels):
            ax.text(k, 1.01, f"n={bins[b]['n']}", ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, 1.08)
        ax.set_title(group_title)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    axes.flat[0].set_ylabel("share of instances")
    axes.flat[3].set_ylabel("share of instances")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(CAUSES), fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(outcomes: Sequence[InstanceOutcome], summary: dict[str, Any], path: Path, title: str) -> None:
    """`path` (.json: the summary), the outcome of every instance beside it (.csv) and the figure (.png)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    with path.with_suffix(".csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[f.name for f in dataclasses.fields(InstanceOutcome)])
        writer.writeheader()
        writer.writerows(asdict(o) for o in outcomes)
    plot_summary(summary, path.with_suffix(".png"), title)


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as Markdown tables: one per grouping, a row per bin with recall and counts per cause."""
    head = "| bin | n | recall | " + " | ".join(CAUSES[1:]) + " |"
    lines = [f"all (visib_fract >= {summary['min_visib_fract']}): " + _row("all", summary["overall"])]
    for title, bins in summary["groups"].items():
        lines += ["", f"{title}:", "", head, "|" + "---|" * (len(CAUSES) + 2)]
        lines += [_row(label, counts) for label, counts in bins.items()]
    return "\n".join(lines)


def _row(label: str, counts: dict[str, Any]) -> str:
    """One Markdown table row of `format_summary`."""
    recall = f"{counts['recall']:.3f}" if counts["recall"] is not None else "-"
    return f"| {label} | {counts['n']} | {recall} | " + " | ".join(str(counts[c]) for c in CAUSES[1:]) + " |"

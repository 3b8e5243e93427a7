"""The retrieval study: how often the top-k retrieved poses hold the true rotation, per scorer, on a held-out split.

For every ground-truth instance with visib_fract >= `min_visib`, each retriever gets the instance's true
visible mask (the oracle detector's detection) and returns its top-k hypotheses. Measured per instance:
whether the top-1 / top-5 / top-20 contain a rotation within `rotation_threshold_deg` of the truth (the
smallest angle over the object's symmetries), whether the top-1 pose is correct by ADD(-S) at 0.1 x diameter
(ADD-S for objects with a symmetry), its rotation and translation errors, and the time of the call.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.metrics import ADD_THRESHOLD, add_s
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.bop import BopSplit, read_mask, read_rgb
from ros2_sixdpose.core.checks import mask_box
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.retrieval.retriever import Retriever
from ros2_sixdpose.estimation.symmetry import symmetric_rotation_error

TOP_KS = (1, 5, 20)
THRESHOLD_DEG = 15.0  # a hypothesis this close to the true rotation counts as found (the figure)


@dataclass
class RetrievalScores:
    """Shares of instances (n) with a hypothesis within the threshold in the top k, top-1 ADD(-S) recall, timing."""

    name: str
    n: int
    top1: float
    top5: float
    top20: float
    add_s_top1: float
    median_rotation_deg: float  # top-1, symmetry-aware
    median_translation_mm: float  # top-1
    ms_per_object: float  # median of the hypotheses(k=20) calls
    per_object: dict[str, dict[str, float]]


def study_retrievers(
    retrievers: dict[str, Retriever], split: BopSplit, models: dict[int, ObjectModel], min_visib: float = 0.5,
    rotation_threshold_deg: float = THRESHOLD_DEG, progress: bool = True,
) -> list[RetrievalScores]:
    """Scores of each named retriever on every visible-enough instance of `split` (true masks)."""
    symmetries = {obj_id: model.symmetry_transforms(0.01) for obj_id, model in models.items()}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in retrievers}
    scene_ids = split.scene_ids()
    for scene_id in tqdm(scene_ids, desc="retrieval study", unit="scene", disable=not progress):
        scene = split.read_scene(scene_id)
        for im_id, instances in sorted(scene.gt.items()):
            rgb = read_rgb(split.rgb_path(scene_id, im_id))
            camera = PinholeCamera(scene.camera[im_id].K, rgb.shape[1], rgb.shape[0])
            for index, (instance, info) in enumerate(zip(instances, scene.gt_info[im_id])):
                if info.visib_fract < min_visib or instance.obj_id not in models:
                    continue
                mask = read_mask(split.mask_visib_path(scene_id, im_id, index))
                detection = Detection(instance.obj_id, mask_box(mask), mask, 1.0)
                model = models[instance.obj_id]
                for name, retriever in retrievers.items():
                    start = time.perf_counter()
                    hypotheses = retriever.hypotheses(rgb, camera, detection, max(TOP_KS))
                    seconds = time.perf_counter() - start
                    errors = [
                        symmetric_rotation_error(T[:3, :3], instance.T_cam_obj[:3, :3], symmetries[instance.obj_id])
                        for T, _ in hypotheses
                    ]
                    best = hypotheses[0].T_cam_obj
                    rows[name].append({
                        "obj": model.name,
                        "rotation_errors": np.degrees(errors),
                        "add_ok": add_s(best, instance.T_cam_obj, model.vertices, model.is_symmetric)
                        < ADD_THRESHOLD * model.diameter,
                        "translation_mm": 1000 * float(np.linalg.norm(best[:3, 3] - instance.T_cam_obj[:3, 3])),
                        "seconds": seconds,
                    })
    return [_summarise(name, rows[name], rotation_threshold_deg) for name in retrievers]


def _summarise(name: str, rows: list[dict[str, Any]], threshold_deg: float) -> RetrievalScores:
    """Aggregate per-instance rows of one retriever."""

    def shares(subset: list[dict[str, Any]]) -> dict[str, float]:
        hits = {k: float(np.mean([np.any(r["rotation_errors"][:k] < threshold_deg) for r in subset])) for k in TOP_KS}
        return {"n": len(subset), **{f"top{k}": v for k, v in hits.items()},
                "add_s_top1": float(np.mean([r["add_ok"] for r in subset]))}

    overall = shares(rows)
    per_object = {obj: shares([r for r in rows if r["obj"] == obj]) for obj in sorted({r["obj"] for r in rows})}
    return RetrievalScores(
        name=name, n=overall["n"], top1=overall["top1"], top5=overall["top5"], top20=overall["top20"],
        add_s_top1=overall["add_s_top1"],
        median_rotation_deg=float(np.median([r["rotation_errors"][0] for r in rows])),
        median_translation_mm=float(np.median([r["translation_mm"] for r in rows])),
        ms_per_object=1000 * float(np.median([r["seconds"] for r in rows])),
        per_object=per_object,
    )


def markdown_table(scores: list[RetrievalScores], threshold_deg: float) -> str:
    """The study's table: one row per retriever."""
    lines = [
        f"| retrieval | instances | top-1 within {threshold_deg:g} deg | top-5 | top-20 | ADD(-S) top-1 | "
        "median rot. err. top-1 (deg) | median transl. err. top-1 (mm) | ms / object |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        lines.append(
            f"| {s.name} | {s.n} | {s.top1:.2f} | {s.top5:.2f} | {s.top20:.2f} | {s.add_s_top1:.2f} | "
            f"{s.median_rotation_deg:.1f} | {s.median_translation_mm:.0f} | {s.ms_per_object:.0f} |"
        )
    return "\n".join(lines)


def write_report(scores: list[RetrievalScores], out: Path, threshold_deg: float, content: dict[str, Any]) -> None:
    """Write the Markdown table to `out` and everything (per object too) to `out` with .json."""
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Retrieval of initial poses: silhouette vs learned scorer\n\n"
        f"`{content.get('command', '')}` on {content.get('split', '')}, true visible masks, instances with "
        f"visib_fract >= {content.get('min_visib', '')}; per object in the JSON beside this file.\n\n"
    )
    out.write_text(header + markdown_table(scores, threshold_deg) + "\n")
    data = {**content, "scores": [asdict(s) for s in scores]}
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")

"""The estimator study (`sixdpose study estimator`): NOCS Pix2Pix, NOCS BBDM and MRC-Net on a held-out split.

Each (estimator, detector) case runs through the refinement study's `run_case` (the pipeline once, the
estimator's own poses kept beside the refined ones), so the two studies score alike: ADD(-S) recall,
AR_MSSD, AR_MSPD, median rotation / translation errors and ms per object, alone and with the refiner. This
study adds ADD(-S) recall over symmetric and asymmetric objects apart (from the per-instance errors), and
for MRC-Net the classifier's top-1 / top-5 rotation-bin accuracy and what the residual stage adds, measured
on crops around the ground-truth boxes (`estimation.mrcnet.train.crop_metrics`).

A case's results are kept in `<out>.cases/<case>.json` and reused by a later run with the same settings, so
a long study can be run in parts (e.g. the NOCS cases while MRC-Net trains).
"""
from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ros2_sixdpose.core.metrics import ADD_THRESHOLD
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.data.views import ViewConfig
from ros2_sixdpose.estimation.mrcnet.estimator import MrcNetEstimator, MrcNetEstimatorConfig
from ros2_sixdpose.estimation.mrcnet.train import MrcCache, MrcTrainConfig, crop_metrics
from ros2_sixdpose.evaluation.refine_study import Case, Row, run_case
from ros2_sixdpose.refinement.factory import RefinerConfig


def symmetry_recalls(instances: Sequence[Mapping[str, Any]], models: Mapping[int, ObjectModel]) -> dict[str, float]:
    """ADD(-S) recall (error < 0.1 d) over the instances of symmetric and of asymmetric objects (nan if none)."""
    out = {}
    for name, symmetric in (("symmetric", True), ("asymmetric", False)):
        errors = [m["error"] for m in instances if models[m["obj_id"]].is_symmetric == symmetric]
        out[name] = float(np.mean(np.asarray(errors) < ADD_THRESHOLD)) if errors else float("nan")
    return out


def _case_file(folder: Path, case: Case) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "_", f"{case.estimator_name} {case.detector_name}".lower()).strip("_")
    return folder / f"{slug}.json"


def run_cases(
    cases: Sequence[Case], refiner: RefinerConfig, split: BopSplit, models: Mapping[int, ObjectModel],
    min_visib: float, max_images: int | None, root: Path, folder: Path,
) -> list[dict[str, Any]]:
    """Every case's rows, symmetric / asymmetric recalls and settings; cases already in `folder` are read back."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"split": str(split.path), "min_visib": min_visib, "max_images": max_images, "refiner": asdict(refiner)}
    out = []
    for case in cases:
        path = _case_file(folder, case)
        saved = json.loads(path.read_text()) if path.is_file() else None
        if saved is None or saved["settings"] != json.loads(json.dumps(settings)) \
                or saved["estimator"] != json.loads(json.dumps(asdict(case.estimator))):
            started = time.time()
            rows, raw = run_case(case, refiner.type, refiner, split, models, min_visib, max_images, root)
            saved = {
                "settings": settings, "estimator": asdict(case.estimator), "rows": [asdict(r) for r in rows],
                "symmetry": {"alone": symmetry_recalls(raw["initial"], models),
                             "refined": symmetry_recalls(raw["instances"], models)},
                "minutes": (time.time() - started) / 60, "load_average": list(os.getloadavg()),
            }
            path.write_text(json.dumps(saved, indent=1) + "\n")
        out.append(saved)
    return out


def mrcnet_classifier(config: MrcNetEstimatorConfig, split: BopSplit, min_visib: float, root: Path) -> dict[str, float]:
    """`crop_metrics` of the configured MRC-Net on un-jittered crops around every visible-enough instance of `split`."""
    estimator = MrcNetEstimator.from_config(config, root)
    predictor = estimator.predictor
    train_config = MrcTrainConfig(net=predictor.net.config, bins=predictor.bins, grid=predictor.grid,
                                  crop_scale=config.crop_scale)
    view = ViewConfig(size=predictor.size, pad_scale=config.crop_scale, min_visib_fract=min_visib,
                      scale_jitter=0.0, shift_jitter=0.0)
    crops = MrcCache.build(split, view, train_config, predictor.models, predictor.object_ids, predictor.renderer,
                           epochs=1, seed=0)
    return crop_metrics(predictor, crops)


def markdown_report(cases: Sequence[Mapping[str, Any]], classifier: Mapping[str, float] | None,
                    content: Mapping[str, Any], out_md: Path) -> str:
    """The study as Markdown: how it was run, the main table, and the MRC-Net classifier's figures."""
    lines = [
        "# Estimator study: NOCS Pix2Pix, NOCS BBDM and MRC-Net, alone and with the refiner",
        "",
        f"Written by `{content['command']}` on this 2-core CPU machine (load average "
        f"{content['load_average'][0]:.1f} at the end: ms figures are wall time and grow with the load). Split "
        f"`{content['split']}` (held out from all training), instances with visib_fract >= {content['min_visib']}"
        + (f", first {content['max_images']} images" if content["max_images"] else "")
        + f". Refiner: config/refiner.yaml. Figures: `{out_md.with_suffix('.json').name}`. MRC-Net's design, "
        "training and limits: [mrcnet.md](mrcnet.md).",
        "",
        "| estimator | detections | refined | n | ADD(-S) | sym. | asym. | AR_MSSD | AR_MSPD | median rot. err. (deg) "
        "| median transl. err. (cm) | ms per object |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        for row in case["rows"]:
            r = Row(**row)
            sym = case["symmetry"]["refined" if r.refined else "alone"]
            lines.append(
                f"| {r.estimator} | {r.detector} | {'yes' if r.refined else 'no'} | {r.n_instances} | {r.add_s:.3f} | "
                f"{sym['symmetric']:.3f} | {sym['asymmetric']:.3f} | {r.ar_mssd:.3f} | {r.ar_mspd:.3f} | "
                f"{r.median_rotation_deg:.1f} | {r.median_translation_cm:.1f} | {r.ms_per_object:.0f} |"
            )
    lines += ["", "sym. / asym.: ADD(-S) recall over the instances of symmetric objects (lego, torus) and of the "
              "others, from each instance's nearest estimate of its object (the evaluator's ADD(-S) column matches "
              "estimates to instances its own way; the two agree to within a few instances)."]
    if classifier:
        lines += [
            "",
            "## MRC-Net's classifier and residual stage",
            "",
            f"On {int(classifier['n'])} crops around the ground-truth visible boxes of the whole split "
            "(visib_fract >= 0.5): top-1 / top-5 = share of crops whose best 1 / 5 rotation bins hold a bin of "
            "highest soft label (any of the equivalent bins of a symmetric object).",
            "",
            "| top-1 bin | top-5 bins | ADD(-S) classified | ADD(-S) + residual | median rot. err. classified (deg) "
            "| + residual (deg) |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {classifier['top1']:.3f} | {classifier['top5']:.3f} | {classifier['add_stage1']:.3f} | "
            f"{classifier['add_final']:.3f} | {classifier['rot_stage1_deg']:.1f} | {classifier['rot_final_deg']:.1f} |",
        ]
    return "\n".join(lines) + "\n"


def write_report(cases: Sequence[Mapping[str, Any]], classifier: Mapping[str, float] | None, split: BopSplit,
                 min_visib: float, max_images: int | None, out_md: Path, command: str) -> None:
    """Write the Markdown report and its JSON."""
    content = {"command": command, "split": str(split.path), "min_visib": min_visib, "max_images": max_images,
               "load_average": list(os.getloadavg()), "cases": list(cases), "classifier": classifier}
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.with_suffix(".json").write_text(json.dumps(content, indent=1) + "\n")
    out_md.write_text(markdown_report(cases, classifier, content, out_md))

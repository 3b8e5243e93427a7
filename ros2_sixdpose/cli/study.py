"""`sixdpose study nocs`: compare the NOCS networks (Pix2Pix / BBDM x augmentation off / on) on a held-out split."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from ros2_sixdpose.config import load_config
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.detection.base import DetectorConfig, make_detector
from ros2_sixdpose.detection.evaluate import iter_frames, object_names
from ros2_sixdpose.detection.misses import collect_outcomes, format_summary, summarise, write_report
from ros2_sixdpose.estimation.factory import EstimatorConfig
from ros2_sixdpose.estimation.study import Variant, run_study

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = (
    "weights/nocs_pix2pix_noaug.pt",
    "weights/nocs_pix2pix.pt",
    "weights/nocs_bbdm_noaug.pt",
    "weights/nocs_bbdm.pt",
)
MODEL_NAMES = {"pix2pix": "Pix2Pix", "bbdm": "BBDM"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `study` and its studies, `nocs` and `detector`."""
    parser = subparsers.add_parser("study", help="comparative studies of the pose methods")
    studies = parser.add_subparsers(dest="study", required=True)
    nocs = studies.add_parser("nocs", help="Pix2Pix vs BBDM NOCS maps, with and without augmentation, oracle detections")
    nocs.add_argument("--dataset", type=Path, required=True, help="BOP data set root holding the held-out split")
    nocs.add_argument("--split", default="test", help="held-out split (never used in training)")
    nocs.add_argument("--weights", type=Path, nargs="+", default=[Path(w) for w in DEFAULT_WEIGHTS],
                      help="weights files of the variants, in table order")
    nocs.add_argument("--config", type=Path, default=Path("config/estimator.yaml"),
                      help="estimator configuration (PnP, mask threshold, sampler steps); its weights entry is ignored")
    nocs.add_argument("--models", type=Path, default=None, help="models folder (default DATASET/models)")
    nocs.add_argument("--min-visib", type=float, default=0.5, help="instances less visible than this are not scored")
    nocs.add_argument("--out", type=Path, default=Path("docs/nocs_study.md"),
                      help="Markdown report; the JSON and the PNG figure are written beside it")
    nocs.add_argument("--threads", type=int, default=1, help="torch threads")
    nocs.set_defaults(func=run)
    detector = studies.add_parser("detector", help="why the learned detector misses instances: causes per object and bin")
    detector.add_argument("--dataset", type=Path, required=True, help="BOP data set root")
    detector.add_argument("--split", default="test", help="split to analyse")
    detector.add_argument("--config", type=Path, default=Path("config/detector.yaml"), help="detector configuration")
    detector.add_argument("--min-visib", type=float, default=0.3, help="instances less visible are not scored")
    detector.add_argument("--out", type=Path, default=Path("docs/detector_misses.json"),
                          help="JSON summary; the CSV of every instance's outcome and the PNG figure are written beside it")
    detector.add_argument("--threads", type=int, default=1, help="torch threads")
    detector.set_defaults(func=run_detector)


def variant_name(weights: Path) -> str:
    """'BBDM, augmentation on, 16000 steps' from the training JSON beside the weights (the file stem without one)."""
    info_path = weights.with_name(weights.name + ".json")
    if not info_path.is_file():
        return weights.stem
    info = json.loads(info_path.read_text())
    model = MODEL_NAMES.get(info.get("model"), info.get("model"))
    return f"{model}, augmentation {info.get('augment', '?')}, {info.get('steps', '?')} steps"


def run(args: argparse.Namespace) -> int:
    """Run the study and print the table's file names; exit code 1 on bad input."""
    torch.set_num_threads(args.threads)
    split = BopSplit(args.dataset, args.split)
    try:
        config = load_config(EstimatorConfig, args.config if args.config.is_file() else None).nocs
        models = load_models(args.models or split.models_dir)
        variants = [Variant(variant_name(w), w) for w in args.weights]
        command = " ".join(["sixdpose", *sys.argv[1:]]) if sys.argv[0].endswith("sixdpose") else " ".join(sys.argv)
        scores = run_study(variants, split, models, config, args.min_visib, args.out, args.out.with_suffix(".json"),
                           args.out.with_suffix(".png"), command)
    except (OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    for s in scores:
        print(f"{s.name:<28} NOCS {100 * s.nocs_error:5.2f} %  IoU {s.mask_iou:.3f}  ADD(-S) {s.add_s_recall:.3f}  "
              f"AR_MSSD {s.ar_mssd:.3f}  AR_MSPD {s.ar_mspd:.3f}  {s.ms_per_crop:.1f} ms/crop")
    print(f"wrote {args.out}, {args.out.with_suffix('.json')}, {args.out.with_suffix('.png')}")
    return 0


def run_detector(args: argparse.Namespace) -> int:
    """`sixdpose study detector`: classify every missed instance, print the tables, write the JSON and figure."""
    config = load_config(DetectorConfig, args.config, {"threads": args.threads})
    if config.type != "segmentation":
        logger.error("%s: the study analyses the learned detector, not type %r", args.config, config.type)
        return 1
    split = BopSplit(args.dataset, args.split)
    try:
        detector = make_detector(config)
        outcomes = collect_outcomes(detector, iter_frames(split))
        names = object_names(split.models_dir if split.models_dir.is_dir() else Path(config.models_dir))
    except (OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    summary = summarise(outcomes, names, args.min_visib)
    write_report(outcomes, summary, args.out, f"detector misses on {args.dataset}/{args.split} ({config.weights})")
    print(format_summary(summary))
    print(f"wrote {args.out}, {args.out.with_suffix('.csv')}, {args.out.with_suffix('.png')}")
    return 0

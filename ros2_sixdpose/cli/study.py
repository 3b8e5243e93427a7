"""`sixdpose study nocs`: compare the NOCS networks (Pix2Pix / BBDM x augmentation off / on) on a held-out split;
`sixdpose study retrieval`: the silhouette and learned retrieval scorers, true masks."""
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
    """Add `study` and its studies, `nocs` and `retrieval`."""
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
    retrieval = studies.add_parser("retrieval", help="silhouette vs learned template retrieval, oracle masks")
    retrieval.add_argument("--dataset", type=Path, required=True, help="BOP data set root holding the held-out split")
    retrieval.add_argument("--split", default="test", help="held-out split (never used in training)")
    retrieval.add_argument("--config", type=Path, default=Path("config/estimator_retrieval.yaml"),
                           help="retrieval settings; each scorer of --scorers replaces its `scorer`")
    retrieval.add_argument("--scorers", nargs="+", default=["silhouette", "learned"], choices=("silhouette", "learned"))
    retrieval.add_argument("--min-visib", type=float, default=0.5, help="instances less visible than this are not scored")
    retrieval.add_argument("--out", type=Path, default=Path("docs/retrieval_study.md"),
                           help="Markdown table; the JSON (per object too) is written beside it")
    retrieval.set_defaults(func=run_retrieval)


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


def run_retrieval(args: argparse.Namespace) -> int:
    """Run the retrieval study and print its table; exit code 1 on bad input."""
    from dataclasses import replace

    from ros2_sixdpose.estimation.retrieval.estimator import make_retriever
    from ros2_sixdpose.retrieval_study import markdown_table, study_retrievers, write_report

    split = BopSplit(args.dataset, args.split)
    try:
        config = load_config(EstimatorConfig, args.config if args.config.is_file() else None).retrieval
        retrievers = {scorer: make_retriever(replace(config, scorer=scorer)) for scorer in args.scorers}
        models = next(iter(retrievers.values())).models
        scores = study_retrievers(retrievers, split, models, args.min_visib)
    except (OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    command = " ".join(["sixdpose", *sys.argv[1:]]) if sys.argv[0].endswith("sixdpose") else " ".join(sys.argv)
    write_report(scores, args.out, 15.0, {"command": command, "split": str(split.path), "min_visib": args.min_visib})
    print(markdown_table(scores, 15.0))
    print(f"wrote {args.out}, {args.out.with_suffix('.json')}")
    return 0

"""`sixdpose study nocs|refine|estimator|retrieval|detector`: the NOCS networks (Pix2Pix / BBDM x augmentation off /
on), every estimator with and without the refiner, NOCS vs MRC-Net, the silhouette vs learned retrieval scorers, on a
held-out split; and why the learned detector misses what it misses."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ros2_sixdpose.cli.common import invoked_command
from ros2_sixdpose.paths import WEIGHTS_DIR, config_file

logger = logging.getLogger(__name__)

# The four variants at the same number of steps (11000); the estimator ships nocs_bbdm.pt, the BBDM trained longer.
DEFAULT_WEIGHTS = tuple(
    f"{WEIGHTS_DIR}/{name}"
    for name in ("nocs_pix2pix_noaug.pt", "nocs_pix2pix.pt", "nocs_bbdm_noaug.pt", "nocs_bbdm_11000.pt")
)
MODEL_NAMES = {"pix2pix": "Pix2Pix", "bbdm": "BBDM"}
DEFAULT_ESTIMATORS = ("estimator.yaml", "estimator_bbdm.yaml", "estimator_retrieval.yaml")
DETECTOR_NAMES = {"oracle": "ground-truth masks", "learned": "learned detector"}
ESTIMATOR_STUDY_CONFIGS = ("estimator.yaml", "estimator_bbdm.yaml", "estimator_mrcnet.yaml")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `study` and its studies, `nocs`, `refine`, `retrieval` and `detector`."""
    parser = subparsers.add_parser("study", help="comparative studies of the pose methods")
    studies = parser.add_subparsers(dest="study", required=True)
    nocs = studies.add_parser("nocs", help="Pix2Pix vs BBDM NOCS maps, with and without augmentation, oracle detections")
    nocs.add_argument("--dataset", type=Path, required=True, help="BOP data set root holding the held-out split")
    nocs.add_argument("--split", default="test", help="held-out split (never used in training)")
    nocs.add_argument("--weights", type=Path, nargs="+", default=[Path(w) for w in DEFAULT_WEIGHTS],
                      help="weights files of the variants, in table order (default: the four trained 11000 steps)")
    nocs.add_argument("--config", type=Path, default=config_file("estimator.yaml"),
                      help="estimator configuration (PnP, mask threshold, sampler steps); its weights entry is ignored")
    nocs.add_argument("--models", type=Path, default=None, help="models folder (default DATASET/models)")
    nocs.add_argument("--min-visib", type=float, default=0.5, help="instances less visible than this are not scored")
    nocs.add_argument("--out", type=Path, default=Path("docs/nocs_study.md"),
                      help="Markdown report; the JSON and the PNG figure are written beside it")
    nocs.add_argument("--threads", type=int, default=1, help="torch threads")
    nocs.set_defaults(func=run)
    refine = studies.add_parser("refine", help="each estimator with and without the refiner, ground-truth masks "
                                               "and the learned detector")
    _add_case_arguments(refine, DEFAULT_ESTIMATORS, "estimator configurations, in table order (none: only the --init "
                        "cases)")
    refine.add_argument("--refiner-config", type=Path, nargs="+", default=[config_file("refiner.yaml")],
                        help="refiner configurations; every case runs with each")
    refine.add_argument("--init", nargs="*", default=[], metavar="perturbed[:ROT_DEG[,TRANS_CM]]",
                        help="extra cases, first in the table: ground-truth masks and disturbed ground-truth poses "
                        "(as `sixdpose eval --init`), e.g. perturbed:15 perturbed:30 perturbed:45")
    refine.add_argument("--out", type=Path, default=Path("docs/refine_study.md"),
                        help="Markdown report; the JSON and the PNG figure are written beside it")
    refine.set_defaults(func=run_refine)
    retrieval = studies.add_parser("retrieval", help="silhouette vs learned template retrieval, ground-truth masks")
    retrieval.add_argument("--dataset", type=Path, required=True, help="BOP data set root holding the held-out split")
    retrieval.add_argument("--split", default="test", help="held-out split (never used in training)")
    retrieval.add_argument("--config", type=Path, default=config_file("estimator_retrieval.yaml"),
                           help="retrieval settings; each scorer of --scorers replaces its `scorer`")
    retrieval.add_argument("--scorers", nargs="+", default=["silhouette", "learned"], choices=("silhouette", "learned"))
    retrieval.add_argument("--min-visib", type=float, default=0.5, help="instances less visible than this are not scored")
    retrieval.add_argument("--out", type=Path, default=Path("docs/retrieval_study.md"),
                           help="Markdown table; the JSON (per object too) is written beside it")
    retrieval.set_defaults(func=run_retrieval)
    estimator = studies.add_parser("estimator", help="NOCS Pix2Pix / BBDM and MRC-Net, alone and refined, ground-truth "
                                                     "masks and the learned detector, with MRC-Net's bin accuracy")
    _add_case_arguments(estimator, ESTIMATOR_STUDY_CONFIGS,
                        "estimator configurations, in table order (an MRC-Net one also gets the bin analysis)")
    estimator.add_argument("--refiner-config", type=Path, default=config_file("refiner.yaml"),
                           help="the refiner after each estimator (its rows: 'refined')")
    estimator.add_argument("--out", type=Path, default=Path("docs/estimator_study.md"),
                           help="Markdown report; its JSON is written beside it, each case's results in OUT.cases/")
    estimator.set_defaults(func=run_estimator)
    detector = studies.add_parser("detector", help="why the learned detector misses instances: causes per object and bin")
    detector.add_argument("--dataset", type=Path, required=True, help="BOP data set root")
    detector.add_argument("--split", default="test", help="split to analyse")
    detector.add_argument("--config", type=Path, default=config_file("detector.yaml"), help="detector configuration")
    detector.add_argument("--min-visib", type=float, default=0.3, help="instances less visible are not scored")
    detector.add_argument("--out", type=Path, default=Path("docs/detector_misses.json"),
                          help="JSON summary; the CSV of every instance's outcome and the PNG figure are written beside it")
    detector.add_argument("--threads", type=int, default=1, help="torch threads")
    detector.set_defaults(func=run_detector)


def _add_case_arguments(parser: argparse.ArgumentParser, estimators: tuple[str, ...], estimators_help: str) -> None:
    """Options shared by `study refine` and `study estimator`: split, estimator configurations, detectors."""
    parser.add_argument("--dataset", type=Path, required=True, help="BOP data set root holding the held-out split")
    parser.add_argument("--split", default="test", help="held-out split (never used in training)")
    parser.add_argument("--estimators", type=Path, nargs="*", default=[config_file(name) for name in estimators],
                        help=estimators_help)
    parser.add_argument("--detector-config", type=Path, default=config_file("detector.yaml"),
                        help="the learned detector's configuration")
    parser.add_argument("--detectors", nargs="+", choices=("oracle", "learned"), default=["oracle", "learned"])
    parser.add_argument("--min-visib", type=float, default=0.5, help="instances less visible than this are not scored")
    parser.add_argument("--max-images", type=int, default=None, help="only the first N images of the split")


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
    import torch

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.estimation.factory import EstimatorConfig
    from ros2_sixdpose.evaluation.nocs_study import Variant, run_study

    torch.set_num_threads(args.threads)
    split = BopSplit(args.dataset, args.split)
    try:
        config = load_config(EstimatorConfig, args.config if args.config.is_file() else None).nocs
        models = load_models(args.models or split.models_dir)
        variants = [Variant(variant_name(w), w) for w in args.weights]
        scores = run_study(variants, split, models, config, args.min_visib, args.out, args.out.with_suffix(".json"),
                           args.out.with_suffix(".png"), invoked_command())
    except (OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    for s in scores:
        print(f"{s.name:<28} NOCS {100 * s.nocs_error:5.2f} %  IoU {s.mask_iou:.3f}  ADD(-S) {s.add_s_recall:.3f}  "
              f"AR_MSSD {s.ar_mssd:.3f}  AR_MSPD {s.ar_mspd:.3f}  {s.ms_per_crop:.1f} ms/crop")
    print(f"wrote {args.out}, {args.out.with_suffix('.json')}, {args.out.with_suffix('.png')}")
    return 0


def estimator_name(config_path: Path) -> str:
    """A table name for an estimator configuration: 'NOCS Pix2Pix', 'NOCS BBDM', 'retrieval (silhouette)'."""
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.estimation.factory import EstimatorConfig
    from ros2_sixdpose.paths import package_root

    config = load_config(EstimatorConfig, config_path)
    if config.type == "nocs":
        return f"NOCS {variant_name(package_root() / config.nocs.weights).split(',')[0]}"
    if config.type == "retrieval":
        return f"retrieval ({config.retrieval.scorer})"
    if config.type == "mrcnet":
        return "MRC-Net" if config.mrcnet.residual else "MRC-Net (classifier only)"
    return config.type


def _cases(args: argparse.Namespace) -> list:
    """The (estimator, detector) cases of `study refine` / `study estimator`: every detector x every configuration."""
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.detection.base import DetectorConfig
    from ros2_sixdpose.estimation.factory import EstimatorConfig
    from ros2_sixdpose.evaluation.refine_study import Case

    detectors = {"oracle": DetectorConfig(type="oracle"), "learned": load_config(DetectorConfig, args.detector_config)}
    configs = {path: load_config(EstimatorConfig, path) for path in args.estimators}
    return [Case(estimator_name(path), configs[path], DETECTOR_NAMES[d], detectors[d])
            for d in args.detectors for path in args.estimators]


def refiner_name(config_path: Path) -> str:
    """A table name for a refiner configuration: 'render-compare (mesh)', 'RNNPose', 'region-based tracker'."""
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.refinement.factory import RefinerConfig

    config = load_config(RefinerConfig, config_path)
    names = {"rnnpose": "RNNPose", "region": "region-based tracker", "per_object": "per object"}
    return names.get(config.type, f"{config.type.replace('_', '-')} ({config.views})")


def run_refine(args: argparse.Namespace) -> int:
    """Run the refinement study and print its table; exit code 1 on bad input."""
    import torch

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.detection.base import DetectorConfig
    from ros2_sixdpose.estimation.factory import EstimatorConfig
    from ros2_sixdpose.evaluation.perturbed_init import Perturbation
    from ros2_sixdpose.evaluation.refine_study import Case, run_study
    from ros2_sixdpose.paths import package_root
    from ros2_sixdpose.refinement.factory import RefinerConfig

    torch.set_num_threads(1)
    split = BopSplit(args.dataset, args.split)
    try:
        models = load_models(split.models_dir)
        oracle = DetectorConfig(type="oracle")
        inits = [Perturbation.parse(text) for text in args.init]
        cases = [Case(p.label, EstimatorConfig(), DETECTOR_NAMES["oracle"], oracle, p) for p in inits]
        refiners = {refiner_name(path): load_config(RefinerConfig, path) for path in args.refiner_config}
        rows = run_study(cases + _cases(args), refiners, split, models, args.min_visib, args.max_images, package_root(),
                         args.out, invoked_command())
    except (OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    for r in rows:
        print(f"{r.estimator:<24}{r.detector:<20}{r.refiner:<16} ADD(-S) {r.add_s:.3f}  "
              f"AR_MSSD {r.ar_mssd:.3f}  AR_MSPD {r.ar_mspd:.3f}  {r.ms_per_object:.0f} ms/object")
    print(f"wrote {args.out}, {args.out.with_suffix('.json')}, {args.out.with_suffix('.png')}")
    return 0


def run_estimator(args: argparse.Namespace) -> int:
    """Run the estimator study (cases already run with the same settings are read back) and print its table."""
    import torch

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.evaluation.estimator_study import mrcnet_classifier, run_cases, write_report
    from ros2_sixdpose.paths import package_root
    from ros2_sixdpose.refinement.factory import RefinerConfig

    torch.set_num_threads(1)
    split = BopSplit(args.dataset, args.split)
    try:
        models = load_models(split.models_dir)
        cases = _cases(args)
        results = run_cases(cases, load_config(RefinerConfig, args.refiner_config), split, models, args.min_visib,
                            args.max_images, package_root(), args.out.with_suffix(".cases"))
        mrcnet = next((c.estimator.mrcnet for c in cases if c.estimator.type == "mrcnet"), None)
        classifier = mrcnet_classifier(mrcnet, split, args.min_visib, package_root()) if mrcnet else None
    except (OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    write_report(results, classifier, split, args.min_visib, args.max_images, args.out, invoked_command())
    print(args.out.read_text())
    return 0


def run_retrieval(args: argparse.Namespace) -> int:
    """Run the retrieval study and print its table; exit code 1 on bad input."""
    from dataclasses import replace

    import torch

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.estimation.factory import EstimatorConfig
    from ros2_sixdpose.estimation.retrieval.estimator import make_retriever
    from ros2_sixdpose.evaluation.retrieval_study import THRESHOLD_DEG, markdown_table, study_retrievers, write_report
    from ros2_sixdpose.paths import package_root

    torch.set_num_threads(1)
    split = BopSplit(args.dataset, args.split)
    try:
        config = load_config(EstimatorConfig, args.config if args.config.is_file() else None).retrieval
        retrievers = {scorer: make_retriever(replace(config, scorer=scorer), package_root()) for scorer in args.scorers}
        models = next(iter(retrievers.values())).models
        scores = study_retrievers(retrievers, split, models, args.min_visib)
    except (OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    content = {"command": invoked_command(), "split": str(split.path), "min_visib": args.min_visib}
    write_report(scores, args.out, THRESHOLD_DEG, content)
    print(markdown_table(scores, THRESHOLD_DEG))
    print(f"wrote {args.out}, {args.out.with_suffix('.json')}")
    return 0


def run_detector(args: argparse.Namespace) -> int:
    """`sixdpose study detector`: classify every missed instance, print the tables, write the JSON, CSV and figure."""
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import model_names
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.detection.base import DetectorConfig
    from ros2_sixdpose.detection.evaluate import iter_frames
    from ros2_sixdpose.detection.factory import make_detector
    from ros2_sixdpose.detection.misses import collect_outcomes, format_summary, summarise, write_report

    config = load_config(DetectorConfig, args.config, {"threads": args.threads})
    if config.type != "segmentation":
        logger.error("%s: the study analyses the learned detector, not type %r", args.config, config.type)
        return 1
    split = BopSplit(args.dataset, args.split)
    try:
        detector = make_detector(config)
        outcomes = collect_outcomes(detector, iter_frames(split))
        names = model_names(split.models_dir if split.models_dir.is_dir() else Path(config.models_dir))
    except (OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    summary = summarise(outcomes, names, args.min_visib)
    write_report(outcomes, summary, args.out, f"detector misses on {args.dataset}/{args.split} ({config.weights})")
    print(format_summary(summary))
    print(f"wrote {args.out}, {args.out.with_suffix('.csv')}, {args.out.with_suffix('.png')}")
    return 0

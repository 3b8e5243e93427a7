"""`sixdpose eval`: score BOP pose results against a BOP split and write OUTDIR/metrics.json.

The results come from a BOP results CSV (`--results`) or, in pipeline mode (`--pipeline`), from running the
configured detector, pose estimator and refiner over the split first (`evaluation.split_run.evaluate_pipeline`, which also
writes OUTDIR/results.csv). `sixdpose eval detector ...` scores the configured detector alone
(ros2_sixdpose/detection/evaluate.py).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ros2_sixdpose.evaluation import BOP_MIN_VISIB, METRICS
from ros2_sixdpose.paths import config_file, package_root, under_root

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ros2_sixdpose.core.objects import ObjectModel
    from ros2_sixdpose.data.bop import BopSplit, PoseResult
    from ros2_sixdpose.detection.evaluate import DetectorMetrics
    from ros2_sixdpose.evaluation.scoring import EvalConfig, EvalReport, Scores

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval` sub-parser."""
    parser = subparsers.add_parser(
        "eval",
        help="score BOP pose results: ADD(-S) recall and BOP 2019+ AR (VSD, MSSD, MSPD)",
        description="Score a BOP results CSV (scene_id,im_id,obj_id,score,R,t,time; t in mm), or with --pipeline "
        "the configured detector + estimator run over the split, against the ground truth of a BOP split and "
        "write OUTDIR/metrics.json. `sixdpose eval detector -h` scores a detector.",
    )
    # Not `required=True`: argparse would then demand them of `sixdpose eval detector ...` too; run() checks.
    parser.add_argument("--dataset", type=Path, help="BOP data set folder (required)")
    parser.add_argument("--split", help="split folder name, e.g. test (required)")
    parser.add_argument("--results", type=Path, help="BOP results CSV (required without --pipeline)")
    parser.add_argument("--out", type=Path, help="output folder for metrics.json (required)")
    parser.add_argument("--pipeline", action="store_true",
                        help="run detector + estimator + refiner over the split, write OUTDIR/results.csv, then score it")
    parser.add_argument("--detector-config", type=Path, default=config_file("detector.yaml"),
                        help="pipeline mode: detection stage configuration")
    parser.add_argument("--estimator-config", type=Path, default=config_file("estimator.yaml"),
                        help="pipeline mode: pose-estimation stage configuration")
    parser.add_argument("--refiner-config", type=Path, default=config_file("refiner.yaml"),
                        help="pipeline mode: refinement stage configuration (a file with `type: none` refines nothing)")
    parser.add_argument("--oracle", action="store_true",
                        help="pipeline mode: the split's ground-truth masks as detections, to score the estimator alone")
    parser.add_argument("--init", default="estimator", metavar="estimator|perturbed[:ROT_DEG[,TRANS_CM]]",
                        help="pipeline mode: where the refiner starts; perturbed: ground-truth masks and ground-truth "
                        "poses turned up to ROT_DEG (15) per axis and shifted up to TRANS_CM / TRANS_CM / 5 TRANS_CM "
                        "(1) cm, seeded by --init-seed, so refiners are compared from the same starts")
    parser.add_argument("--init-seed", type=int, default=0, help="seed of the perturbed starts")
    parser.add_argument(
        "--metrics", type=_metric_list, default=METRICS, help=f"comma-separated subset of {','.join(METRICS)}"
    )
    parser.add_argument("--models", type=Path, default=None, help="BOP models folder (default DATASET/models)")
    parser.add_argument(
        "--min-visib", type=float, default=BOP_MIN_VISIB,
        help=f"skip ground-truth instances with visib_fract below this (default {BOP_MIN_VISIB}, as BOP)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the metrics.json of an earlier run in OUT")
    parser.set_defaults(func=run)
    detector = parser.add_subparsers(dest="what", metavar="{detector}").add_parser(
        "detector", help="precision / recall at mask IoU 0.5 of the configured detector"
    )
    _add_detector_arguments(detector)
    detector.set_defaults(func=run_detector)


def run(args: argparse.Namespace) -> int:
    """Evaluate, write metrics.json, print the table; exit code 1 on bad input."""
    required = ("dataset", "split", "out") if args.pipeline else ("dataset", "split", "results", "out")
    missing = [f"--{name}" for name in required if getattr(args, name) is None]
    if missing:
        logger.error("sixdpose eval: the following arguments are required: %s", ", ".join(missing))
        return 2
    if args.oracle and not args.pipeline:
        logger.error("sixdpose eval: --oracle needs --pipeline")
        return 2
    if args.init != "estimator" and not args.pipeline:
        logger.error("sixdpose eval: --init needs --pipeline")
        return 2
    if args.pipeline and args.results is not None:
        logger.error("sixdpose eval: --pipeline writes its own results; leave out --results")
        return 2

    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.data.bop import BopSplit, read_results_csv
    from ros2_sixdpose.evaluation.scoring import EvalConfig, evaluate_split
    from ros2_sixdpose.evaluation.split_run import METRICS_FILE

    if _earlier_run(args.out / METRICS_FILE, args.overwrite):
        return 1
    split = BopSplit(args.dataset, args.split)
    try:
        config = EvalConfig(metrics=args.metrics, min_visib=args.min_visib)
        models = load_models(args.models or split.models_dir)
        if args.pipeline:
            report = _evaluate_pipeline(args, split, models, config)
        else:
            results = read_results_csv(args.results)
            _check_results(results, models, args.results)
            report = evaluate_split(split, results, models, config, progress=True)
            report.write_json(args.out / METRICS_FILE)
    except (OSError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    print(format_table(report))
    print(f"wrote {args.out / METRICS_FILE}")
    return 0


def _earlier_run(path: Path, overwrite: bool) -> bool:
    """True, after saying so, when `path` holds an earlier run's metrics and `overwrite` was not asked for."""
    if path.exists() and not overwrite:
        logger.error("%s holds the metrics of an earlier run; pass --overwrite or choose another folder", path)
        return True
    return False


def _check_results(results: list[PoseResult], models: Mapping[int, ObjectModel], path: Path) -> None:
    """Raise ValueError for object ids without a model; warn when there is no estimate at all."""
    unknown = sorted({r.obj_id for r in results} - set(models))
    if unknown:
        raise ValueError(f"{path} has estimates of object ids {unknown}, which have no model (models: {sorted(models)})"
                         "; wrong --models or --dataset?")
    if not results:
        logger.warning("%s holds no estimates: every ground-truth instance scores as a miss", path)


def _evaluate_pipeline(
    args: argparse.Namespace, split: BopSplit, models: Mapping[int, ObjectModel], config: EvalConfig
) -> EvalReport:
    """Pipeline mode: the configured (or oracle) detector and the configured estimator over `split`."""
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.detection.base import DetectorConfig
    from ros2_sixdpose.estimation.factory import EstimatorConfig
    from ros2_sixdpose.evaluation.split_run import evaluate_pipeline
    from ros2_sixdpose.refinement.factory import RefinerConfig

    refiner = load_config(RefinerConfig, args.refiner_config)
    if args.init != "estimator":
        from ros2_sixdpose.evaluation.perturbed_init import Perturbation, PerturbedTruth
        from ros2_sixdpose.evaluation.split_run import score_pipeline
        from ros2_sixdpose.pipeline import Pipeline
        from ros2_sixdpose.refinement.factory import make_refiner

        starts = PerturbedTruth(split, models, Perturbation.parse(args.init), args.init_seed)
        return score_pipeline(Pipeline(starts, starts, make_refiner(refiner)), split, models, args.out, config)
    detector = DetectorConfig(type="oracle") if args.oracle else load_config(DetectorConfig, args.detector_config)
    estimator = load_config(EstimatorConfig, args.estimator_config)
    return evaluate_pipeline(detector, estimator, split, models, args.out, config, refiner=refiner)


def format_table(report: EvalReport) -> str:
    """Plain-text table: one row per object and one for all, recalls as fractions, '-' where not computed."""
    header = f"{'object':<24}{'n':>6}{'ADD(-S)':>9}{'AR_MSSD':>9}{'AR_MSPD':>9}{'AR_VSD':>9}{'AR':>9}"
    rows = [header, "-" * len(header)]
    for obj_id, scores in sorted(report.per_object.items()):
        rows.append(_row(f"{obj_id} {report.object_names[obj_id]}", scores))
    rows.append("-" * len(header))
    rows.append(_row("all", report.overall))
    rows.extend(f"note: {note}" for note in report.notes)
    return "\n".join(rows)


def _row(label: str, scores: Scores) -> str:
    """One table row."""
    values = (scores.add_s_recall, scores.ar_mssd, scores.ar_mspd, scores.ar_vsd, scores.ar)
    cells = "".join(f"{'-':>9}" if v is None else f"{v:>9.3f}" for v in values)
    return f"{label[:23]:<24}{scores.n_instances:>6}{cells}"


def _metric_list(text: str) -> tuple[str, ...]:
    """Parse `add,mssd,...` into a tuple of known metric names."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(set(names) - set(METRICS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {unknown}; choose from {','.join(METRICS)}")
    return names


def _add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sixdpose eval detector`."""
    parser.add_argument("--dataset", required=True, type=Path, help="BOP data set root")
    parser.add_argument("--split", required=True, help="split to evaluate on, e.g. test")
    parser.add_argument("--out", required=True, type=Path, help="output folder; detector_metrics.json is written there")
    parser.add_argument("--config", type=Path, default=config_file("detector.yaml"), help="detector configuration")
    parser.add_argument("--min-visib", type=float, default=0.3, help="instances less visible are not scored")
    parser.add_argument("--iou", type=float, default=0.5, help="mask IoU at which a detection matches")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's)")
    parser.add_argument("--overwrite", action="store_true", help="replace the metrics of an earlier run in OUT")


def run_detector(args: argparse.Namespace) -> int:
    """`sixdpose eval detector`: evaluate the configured detector on a split, print and write the metrics."""
    import json
    from dataclasses import asdict

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import model_names
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.detection.base import DetectorConfig
    from ros2_sixdpose.detection.evaluate import METRICS_FILE, evaluate, iter_frames
    from ros2_sixdpose.detection.factory import make_detector

    if _earlier_run(args.out / METRICS_FILE, args.overwrite):
        return 1
    overrides = {"threads": args.threads} if args.threads is not None else None
    config = load_config(DetectorConfig, args.config, overrides)
    if config.type == "oracle" and not config.dataset:
        config.dataset, config.split = str(args.dataset.resolve()), args.split
    detector = make_detector(config, package_root())  # the config's relative paths are the package's
    split = BopSplit(args.dataset, args.split)
    metrics = evaluate(detector, iter_frames(split, args.max_images), args.min_visib, args.iou, progress=True)
    report = {
        "dataset": str(args.dataset),
        "split": args.split,
        "min_visib_fract": args.min_visib,
        "iou_threshold": args.iou,
        "detector": asdict(config),
        **asdict(metrics),
    }
    names = model_names(split.models_dir if split.models_dir.is_dir() else under_root(config.models_dir))
    for obj_id, summary in report["per_object"].items():
        summary["name"] = names.get(obj_id, "")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / METRICS_FILE
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(detector_table(metrics, names))
    print(f"wrote {path}")
    return 0


def detector_table(metrics: DetectorMetrics, names: dict[int, str] | None = None) -> str:
    """The detector's metrics as a Markdown table: one row per object (id and name) and one overall."""
    names = names or {}
    lines = ["| object | GT | detections | precision | recall | mean mask IoU |", "|---|---|---|---|---|---|"]
    rows = [(f"{obj_id} {names.get(obj_id, '')}".strip(), summary) for obj_id, summary in metrics.per_object.items()]
    rows.append(("all", metrics.overall))
    for name, s in rows:
        cells = [f"{s[k]:.3f}" if s[k] is not None else "-" for k in ("precision", "recall", "mean_mask_iou")]
        lines.append(f"| {name} | {s['n_gt']} | {s['n_detections']} | " + " | ".join(cells) + " |")
    timing = metrics.ms_per_frame
    if timing:
        lines.append(
            f"\n{metrics.n_images} images; {timing['median']:.1f} ms per frame (median), {timing['p90']:.1f} (p90)"
        )
    return "\n".join(lines)

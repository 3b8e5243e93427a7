"""`sixdpose replay BAG --config FILE --out OUTDIR`: play a bag to the deployment's nodes over DDS, record, score.

Starts each node of the deployment file as its own process (as `sixdpose run` does), waits until they
are up and subscribed, publishes the bag's image and camera_info at the recorded pace times `--rate`
(or frame by frame with `--lockstep`), records every output topic into OUTDIR/output (a rosbag2), stops
the nodes, and scores the recorded poses against the bag's ground truth
(`ros2_sixdpose.evaluation.replay_run`). Writes:

    OUTDIR/output/          the recorded rosbag2 (bag time = receive time)
    OUTDIR/published.json   when each image was published
    OUTDIR/metrics.json     frames sent / received / answered, latency, ADD(-S), AR_MSSD, AR_MSPD (AR_VSD)
    OUTDIR/logs/            each node's log and parameter file

Needs a ROS 2 environment; run it inside `scripts/in-netns` here.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ros2_sixdpose.evaluation import BOP_MIN_VISIB, METRICS
from ros2_sixdpose.paths import config_file

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `replay` parser."""
    parser = subparsers.add_parser(
        "replay", help="play a bag through the nodes over DDS, record their outputs and score them",
        description="Start the nodes of a deployment file, publish the bag's camera topics to them, record every "
                    "output topic into OUT/output and write OUT/metrics.json (frames sent, received and answered, "
                    "end-to-end latency, pose recalls against the bag's ground truth).",
    )
    parser.add_argument("bag", type=Path, help="rosbag2 with camera topics (and /sixdpose/ground_truth), e.g. from "
                                               "`sixdpose bag`")
    parser.add_argument("--config", type=Path, default=config_file("nodes.yaml"),
                        help="deployment file (default: config/nodes.yaml)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed, times the recorded pace (default 1)")
    parser.add_argument("--lockstep", action="store_true",
                        help="publish each image only once the previous one was answered (no frame dropped)")
    parser.add_argument("--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="set a ROS parameter of every node, e.g. detector.dataset=DIR (repeatable; VALUE is YAML)")
    parser.add_argument("--models", type=Path, default=None,
                        help="BOP models folder for scoring (default: assets/models)")
    parser.add_argument("--metrics", default=",".join(METRICS),
                        help=f"metrics to compute, comma-separated subset of {','.join(METRICS)} (VSD needs depth)")
    parser.add_argument("--min-visib", type=float, default=BOP_MIN_VISIB,
                        help=f"leave out instances less visible than this (estimated from the bag's depth; "
                             f"default {BOP_MIN_VISIB}, as BOP)")
    parser.add_argument("--answer-timeout", type=float, default=30.0, help="s a lockstep image waits for its answer")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="s the nodes get to start and connect")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier replay in OUT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Replay, score, print the table; 1 with a one-line reason for a bad bag, deployment or option."""
    import yaml

    from ros2_sixdpose.cli.synth import parse_overrides
    from ros2_sixdpose.data.bags import BagError
    from ros2_sixdpose.evaluation.replay import format_table
    from ros2_sixdpose.evaluation.replay_run import METRICS_FILE, OUTPUT_BAG, replay_and_score
    from ros2_sixdpose.evaluation.scoring import EvalConfig
    from ros2_sixdpose.nodes.deployment import load_deployment, with_parameters
    from ros2_sixdpose.nodes.processes import NodeExited
    from ros2_sixdpose.nodes.replay import ReplayError, ReplaySettings
    from ros2_sixdpose.paths import models_dir

    try:
        settings = ReplaySettings(rate=args.rate, lockstep=args.lockstep, answer_timeout=args.answer_timeout,
                                  start_timeout=args.start_timeout)
        eval_config = EvalConfig(metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
                                 min_visib=args.min_visib)
        deployment = with_parameters(load_deployment(args.config), parse_overrides(args.params))
        metrics = replay_and_score(args.bag, deployment, args.out, settings, args.models or models_dir(), eval_config,
                                   args.overwrite)
    except (FileNotFoundError, FileExistsError, BagError, ValueError, NodeExited, ReplayError, yaml.YAMLError) as exc:
        logger.error("%s", exc)
        return 1
    print(format_table(metrics))
    print(f"recorded outputs: {args.out / OUTPUT_BAG}\nmetrics: {args.out / METRICS_FILE}")
    return 0

"""`sixdpose replay BAG --config FILE --out OUTDIR`: play a bag to the deployment's nodes over DDS, record, score.

Starts each node of the deployment file as its own process (as `sixdpose run` does), waits until they
are up and subscribed, publishes the bag's image and camera_info at the recorded pace times `--rate`
(or frame by frame with `--lockstep`), records every output topic into OUTDIR/output (a rosbag2), stops
the nodes, and scores the recorded poses against the bag's ground truth. Writes:

    OUTDIR/output/          the recorded rosbag2 (bag time = receive time)
    OUTDIR/published.json   when each image was published
    OUTDIR/metrics.json     frames sent / received / answered, latency, ADD(-S), AR_MSSD, AR_MSPD (AR_VSD)
    OUTDIR/logs/            each node's log and parameter file

Needs a ROS 2 environment; run it inside `scripts/in-netns` here.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import yaml

from ros2_sixdpose.cli.run import DEFAULT_CONFIG, node_command, write_parameter_files
from ros2_sixdpose.cli.synth import parse_overrides
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.data.bags import BagError, BagTopics, read_bag
from ros2_sixdpose.evaluation import METRICS, EvalConfig
from ros2_sixdpose.nodes.deployment import Deployment, load_deployment
from ros2_sixdpose.nodes.stages import package_root
from ros2_sixdpose.replay_metrics import PUBLISHED_FILE, ReplayMetrics, format_table, score_replay, write_published

if TYPE_CHECKING:
    from ros2_sixdpose.nodes.replay import ReplaySettings

logger = logging.getLogger(__name__)

OUTPUT_BAG = "output"
METRICS_FILE = "metrics.json"
LOGS = "logs"
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 15
FASTDDS_PROFILES = "FASTDDS_DEFAULT_PROFILES_FILE"


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
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
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
    parser.add_argument("--min-visib", type=float, default=0.0,
                        help="leave out instances less visible than this (estimated from the bag's depth)")
    parser.add_argument("--answer-timeout", type=float, default=30.0, help="s a lockstep image waits for its answer")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="s the nodes get to start and connect")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier replay in OUT")
    parser.set_defaults(func=run)


class NodeExited(RuntimeError):
    """A node process ended while the replay needed it."""


class NodeProcesses:
    """The deployment's nodes as child processes logging to files; on exit, stopped (SIGINT, then kill)."""

    def __init__(self, deployment: Deployment, folder: Path) -> None:
        self.deployment = deployment
        self.folder = folder
        self.processes: dict[str, subprocess.Popen] = {}
        self._reported: set[str] = set()  # nodes whose end `check` has raised

    def __enter__(self) -> "NodeProcesses":
        self.folder.mkdir(parents=True, exist_ok=True)
        files = write_parameter_files(self.deployment, self.folder)
        # Unbuffered, so a node's log is complete when it dies.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0"}
        try:
            for node in self.deployment.nodes:
                command = node_command(self.deployment, node, files[node.name])
                with open(self.log_path(node.name), "w") as log:
                    self.processes[node.name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def log_path(self, name: str) -> Path:
        """The log file of node `name`."""
        return self.folder / f"{name}.log"

    def check(self) -> None:
        """Raise NodeExited naming the node, its exit code and the end of its log if a node process has ended."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                self._reported.add(name)
                lines = self.log_path(name).read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                raise NodeExited(f"node {name} exited with code {process.returncode}; the end of "
                                   f"{self.log_path(name)}:\n  " + "\n  ".join(lines))

    def stop(self) -> None:
        """Interrupt the running nodes, kill those that do not stop; warn of unclean ends `check` did not report."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for name, process in self.processes.items():
            try:
                code = process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("node %s did not stop within %.0f s; killed", name, STOP_TIMEOUT_S)
                process.kill()
                code = process.wait()
            if code != 0 and name not in self._reported:
                logger.warning("node %s ended with code %d (log: %s)", name, code, self.log_path(name))


def with_parameters(deployment: Deployment, parameters: dict[str, object]) -> Deployment:
    """`deployment` with `parameters` set on every node (a node ignores the ones it does not declare)."""
    nodes = tuple(dataclasses.replace(node, parameters={**node.parameters, **parameters}) for node in deployment.nodes)
    return dataclasses.replace(deployment, nodes=nodes)


def use_large_image_transport() -> None:
    """Point Fast DDS at config/fastdds.xml (shared-memory segments that hold a whole image) unless told otherwise.

    Without it, best-effort images over 0.5 MB between processes are mostly lost (see the file). Set in
    this process's environment, so the nodes started from here and this process's participant both use it;
    an explicit FASTDDS_DEFAULT_PROFILES_FILE or another RMW is left alone.
    """
    profile = package_root() / "config" / "fastdds.xml"
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") == "rmw_fastrtps_cpp" and profile.is_file():
        if os.environ.setdefault(FASTDDS_PROFILES, str(profile)) == str(profile):
            logger.info("Fast DDS profile: %s", profile)


def _prepare_output(out: Path, overwrite: bool) -> None:
    """Create `out`; with `overwrite`, remove an earlier replay's results; FileExistsError otherwise."""
    earlier = [out / OUTPUT_BAG, out / PUBLISHED_FILE, out / METRICS_FILE]
    if any(path.exists() for path in earlier):
        if not overwrite:
            raise FileExistsError(f"{out} holds an earlier replay ({OUTPUT_BAG}/, {PUBLISHED_FILE}); "
                                  "pass --overwrite or choose another folder")
        shutil.rmtree(out / OUTPUT_BAG, ignore_errors=True)
        for path in earlier[1:]:
            path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def replay_and_score(
    bag: Path,
    deployment: Deployment,
    out: Path,
    settings: ReplaySettings,
    models_dir: Path,
    eval_config: EvalConfig,
    overwrite: bool = False,
) -> ReplayMetrics:
    """Replay `bag` through the nodes of `deployment`, write OUT/output, OUT/published.json and OUT/metrics.json.

    Raises FileNotFoundError / BagError for a missing bag or one without camera topics (before any node
    starts), FileExistsError for an earlier replay in `out`, NodeExited when a node dies, ReplayError
    when the nodes do not come up or stop answering.
    """
    from ros2_sixdpose.nodes.replay import replay  # needs rclpy, which the scoring does not

    topics = BagTopics()
    read_bag(bag, topics)  # checks the bag and its topics now, before anything starts
    _prepare_output(out, overwrite)
    use_large_image_transport()
    node_names = [node.name for node in deployment.nodes]
    with NodeProcesses(deployment, out / LOGS) as nodes:
        published = replay(bag, out / OUTPUT_BAG, deployment.image_topic, deployment.camera_info_topic, node_names,
                           settings, nodes.check, topics)
    write_published(out / PUBLISHED_FILE, published)
    metrics = score_replay(bag, out / OUTPUT_BAG, published, load_models(models_dir), eval_config, topics)
    metrics.write_json(out / METRICS_FILE)
    return metrics


def run(args: argparse.Namespace) -> int:
    """Replay, score, print the table; 1 with a one-line reason for a bad bag, deployment or option."""
    from ros2_sixdpose.nodes.replay import ReplayError, ReplaySettings

    try:
        settings = ReplaySettings(rate=args.rate, lockstep=args.lockstep, answer_timeout=args.answer_timeout,
                                  start_timeout=args.start_timeout)
        eval_config = EvalConfig(metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
                                 min_visib=args.min_visib)
        deployment = with_parameters(load_deployment(args.config), parse_overrides(args.params))
        models_dir = args.models or package_root() / "assets" / "models"
        metrics = replay_and_score(args.bag, deployment, args.out, settings, models_dir, eval_config, args.overwrite)
    except (FileNotFoundError, FileExistsError, BagError, ValueError, NodeExited, ReplayError, yaml.YAMLError) as exc:
        logger.error("%s", exc)
        return 1
    print(format_table(metrics))
    print(f"recorded outputs: {args.out / OUTPUT_BAG}\nmetrics: {args.out / METRICS_FILE}")
    return 0

"""`sixdpose run`: start the nodes of a deployment file (config/nodes*.yaml), as launch/sixdpose.launch.py does.

Each node runs as its own process (its console script, with a parameter file written from the
deployment), or all in this process with `--single-process` (one executor, a worker thread per node). Runs until
interrupted; a node that refuses to start (missing weights, a bad parameter) stops the others and its
exit code is returned.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ros2_sixdpose.paths import config_file

if TYPE_CHECKING:
    from ros2_sixdpose.nodes.deployment import Deployment

logger = logging.getLogger(__name__)

POLL_S = 0.2  # how often the node processes are checked


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `run` parser."""
    parser = subparsers.add_parser(
        "run", help="start the ROS 2 nodes of a deployment file",
        description="Start the nodes listed in a deployment file on the camera topics, as the launch file does "
                    "(default config/nodes.yaml: detector -> estimator -> tracker; config/nodes_estimator.yaml: "
                    "no tracking). Needs a ROS 2 environment (rclpy, the built messages).",
    )
    parser.add_argument("--config", type=Path, default=config_file("nodes.yaml"),
                        help="deployment file (default: config/nodes.yaml, the tracker)")
    parser.add_argument("--image", help="camera image topic (default: the file's camera.image)")
    parser.add_argument("--camera-info", help="camera_info topic (default: the file's camera.camera_info)")
    parser.add_argument("--single-process", action="store_true", help="run every node in this process")
    parser.set_defaults(func=run)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: stop like on Ctrl-C, so the nodes are stopped too."""
    raise KeyboardInterrupt


def _run_processes(deployment: Deployment, folder: Path) -> int:
    """Start one process per node; wait until interrupted or one exits; stop the rest. The exit code."""
    import signal
    import time

    from ros2_sixdpose.nodes.processes import NodeProcesses

    with NodeProcesses(deployment, folder, log_files=False) as nodes:
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            while (ended := nodes.exited()) is None:
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            return 0
        logger.error("node %s exited with code %d; stopping the others", *ended)
        return ended[1]


def _run_in_process(deployment: Deployment, folder: Path) -> int:
    """Build every node in this process and spin them in one executor. The exit code."""
    import functools
    import importlib

    from ros2_sixdpose.nodes.camera_node import spin  # needs rclpy, which the other commands do not
    from ros2_sixdpose.nodes.processes import write_parameter_files

    files = write_parameter_files(deployment, folder)
    factories = []
    for node in deployment.nodes:
        cls = getattr(importlib.import_module(node.spec.module), node.spec.node_class)
        # Each node gets its own arguments (name, parameter file, remappings), as its own process would.
        ros_args = deployment.ros_arguments(node, files[node.name])
        factories.append(functools.partial(cls, node.name, cli_args=ros_args))
    return spin(factories)


def run(args: argparse.Namespace) -> int:
    """Start the deployment's nodes and wait; 1 with a one-line error on a bad deployment file."""
    import tempfile

    import yaml

    from ros2_sixdpose.nodes.deployment import load_deployment

    try:
        deployment = load_deployment(args.config, args.image, args.camera_info)
    except (FileNotFoundError, ValueError, yaml.YAMLError) as exc:
        logger.error("%s", exc)
        return 1
    logger.info("starting %s on %s + %s", ", ".join(n.name for n in deployment.nodes), deployment.image_topic,
                deployment.camera_info_topic)
    with tempfile.TemporaryDirectory(prefix="sixdpose_run_") as folder:
        try:
            return _run_in_process(deployment, Path(folder)) if args.single_process else _run_processes(
                deployment, Path(folder))
        except FileNotFoundError as exc:
            logger.error("%s", exc)
            return 1

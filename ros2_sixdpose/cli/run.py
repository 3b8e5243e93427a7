"""`sixdpose run`: start the nodes of a deployment file (config/nodes*.yaml), as launch/sixdpose.launch.py does.

Each node runs as its own process (its console script, with a parameter file written from the
deployment), or all in this process with `--single-process` (one multi-threaded executor). Runs until
interrupted; a node that refuses to start (missing weights, a bad parameter) stops the others and its
exit code is returned.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ros2_sixdpose.nodes.deployment import Deployment, NodeLaunch, load_deployment, parameter_file_content

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "nodes.yaml"
STOP_TIMEOUT_S = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `run` parser."""
    parser = subparsers.add_parser(
        "run", help="start the ROS 2 nodes of a deployment file",
        description="Start the nodes listed in a deployment file (config/nodes.yaml) on the camera topics, "
                    "as the launch file does. Needs a ROS 2 environment (rclpy, the built messages).",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="deployment file (default: config/nodes.yaml)")
    parser.add_argument("--image", help="camera image topic (default: the file's camera.image)")
    parser.add_argument("--camera-info", help="camera_info topic (default: the file's camera.camera_info)")
    parser.add_argument("--single-process", action="store_true", help="run every node in this process")
    parser.set_defaults(func=run)


def write_parameter_files(deployment: Deployment, folder: Path) -> dict[str, Path]:
    """Write one ROS parameter file per node of `deployment` into `folder`; paths by node name."""
    files = {}
    for node in deployment.nodes:
        path = folder / f"{node.name}.yaml"
        path.write_text(yaml.safe_dump(parameter_file_content(node), sort_keys=False))
        files[node.name] = path
    return files


def node_command(deployment: Deployment, node: NodeLaunch, params_file: Path) -> list[str]:
    """Command line of a node's console script (beside this Python, else on PATH) with its ROS arguments."""
    beside = Path(sys.executable).parent / node.spec.executable
    executable = str(beside) if beside.is_file() else shutil.which(node.spec.executable)
    if executable is None:
        raise FileNotFoundError(f"console script {node.spec.executable!r} not found; install the package "
                                "(pip install -e .) to get it")
    return [executable, *deployment.ros_arguments(node, params_file)]


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: stop like on Ctrl-C, so the nodes are stopped too."""
    raise KeyboardInterrupt


def _run_processes(deployment: Deployment, files: dict[str, Path]) -> int:
    """Start one process per node; wait until interrupted or one exits; stop the rest. The exit code."""
    commands = [node_command(deployment, node, files[node.name]) for node in deployment.nodes]
    processes = [subprocess.Popen(command) for command in commands]
    signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.2)
        code = next(p.returncode for p in processes if p.returncode is not None)
        logger.error("a node exited with code %d; stopping the others", code)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
    return code


def _run_in_process(deployment: Deployment, files: dict[str, Path]) -> int:
    """Build every node in this process and spin them in one executor. The exit code."""
    from ros2_sixdpose.nodes.camera_node import spin  # needs rclpy, which the other commands do not

    factories = []
    for node in deployment.nodes:
        cls = getattr(importlib.import_module(node.spec.module), node.spec.node_class)
        # Each node gets its own arguments (name, parameter file, remappings), as its own process would.
        ros_args = deployment.ros_arguments(node, files[node.name])
        factories.append(functools.partial(cls, node.name, cli_args=ros_args))
    return spin(factories)


def run(args: argparse.Namespace) -> int:
    """Start the deployment's nodes and wait; 1 with a one-line error on a bad deployment file."""
    try:
        deployment = load_deployment(args.config, args.image, args.camera_info)
    except (FileNotFoundError, ValueError, yaml.YAMLError) as exc:
        logger.error("%s", exc)
        return 1
    logger.info("starting %s on %s + %s", ", ".join(n.name for n in deployment.nodes), deployment.image_topic,
                deployment.camera_info_topic)
    with tempfile.TemporaryDirectory(prefix="sixdpose_run_") as folder:
        files = write_parameter_files(deployment, Path(folder))
        try:
            return _run_in_process(deployment, files) if args.single_process else _run_processes(deployment, files)
        except FileNotFoundError as exc:
            logger.error("%s", exc)
            return 1

"""The deployment's nodes as child processes, for `sixdpose run` and `sixdpose replay`: no ROS imported here.

Each node runs its console script with a parameter file written from the deployment. Stopping sends
SIGINT (a node's clean shutdown) and kills the processes that have not ended `STOP_TIMEOUT_S` later.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

import yaml

from ros2_sixdpose.nodes.deployment import Deployment, NodeLaunch, parameter_file_content

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 15


class NodeExited(RuntimeError):
    """A node process ended while it was needed."""


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


class NodeProcesses:
    """The deployment's nodes as child processes; on exit, stopped (SIGINT, then kill).

    With `log_files`, each node's output goes to FOLDER/<node>.log (unbuffered, so a log is complete when
    its node dies); otherwise the nodes write to this process's terminal. Parameter files go to `folder`.
    """

    def __init__(self, deployment: Deployment, folder: Path, log_files: bool = True) -> None:
        self.deployment = deployment
        self.folder = folder
        self.log_files = log_files
        self.processes: dict[str, subprocess.Popen] = {}
        self._reported: set[str] = set()  # nodes whose end `check` has raised

    def __enter__(self) -> "NodeProcesses":
        self.folder.mkdir(parents=True, exist_ok=True)
        files = write_parameter_files(self.deployment, self.folder)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0"}
        try:
            for node in self.deployment.nodes:
                command = node_command(self.deployment, node, files[node.name])
                if not self.log_files:
                    self.processes[node.name] = subprocess.Popen(command)
                    continue
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

    def exited(self) -> tuple[str, int] | None:
        """(name, exit code) of a node process that has ended, or None while all run."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name, process.returncode
        return None

    def check(self) -> None:
        """Raise NodeExited naming the node, its exit code and the end of its log if a node process has ended."""
        ended = self.exited()
        if ended is None:
            return
        name, code = ended
        self._reported.add(name)
        tail = ""
        if self.log_files:
            lines = self.log_path(name).read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            tail = f"; the end of {self.log_path(name)}:\n  " + "\n  ".join(lines)
        raise NodeExited(f"node {name} exited with code {code}{tail}")

    def stop(self) -> None:
        """Interrupt the running nodes, kill those that do not stop; warn of unclean ends `check` did not report.

        Ctrl-C and SIGTERM are ignored meanwhile: a second Ctrl-C would otherwise end this process in the
        middle and leave node processes running without a parent.
        """
        if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
            self._stop()
            return
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self) -> None:
        """`stop` without touching signal handlers."""
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
                where = f" (log: {self.log_path(name)})" if self.log_files else ""
                logger.warning("node %s ended with code %d%s", name, code, where)

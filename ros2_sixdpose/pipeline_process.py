"""The pipeline (detector + estimator + refiner) in a child process: a frame in, its estimates out later.

The tracker needs an initialisation now and then (0.3-1.5 s on the CPU) while it must answer every frame
within a few ms. Run in the tracking thread it blocks the tracks; run in a second thread it still stops them,
since the renderer (moderngl on llvmpipe) holds the interpreter lock for every render and read-back (its
extension never releases it). In a process of its own it runs on the other core, and the tracker keeps
answering: `submit` hands over a frame and returns at once, `poll` returns the result once it is there.

The child is a fresh interpreter (`python -m ros2_sixdpose.pipeline_process`; a forked ROS or OpenGL process is
not safe to use) in a session of its own, so a Ctrl-C to the terminal stops the parent only, which then ends
the child; it also ends when the parent dies (its socket closes). It builds the stages from the configs the
parent sends; a stage that cannot be built (missing weights) raises the same error in the parent.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from ros2_sixdpose.detection.base import Detection, DetectorConfig
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.estimation.factory import EstimatorConfig
from ros2_sixdpose.pipeline import Frame, Pipeline
from ros2_sixdpose.refinement.factory import RefinerConfig

Select = Callable[[list[Detection]], list[Detection]]  # picklable: it is sent to the child with each frame
START_TIMEOUT_S = 600.0  # building the stages may build caches (retrieval banks) on a first start
STOP_TIMEOUT_S = 5.0
# Errors the child's start-up passes back as themselves (a node refuses to start with them); others as RuntimeError.
STARTUP_ERRORS = (FileNotFoundError, ValueError, TypeError, KeyError)


@dataclass
class ProcessResult:
    """The estimates of a submitted frame (those that hold a pose), seconds per stage, and the frame itself."""

    frame: Frame
    estimates: list[PoseEstimate]
    seconds: dict[str, float]


def _serve(connection: Connection) -> None:
    """The child: build the stages from the configs received, say ready (or why not), then answer (frame, select)
    requests until None or until the parent has gone."""
    import torch

    detector, estimator, refiner, root, threads = connection.recv()
    torch.set_num_threads(threads)
    try:
        pipeline = Pipeline.from_configs(detector, estimator, refiner, root)
    except Exception as exc:  # sent back to the parent, which raises it
        connection.send(("error", exc if isinstance(exc, STARTUP_ERRORS) else RuntimeError(traceback.format_exc())))
        return
    connection.send(("ready", None))
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):  # the parent has gone: nothing left to answer
            return
        if request is None:
            return
        frame, select = request
        try:
            result = pipeline.process(frame, select)
            connection.send(("result", (result.poses, result.seconds)))
        except Exception as exc:  # one bad frame must not end the process; the parent reports it
            connection.send(("failed", f"{type(exc).__name__}: {exc}"))


class PipelineProcess:
    """A `Pipeline` in a child process, one frame at a time (see the module docstring)."""

    def __init__(self, detector: DetectorConfig, estimator: EstimatorConfig, refiner: RefinerConfig,
                 root: str | Path, threads: int = 1) -> None:
        ours, theirs = socket.socketpair()
        # The child imports this package from where the parent does (a checkout, the editable install).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._process = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                         pass_fds=[theirs.fileno()], start_new_session=True, env=env)
        theirs.close()
        self._connection = Connection(ours.detach())
        self._pending: Frame | None = None
        try:
            self._connection.send((detector, estimator, refiner, str(root), threads))
            if not self._connection.poll(START_TIMEOUT_S):
                raise RuntimeError(f"the pipeline process did not start within {START_TIMEOUT_S:.0f} s")
            kind, error = self._connection.recv()
        except (EOFError, OSError) as exc:
            self.close()
            raise RuntimeError(f"the pipeline process ended while starting (exit code {self._process.poll()})") \
                from exc
        except BaseException:
            self.close()
            raise
        if kind == "error":
            self.close()
            raise error

    @property
    def busy(self) -> bool:
        """True while a submitted frame has not been collected by `poll`."""
        return self._pending is not None

    @property
    def exited(self) -> bool:
        """True once the child process has ended."""
        return self._process.poll() is not None

    def submit(self, frame: Frame, select: Select | None = None) -> None:
        """Start estimating the poses in `frame` (of the detections `select` keeps, if given); returns at once."""
        if self.busy:
            raise RuntimeError("the pipeline process is still busy with the previous frame")
        if self.exited:
            raise RuntimeError(f"the pipeline process has ended (exit code {self._process.returncode})")
        self._connection.send((frame, select))
        self._pending = frame

    def poll(self) -> ProcessResult | None:
        """The result of the submitted frame once it is ready, else None. Raises RuntimeError if it failed."""
        if self._pending is None:
            return None
        try:
            if not self._connection.poll():
                if self.exited:
                    raise EOFError
                return None
            kind, payload = self._connection.recv()
        except (EOFError, OSError) as exc:
            self._pending = None
            raise RuntimeError(f"the pipeline process has ended (exit code {self._process.poll()})") from exc
        frame, self._pending = self._pending, None
        if kind == "failed":
            raise RuntimeError(payload)
        estimates, seconds = payload
        return ProcessResult(frame, estimates, seconds)

    def close(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Ask the child to end; kill it if it has not within `timeout` s (it may be amid a frame)."""
        try:
            self._connection.send(None)
        except (OSError, ValueError):
            pass
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._connection.close()


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))

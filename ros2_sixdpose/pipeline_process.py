"""The pipeline (detector + estimator + refiner) in a child process: a frame in, its estimates out later.

The tracker needs an initialisation now and then (0.3-1.5 s on the CPU) while it must answer every frame
within a few ms. Run in the tracking thread it blocks the tracks; run in a second thread it competes for the
interpreter lock with them. In a process of its own it runs on the other core, and the tracker keeps
answering: `submit` hands over a frame and returns at once, `poll` returns the result once it is there.
The process is started with `spawn` (a forked ROS or OpenGL process is not safe to use) and builds its
stages from the configs; a stage that cannot be built (missing weights) raises the same error in `start`.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ros2_sixdpose.detection.base import Detection, DetectorConfig
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.estimation.factory import EstimatorConfig
from ros2_sixdpose.pipeline import Frame, Pipeline
from ros2_sixdpose.refinement.factory import RefinerConfig

Select = Callable[[list[Detection]], list[Detection]]  # picklable: it is sent to the child with each frame
START_TIMEOUT_S = 600.0  # building the stages may build caches (retrieval banks) on a first start
# Errors the child's start-up passes back as themselves (a node refuses to start with them); others as RuntimeError.
STARTUP_ERRORS = (FileNotFoundError, ValueError, TypeError, KeyError)


@dataclass
class ProcessResult:
    """The estimates of a submitted frame (those that hold a pose), seconds per stage, and the frame itself."""

    frame: Frame
    estimates: list[PoseEstimate]
    seconds: dict[str, float]


def _serve(connection: multiprocessing.connection.Connection, detector: DetectorConfig, estimator: EstimatorConfig,
           refiner: RefinerConfig, root: str, threads: int) -> None:
    """The child: build the stages, say ready (or why not), then answer (frame, select) requests until None."""
    import torch

    torch.set_num_threads(threads)
    try:
        pipeline = Pipeline.from_configs(detector, estimator, refiner, root)
    except Exception as exc:  # sent back to the parent, which raises it
        connection.send(("error", exc if isinstance(exc, STARTUP_ERRORS) else RuntimeError(traceback.format_exc())))
        return
    connection.send(("ready", None))
    while (request := connection.recv()) is not None:
        frame, select = request
        try:
            result = pipeline.process(frame, select)
            connection.send(("result", (result.poses, result.seconds)))
        except Exception as exc:  # one bad frame must not end the process; the parent reports it
            connection.send(("failed", f"{type(exc).__name__}: {exc}"))


def _start_ignoring_sigint(process: multiprocessing.process.BaseProcess) -> None:
    """Start `process` with SIGINT ignored (inherited through exec), so a Ctrl-C to the terminal's process group
    stops the parent, which then ends the child, and never shows a traceback from the child."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        process.start()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process.start()
    finally:
        signal.signal(signal.SIGINT, previous)


class PipelineProcess:
    """A `Pipeline` in a spawned child process, one frame at a time (see the module docstring)."""

    def __init__(self, detector: DetectorConfig, estimator: EstimatorConfig, refiner: RefinerConfig,
                 root: str | Path, threads: int = 1) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, detector, estimator, refiner, str(root), threads),
                                        name="sixdpose_pipeline", daemon=True)
        _start_ignoring_sigint(self._process)
        child.close()
        self._pending: Frame | None = None
        try:
            if not self._connection.poll(START_TIMEOUT_S):
                raise RuntimeError(f"the pipeline process did not start within {START_TIMEOUT_S:.0f} s")
            kind, error = self._connection.recv()
        except (EOFError, OSError) as exc:
            self.close()
            raise RuntimeError(f"the pipeline process ended while starting (exit code {self._process.exitcode})") \
                from exc
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
        return not self._process.is_alive()

    def submit(self, frame: Frame, select: Select | None = None) -> None:
        """Start estimating the poses in `frame` (of the detections `select` keeps, if given); returns at once."""
        if self.busy:
            raise RuntimeError("the pipeline process is still busy with the previous frame")
        if not self._process.is_alive():
            raise RuntimeError(f"the pipeline process has ended (exit code {self._process.exitcode})")
        self._connection.send((frame, select))
        self._pending = frame

    def poll(self) -> ProcessResult | None:
        """The result of the submitted frame once it is ready, else None. Raises RuntimeError if it failed."""
        if self._pending is None or not self._connection.poll():
            if self._pending is not None and not self._process.is_alive():
                self._pending = None
                raise RuntimeError(f"the pipeline process has ended (exit code {self._process.exitcode})")
            return None
        frame, self._pending = self._pending, None
        kind, payload = self._connection.recv()
        if kind == "failed":
            raise RuntimeError(payload)
        estimates, seconds = payload
        return ProcessResult(frame, estimates, seconds)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the child to end; kill it if it does not within `timeout` s."""
        try:
            self._connection.send(None)
        except (OSError, ValueError):
            pass
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()

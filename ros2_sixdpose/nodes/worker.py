"""One worker thread per node that runs the heavy callback on the newest input only.

Why not rclpy's MultiThreadedExecutor with the inference in its own callback group (what the nodes did
before): profiled with py-spy under a 60 Hz image flood, its spinning thread burnt most of a core while
inference ran. A subscription whose mutually exclusive group is busy is not waited on, but every other
wake-up (each camera_info, each image of the counting subscription, the timers, the guard condition that the
pool's handlers trigger when they start and end) rebuilds the whole wait set in Python - the lifecycle and
parameter services of a node are some 20 entities - and re-yields the handlers the pool has not started yet.
All of it holds the interpreter lock the inference thread needs, so answers stalled for seconds.

Instead the executor is single-threaded and its callbacks are cheap: the image callback only hands the
message to a `LatestWorker`, whose own thread runs the inference on the newest input. An input that
arrives while the worker is busy replaces the one waiting (counted in `replaced`), so the node never queues
stale frames and never waits in the executor.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)


class LatestWorker(Generic[T]):
    """Calls `handle(item)` in a thread of its own for the newest item `put`; older waiting items are replaced.

    `handle` must not raise (the nodes report their errors themselves); if it does, the error is logged and
    the worker goes on with the next item.
    """

    def __init__(self, name: str, handle: Callable[[T], None]) -> None:
        self._handle = handle
        self._condition = threading.Condition()
        self._item: T | None = None
        self._waiting = False
        self._stopped = False
        self.replaced = 0  # items put while another waited: dropped before `handle` saw them
        self.handled = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: T) -> None:
        """Hand `item` to the worker, replacing the one still waiting, if any. Returns at once."""
        with self._condition:
            if self._waiting:
                self.replaced += 1
            self._item, self._waiting = item, True
            self._condition.notify()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the item being handled finish (up to `timeout` s), drop the waiting one, end the thread."""
        with self._condition:
            self._stopped = True
            self._item, self._waiting = None, False
            self._condition.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._waiting or self._stopped)
                if self._stopped:
                    return
                item, self._item, self._waiting = self._item, None, False
            try:
                self._handle(item)
            except Exception:  # a bug in a handler must not end the node's processing
                logger.exception("%s: unhandled error", self._thread.name)
            self.handled += 1

"""Node health: each distinct problem logged once, per-stage latency statistics, and their DiagnosticStatus."""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from ros2_sixdpose.topics import ARRIVED_KEY, DROPPED_KEY, FRAME_COUNT_KEYS, SKIPPED_KEY

# Distinct problems remembered (and so logged once each); beyond, new ones are counted but not logged, so a
# message that varies per frame cannot flood the log.
MAX_DISTINCT_PROBLEMS = 64
LATENCY_WINDOW = 200  # frames the latency statistics cover


@dataclass
class ProblemLog:
    """Logs the first occurrence of each distinct problem with `warn`, counts all, remembers the latest.

    A problem is distinct by its kind ('image', 'camera_info', ...) and message, so a camera that keeps
    sending a wrong encoding gives one log line, and a second, different fault gives one more. Thread-safe:
    a node's worker thread reports while its executor thread publishes diagnostics.
    """

    warn: Callable[[str], None]
    counts: dict[str, int] = field(default_factory=dict)  # per kind
    latest: str = ""  # message of the newest problem, '' once a frame went through after it
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _full: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(self, kind: str, message: str) -> bool:
        """Count a problem of `kind`; log it if this (kind, message) was not seen before. True if logged."""
        with self._lock:
            self.counts = {**self.counts, kind: self.counts.get(kind, 0) + 1}  # a new dict: readers hold the old
            self.latest = f"{kind}: {message}"
            key = (kind, message)
            if key in self._seen or self._full:
                return False
            if len(self._seen) == MAX_DISTINCT_PROBLEMS:
                self._full = True
                line = f"{self.latest} (the {MAX_DISTINCT_PROBLEMS + 1}th distinct problem: no more are logged)"
            else:
                self._seen.add(key)
                line = f"{self.latest} (logged once; later occurrences are counted in /diagnostics)"
        self.warn(line)
        return True

    def frame_ok(self) -> None:
        """Note that a frame was answered: the node is healthy again."""
        self.latest = ""


class LatencyStats:
    """Median and 90th percentile of the last LATENCY_WINDOW durations of each named stage, in seconds.

    Thread-safe: a node's worker thread adds durations while its executor thread summarises them.
    """

    def __init__(self, window: int = LATENCY_WINDOW) -> None:
        self._window = window
        self._samples: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        """Record one duration of `stage`."""
        with self._lock:
            self._samples.setdefault(stage, deque(maxlen=self._window)).append(seconds)

    def summary(self) -> dict[str, tuple[float, float]]:
        """Per stage, (median, p90) seconds over the window."""
        with self._lock:
            samples = {stage: list(s) for stage, s in self._samples.items() if s}
        return {stage: (float(np.median(s)), float(np.percentile(s, 90))) for stage, s in samples.items()}


@dataclass
class FrameCounters:
    """Frames a node received, answered (published a result for) and rejected, and those it never received."""

    received: int = 0
    answered: int = 0
    rejected: int = 0
    dropped: int = 0  # replaced by newer frames in the middleware, before any callback saw them
    skipped: int = 0  # taken by the subscription, then replaced by a newer frame before the node's worker took it

    @property
    def arrived(self) -> int:
        """Every frame that reached the node, processed or not."""
        return self.received + self.skipped + self.dropped


def diagnostic_status(
    name: str, counters: FrameCounters, latency: LatencyStats, problems: ProblemLog
) -> DiagnosticStatus:
    """One DiagnosticStatus: OK, WARN with the latest problem while input is being rejected, STALE before any frame.

    Values: frame counts, per-stage latency median / p90 in ms, and problem counts per kind.
    """
    if problems.latest:
        level, message = DiagnosticStatus.WARN, problems.latest
    elif counters.answered == 0:
        level, message = DiagnosticStatus.STALE, "no frame answered yet"
    else:
        level, message = DiagnosticStatus.OK, "ok"
    values = [KeyValue(key=key, value=str(getattr(counters, what))) for what, key in FRAME_COUNT_KEYS.items()]
    values += [KeyValue(key=DROPPED_KEY, value=str(counters.dropped)),
               KeyValue(key=SKIPPED_KEY, value=str(counters.skipped)),
               KeyValue(key=ARRIVED_KEY, value=str(counters.arrived))]
    for stage, (median, p90) in sorted(latency.summary().items()):
        values.append(KeyValue(key=f"{stage} ms median", value=f"{1e3 * median:.1f}"))
        values.append(KeyValue(key=f"{stage} ms p90", value=f"{1e3 * p90:.1f}"))
    values += [KeyValue(key=f"problems {kind}", value=str(count)) for kind, count in sorted(problems.counts.items())]
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id="", values=values)

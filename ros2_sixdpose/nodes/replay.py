"""Replaying a rosbag2 through running nodes over DDS: a player of the camera topics and a recorder of the outputs.

`BagPlayer` publishes a bag's image and camera_info messages as they are stored (serialised CDR, no
decoding) on the deployment's camera topics, at the recorded pace times a rate, and logs when each
image went out. `TopicRecorder` subscribes (raw) to every output topic it discovers and writes each
message, stamped with its receive time, into a new rosbag2 (standard layout, message definitions and
type hashes stored, as `ros2 bag record` writes it). `replay` wires both to a running deployment: wait
until the nodes are up and connected, play, drain, and collect the last diagnostics. ROS-free scoring of
the result is in `ros2_sixdpose.evaluation.replay`.
"""
from __future__ import annotations

import fnmatch
import importlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from sensor_msgs.msg import CameraInfo, Image

from ros2_sixdpose.core.messages import stamp_ns
from ros2_sixdpose.data.bags import BagTopics
from ros2_sixdpose.data.msg_types import typestore
from ros2_sixdpose.evaluation.replay import PublishedFrame
from ros2_sixdpose.topics import DIAGNOSTICS_TOPIC, POSES_TOPIC

logger = logging.getLogger(__name__)

# What the recorder writes: the nodes' outputs (fnmatch patterns; '*' also matches '/').
OUTPUT_TOPIC_PATTERNS = ("/sixdpose/*", "/tf", "/tf_static", "/diagnostics")
DISCOVERY_PERIOD_S = 0.5
RECORD_DEPTH = 100
# Like a camera driver: reliable, so that reliable and best-effort subscribers both match.
CAMERA_QOS = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
POLL_S = 0.05
MAX_UNANSWERED = 3  # lockstep images in a row without an answer before the replay gives up


class ReplayError(RuntimeError):
    """The replay could not run: the nodes did not come up, or a node process died."""


@dataclass(frozen=True)
class CameraMessage:
    """One message of a bag's camera topics, still serialised."""

    kind: str  # "image" or "camera_info"
    log_ns: int  # the bag's time of the message
    stamp_ns: int  # its header stamp
    raw: bytes  # CDR, as stored


@dataclass(frozen=True)
class ReplaySettings:
    """How to play a bag and how long to wait for the nodes."""

    rate: float = 1.0  # playback speed, times the recorded pace
    lockstep: bool = False  # each image waits (up to answer_timeout) until the previous one was answered
    answer_timeout: float = 30.0  # s
    start_timeout: float = 180.0  # s the nodes get to load their models and connect
    drain_timeout: float = 10.0  # s without a new answer after the last image, before recording stops
    settle: float = 0.5  # s between connecting and the first image, for the last discovery messages

    def __post_init__(self) -> None:
        timeouts = (self.answer_timeout, self.start_timeout, self.drain_timeout)
        if not self.rate > 0 or min(timeouts) <= 0 or self.settle < 0:
            raise ValueError(f"need rate > 0, positive timeouts and settle >= 0, got {self}")


def camera_messages(bag: str | Path, topics: BagTopics = BagTopics()) -> Iterator[CameraMessage]:
    """The image and camera_info messages of a bag in bag-time order; at equal bag times camera_info first.

    Raises ValueError when the bag lacks either topic.
    """
    kinds = {topics.rgb: "image", topics.camera_info: "camera_info"}
    store = typestore()
    with Reader(Path(bag)) as reader:
        connections = [c for c in reader.connections if c.topic in kinds]
        missing = sorted(set(kinds) - {c.topic for c in connections})
        if missing:
            raise ValueError(f"{bag}: no {', '.join(missing)} topic")
        group: list[CameraMessage] = []
        for connection, log_ns, raw in reader.messages(connections=connections):
            header = store.deserialize_cdr(raw, connection.msgtype).header
            message = CameraMessage(kinds[connection.topic], log_ns, stamp_ns(header.stamp), bytes(raw))
            if group and log_ns != group[0].log_ns:
                yield from sorted(group, key=lambda m: m.kind == "image")
                group = []
            group.append(message)
        yield from sorted(group, key=lambda m: m.kind == "image")


def message_class(msgtype: str) -> type | None:
    """The Python class of a ROS message type name such as 'sensor_msgs/msg/Image', or None if not importable."""
    package, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError, ValueError):
        return None


def recording_qos(publisher_profiles: Sequence[QoSProfile]) -> QoSProfile:
    """A subscription profile that matches every publisher, as `ros2 bag record` chooses it.

    Reliable only if every publisher is; transient-local (to get latched messages such as /tf_static)
    only if every publisher is.
    """
    reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in publisher_profiles)
    latched = bool(publisher_profiles) and all(
        p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publisher_profiles)
    return QoSProfile(
        depth=RECORD_DEPTH, history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class BagPlayer(Node):
    """Publishes a bag's camera messages on the deployment's image and camera_info topics."""

    def __init__(self, image_topic: str, camera_info_topic: str, **kwargs: Any) -> None:
        super().__init__("sixdpose_replay_player", **kwargs)
        self._camera_publishers = {
            "image": self.create_publisher(Image, image_topic, CAMERA_QOS),
            "camera_info": self.create_publisher(CameraInfo, camera_info_topic, CAMERA_QOS),
        }

    def connected(self, node_names: Iterable[str]) -> bool:
        """True once each camera publisher is matched with a subscription of every node named."""
        names = set(node_names)
        for publisher in self._camera_publishers.values():
            subscribers = {info.node_name for info in self.get_subscriptions_info_by_topic(publisher.topic_name)}
            if not names <= subscribers or publisher.get_subscription_count() < len(names):
                return False
        return True

    def play(
        self, messages: Iterable[CameraMessage], rate: float, wait_answer: Callable[[int], bool] | None = None
    ) -> list[PublishedFrame]:
        """Publish `messages` at their bag-time spacing divided by `rate`; the images' stamps and publish times.

        With `wait_answer(stamp_ns)`, each image first waits for the answer to the previous one; the
        time spent waiting shifts the rest of the schedule. Raises ReplayError when MAX_UNANSWERED images
        in a row get no answer.
        """
        published: list[PublishedFrame] = []
        start = first_log = None
        waited_ns = unanswered = 0
        for message in messages:
            if start is None:
                start, first_log = time.monotonic_ns(), message.log_ns
            if message.kind == "image" and wait_answer is not None and published:
                before = time.monotonic_ns()
                unanswered = 0 if wait_answer(published[-1].stamp_ns) else unanswered + 1
                if unanswered:
                    logger.warning("no answer to the image stamped %d ns; playing on", published[-1].stamp_ns)
                if unanswered == MAX_UNANSWERED:
                    raise ReplayError(f"{unanswered} images in a row got no answer; the nodes are not answering "
                                      "(their logs and /diagnostics say why)")
                waited_ns += time.monotonic_ns() - before
            due = start + (message.log_ns - first_log) / rate + waited_ns
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            if message.kind == "image":
                published.append(PublishedFrame(message.stamp_ns, time.time_ns()))
            self._camera_publishers[message.kind].publish(message.raw)
        return published


class BagWriterThread:
    """Writes messages into a new rosbag2 from a thread of its own.

    sqlite3 objects may only be used by the thread that made them, and writing must not hold up the
    callbacks that take the receive times; so callers only queue work here.
    """

    def __init__(self, output: Path) -> None:
        self.output = output
        self._queue: queue.Queue[tuple[str, str, int, bytes] | None] = queue.Queue()
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="replay_bag_writer", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._error is not None:
            raise self._error

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Queue a new topic (its definition and type hash are stored)."""
        self._queue.put((topic, msgtype, -1, b""))

    def write(self, topic: str, time_ns: int, raw: bytes) -> None:
        """Queue one serialised message of an added topic, stamped `time_ns` in the bag."""
        self._queue.put((topic, "", time_ns, raw))

    def close(self) -> None:
        """Write what is queued, finish the bag (metadata.yaml) and end the thread."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        """The thread: open the bag, then add topics and write messages as they are queued."""
        store = typestore()
        try:
            writer = Writer(self.output, version=9, storage_plugin=StoragePlugin.SQLITE3)
            writer.open()
        except BaseException as exc:
            self._error = exc
            self._opened.set()
            return
        self._opened.set()
        connections: dict[str, Any] = {}
        try:
            while (item := self._queue.get()) is not None:
                topic, msgtype, time_ns, raw = item
                if msgtype:
                    connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
                else:
                    writer.write(connections[topic], time_ns, raw)
        except BaseException as exc:
            self._error = exc
        finally:
            writer.close()


class TopicRecorder(Node):
    """Records every discovered topic matching `patterns` into a new rosbag2; tracks answers and diagnostics.

    Each message's bag time is its wall-clock receive time. Topics are discovered every
    DISCOVERY_PERIOD_S; one of a type this installation cannot import, or that rosbags does not know,
    is logged once and left out.
    """

    def __init__(self, output: str | Path, patterns: Sequence[str] = OUTPUT_TOPIC_PATTERNS, **kwargs: Any) -> None:
        super().__init__("sixdpose_replay_recorder", **kwargs)
        self.output = Path(output)
        self.patterns = tuple(patterns)
        self._store = typestore()
        self._writer = BagWriterThread(self.output)
        self._subscribed: dict[str, Any] = {}
        self._skipped: set[str] = set()
        self._condition = threading.Condition()
        self._answers: dict[int, int] = {}  # image stamp -> first receive time (ns)
        self._diagnostics: dict[str, int] = {}  # node name -> latest receive time (ns)
        self.messages = 0
        self.create_timer(DISCOVERY_PERIOD_S, self.discover)
        self.discover()

    def discover(self) -> None:
        """Subscribe to the matching topics not yet recorded."""
        for topic, types in self.get_topic_names_and_types():
            if topic in self._subscribed or topic in self._skipped:
                continue
            if not any(fnmatch.fnmatchcase(topic, pattern) for pattern in self.patterns):
                continue
            cls = message_class(types[0]) if len(types) == 1 else None
            if cls is None or types[0] not in self._store.types:
                self._skipped.add(topic)
                logger.warning("not recording %s: its type %s is not importable here or not known to rosbags",
                               topic, "/".join(types))
                continue
            profiles = [info.qos_profile for info in self.get_publishers_info_by_topic(topic)]
            self._writer.add_topic(topic, types[0])
            self._subscribed[topic] = self.create_subscription(
                cls, topic, partial(self._on_message, topic, types[0]), recording_qos(profiles), raw=True)
            logger.debug("recording %s (%s)", topic, types[0])

    def recording(self, topic: str) -> bool:
        """True once `topic` is subscribed."""
        return topic in self._subscribed

    def _on_message(self, topic: str, msgtype: str, raw: bytes) -> None:
        """Record one message; note answers (by stamp) and which nodes sent diagnostics."""
        received = time.time_ns()
        self._writer.write(topic, received, raw)
        self.messages += 1
        if topic == POSES_TOPIC:
            stamp = self._store.deserialize_cdr(raw, msgtype).header.stamp
            with self._condition:
                self._answers.setdefault(stamp_ns(stamp), received)
                self._condition.notify_all()
        elif topic == DIAGNOSTICS_TOPIC:
            msg = self._store.deserialize_cdr(raw, msgtype)
            with self._condition:
                for status in msg.status:
                    self._diagnostics[status.name.split(":", 1)[0]] = received
                self._condition.notify_all()

    def wait_answer(self, stamp_ns: int, timeout: float) -> bool:
        """Wait until the answer to the image stamped `stamp_ns` has arrived; False after `timeout` seconds."""
        with self._condition:
            return self._condition.wait_for(lambda: stamp_ns in self._answers, timeout)

    def answered(self, stamps: Iterable[int]) -> int:
        """How many of `stamps` have an answer."""
        with self._condition:
            return sum(stamp in self._answers for stamp in stamps)

    def diagnostics_since(self, node_names: Iterable[str], since_ns: int) -> bool:
        """True if every node named has sent diagnostics received after `since_ns` (wall clock)."""
        with self._condition:
            return all(self._diagnostics.get(name, -1) > since_ns for name in node_names)

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml)."""
        self._writer.close()


def wait_until(condition: Callable[[], bool], timeout: float, check: Callable[[], None]) -> bool:
    """Poll `condition` until true (True) or `timeout` s pass (False); `check()` may raise to give up early."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        check()
        if condition():
            return True
        time.sleep(POLL_S)
    return condition()


def replay(
    bag: str | Path,
    output: str | Path,
    image_topic: str,
    camera_info_topic: str,
    node_names: Sequence[str],
    settings: ReplaySettings = ReplaySettings(),
    check_nodes: Callable[[], None] = lambda: None,
    topics: BagTopics = BagTopics(),
) -> list[PublishedFrame]:
    """Play `bag` to the running nodes `node_names` and record their outputs into the new rosbag2 `output`.

    Waits until every node has sent diagnostics (it is up) and subscribes to both camera topics, plays,
    waits for the answers (or `drain_timeout` without a new one), then for one more round of diagnostics
    so their frame counts are final. `check_nodes()` is called while waiting and should raise if a node
    process died. Returns the published images. Raises ReplayError when the nodes do not come up in time.
    """
    context = Context()
    rclpy.init(context=context)
    try:
        player = BagPlayer(image_topic, camera_info_topic, context=context)
        recorder = TopicRecorder(output, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(player)
        executor.add_node(recorder)
        spinner = threading.Thread(target=executor.spin, name="replay_executor", daemon=True)
        spinner.start()

        def check() -> None:
            check_nodes()
            if not spinner.is_alive():
                raise ReplayError("the player's and recorder's executor stopped (see the traceback above)")

        try:
            subscribed = time.time_ns()
            ready = wait_until(lambda: recorder.recording(POSES_TOPIC) and player.connected(node_names)
                          and recorder.diagnostics_since(node_names, subscribed), settings.start_timeout, check)
            if not ready:
                raise ReplayError(f"the nodes {list(node_names)} did not come up within {settings.start_timeout:.0f} s "
                                  f"(diagnostics on {DIAGNOSTICS_TOPIC}, subscriptions to {image_topic} and "
                                  f"{camera_info_topic}, a publisher of {POSES_TOPIC})")
            time.sleep(settings.settle)
            wait_answer = partial(recorder.wait_answer, timeout=settings.answer_timeout) if settings.lockstep else None
            published = player.play(camera_messages(bag, topics), settings.rate, wait_answer)
            stamps = [frame.stamp_ns for frame in published]
            # Drain: until every image is answered, or no new answer came within drain_timeout.
            while (count := recorder.answered(stamps)) < len(stamps):
                if not wait_until(lambda: recorder.answered(stamps) > count, settings.drain_timeout, check):
                    break
            drained = time.time_ns()
            if not wait_until(lambda: recorder.diagnostics_since(node_names, drained), settings.drain_timeout, check):
                logger.warning("no final diagnostics from every node within %.0f s; frame counts may be short",
                               settings.drain_timeout)
            logger.info("replayed %d images, %d answered, %d messages recorded into %s", len(published),
                        recorder.answered(stamps), recorder.messages, recorder.output)
            return published
        finally:
            executor.shutdown()
            spinner.join(5.0)
            recorder.close()
            player.destroy_node()
            recorder.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)

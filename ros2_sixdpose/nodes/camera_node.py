"""What every node that takes camera frames shares: settings, image + camera_info in, health out, and main().

Images and camera_info are taken with a best-effort, keep-last-1 profile, so a node busy with inference
finds only the newest frame when it is free (stale frames are dropped, not queued). Inference runs in
its own mutually exclusive callback group of a multi-threaded executor, so diagnostics, parameter
services and the other callbacks stay responsive while a frame is processed.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import CallbackGroup, MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ros2_sixdpose.core.messages import camera_from_info, stamp_ns
from ros2_sixdpose.nodes.conversions import check_image_fits_camera, rgb_from_image
from ros2_sixdpose.nodes.health import FrameCounters, LatencyStats, ProblemLog, diagnostic_status
from ros2_sixdpose.nodes.params import declare_config
from ros2_sixdpose.nodes.stages import OracleKeys
from ros2_sixdpose.nodes.sync import CameraSubscriber
from ros2_sixdpose.paths import package_root, resolve
from ros2_sixdpose.pipeline import Frame
from ros2_sixdpose.topics import CAMERA_INFO_TOPIC, DIAGNOSTICS_TOPIC, IMAGE_TOPIC

# Camera streams: newest frame only; best effort also matches reliable publishers.
IMAGE_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT,
                       durability=DurabilityPolicy.VOLATILE)
# Results a robot acts on: every message delivered.
RESULT_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
# Errors a node refuses to start with; anything else is a bug and keeps its traceback.
STARTUP_ERRORS = (FileNotFoundError, ValueError, TypeError, KeyError, InvalidParameterTypeException)


@dataclass
class CameraNodeSettings:
    """Settings every camera node has (ROS parameters of the same names)."""

    root: str = ""  # folder relative paths resolve against; "" = the package's (checkout or share folder)
    diagnostics_period: float = 1.0  # s between DiagnosticArray messages
    sync_slop: float = 0.02  # s of stamp difference accepted between image and camera_info (message_filters)

    def __post_init__(self) -> None:
        if not self.diagnostics_period > 0 or not self.sync_slop >= 0:
            raise ValueError(f"need diagnostics_period > 0 and sync_slop >= 0, got {self.diagnostics_period}, "
                             f"{self.sync_slop}")


@dataclass
class CameraFrame:
    """A frame that passed the checks: the pipeline's Frame and the image's header stamp in ns."""

    frame: Frame
    stamp_ns: int
    header: Header  # of the image


class CameraNode(Node):
    """Base of the camera nodes: declares settings, converts and checks frames, reports problems and latency."""

    settings_class: type[CameraNodeSettings] = CameraNodeSettings
    live_settings: tuple[str, ...] = ()  # settings that may change while the node runs

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.settings = declare_config(self, self.settings_class, live=self.live_settings)
        self.root = resolve(package_root(), self.settings.root) if self.settings.root else package_root()
        self.problems = ProblemLog(self.get_logger().warning)
        self.latency = LatencyStats()
        self.counters = FrameCounters()
        self.inference_group = MutuallyExclusiveCallbackGroup()
        self._diagnostics = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, RESULT_QOS)
        self.create_timer(self.settings.diagnostics_period, self._publish_diagnostics)

    def subscribe_camera(self, callback: Callable[[Image, CameraInfo | None], None], group: CallbackGroup) -> None:
        """Call `callback(image, camera_info or None)` for each image of the (remappable) camera topics."""
        self._camera = CameraSubscriber(self, IMAGE_TOPIC, CAMERA_INFO_TOPIC, callback, IMAGE_QOS, group,
                                        self.settings.sync_slop)

    def reject(self, kind: str, message: str) -> None:
        """Count a frame as rejected and log the problem the first time it occurs."""
        self.counters.rejected += 1
        self.problems.report(kind, message)

    def check_frame(self, image: Image, info: CameraInfo | None, keys: OracleKeys | None = None) -> CameraFrame | None:
        """The frame of an image and its camera_info, or None after reporting why it cannot be used.

        With the oracle detector's `keys`, the frame also gets its image key (found from the stamp).
        """
        self.counters.received += 1
        start = time.perf_counter()
        if info is None:
            self.reject("camera_info", f"no CameraInfo on {self.resolve_topic_name(CAMERA_INFO_TOPIC)} for images of "
                                       f"frame '{image.header.frame_id}'")
            return None
        try:
            camera = camera_from_info(info)
        except ValueError as exc:
            self.reject("camera_info", f"unusable CameraInfo of frame '{info.header.frame_id}': {exc}")
            return None
        try:
            rgb = rgb_from_image(image)
            check_image_fits_camera(rgb, camera)
        except ValueError as exc:
            self.reject("image", f"unusable image on {self.resolve_topic_name(IMAGE_TOPIC)}: {exc}")
            return None
        stamp = stamp_ns(image.header.stamp)
        frame = Frame(rgb=rgb, camera=camera, stamp=stamp / 1e9, frame_id=image.header.frame_id)
        if keys is not None:
            frame.key = keys.key(stamp)
            if frame.key is None:
                self.reject("oracle", f"no image of scene {keys.scene_id} has stamp {stamp} ns "
                                      "(the oracle needs the bag's original stamps)")
                return None
        self.latency.add("convert", time.perf_counter() - start)
        return CameraFrame(frame, stamp, image.header)

    def answered(self, header: Header, started: float) -> None:
        """Record a frame as answered: its time in the node, and its age since the image's stamp.

        The age is the camera-to-result latency for a live camera (same clock); for a bag replayed with
        its recorded stamps it is meaningless unless the node runs on sim time.
        """
        self.counters.answered += 1
        self.problems.frame_ok()
        self.latency.add("total", time.perf_counter() - started)
        age = (self.get_clock().now().nanoseconds - stamp_ns(header.stamp)) / 1e9
        self.latency.add("age since stamp", age)

    def _publish_diagnostics(self) -> None:
        """Publish this node's DiagnosticStatus."""
        status = diagnostic_status(f"{self.get_name()}: pipeline", self.counters, self.latency, self.problems)
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics.publish(DiagnosticArray(header=header, status=[status]))


def spin(node_factories: Sequence[Callable[[], Node]], args: list[str] | None = None) -> int:
    """Init rclpy, build the nodes, spin them in one multi-threaded executor until shutdown; the exit code.

    A node that cannot start (missing or corrupt weights, a bad config value, an unknown object) is
    reported with the reason and gives exit code 1.
    """
    rclpy.init(args=args)
    try:
        nodes = []
        try:
            for factory in node_factories:
                nodes.append(factory())
        except STARTUP_ERRORS as exc:
            rclpy.logging.get_logger("sixdpose").fatal(f"cannot start: {exc}")
            return 1
        # Each node's inference group holds a thread while it works; the rest serve TF, diagnostics, services.
        executor = MultiThreadedExecutor(num_threads=2 * len(nodes) + 1)
        for node in nodes:
            executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            executor.shutdown()
            for node in nodes:
                node.destroy_node()
        return 0
    finally:
        rclpy.try_shutdown()

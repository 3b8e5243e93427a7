"""What every node that takes camera frames shares: settings, image + camera_info in, health out, and main().

Every node is a managed (lifecycle) node: parameters, subscriptions and publishers exist from
construction; `configure` builds the stages (loads the networks' weights, `build_stages`), `activate`
starts answering frames, `deactivate` stops (frames are ignored), `cleanup` frees the stages. With
`autostart` (the default) `spin` configures and activates each node at once, so one command starts it as
before; `autostart:=false` leaves the transitions to a lifecycle manager (`/<node>/change_state`).

Images and camera_info are taken with a best-effort, keep-last-1 profile by a single-threaded executor
whose image callback only hands the frame to the node's worker thread (`nodes.worker.LatestWorker`), which
runs the inference on the newest frame: a frame that arrives while the worker is busy replaces the one
waiting (stale frames are dropped and counted, never queued), and diagnostics, parameter services and TF
stay responsive while a frame is processed.
"""
from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ros2_sixdpose.core.messages import NS_PER_S, camera_from_info, stamp_ns
from ros2_sixdpose.nodes.conversions import check_image_fits_camera, rgb_from_image
from ros2_sixdpose.nodes.health import FrameCounters, LatencyStats, ProblemLog, diagnostic_status
from ros2_sixdpose.nodes.params import declare_config, refuse_unknown_parameters
from ros2_sixdpose.nodes.stages import OracleKeys
from ros2_sixdpose.nodes.sync import CameraSubscriber
from ros2_sixdpose.nodes.worker import LatestWorker
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
    autostart: bool = True  # configure and activate at start; false: wait for a lifecycle manager's transitions
    diagnostics_period: float = 1.0  # s between DiagnosticArray messages
    sync_slop: float = 0.02  # s of stamp difference accepted between image and camera_info (message_filters)
    # Larger images are refused before they are decoded: a 4000x3000 frame took 1.6-2.0 s and 1.1 GB here.
    max_image_pixels: int = 3840 * 2160
    # s: a CameraInfo stamped longer before its image is not used (a driver publishes one per image); 0: any age.
    camera_info_max_age: float = 1.0

    def __post_init__(self) -> None:
        if not self.diagnostics_period > 0 or not self.sync_slop >= 0:
            raise ValueError(f"need diagnostics_period > 0 and sync_slop >= 0, got {self.diagnostics_period}, "
                             f"{self.sync_slop}")
        if self.max_image_pixels < 1 or not self.camera_info_max_age >= 0:
            raise ValueError(f"need max_image_pixels >= 1 and camera_info_max_age >= 0, got "
                             f"{self.max_image_pixels}, {self.camera_info_max_age}")


@dataclass
class CameraFrame:
    """A frame that passed the checks: the pipeline's Frame and the image's header stamp in ns."""

    frame: Frame
    stamp_ns: int
    header: Header  # of the image


class CameraNode(LifecycleNode):
    """Base of the camera nodes: declares settings, converts and checks frames, reports problems and latency.

    A managed node (see the module's docstring): subclasses load their stages in `build_stages` and drop
    them in `free_stages`; frames reach their callbacks only while the node is active.
    """

    settings_class: type[CameraNodeSettings] = CameraNodeSettings
    live_settings: tuple[str, ...] = ()  # settings that may change while the node runs

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.settings = declare_config(self, self.settings_class, live=self.live_settings)
        self.root = resolve(package_root(), self.settings.root) if self.settings.root else package_root()
        self.problems = ProblemLog(self.get_logger().warning)
        self.latency = LatencyStats()
        self.counters = FrameCounters()
        self._last_stamp = 0  # ns of the latest image's stamp
        self._camera: CameraSubscriber | None = None
        self._frame_worker: LatestWorker | None = None
        self.active = False  # frames are answered only in the lifecycle's active state
        self.configure_error: Exception | None = None  # why the last configure failed
        self._workers: list[LatestWorker] = []
        self._diagnostics = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, RESULT_QOS)
        self.create_timer(self.settings.diagnostics_period, self._publish_diagnostics)

    def build_stages(self) -> None:
        """Load what answering frames needs (weights, networks); raises STARTUP_ERRORS. Subclasses override."""

    def free_stages(self) -> None:
        """Drop what `build_stages` made. Subclasses override."""

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Build the stages; on a missing or bad file, stay unconfigured and say why."""
        try:
            self.build_stages()
        except STARTUP_ERRORS as exc:
            self.configure_error = exc
            self.get_logger().error(f"cannot configure: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.configure_error = None
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Answer frames from now on."""
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Ignore frames from now on."""
        self.active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the stages (back to unconfigured)."""
        self.free_stages()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop answering and free the stages."""
        self.active = False
        self.free_stages()
        return TransitionCallbackReturn.SUCCESS

    def start(self) -> None:
        """Configure and activate (`autostart`); raises why configuring failed."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise self.configure_error or RuntimeError(f"node {self.get_name()} could not be configured")
        self.trigger_activate()

    def worker(self, name: str, handle: Callable[[Any], None]) -> LatestWorker:
        """A worker thread running `handle` on the newest item put (see `nodes.worker`); stopped with the node."""
        worker = LatestWorker(f"{self.get_name()}_{name}", handle)
        self._workers.append(worker)
        return worker

    def subscribe_camera(self, callback: Callable[[Image, CameraInfo | None], None], in_worker: bool = True) -> None:
        """Call `callback(image, camera_info or None)` for the images of the (remappable) camera topics.

        With `in_worker`, the callback runs in the node's frame worker on the newest frame (frames replaced while
        it is busy are counted as skipped); otherwise in the executor's thread for every frame (cheap callbacks).
        """
        on_image = callback
        if in_worker:
            frames = self._frame_worker = self.worker("frames", lambda pair: callback(*pair))

            def on_image(image: Image, info: CameraInfo | None) -> None:
                frames.put((image, info))
        self._camera = CameraSubscriber(self, IMAGE_TOPIC, CAMERA_INFO_TOPIC, on_image, IMAGE_QOS,
                                        self.default_callback_group, self.settings.sync_slop)

    def destroy_node(self) -> None:
        """Stop the worker threads (the frame being processed finishes), then destroy the node."""
        for worker in self._workers:
            worker.stop()
        super().destroy_node()

    def reject(self, kind: str, message: str) -> None:
        """Count a frame as rejected and log the problem the first time it occurs."""
        self.counters.rejected += 1
        self.problems.report(kind, message)

    def check_frame(self, image: Image, info: CameraInfo | None, keys: OracleKeys | None = None) -> CameraFrame | None:
        """The frame of an image and its camera_info, or None after reporting why it cannot be used.

        With the oracle detector's `keys`, the frame also gets its image key (found from the stamp). None, and
        nothing counted, while the node is not active.
        """
        if not self.active:
            return None
        self.counters.received += 1
        start = time.perf_counter()
        if not self._usable_header(image):
            return None
        if info is None:
            self.reject("camera_info", f"no CameraInfo on {self.resolve_topic_name(CAMERA_INFO_TOPIC)} for images of "
                                       f"frame '{image.header.frame_id}'")
            return None
        try:
            camera = camera_from_info(info)
        except ValueError as exc:
            self.reject("camera_info", f"unusable CameraInfo of frame '{info.header.frame_id}': {exc}")
            return None
        max_age = self.settings.camera_info_max_age
        if max_age > 0 and stamp_ns(image.header.stamp) - stamp_ns(info.header.stamp) > max_age * NS_PER_S:
            self.reject("camera_info", f"the latest CameraInfo of frame '{image.header.frame_id}' is stamped more "
                                       f"than camera_info_max_age ({max_age} s) before the image: not used")
            return None
        pixels = int(image.width) * int(image.height)
        if pixels > self.settings.max_image_pixels:
            self.reject("image", f"image of {pixels / 1e6:.1f} Mpixels ({image.width}x{image.height}) exceeds "
                                 f"max_image_pixels ({self.settings.max_image_pixels}): scale it down in the "
                                 "camera driver or raise the parameter")
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

    def _usable_header(self, image: Image) -> bool:
        """Whether the image's header can head results; reports (logs once, then counts) stamps going backwards.

        An empty frame_id would become the parent frame of every pose and TF, which tf2 refuses; stamp 0 is
        what an unset header carries, so the results' time would say nothing. A stamp earlier than the
        previous image's (a bag restarted, the clock jumped) is reported, and the frame still processed.
        """
        if not image.header.frame_id:
            self.reject("image", "image header has an empty frame_id: poses and TF need the camera's frame")
            return False
        stamp = stamp_ns(image.header.stamp)
        if stamp == 0:
            self.reject("image", "image header stamp is 0 (unset): results need the capture time")
            return False
        if stamp < self._last_stamp:
            self.problems.report("clock", "image stamps went backwards (a bag restarted or the clock jumped); "
                                          "frames are still processed")
        self._last_stamp = stamp
        return True

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

    def diagnostic_status(self) -> DiagnosticStatus:
        """This node's DiagnosticStatus (subclasses add their own values)."""
        if self._camera is not None:
            self.counters.dropped = self._camera.drops.dropped
        if self._frame_worker is not None:
            self.counters.skipped = self._frame_worker.replaced
        return diagnostic_status(f"{self.get_name()}: pipeline", self.counters, self.latency, self.problems)

    def _publish_diagnostics(self) -> None:
        """Publish this node's DiagnosticStatus."""
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics.publish(DiagnosticArray(header=header, status=[self.diagnostic_status()]))


def _interrupted(signum: int, frame: Any) -> None:
    """The first Ctrl-C or SIGTERM: ignore both from now on, then unwind to `spin`'s clean-up.

    Ignoring them only in the clean-up left a window: a second Ctrl-C while the stack unwound raised inside
    rclpy's `Future.__del__` and printed an "Exception ignored" traceback.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def spin(node_factories: Sequence[Callable[[], Node]], args: list[str] | None = None) -> int:
    """Init rclpy, build the nodes, spin them in one single-threaded executor until shutdown; the exit code.

    The executor's callbacks are cheap; each node's inference runs in its own worker thread (`CameraNode.worker`).

    Nodes with `autostart` are configured and activated first. A node that cannot start (missing or corrupt
    weights, a bad config value, an unknown object or parameter) is reported with the reason and gives exit code 1. Ctrl-C, SIGTERM or a shutdown at any
    point (start-up included) ends with code 0 and no traceback; further signals during the clean-up are
    ignored, so a second Ctrl-C cannot leave the clean-up half done.
    """
    nodes: list[Node] = []
    executor = None
    for sig in (signal.SIGINT, signal.SIGTERM):  # before rclpy.init, whose handlers then chain to this one
        signal.signal(sig, _interrupted)
    try:
        rclpy.init(args=args)
        try:
            for factory in node_factories:
                nodes.append(factory())
                refuse_unknown_parameters(nodes[-1])
                if isinstance(nodes[-1], CameraNode) and nodes[-1].settings.autostart:
                    nodes[-1].start()
        except Exception as exc:
            if not rclpy.ok():  # Ctrl-C while starting: rclpy's handler shut the context down under the node
                return 0
            if not isinstance(exc, STARTUP_ERRORS):
                raise  # a bug: keep its traceback
            rclpy.logging.get_logger("sixdpose").fatal(f"cannot start: {exc}")
            return 1
        executor = SingleThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if executor is not None:
            executor.shutdown()
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0

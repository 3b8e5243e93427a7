"""Flooding a running node with camera frames over DDS: a publisher at a fixed rate and a recorder of the answers.

`flood` publishes a set of frames round and round at `rate` Hz for `duration` s, each stamped with the wall
clock when it goes out (the node runs on the same machine, so stamp -> answer receipt is the end-to-end
latency), and records when each answer (/sixdpose/poses, by stamp) and each of the node's /diagnostics
arrive. ROS-free figures from the record: `ros2_sixdpose.bench.flood`.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.messages import camera_info_fields, stamp_ns
from ros2_sixdpose.data.bop import BopSplit, read_rgb
from ros2_sixdpose.msg import ObjectPoseArray
from ros2_sixdpose.nodes.camera_node import RESULT_QOS
from ros2_sixdpose.nodes.conversions import image_msg, time_msg
from ros2_sixdpose.nodes.replay import CAMERA_QOS, wait_until
from ros2_sixdpose.topics import CAMERA_INFO_TOPIC, DIAGNOSTICS_TOPIC, IMAGE_TOPIC, POSES_TOPIC

class FloodError(RuntimeError):
    """The node did not come up, or the flood could not run."""


@dataclass
class FloodRecord:
    """What a flood sent and got back; times are wall-clock ns (`time.time_ns`)."""

    sent: list[int] = field(default_factory=list)  # stamps of the images published, = their publish times
    answers: dict[int, int] = field(default_factory=dict)  # image stamp -> first answer's receipt time
    diagnostics: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (receipt time, the node's values)
    started: int = 0  # first image out
    ended: int = 0  # last image out


class FloodProbe(Node):
    """Publishes camera frames; records the answers on /sixdpose/poses and the diagnostics of node `node_name`."""

    def __init__(self, node_name: str, **kwargs) -> None:
        super().__init__("sixdpose_flood_probe", **kwargs)
        self.node_name = node_name
        self.record = FloodRecord()
        self._lock = threading.Lock()
        self.image_pub = self.create_publisher(Image, IMAGE_TOPIC, CAMERA_QOS)
        self.info_pub = self.create_publisher(CameraInfo, CAMERA_INFO_TOPIC, CAMERA_QOS)
        self.create_subscription(ObjectPoseArray, POSES_TOPIC, self._on_poses, RESULT_QOS)
        self.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, RESULT_QOS)

    def _on_poses(self, msg: ObjectPoseArray) -> None:
        received = time.time_ns()
        with self._lock:
            self.record.answers.setdefault(stamp_ns(msg.header.stamp), received)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        received = time.time_ns()
        for status in msg.status:
            if status.name.split(":", 1)[0] == self.node_name:
                with self._lock:
                    self.record.diagnostics.append((received, {v.key: v.value for v in status.values}))

    def connected(self) -> bool:
        """True once the node subscribes to both camera topics and has sent diagnostics."""
        subscribers = [{i.node_name for i in self.get_subscriptions_info_by_topic(p.topic_name)}
                       for p in (self.image_pub, self.info_pub)]
        with self._lock:
            diagnosed = bool(self.record.diagnostics)
        return diagnosed and all(self.node_name in names for names in subscribers)

    def publish(self, image: Image, info: CameraInfo) -> int:
        """Publish one frame stamped now; its stamp (ns)."""
        now = time.time_ns()
        image.header.stamp = info.header.stamp = time_msg(now)
        self.info_pub.publish(info)
        self.image_pub.publish(image)
        return now

    def diagnostics_after(self, since_ns: int) -> bool:
        """True once diagnostics received after `since_ns` arrived."""
        with self._lock:
            return bool(self.record.diagnostics) and self.record.diagnostics[-1][0] > since_ns


def camera_frames(split: BopSplit, scene_id: int, count: int,
                  frame_id: str = "camera_color_optical_frame") -> list[tuple[Image, CameraInfo]]:
    """Image and CameraInfo messages of the first `count` images of a scene (stamps are set when published)."""
    scene = split.read_scene(scene_id)
    frames = []
    for im_id in split.image_ids(scene_id)[:count]:
        header = Header(frame_id=frame_id)
        rgb = read_rgb(split.rgb_path(scene_id, im_id))
        camera = PinholeCamera(scene.camera[im_id].K, rgb.shape[1], rgb.shape[0])
        info = CameraInfo(header=header, **camera_info_fields(camera))
        frames.append((image_msg(rgb, header), info))
    if not frames:
        raise ValueError(f"scene {scene_id} of {split.path} has no images")
    return frames


def flood(
    frames: Sequence[tuple[Image, CameraInfo]], node_name: str, rate: float, duration: float,
    start_timeout: float = 180.0, drain: float = 3.0, check_node: Callable[[], None] = lambda: None,
    progress: Callable[[float], None] = lambda seconds: None,
) -> FloodRecord:
    """Publish `frames` round and round at `rate` Hz for `duration` s to the running node `node_name`.

    Waits until the node is up and subscribed (`start_timeout` s), floods, then waits `drain` s and for one
    more round of diagnostics. `check_node()` is called while waiting and should raise if the node died;
    `progress(seconds flooded)` is called about once a second. Raises FloodError if the node does not come up.
    """
    if not frames or rate <= 0 or duration <= 0:
        raise ValueError(f"need frames, rate > 0 and duration > 0, got {len(frames)} frames, {rate}, {duration}")
    context = Context()
    rclpy.init(context=context)
    try:
        probe = FloodProbe(node_name, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        spinner = threading.Thread(target=executor.spin, name="flood_executor", daemon=True)
        spinner.start()
        try:
            if not wait_until(probe.connected, start_timeout, check_node):
                raise FloodError(f"node {node_name} did not come up within {start_timeout:.0f} s (diagnostics on "
                                 f"{DIAGNOSTICS_TOPIC}, subscriptions to {IMAGE_TOPIC} and {CAMERA_INFO_TOPIC})")
            period = 1e9 / rate
            count = int(round(duration * rate))
            start = time.time_ns() + int(0.5e9)
            last_progress = start
            for k in range(count):
                delay = (start + k * period - time.time_ns()) / 1e9
                if delay > 0:
                    time.sleep(delay)
                image, info = frames[k % len(frames)]
                probe.record.sent.append(probe.publish(image, info))
                if time.time_ns() - last_progress > 1e9:
                    check_node()
                    last_progress = time.time_ns()
                    progress((last_progress - start) / 1e9)
            probe.record.started, probe.record.ended = probe.record.sent[0], probe.record.sent[-1]
            time.sleep(drain)
            drained = time.time_ns()
            wait_until(lambda: probe.diagnostics_after(drained), drain + 5.0, check_node)
            return probe.record
        finally:
            executor.shutdown()
            spinner.join(5.0)
            probe.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)

"""detector_node: camera image + camera_info in; DetectionArray, vision_msgs/Detection2DArray, mask overlay out.

    ros2 run ros2_sixdpose detector_node --ros-args -r /camera/color/image_raw:=/my/image \
        -p detector_config:=config/detector.yaml -p detector.score_threshold:=0.6
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from ros2_sixdpose.core.objects import model_names
from ros2_sixdpose.detection.base import Detector, DetectorConfig
from ros2_sixdpose.detection.factory import make_detector
from ros2_sixdpose.msg import DetectionArray
from ros2_sixdpose.nodes import NODES
from ros2_sixdpose.nodes.camera_node import RESULT_QOS, CameraNode, CameraNodeSettings, spin
from ros2_sixdpose.nodes.conversions import detection2d_array_msg, detection_array_msg, image_msg
from ros2_sixdpose.nodes.overlay import draw_detections
from ros2_sixdpose.nodes.params import declare_config
from ros2_sixdpose.nodes.stages import OracleKeys
from ros2_sixdpose.paths import resolve
from ros2_sixdpose.topics import DETECTIONS_2D_TOPIC, DETECTIONS_OVERLAY_TOPIC, DETECTIONS_TOPIC


@dataclass
class DetectorNodeSettings(CameraNodeSettings):
    """detector_node's own parameters; the stage's are `detector.*` (DetectorConfig), defaults from its YAML."""

    detector_config: str = "config/detector.yaml"  # YAML of the detection stage
    oracle_scene: int = 0  # oracle detector only: the scene of its split whose bag is being played
    publish_overlay: bool = True  # mask overlay image, drawn only while someone subscribes


class DetectorNode(CameraNode):
    """Runs the configured detector on every camera frame it can keep up with."""

    settings_class = DetectorNodeSettings

    def __init__(self, node_name: str = NODES["detector_node"].default_name, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.config = declare_config(self, DetectorConfig, resolve(self.root, self.settings.detector_config),
                                     "detector.")
        self.models_dir = resolve(self.root, self.config.models_dir)
        self.names = model_names(self.models_dir)
        self.detector: Detector | None = None  # built on configure
        self.keys: OracleKeys | None = None
        self._detections = self.create_publisher(DetectionArray, DETECTIONS_TOPIC, RESULT_QOS)
        self._detections2d = self.create_publisher(Detection2DArray, DETECTIONS_2D_TOPIC, RESULT_QOS)
        self._overlay = self.create_publisher(Image, DETECTIONS_OVERLAY_TOPIC, RESULT_QOS)
        self.subscribe_camera(self.on_camera)

    def build_stages(self) -> None:
        """Load the detector (and, for the oracle, the image keys of its scene)."""
        self.detector = make_detector(self.config, self.root)
        if self.config.type == "oracle":
            self.keys = OracleKeys(self.config, self.settings.oracle_scene, self.root)
        self.get_logger().info(f"ready: {self.config.type} detector for {len(self.names)} objects of {self.models_dir}")

    def free_stages(self) -> None:
        """Drop the detector and its network."""
        self.detector = self.keys = None

    def on_camera(self, image: Image, info: CameraInfo | None) -> None:
        """Detect the objects of one frame and publish them."""
        started = time.perf_counter()
        checked = self.check_frame(image, info, self.keys)
        if checked is None:
            return
        start = time.perf_counter()
        try:
            detections = self.detector.detect(checked.frame.rgb, checked.frame.key)
        except Exception as exc:  # one bad frame must not stop the node; the reason is logged once
            self.reject("detector", f"{type(exc).__name__}: {exc}")
            return
        self.latency.add("detect", time.perf_counter() - start)
        if not self.active:  # deactivated while this frame was processed
            return
        self._detections.publish(detection_array_msg(detections, self.names, checked.header))
        self._detections2d.publish(detection2d_array_msg(detections, self.names, checked.header))
        if self.settings.publish_overlay and self._overlay.get_subscription_count() > 0:
            overlay = draw_detections(checked.frame.rgb, detections, self.names)
            self._overlay.publish(image_msg(overlay, checked.header))
        self.answered(checked.header, started)


def main(args: list[str] | None = None) -> int:
    """Run detector_node alone."""
    return spin([DetectorNode], args)

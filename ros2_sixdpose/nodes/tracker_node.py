"""tracker_node: camera frames in; object poses at camera rate out, each carried from the previous frame's pose.

Per frame the tracker (`ros2_sixdpose.tracking`) refines every tracked instance from its last pose with the
region-based tracker (a few ms per object); only when a track is needed (at the start, after a loss, every
`tracking.tracker.redetect_period` frames) does the node run detector + estimator (+ refiner) in-process
through `ros2_sixdpose.pipeline.Pipeline`. Images come with the sensor-data profile (keep last 1), so the
node always works on the newest frame and stale ones are dropped, never queued; a second, cheap
subscription counts every frame that arrives, so /diagnostics reports the frames skipped before the
callback as well as the state and score of each track.

Publishes what pose_estimator_node does (ObjectPoseArray with method "track" or "estimate", PoseStamped per
object, TF, markers, overlay); an instance keeps its number (TF frame, `instance`) while it is tracked
and when it is re-found after a loss.

    ros2 run ros2_sixdpose tracker_node --ros-args -r /camera/color/image_raw:=/my/image \
        -p tracker_config:=config/tracker.yaml
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, KeyValue
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ros2_sixdpose.core.messages import InstancePose
from ros2_sixdpose.core.objects import ObjectRegistry
from ros2_sixdpose.detection.base import DetectorConfig
from ros2_sixdpose.detection.factory import make_detector
from ros2_sixdpose.estimation.factory import EstimatorConfig, make_estimator
from ros2_sixdpose.nodes import NODES
from ros2_sixdpose.nodes.camera_node import IMAGE_QOS, CameraNode, CameraNodeSettings, spin
from ros2_sixdpose.nodes.health import diagnostic_status
from ros2_sixdpose.nodes.params import declare_config
from ros2_sixdpose.nodes.results import ResultPublisher
from ros2_sixdpose.nodes.stages import OracleKeys
from ros2_sixdpose.paths import MODELS_DIR, resolve
from ros2_sixdpose.pipeline import Pipeline
from ros2_sixdpose.refinement.factory import RefinerConfig, make_refiner
from ros2_sixdpose.topics import IMAGE_TOPIC
from ros2_sixdpose.tracking.factory import TrackingConfig, make_tracker
from ros2_sixdpose.tracking.tracker import TrackerStep

RATE_WINDOW = 60  # answered frames the reported rate covers


@dataclass
class TrackerNodeSettings(CameraNodeSettings):
    """tracker_node's own parameters; the stages' are `detector.*`, `estimator.*`, `refiner.*` and `tracking.*`."""

    detector_config: str = "config/detector.yaml"  # YAML of the detection stage (run when a track is needed)
    oracle_scene: int = 0  # oracle detector only: the scene of its split whose bag is being played
    estimator_config: str = "config/estimator.yaml"
    refiner_config: str = "config/refiner.yaml"  # refines the initialisations (`type: none`: not at all)
    tracker_config: str = "config/tracker.yaml"  # YAML of the tracking stage
    models_dir: str = MODELS_DIR  # the objects tracked and published
    objects: list[int] = field(default_factory=list)  # track only these object ids; empty: every object
    publish_tf: bool = True
    publish_markers: bool = True  # sent only while someone subscribes
    publish_overlay: bool = True  # drawn only while someone subscribes


class TrackerNode(CameraNode):
    """Tracks object poses frame to frame and publishes them for manipulation."""

    settings_class = TrackerNodeSettings
    live_settings = ("publish_tf", "publish_markers", "publish_overlay")

    def __init__(self, node_name: str = NODES["tracker_node"].default_name, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        settings: TrackerNodeSettings = self.settings
        models_dir = resolve(self.root, settings.models_dir)
        registry = ObjectRegistry.from_dir(models_dir, settings.objects or None)
        self.names = {model.obj_id: model.name for model in registry}
        detector_config = declare_config(self, DetectorConfig, resolve(self.root, settings.detector_config),
                                         "detector.")
        estimator_config = declare_config(self, EstimatorConfig, resolve(self.root, settings.estimator_config),
                                          "estimator.")
        refiner_config = declare_config(self, RefinerConfig, resolve(self.root, settings.refiner_config), "refiner.")
        tracking_config = declare_config(self, TrackingConfig, resolve(self.root, settings.tracker_config),
                                         "tracking.")
        self.pipeline = Pipeline(make_detector(detector_config, self.root), make_estimator(estimator_config, self.root),
                                 make_refiner(refiner_config, self.root))
        self.keys = OracleKeys(detector_config, settings.oracle_scene, self.root) \
            if detector_config.type == "oracle" else None
        self.tracker = make_tracker(tracking_config, self.root, sorted(self.names))
        self.results = ResultPublisher(self, registry, models_dir)
        self.arrived = 0
        self.last_step: TrackerStep | None = None
        self._answer_times: deque[float] = deque(maxlen=RATE_WINDOW)
        self.subscribe_camera(self.on_camera, self.inference_group)
        # Counts every image DDS delivers, whether or not the busy tracking callback ever takes it; raw bytes, so
        # counting costs no conversion of the image into Python.
        self.create_subscription(Image, IMAGE_TOPIC, self._count_arrival, IMAGE_QOS,
                                 callback_group=self.default_callback_group, raw=True)
        self.add_post_set_parameters_callback(self._apply_settings)
        self.get_logger().info(f"ready: {tracking_config.refiner} tracking of {', '.join(self.names.values())}")

    def on_camera(self, image: Image, info: CameraInfo | None) -> None:
        """Track into one frame (detecting and estimating first when a track is needed), then publish."""
        started = time.perf_counter()
        checked = self.check_frame(image, info, self.keys)
        if checked is None:
            return
        seconds: dict[str, float] = {}

        def initialise():
            # Only what no track explains is estimated: a periodic re-detection then costs the detector alone.
            camera = checked.frame.camera
            result = self.pipeline.process(checked.frame, lambda found: self.tracker.unexplained(found, camera))
            seconds.update(result.seconds)
            return result.poses
        try:
            step = self.tracker.update(checked.frame.rgb, checked.frame.camera, initialise)
        except Exception as exc:  # one bad frame must not stop the node; the reason is logged once
            self.reject("tracker", f"{type(exc).__name__}: {exc}")
            return
        tracked = time.perf_counter() - started - seconds.get("total", 0.0)
        self.latency.add("track", tracked)
        if step.initialised:
            self.latency.add("initialise", seconds.get("total", 0.0))
        self.last_step = step
        poses = [InstancePose(p.object_id, self.names[p.object_id], p.instance, p.score, p.method, p.T_cam_obj)
                 for p in sorted(step.poses, key=lambda p: (p.object_id, p.instance))]
        settings: TrackerNodeSettings = self.settings
        self.results.publish(checked.header, checked.frame, poses, settings.publish_tf, settings.publish_markers,
                             settings.publish_overlay)
        self._answer_times.append(time.monotonic())
        self.answered(checked.header, started)

    def _count_arrival(self, _: bytes) -> None:
        self.arrived += 1

    def _apply_settings(self, parameters: list) -> None:
        """Use changed live settings (publishing switches) from the next frame on."""
        changes = {p.name: p.value for p in parameters if p.name in self.live_settings}
        for name, value in changes.items():
            setattr(self.settings, name, value)

    def _publish_diagnostics(self) -> None:
        """The camera node's status plus frames arrived / skipped, the answer rate and each track's state."""
        status = diagnostic_status(f"{self.get_name()}: pipeline", self.counters, self.latency, self.problems)
        times = self._answer_times
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        values = [KeyValue(key="frames arrived", value=str(self.arrived)),
                  KeyValue(key="frames skipped", value=str(max(0, self.arrived - self.counters.received))),
                  KeyValue(key="rate Hz", value=f"{rate:.1f}")]
        for track in (self.last_step.tracks if self.last_step is not None else []):
            values.append(KeyValue(key=f"track {track.track_id} {self.names[track.object_id]} {track.instance}",
                                   value=f"{track.state.value} score {track.score:.2f}"))
        status.values = list(status.values) + values
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diagnostics.publish(DiagnosticArray(header=header, status=[status]))


def main(args: list[str] | None = None) -> int:
    """Run tracker_node alone."""
    return spin([TrackerNode], args)

"""tracker_node: camera frames in; object poses at camera rate out, each carried from the previous frame's pose.

Per frame the tracker (`ros2_sixdpose.tracking`) refines every tracked instance from its last pose with the
region-based tracker (a few ms per object). When a track is needed (at the start, after a loss, every
`tracking.tracker.redetect_period` frames) detector + estimator (+ refiner) run on that frame in a child
process (`ros2_sixdpose.pipeline_process`), 0.3-1.5 s on the CPU, while this one keeps tracking every frame;
the estimates start tracks on the first frame after they are ready, tracked into it from the frame they were
made on (`Tracker.step`). So the initialisations never hold up the answers. Images come with the sensor-data
profile (keep last 1) and the node's worker always takes the newest frame: stale ones are dropped and counted
(/diagnostics: frames arrived, skipped, dropped), never queued. /diagnostics also reports the state and score of
each track.

Publishes what pose_estimator_node does (ObjectPoseArray with method "track" or "estimate", PoseStamped per
object, TF, markers, overlay); an instance keeps its number (TF frame, `instance`) while it is tracked
and when it is re-found after a loss. Until a first track starts, each frame is answered with no pose.

    ros2 run ros2_sixdpose tracker_node --ros-args -r /camera/color/image_raw:=/my/image \
        -p tracker_config:=config/tracker.yaml
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, Image

from ros2_sixdpose.core.messages import InstancePose
from ros2_sixdpose.core.objects import ObjectRegistry
from ros2_sixdpose.detection.base import DetectorConfig
from ros2_sixdpose.estimation.factory import EstimatorConfig
from ros2_sixdpose.nodes import NODES
from ros2_sixdpose.nodes.camera_node import CameraNode, CameraNodeSettings, spin
from ros2_sixdpose.nodes.params import declare_config
from ros2_sixdpose.nodes.results import ResultPublisher
from ros2_sixdpose.nodes.stages import OracleKeys
from ros2_sixdpose.paths import MODELS_DIR, resolve
from ros2_sixdpose.pipeline_process import PipelineProcess
from ros2_sixdpose.refinement.factory import RefinerConfig
from ros2_sixdpose.tracking.factory import TrackingConfig, make_tracker
from ros2_sixdpose.tracking.tracker import Initialisation, Tracker, TrackerStep

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
        self.models_dir = resolve(self.root, settings.models_dir)
        registry = ObjectRegistry.from_dir(self.models_dir, settings.objects or None)
        self.names = {model.obj_id: model.name for model in registry}
        self.detector_config = declare_config(self, DetectorConfig, resolve(self.root, settings.detector_config),
                                              "detector.")
        self.estimator_config = declare_config(self, EstimatorConfig, resolve(self.root, settings.estimator_config),
                                               "estimator.")
        self.refiner_config = declare_config(self, RefinerConfig, resolve(self.root, settings.refiner_config),
                                             "refiner.")
        self.tracking_config = declare_config(self, TrackingConfig, resolve(self.root, settings.tracker_config),
                                              "tracking.")
        self.results = ResultPublisher(self, registry, self.models_dir)
        self.tracker: Tracker | None = None  # built on configure, with the initialiser's process
        self.initialiser: PipelineProcess | None = None
        self.keys: OracleKeys | None = None
        self.last_step: TrackerStep | None = None
        self._answer_times: deque[float] = deque(maxlen=RATE_WINDOW)
        self.subscribe_camera(self.on_camera)
        self.add_post_set_parameters_callback(self._apply_settings)

    def build_stages(self) -> None:
        """Build the tracker (its model views) and start the initialiser's process (it loads the networks)."""
        self.tracker = make_tracker(self.tracking_config, self.root, sorted(self.names))
        if self.detector_config.type == "oracle":
            self.keys = OracleKeys(self.detector_config, self.settings.oracle_scene, self.root)
        self.initialiser = self._start_initialiser()
        self.get_logger().info(f"ready: {self.tracking_config.refiner} tracking of {', '.join(self.names.values())}")

    def free_stages(self) -> None:
        """Stop the initialiser's process and drop the tracker."""
        if self.initialiser is not None:
            self.initialiser.close()
        self.tracker = self.initialiser = self.keys = None

    def _start_initialiser(self) -> PipelineProcess:
        return PipelineProcess(self.detector_config, self.estimator_config, self.refiner_config, self.root)

    def on_camera(self, image: Image, info: CameraInfo | None) -> None:
        """Track into one frame (starting tracks from a finished initialisation), start one if needed, publish."""
        started = time.perf_counter()
        checked = self.check_frame(image, info, self.keys)
        if checked is None:
            return
        frame = checked.frame
        try:
            initialised = self._collect_initialisation()
            step = self.tracker.step(frame.rgb, frame.camera, initialised)
            if self.tracker.wants_initialisation() and not self.initialiser.busy:
                # Only what no track explains is estimated: a periodic re-detection then costs the detector alone.
                self.initialiser.submit(frame, self.tracker.explained(frame.camera))
                self.tracker.initialisation_started()
        except Exception as exc:  # one bad frame must not stop the node; the reason is logged once
            self.reject("tracker", f"{type(exc).__name__}: {exc}")
            return
        # Starting tracks carries them through the frames kept while the initialiser ran: a longer frame.
        self.latency.add("track" if initialised is None else "track + start tracks", time.perf_counter() - started)
        self.last_step = step
        poses = [InstancePose(p.object_id, self.names[p.object_id], p.instance, p.score, p.method, p.T_cam_obj)
                 for p in sorted(step.poses, key=lambda p: (p.object_id, p.instance))]
        settings: TrackerNodeSettings = self.settings
        self.results.publish(checked.header, frame, poses, settings.publish_tf, settings.publish_markers,
                             settings.publish_overlay)
        self._answer_times.append(time.monotonic())
        self.answered(checked.header, started)

    def _collect_initialisation(self) -> Initialisation | None:
        """The initialiser's estimates once ready; a failed frame or a dead process is reported (and restarted)."""
        try:
            result = self.initialiser.poll()
        except RuntimeError as exc:
            self.problems.report("initialiser", str(exc))
            if self.initialiser.exited:
                self.initialiser.close()
                self.initialiser = self._start_initialiser()
            return None
        if result is None:
            return None
        self.latency.add("initialise", result.seconds["total"])
        return Initialisation(result.estimates, result.frame.rgb, result.frame.camera)

    def _apply_settings(self, parameters: list) -> None:
        """Use changed live settings (publishing switches) from the next frame on."""
        changes = {p.name: p.value for p in parameters if p.name in self.live_settings}
        for name, value in changes.items():
            setattr(self.settings, name, value)

    def diagnostic_status(self) -> DiagnosticStatus:
        """The camera node's status plus the answer rate and each track's state."""
        status = super().diagnostic_status()
        times = self._answer_times
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        values = [KeyValue(key="rate Hz", value=f"{rate:.1f}")]
        for track in (self.last_step.tracks if self.last_step is not None else []):
            values.append(KeyValue(key=f"track {track.track_id} {self.names[track.object_id]} {track.instance}",
                                   value=f"{track.state.value} score {track.score:.2f}"))
        status.values = list(status.values) + values
        return status


def main(args: list[str] | None = None) -> int:
    """Run tracker_node alone."""
    return spin([TrackerNode], args)

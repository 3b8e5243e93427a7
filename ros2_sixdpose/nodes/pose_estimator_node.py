"""pose_estimator_node: camera frames (+ detections) in; ObjectPoseArray, PoseStamped, TF, markers, overlay out.

Two ways to get detections, chosen by the `detections` parameter:
- `internal` (default): the node runs the detector itself through `ros2_sixdpose.pipeline.Pipeline`, the
  code the CLI and the evaluator run, so full-image masks never cross DDS and no third topic has to be
  synchronised; one process, one frame at a time, the lowest latency.
- `topic`: detections come from a detector_node on /sixdpose/detections; each is paired with the image
  of the same stamp, kept in a small buffer. For running the detector elsewhere (another machine or GPU).

    ros2 run ros2_sixdpose pose_estimator_node --ros-args -r /camera/color/image_raw:=/my/image \
        -p estimator_config:=config/estimator.yaml -p estimator.nocs.weights:=weights/nocs_pix2pix.pt
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image

from ros2_sixdpose.config import load_config
from ros2_sixdpose.core.messages import stamp_ns
from ros2_sixdpose.core.objects import ObjectRegistry
from ros2_sixdpose.detection.base import Detection, DetectorConfig
from ros2_sixdpose.detection.factory import make_detector
from ros2_sixdpose.estimation.base import PoseEstimate, PoseEstimator
from ros2_sixdpose.estimation.factory import EstimatorConfig, make_estimator
from ros2_sixdpose.msg import DetectionArray
from ros2_sixdpose.nodes import NODES
from ros2_sixdpose.nodes.camera_node import RESULT_QOS, CameraFrame, CameraNode, CameraNodeSettings, spin
from ros2_sixdpose.nodes.conversions import detections_from_msg
from ros2_sixdpose.nodes.instances import number_instances
from ros2_sixdpose.nodes.params import declare_config
from ros2_sixdpose.nodes.results import ResultPublisher
from ros2_sixdpose.nodes.stages import OracleKeys
from ros2_sixdpose.nodes.sync import StampBuffer
from ros2_sixdpose.paths import MODELS_DIR, resolve
from ros2_sixdpose.pipeline import Pipeline
from ros2_sixdpose.refinement.base import PoseRefiner
from ros2_sixdpose.refinement.factory import RefinerConfig, make_refiner
from ros2_sixdpose.topics import DETECTIONS_TOPIC

DETECTION_SOURCES = ("internal", "topic")


@dataclass
class PoseEstimatorNodeSettings(CameraNodeSettings):
    """pose_estimator_node's own parameters; the stages' are `detector.*`, `estimator.*` and `refiner.*`."""

    detections: str = "internal"  # internal: run the detector here; topic: take DetectionArray from a detector_node
    detector_config: str = "config/detector.yaml"  # internal only: YAML of the detection stage
    oracle_scene: int = 0  # internal oracle detector only: the scene of its split whose bag is being played
    estimator_config: str = "config/estimator.yaml"  # YAML of the pose-estimation stage
    refiner_config: str = "config/refiner.yaml"  # YAML of the refinement stage (`type: none` refines nothing)
    models_dir: str = MODELS_DIR  # the objects published: names, TF frames, markers, overlay
    objects: list[int] = field(default_factory=list)  # publish only these object ids; empty: every object
    min_score: float = 0.0  # poses scoring less are not published
    frame_buffer: int = 10  # topic only: images kept while waiting for their detections
    publish_tf: bool = True
    publish_markers: bool = True  # sent only while someone subscribes
    publish_overlay: bool = True  # drawn only while someone subscribes

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.detections not in DETECTION_SOURCES:
            raise ValueError(f"detections must be one of {DETECTION_SOURCES}, got {self.detections!r}")
        if not 0.0 <= self.min_score <= 1.0 or self.frame_buffer < 1:
            raise ValueError(f"need 0 <= min_score <= 1 and frame_buffer >= 1, got {self.min_score}, "
                             f"{self.frame_buffer}")


class PoseEstimatorNode(CameraNode):
    """Estimates object poses on camera frames and publishes them for manipulation."""

    settings_class = PoseEstimatorNodeSettings
    live_settings = ("min_score", "publish_tf", "publish_markers", "publish_overlay")

    def __init__(self, node_name: str = NODES["pose_estimator_node"].default_name, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        settings: PoseEstimatorNodeSettings = self.settings
        models_dir = resolve(self.root, settings.models_dir)
        registry = ObjectRegistry.from_dir(models_dir, settings.objects or None)
        self.names = {model.obj_id: model.name for model in registry}
        self.estimator_config = declare_config(self, EstimatorConfig, resolve(self.root, settings.estimator_config),
                                               "estimator.")
        self.refiner_config = declare_config(self, RefinerConfig, resolve(self.root, settings.refiner_config),
                                             "refiner.")
        self.results = ResultPublisher(self, registry, models_dir)
        self.keys: OracleKeys | None = None
        self.pipeline: Pipeline | None = None  # internal detections; built on configure
        self.estimator: PoseEstimator | None = None  # detections from the topic; built on configure
        self.refiner: PoseRefiner | None = None
        # Declared in both modes (unused with topic detections), as detector_config is: one parameter file or
        # `sixdpose replay --param detector.*` serves a whole deployment.
        self.detector_config = declare_config(self, DetectorConfig, resolve(self.root, settings.detector_config),
                                              "detector.")
        if settings.detections == "internal":
            self.subscribe_camera(self.on_camera)
        else:
            self.frames: StampBuffer[CameraFrame] = StampBuffer(settings.frame_buffer)
            self.subscribe_camera(self.keep_frame, in_worker=False)
            # The estimation runs in a worker on the newest detections; the images are buffered in the executor.
            estimate = self.worker("detections", self.on_detections)
            self.create_subscription(DetectionArray, DETECTIONS_TOPIC, estimate.put, RESULT_QOS)
        self.add_on_set_parameters_callback(self._check_settings)
        self.add_post_set_parameters_callback(self._apply_settings)

    def build_stages(self) -> None:
        """Load the estimator, refiner and (internal detections) detector with their weights."""
        settings: PoseEstimatorNodeSettings = self.settings
        estimator = make_estimator(self.estimator_config, self.root)
        self.refiner = make_refiner(self.refiner_config, self.root)
        if settings.detections == "internal":
            self.pipeline = Pipeline(make_detector(self.detector_config, self.root), estimator, self.refiner)
            if self.detector_config.type == "oracle":
                self.keys = OracleKeys(self.detector_config, settings.oracle_scene, self.root)
        else:
            self.estimator = estimator
        refined = f" + {self.refiner.method}" if self.refiner is not None else ""
        self.get_logger().info(f"ready: {estimator.method}{refined} with {settings.detections} detections, publishing "
                               f"{', '.join(self.names.values())}")

    def free_stages(self) -> None:
        """Drop the stages and their networks."""
        self.pipeline = self.estimator = self.refiner = self.keys = None

    # ------------------------------------------------------------ internal detections

    def on_camera(self, image: Image, info: CameraInfo | None) -> None:
        """Detect and estimate on one frame, then publish."""
        started = time.perf_counter()
        checked = self.check_frame(image, info, self.keys)
        if checked is None:
            return
        try:
            result = self.pipeline.process(checked.frame)
        except Exception as exc:  # one bad frame must not stop the node; the reason is logged once
            self.reject("pipeline", f"{type(exc).__name__}: {exc}")
            return
        self.latency.add("detect", result.seconds["detect"])
        self.latency.add("estimate", result.seconds["estimate"])
        if self.refiner is not None:
            self.latency.add("refine", result.seconds["refine"])
        self._publish(checked, result.detections, result.estimates, started)

    # ------------------------------------------------------------ detections from a topic

    def keep_frame(self, image: Image, info: CameraInfo | None) -> None:
        """Buffer a checked frame until its detections arrive."""
        checked = self.check_frame(image, info)
        if checked is not None:
            self.frames.put(checked.stamp_ns, checked)

    def on_detections(self, msg: DetectionArray) -> None:
        """Estimate the poses of one frame's detections, then publish."""
        if not self.active:
            return
        started = time.perf_counter()
        stamp = stamp_ns(msg.header.stamp)
        checked = self.frames.pop(stamp)
        if checked is None:
            self.problems.report("detections", f"detections arrived for an image that is not (or no longer) among "
                                               f"the last {self.frames.capacity} received")
            return
        try:
            detections = detections_from_msg(msg, checked.frame.camera.width, checked.frame.camera.height)
            start = time.perf_counter()
            estimates = self.estimator.estimate(checked.frame.rgb, checked.frame.camera, detections)
            estimated = time.perf_counter()
            if self.refiner is not None:
                estimates = self.refiner.refine(checked.frame.rgb, checked.frame.camera, detections, estimates)
                self.latency.add("refine", time.perf_counter() - estimated)
        except Exception as exc:  # one bad frame must not stop the node; the reason is logged once
            self.reject("estimator", f"{type(exc).__name__}: {exc}")
            return
        self.latency.add("estimate", estimated - start)
        self._publish(checked, detections, estimates, started)

    # ------------------------------------------------------------ both

    def _publish(self, checked: CameraFrame, detections: list[Detection], estimates: list[PoseEstimate],
                 started: float) -> None:
        """Publish the poses of one frame and record it as answered (not when deactivated meanwhile)."""
        if not self.active:
            return
        unknown = sorted({d.object_id for d in detections} - set(self.names))
        if unknown:
            self.problems.report("objects", f"detections of object ids {unknown}, which are not published "
                                            f"(published: {sorted(self.names)})")
        start = time.perf_counter()
        settings: PoseEstimatorNodeSettings = self.settings
        poses = number_instances(estimates, self.names, settings.min_score)
        self.results.publish(checked.header, checked.frame, poses, settings.publish_tf, settings.publish_markers,
                             settings.publish_overlay)
        self.latency.add("publish", time.perf_counter() - start)
        self.answered(checked.header, started)

    def _check_settings(self, parameters: list[Parameter]) -> SetParametersResult:
        """Accept a change of live settings only if the settings stay valid."""
        try:
            self._changed_settings(parameters)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_settings(self, parameters: list[Parameter]) -> None:
        """Use changed live settings from the next frame on."""
        self.settings = self._changed_settings(parameters)

    def _changed_settings(self, parameters: list[Parameter]) -> PoseEstimatorNodeSettings:
        """The settings with `parameters` applied (only live ones reach here: the others are read-only)."""
        changes = {p.name: p.value for p in parameters if p.name in self.live_settings}
        return load_config(PoseEstimatorNodeSettings, overrides={**vars(self.settings), **changes})


def main(args: list[str] | None = None) -> int:
    """Run pose_estimator_node alone."""
    return spin([PoseEstimatorNode], args)

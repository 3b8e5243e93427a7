"""Message conversions and node helpers on hand-built messages: no ROS graph, no rclpy.init()."""
from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import trimesh
from ament_index_python.packages import get_package_share_directory
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Pose, Quaternion
from rcl_interfaces.msg import ParameterType
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.geometry import make_pose
from ros2_sixdpose.core.messages import (
    InstancePose,
    camera_from_info,
    instance_poses_from_msg,
    matrix_from_pose,
    matrix_from_transform,
    stamp_ns,
)
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.estimation.factory import EstimatorConfig
from ros2_sixdpose.msg import Detection as DetectionMsg
from ros2_sixdpose.nodes.conversions import (
    check_image_fits_camera,
    detection2d_array_msg,
    detection3d_array_msg,
    detection_array_msg,
    detections_from_msg,
    image_msg,
    object_pose_array_msg,
    pose_msg,
    rgb_from_image,
    time_msg,
    transform_msg,
)
from ros2_sixdpose.nodes.deployment import load_deployment, parameter_file_content, with_parameters
from ros2_sixdpose.nodes.health import MAX_DISTINCT_PROBLEMS, FrameCounters, LatencyStats, ProblemLog, diagnostic_status
from ros2_sixdpose.nodes.instances import number_instances
from ros2_sixdpose.nodes.overlay import draw_detections, draw_poses, silhouette
from ros2_sixdpose.nodes.params import field_annotations, parameter_type
from ros2_sixdpose.nodes.pose_estimator_node import PoseEstimatorNodeSettings
from ros2_sixdpose.nodes.results import marker_array_msg
from ros2_sixdpose.nodes.sync import CameraInfoCache, StampBuffer
from ros2_sixdpose.topics import CAMERA_INFO_TOPIC, IMAGE_TOPIC

HEADER = Header(stamp=time_msg(12_000_000_345), frame_id="camera_color_optical_frame")
K = np.array([[300.0, 0.0, 159.5], [0.0, 300.0, 119.5], [0.0, 0.0, 1.0]])


def _rgb(height: int = 3, width: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _packed(pixels: np.ndarray, encoding: str, padding: int = 3) -> Image:
    """An Image of (H, W, C) uint8 pixels whose rows carry `padding` junk bytes after the pixels."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    data = np.concatenate([rows, np.full((height, padding), 77, np.uint8)], axis=1)
    return Image(header=HEADER, height=height, width=width, encoding=encoding, step=data.shape[1],
                 data=data.tobytes())


def _camera_info(k, width: int = 320, height: int = 240, d=(0.0,) * 5) -> CameraInfo:
    return CameraInfo(header=HEADER, width=width, height=height, distortion_model="plumb_bob",
                      k=np.asarray(k, dtype=np.float64).reshape(-1), d=list(d))


# ---------------------------------------------------------------- images


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_give_the_rgb_image_despite_row_padding(encoding):
    rgb = _rgb()
    channels = rgb[..., ::-1] if encoding.startswith("bgr") else rgb
    if encoding.endswith("a8"):
        channels = np.concatenate([channels, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(rgb_from_image(_packed(channels, encoding)), rgb)


def test_mono8_becomes_grey_rgb():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = rgb_from_image(_packed(grey[..., None], "mono8"))
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[..., 1], grey)


@pytest.mark.parametrize("encoding", ["yuv422", "bayer_rggb8", "32FC1", ""])
def test_unsupported_encodings_are_named(encoding):
    with pytest.raises(ValueError, match=f"encoding '{encoding}'"):
        rgb_from_image(_packed(_rgb(), encoding))


def test_empty_and_truncated_images_are_rejected():
    with pytest.raises(ValueError, match="empty"):
        rgb_from_image(Image(header=HEADER, height=0, width=0, encoding="rgb8", step=0))
    short = _packed(_rgb(), "rgb8")
    short.data = bytes(short.data)[:-10]
    with pytest.raises(ValueError, match="needs"):
        rgb_from_image(short)


def test_image_msg_round_trips_rgb_and_masks():
    rgb = _rgb(5, 7)
    msg = image_msg(rgb, HEADER)
    assert (msg.encoding, msg.step, msg.height, msg.width) == ("rgb8", 21, 5, 7)
    np.testing.assert_array_equal(rgb_from_image(msg), rgb)
    mask = np.eye(4, dtype=np.uint8) * 255
    mono = image_msg(mask, HEADER, "mono8")
    assert mono.step == 4
    np.testing.assert_array_equal(rgb_from_image(mono)[..., 0], mask)
    with pytest.raises(ValueError, match=r"\(H,W,3\) uint8, got \(5, 7\)"):
        image_msg(rgb[..., 0], HEADER)


# ---------------------------------------------------------------- cameras


def test_camera_info_gives_k_size_and_distortion():
    camera = camera_from_info(_camera_info(K, d=(0.1, -0.05, 0.001, 0.002, 0.0)))
    np.testing.assert_array_equal(camera.K, K)
    assert (camera.width, camera.height) == (320, 240)
    np.testing.assert_allclose(camera.dist, [0.1, -0.05, 0.001, 0.002, 0.0])


@pytest.mark.parametrize("k", [np.zeros(9), np.full(9, np.nan)], ids=["all-zero", "nan"])
def test_unusable_k_is_rejected(k):
    with pytest.raises(ValueError, match="K must"):
        camera_from_info(_camera_info(k))


def test_image_of_another_size_than_its_camera_info_is_rejected_with_both_sizes():
    camera = PinholeCamera(K, 320, 240)
    check_image_fits_camera(np.zeros((240, 320, 3), np.uint8), camera)
    with pytest.raises(ValueError, match="image is 640x480 but its camera_info says 320x240"):
        check_image_fits_camera(np.zeros((480, 640, 3), np.uint8), camera)


# ---------------------------------------------------------------- poses and transforms


def test_pose_of_a_quarter_turn_about_z():
    T = make_pose([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [0.1, -0.2, 0.9])
    pose = pose_msg(T)
    assert (pose.position.x, pose.position.y, pose.position.z) == (0.1, -0.2, 0.9)
    q = pose.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], [0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)], atol=1e-15)
    np.testing.assert_allclose(matrix_from_pose(pose), T, atol=1e-15)


def test_transform_round_trip_and_frames():
    rng = np.random.default_rng(3)
    T = make_pose(Rotation.random(random_state=rng).as_matrix(), rng.normal(size=3))
    msg = transform_msg(T, HEADER, "sixdpose/duck_1")
    assert (msg.header.frame_id, msg.child_frame_id) == ("camera_color_optical_frame", "sixdpose/duck_1")
    np.testing.assert_allclose(matrix_from_transform(msg), T, atol=1e-12)


def test_unset_quaternion_is_rejected():
    with pytest.raises(ValueError, match="non-zero"):
        matrix_from_pose(Pose(orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=0.0)))


def test_stamps_round_trip_in_nanoseconds():
    assert stamp_ns(time_msg(12_000_000_345)) == 12_000_000_345
    assert (time_msg(12_000_000_345).sec, time_msg(12_000_000_345).nanosec) == (12, 345)


# ---------------------------------------------------------------- detections and instances


def test_detections_round_trip_with_masks_cut_to_outward_rounded_boxes():
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:17] = True
    mask[6, 12] = False
    with_mask = Detection(object_id=1, box=np.array([10.0, 5.0, 17.0, 9.0]), mask=mask, score=0.8)
    fractional = Detection(object_id=2, box=np.array([2.5, 3.2, 6.1, 7.0]), mask=np.zeros((20, 30), bool), score=0.4)
    msg = detection_array_msg([with_mask, fractional], {1: "duck", 2: "bunny"}, HEADER)
    assert [d.object_name for d in msg.detections] == ["duck", "bunny"]
    assert (msg.detections[0].mask.width, msg.detections[0].mask.height) == (7, 4)
    assert (msg.detections[1].mask.width, msg.detections[1].mask.height) == (5, 4)  # x 2..7, y 3..7
    back = detections_from_msg(msg, 30, 20)
    np.testing.assert_array_equal(back[0].mask, mask)
    np.testing.assert_allclose(back[1].box, [2.5, 3.2, 6.1, 7.0], atol=1e-6)
    assert back[0].score == pytest.approx(0.8) and back[1].object_id == 2


def test_detection_without_mask_gets_its_box_and_bad_ones_are_rejected():
    msg = detection_array_msg([], {}, HEADER)
    msg.detections.append(DetectionMsg(object_id=4, score=0.5, x_min=1.0, y_min=2.0, x_max=4.0, y_max=3.0))
    (det,) = detections_from_msg(msg, 10, 10)
    assert det.mask.sum() == 3 and det.mask[2, 1:4].all()
    msg.detections[0].x_max = 11.0
    with pytest.raises(ValueError, match="not inside the 10x10 image"):
        detections_from_msg(msg, 10, 10)
    msg.detections[0].x_max = 4.0
    msg.detections[0].mask = image_msg(np.zeros((2, 2), np.uint8), HEADER, "mono8")
    with pytest.raises(ValueError, match="mask is 2x2, its box needs 3x1"):
        detections_from_msg(msg, 10, 10)


def test_instances_are_numbered_per_object_by_falling_score():
    T = make_pose(np.eye(3), [0.0, 0.0, 0.5])
    estimates = [
        PoseEstimate(1, T, 0.5, "nocs_pix2pix"),
        PoseEstimate(2, T, 0.7, "nocs_pix2pix"),
        PoseEstimate(1, T, 0.9, "nocs_pix2pix"),
        PoseEstimate.none(1, "nocs_pix2pix", "too few correspondences"),
        PoseEstimate(9, T, 0.95, "nocs_pix2pix"),  # not a published object
        PoseEstimate(2, T, 0.1, "nocs_pix2pix"),  # below min_score
    ]
    poses = number_instances(estimates, {1: "duck", 2: "bunny"}, min_score=0.2)
    assert [(p.name, p.instance, p.score, p.frame_name) for p in poses] == [
        ("duck", 0, 0.9, "duck"), ("duck", 1, 0.5, "duck_1"), ("bunny", 0, 0.7, "bunny")]
    msg = object_pose_array_msg(poses, HEADER)
    back = instance_poses_from_msg(msg)
    assert [(p.object_id, p.instance, p.method) for p in back] == [(1, 0, "nocs_pix2pix"), (1, 1, "nocs_pix2pix"),
                                                                   (2, 0, "nocs_pix2pix")]
    np.testing.assert_allclose(back[1].T_cam_obj, T)


def test_detection2d_array_gives_box_centres_and_sizes_in_pixels():
    mask = np.zeros((20, 30), bool)
    detections = [Detection(1, np.array([10.0, 5.0, 17.0, 9.0]), mask, 0.8),
                  Detection(2, np.array([2.5, 3.2, 6.1, 7.0]), mask, 0.4)]
    msg = detection2d_array_msg(detections, {1: "duck", 2: "bunny"}, HEADER)
    assert msg.header == HEADER and all(d.header == HEADER for d in msg.detections)
    got = [(d.id, d.results[0].hypothesis.class_id, d.results[0].hypothesis.score, d.bbox.center.position.x,
            d.bbox.center.position.y, d.bbox.center.theta, d.bbox.size_x, d.bbox.size_y) for d in msg.detections]
    assert got == [("duck", "duck", 0.8, 13.5, 7.0, 0.0, 7.0, 4.0),
                   ("bunny", "bunny", 0.4, pytest.approx(4.3), pytest.approx(5.1), 0.0, pytest.approx(3.6),
                    pytest.approx(3.8))]


def test_detection3d_array_holds_each_pose_and_its_model_box_at_that_pose():
    # A 10 x 6 x 4 cm box whose centre is 5 cm along the model's x axis, turned a quarter about z: the camera
    # sees its centre at R (0.05, 0, 0) + t = (0, 0.05, 0) + (0, 0.1, 0.6).
    model = ObjectModel.from_trimesh(trimesh.creation.box((0.10, 0.06, 0.04), make_pose(np.eye(3), [0.05, 0, 0])),
                                     5, "block")
    T = make_pose(Rotation.from_euler("z", 90, degrees=True).as_matrix(), [0.0, 0.1, 0.6])
    poses = [InstancePose(5, "block", 0, 0.9, "test", T), InstancePose(5, "block", 1, 0.3, "test", np.eye(4))]
    msg = detection3d_array_msg(poses, {5: model}, HEADER)
    assert [(d.id, d.results[0].hypothesis.class_id, d.results[0].hypothesis.score) for d in msg.detections] == [
        ("block", "block", 0.9), ("block_1", "block", 0.3)]
    first = msg.detections[0]
    assert first.header == HEADER and first.results[0].pose.pose == pose_msg(T)
    assert not np.any(first.results[0].pose.covariance)
    np.testing.assert_allclose(matrix_from_pose(first.results[0].pose.pose), T, atol=1e-12)
    centre = first.bbox.center
    np.testing.assert_allclose([centre.position.x, centre.position.y, centre.position.z], [0.0, 0.15, 0.6], atol=1e-9)
    assert centre.orientation == first.results[0].pose.pose.orientation
    np.testing.assert_allclose([first.bbox.size.x, first.bbox.size.y, first.bbox.size.z], [0.10, 0.06, 0.04],
                               atol=1e-7)


# ---------------------------------------------------------------- pairing


def test_camera_info_cache_pairs_the_latest_info_of_the_image_frame():
    cache = CameraInfoCache()
    image = Image(header=Header(frame_id="cam_a"))
    assert cache.match(image) is None
    old, new, other = _camera_info(K), _camera_info(K * 2), _camera_info(K)
    other.header = Header(frame_id="cam_b")
    for info in (old, new):
        info.header = Header(frame_id="cam_a")
        cache.update(info)
    cache.update(other)
    assert cache.match(image) is new


def test_stamp_buffer_pops_by_stamp_and_forgets_older_and_overflowing_frames():
    buffer: StampBuffer[str] = StampBuffer(3)
    for stamp in (10, 20, 30, 40):
        buffer.put(stamp, f"frame {stamp}")
    assert len(buffer) == 3 and buffer.pop(10) is None
    assert buffer.pop(30) == "frame 30"
    assert len(buffer) == 1 and buffer.pop(20) is None and buffer.pop(40) == "frame 40"
    with pytest.raises(ValueError):
        StampBuffer(0)


# ---------------------------------------------------------------- health


def test_each_distinct_problem_is_logged_once_and_counted_always():
    logged: list[str] = []
    problems = ProblemLog(logged.append)
    for _ in range(5):
        problems.report("image", "image encoding 'yuv422' is not supported")
    problems.report("image", "image is 640x480 but its camera_info says 320x240")
    problems.report("camera_info", "no CameraInfo")
    assert len(logged) == 3 and "yuv422" in logged[0]
    assert problems.counts == {"image": 6, "camera_info": 1}
    assert problems.latest == "camera_info: no CameraInfo"
    problems.frame_ok()
    assert problems.latest == ""
    for i in range(2 * MAX_DISTINCT_PROBLEMS):
        problems.report("detector", f"problem {i}")
    assert len(logged) == MAX_DISTINCT_PROBLEMS + 1  # 3 + the rest up to the cap, then one line saying so
    assert "no more are logged" in logged[-1]


def test_latency_median_and_p90_and_diagnostic_levels():
    latency = LatencyStats(window=10)
    for value in range(-5, 11):  # the window keeps 1..10
        latency.add("estimate", value / 1000)
    median, p90 = latency.summary()["estimate"]
    assert median == pytest.approx(0.0055) and p90 == pytest.approx(0.0091)
    counters, problems = FrameCounters(), ProblemLog(lambda message: None)
    assert diagnostic_status("n", counters, latency, problems).level == DiagnosticStatus.STALE
    counters.received = counters.answered = 3
    status = diagnostic_status("n", counters, latency, problems)
    values = {v.key: v.value for v in status.values}
    assert status.level == DiagnosticStatus.OK and values["estimate ms median"] == "5.5"
    assert values["frames answered"] == "3"
    problems.report("image", "bad")
    status = diagnostic_status("n", counters, latency, problems)
    assert status.level == DiagnosticStatus.WARN and status.message == "image: bad"


def test_diagnostics_are_read_safely_while_a_worker_thread_records():
    """The worker thread adds stages and problems while the executor thread builds /diagnostics (a CI failure:
    'dictionary changed size during iteration' when a new stage appeared mid-summary)."""
    latency, problems, counters = LatencyStats(), ProblemLog(lambda message: None), FrameCounters(answered=1)

    def record() -> None:
        for n in range(3000):  # every stage and problem kind new, so each one changes the dictionaries' sizes
            latency.add(f"stage {n}", 0.001)
            problems.report(f"kind {n}", "bad")

    worker = threading.Thread(target=record)
    worker.start()
    while worker.is_alive():
        diagnostic_status("n", counters, latency, problems)
    worker.join()
    values = {v.key for v in diagnostic_status("n", counters, latency, problems).values}
    assert "stage 0 ms median" in values and "problems kind 0" in values


# ---------------------------------------------------------------- drawing and markers


def _box_model() -> ObjectModel:
    """A 10 x 6 x 4 cm box centred on its origin."""
    return ObjectModel.from_trimesh(trimesh.creation.box((0.10, 0.06, 0.04)), 5, "block")


def test_silhouette_of_a_box_facing_the_camera_is_its_projected_rectangle():
    camera = PinholeCamera(K, 320, 240)
    T = make_pose(np.eye(3), [0.0, 0.0, 0.5])  # front face at z = 0.48 m
    mask = silhouette(_box_model(), T, camera)
    # The near face spans 0.10 x 0.06 m at 0.48 m: 62.5 x 37.5 px at f = 300.
    assert abs(int((mask > 0).sum()) - 62.5 * 37.5) < 0.05 * 62.5 * 37.5
    assert mask[120, 160] == 255 and mask[120, 100] == 0


def test_overlays_draw_where_the_objects_are():
    camera = PinholeCamera(K, 320, 240)
    model = _box_model()
    rgb = np.zeros((240, 320, 3), np.uint8)
    pose = InstancePose(5, "block", 0, 0.9, "test", make_pose(np.eye(3), [0.0, 0.0, 0.5]))
    out = draw_poses(rgb, camera, [pose], {5: model})
    # The near face spans u in [128.75, 191.25], v in [100.75, 138.25]: its outline is drawn there.
    assert out[120, 127:131].any() and out[120, 189:193].any() and out[99:103, 140].any()
    assert not out[:90].any() and not out[165:].any()  # the y axis (down) ends near v = 157
    assert (rgb == 0).all()  # the input is left untouched
    mask = np.zeros((240, 320), bool)
    mask[100:140, 150:170] = True
    tinted = draw_detections(rgb, [Detection(5, np.array([150.0, 100, 170, 140]), mask, 0.7)], {5: "block"})
    assert tinted[120, 160].any() and not tinted[50, 50].any()


def test_markers_clear_then_show_each_instance_mesh_in_millimetres(tmp_path):
    pose = InstancePose(3, "teddy", 1, 0.9, "test", make_pose(np.eye(3), [0.0, 0.1, 0.6]))
    msg = marker_array_msg([pose], tmp_path, HEADER)
    assert [m.action for m in msg.markers] == [Marker.DELETEALL, Marker.ADD]
    marker = msg.markers[1]
    assert marker.mesh_resource == (tmp_path / "obj_000003.ply").resolve().as_uri()
    assert (marker.ns, marker.id, marker.scale.x, marker.pose.position.y) == ("teddy", 1, 0.001, 0.1)


# ---------------------------------------------------------------- parameters and deployments


def test_config_fields_map_to_typed_ros_parameters():
    node = field_annotations(PoseEstimatorNodeSettings)
    assert parameter_type(node["objects"]) == (ParameterType.PARAMETER_INTEGER_ARRAY, False)
    assert parameter_type(node["min_score"]) == (ParameterType.PARAMETER_DOUBLE, False)
    assert parameter_type(node["publish_tf"]) == (ParameterType.PARAMETER_BOOL, False)
    stage = field_annotations(EstimatorConfig)
    assert parameter_type(stage["nocs.pnp.min_correspondences"]) == (ParameterType.PARAMETER_INTEGER, False)
    assert parameter_type(stage["nocs.weights"]) == (ParameterType.PARAMETER_STRING, False)
    assert parameter_type(float | None) == (ParameterType.PARAMETER_DOUBLE, True)
    with pytest.raises(TypeError, match="no ROS parameter type"):
        parameter_type(dict[str, int])


def test_deployment_topics_remappings_and_errors(tmp_path):
    path = tmp_path / "nodes.yaml"
    path.write_text("camera: {image: /usb_cam/image_raw}\nnodes:\n  - executable: detector_node\n"
                    "    parameters: {detector.score_threshold: 0.6}\n")
    deployment = load_deployment(path)
    assert deployment.remappings() == [(IMAGE_TOPIC, "/usb_cam/image_raw")]
    (node,) = deployment.nodes
    assert node.name == "sixdpose_detector"
    args = deployment.ros_arguments(node, tmp_path / "p.yaml")
    assert args == ["--ros-args", "-r", "__node:=sixdpose_detector", "--params-file", str(tmp_path / "p.yaml"),
                    "-r", f"{IMAGE_TOPIC}:=/usb_cam/image_raw"]
    assert parameter_file_content(node) == {"/**": {"ros__parameters": {"detector.score_threshold": 0.6}}}
    assert load_deployment(path, camera_info_topic="/usb_cam/camera_info").remappings()[1] == (
        CAMERA_INFO_TOPIC, "/usb_cam/camera_info")
    for text, message in [
        ("nodes:\n  - executable: flying_node\n", "unknown executable 'flying_node'"),
        ("nodes:\n  - {executable: detector_node}\n  - {executable: detector_node}\n", "used more than once"),
        ("camera: {image: image_raw}\nnodes:\n  - {executable: detector_node}\n", "absolute topic"),
        ("nodes: []\n", "non-empty list"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_deployment(path)
    with pytest.raises(FileNotFoundError):
        load_deployment(tmp_path / "missing.yaml")
    # Parameters for a whole deployment (`sixdpose replay --param`): a stage's only where that stage runs, as
    # a node refuses parameters it does not declare.
    split = with_parameters(load_deployment(Path(__file__).resolve().parents[1] / "config/nodes_split.yaml"),
                            {"estimator.nocs.threads": 1, "detector.threads": 1, "diagnostics_period": 0.5})
    detector, estimator = split.nodes
    assert "estimator.nocs.threads" not in detector.parameters and detector.parameters["detector.threads"] == 1
    assert estimator.parameters["estimator.nocs.threads"] == 1 and estimator.parameters["diagnostics_period"] == 0.5


def test_tf_message_has_the_type_hash_of_the_official_tf2_msgs():
    """/tf is published with a TFMessage whose RIHS01 hash is ROS 2 Kilted's, so real tf2 listeners accept it."""
    description = Path(get_package_share_directory("tf2_msgs")) / "msg" / "TFMessage.json"
    built = json.loads(description.read_text())["type_hashes"][0]["hash_string"]
    assert built == get_typestore(Stores.ROS2_KILTED).hash_rihs01("tf2_msgs/msg/TFMessage")

"""Replay evaluation: ROS-free scoring on hand-built inputs, and a real replay through node processes over DDS.

The real replay runs `sixdpose replay` (inside the private network namespace of `make test`): a 640x480
bag of a fresh synthetic sequence goes to pose_estimator_node with the oracle detector and a Pix2Pix
network with untrained, seeded weights, so nothing depends on training: what is under test is the
replay path (bag, DDS, node processes, recorder, scoring), whose poses and scores must equal those of
the same pipeline run offline on the same frames.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rosbags.rosbag2 import Reader, Writer

from ros2_sixdpose.config import load_config
from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.geometry import make_pose
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data.bags import BagFrame, GtPose, read_bag, write_bag
from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.data.msg_types import typestore
from ros2_sixdpose.data.synth import SynthConfig, generate_split
from ros2_sixdpose.detection.base import DetectorConfig, ImageKey
from ros2_sixdpose.detection.factory import make_detector
from ros2_sixdpose.estimation.factory import EstimatorConfig, make_estimator
from ros2_sixdpose.estimation.nocs_net import CropSpec
from ros2_sixdpose.estimation.nocs_weights import save_nocs_net
from ros2_sixdpose.estimation.pix2pix import Pix2PixGenerator
from ros2_sixdpose.evaluation.replay import (
    Answer,
    EstimatedPose,
    NodeCounts,
    PublishedFrame,
    first_answers,
    frames_received,
    latency,
    read_output,
    read_published,
    score_poses,
    visible_fractions,
    write_published,
)
from ros2_sixdpose.evaluation.scoring import EvalConfig
from ros2_sixdpose.pipeline import Frame, Pipeline

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "assets" / "models"
SIXDPOSE = Path(sys.executable).parent / "sixdpose"
MS = 1_000_000  # ns
DUCK = 1  # no symmetry: ADD and MSSD of a pure translation equal its length
K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])
T_GT = make_pose(np.eye(3), [0.02, -0.01, 0.5])


# ---------------------------------------------------------------- scoring, no ROS


def _answer(stamp: int, received_ms: int, poses: tuple[EstimatedPose, ...] = ()) -> Answer:
    return Answer(stamp, received_ms * MS, poses)


def test_latency_counts_first_answer_per_published_image():
    published = [PublishedFrame(stamp, (1000 + 100 * i) * MS) for i, stamp in enumerate((10, 20, 30, 40))]
    answers = [
        _answer(10, 1050),  # 50 ms
        _answer(20, 1170),  # 70 ms
        _answer(20, 1400),  # a second answer to 20: only the first counts
        _answer(40, 1410),  # 110 ms; 30 gets no answer
        _answer(99, 1500),  # answers no published image
    ]
    first = first_answers(published, answers)
    assert sorted(first) == [10, 20, 40] and first[20].received_ns == 1170 * MS
    lat = latency(published, first)
    # Median of (50, 70, 110) is 70; p90 interpolates 80 % of the way from 70 to 110: 102.
    assert lat.n_frames == 3
    assert (lat.median_ms, lat.p90_ms, lat.max_ms) == pytest.approx((70.0, 102.0, 110.0))
    assert latency(published, {}) is None


def test_frames_received_is_the_fewest_over_the_nodes():
    nodes = {"detector": NodeCounts(9, 9, 0), "estimator": NodeCounts(7, 6, 1)}
    assert frames_received(nodes) == 7
    assert frames_received({}) is None


def _frame(stamp: int, models, T: np.ndarray = T_GT) -> BagFrame:
    """A 640x480 frame holding the duck at T, with its rendered depth."""
    with Renderer({DUCK: models[DUCK]}) as renderer:
        depth = renderer.render(K, 640, 480, [(DUCK, T)], outputs=("depth",)).depth
    return BagFrame(np.zeros((480, 640, 3), np.uint8), PinholeCamera(K, 640, 480), stamp, "cam", depth,
                    (GtPose(DUCK, "duck", 0, T),))


def test_recalls_of_hand_built_answers():
    models = load_models(MODELS, [DUCK])
    d = models[DUCK].diameter
    frames = [_frame(stamp, models) for stamp in (1, 2, 3, 4)]

    def shifted(fraction: float) -> tuple[EstimatedPose, ...]:
        return (EstimatedPose(DUCK, 0.9, make_pose(np.eye(3), T_GT[:3, 3] + [fraction * d, 0.0, 0.0])),)

    # Exact; 0.22 d off; 0.07 d off; no answer.
    answers = {1: _answer(1, 0, shifted(0.0)), 2: _answer(2, 0, shifted(0.22)), 3: _answer(3, 0, shifted(0.07))}
    report = score_poses(frames, answers, models, EvalConfig(metrics=("add", "mssd")))
    assert report.overall.n_instances == 4 and report.n_estimates == 3
    # ADD (= the shift) below 0.1 d: frames 1 and 3.
    assert report.overall.add_s_recall == pytest.approx(2 / 4)
    # MSSD thresholds 0.05 .. 0.5 d: 10 of 10 pass for 0, 6 for 0.22 d, 9 for 0.07 d, 0 for the miss.
    assert report.overall.ar_mssd == pytest.approx((10 + 6 + 9 + 0) / 40)


def test_visible_fraction_from_depth_follows_bop():
    models = load_models(MODELS, [DUCK])
    with Renderer({DUCK: models[DUCK]}) as renderer:
        frame = _frame(1, models)
        assert visible_fractions(renderer, frame) == [pytest.approx(1.0)]
        wall = np.full_like(frame.depth, 0.3)  # a surface 0.2 m in front of the duck everywhere
        assert visible_fractions(renderer, dataclasses.replace(frame, depth=wall)) == [0.0]
        no_depth = np.zeros_like(frame.depth)  # no measurement: BOP 2019 counts the pixel as visible
        assert visible_fractions(renderer, dataclasses.replace(frame, depth=no_depth)) == [pytest.approx(1.0)]
        # Across the image's left border: the part outside the frame is not visible. The whole silhouette is
        # counted on an image twice as wide, extended to the left.
        T = make_pose(np.eye(3), [-K[0, 2] / K[0, 0] * 0.5, -0.01, 0.5])
        wide = K.copy()
        wide[0, 2] += 640
        inside = np.count_nonzero(renderer.render(K, 640, 480, [(DUCK, T)], outputs=("depth",)).depth)
        whole = np.count_nonzero(renderer.render(wide, 1280, 480, [(DUCK, T)], outputs=("depth",)).depth)
        assert 0.2 < inside / whole < 0.8
        assert visible_fractions(renderer, _frame(1, models, T))[0] == pytest.approx(inside / whole, abs=0.005)
        outside = make_pose(np.eye(3), [-0.5, 0.0, 0.5])  # far left of the view
        assert visible_fractions(renderer, dataclasses.replace(frame, gt=(GtPose(DUCK, "duck", 0, outside),))) == [0.0]


def test_output_bag_gives_answers_at_receive_times_and_the_latest_node_counts(tmp_path):
    store = typestore()
    types = store.types
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=2, nanosec=5), frame_id="cam")
    half_turn_z = types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=1.0, w=0.0)
    pose = types["ros2_sixdpose/msg/ObjectPose"](
        object_id=DUCK, object_name="duck", instance=0, score=0.75, method="nocs_pix2pix",
        pose=types["geometry_msgs/msg/Pose"](position=types["geometry_msgs/msg/Point"](x=0.1, y=0.2, z=0.5),
                                             orientation=half_turn_z),
        covariance=np.zeros(36))
    poses = types["ros2_sixdpose/msg/ObjectPoseArray"](header=header, poses=[pose])

    def diagnostics(received: int) -> object:
        values = [types["diagnostic_msgs/msg/KeyValue"](key=f"frames {k}", value=str(v))
                  for k, v in (("received", received), ("answered", received - 1), ("rejected", 1))]
        status = types["diagnostic_msgs/msg/DiagnosticStatus"](level=0, name="sixdpose_pose_estimator: pipeline",
                                                               message="ok", hardware_id="", values=values)
        return types["diagnostic_msgs/msg/DiagnosticArray"](header=header, status=[status])

    with Writer(tmp_path / "output", version=9) as writer:
        poses_conn = writer.add_connection("/sixdpose/poses", "ros2_sixdpose/msg/ObjectPoseArray", typestore=store)
        diag_conn = writer.add_connection("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", typestore=store)
        writer.write(diag_conn, 100, store.serialize_cdr(diagnostics(3), "diagnostic_msgs/msg/DiagnosticArray"))
        writer.write(poses_conn, 123_456, store.serialize_cdr(poses, "ros2_sixdpose/msg/ObjectPoseArray"))
        writer.write(diag_conn, 200, store.serialize_cdr(diagnostics(8), "diagnostic_msgs/msg/DiagnosticArray"))
    answers, nodes = read_output(tmp_path / "output")
    (answer,) = answers
    assert answer.stamp_ns == 2_000_000_005 and answer.received_ns == 123_456
    (estimate,) = answer.poses
    assert estimate.obj_id == DUCK and estimate.score == pytest.approx(0.75)
    # A half turn about z: x and y flip.
    np.testing.assert_allclose(estimate.T_cam_obj, make_pose(np.diag([-1.0, -1.0, 1.0]), [0.1, 0.2, 0.5]), atol=1e-12)
    assert nodes == {"sixdpose_pose_estimator": NodeCounts(received=8, answered=7, rejected=1)}


def test_published_log_round_trip_and_malformed_file(tmp_path):
    frames = [PublishedFrame(1, 10), PublishedFrame(2, 20)]
    write_published(tmp_path / "published.json", frames)
    assert read_published(tmp_path / "published.json") == frames
    (tmp_path / "bad.json").write_text('[{"stamp_ns": 1}]')
    with pytest.raises(ValueError, match=r"bad.json: entry 0: expected integers 'stamp_ns' and 'published_ns'"):
        read_published(tmp_path / "bad.json")


# ---------------------------------------------------------------- a real replay over DDS


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Path:
    """A 640x480 30 Hz sequence of 6 frames (duck, mug, lego; seed 9300, never used in training), its bag, and
    untrained Pix2Pix weights (nocs_untrained.pt)."""
    root = tmp_path_factory.mktemp("replay")
    config = load_config(SynthConfig, ROOT / "config/synth.yaml", {
        "camera.distance": [0.35, 0.5], "scene.objects_per_scene": [3, 3], "scene.max_instances_per_object": 1,
        "scene.distractors_per_scene": [0, 1], "scene.texture_size": 256, "lighting.shadow_map_size": 256,
    })
    generate_split(root / "data", "test", 1, 6, 9300, config, MODELS, object_ids=(1, 4, 5), progress=False,
                   sequence=True)
    write_bag(BopSplit(root / "data", "test"), 0, root / "bag", models_dir=MODELS)
    torch.manual_seed(0)
    save_nocs_net(Pix2PixGenerator((8, 16), sorted(load_models(MODELS))), CropSpec(), root / "nocs_untrained.pt")
    return root


def _replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SIXDPOSE), "replay", *args], capture_output=True, text=True, timeout=300)


# PnP keeps nearly every pose it solves, so that the untrained network's maps give poses to compare.
PNP_OVERRIDES = {"pnp.min_inlier_ratio": 0.0, "pnp.min_inliers": 6}


@pytest.fixture(scope="module")
def replayed(sequence) -> Path:
    """OUT of `sixdpose replay` of the bag through pose_estimator_node (oracle detector) at 1/30 of real time.

    Without the refiner: these tests are about the replay and its scoring, which must not depend on how long
    refinement takes under load (test_nodes checks the refined node against the offline pipeline).
    """
    out = sequence / "out"
    result = _replay(
        str(sequence / "bag"), "--config", str(ROOT / "config/nodes_oracle.yaml"), "--out", str(out), "--rate", "0.03",
        "--param", f"detector.dataset={sequence / 'data'}", "--param", "detector.split=test", "--param", "refiner.type=none",
        "--param", f"estimator.nocs.weights={sequence / 'nocs_untrained.pt'}",
        *(f"--param=estimator.nocs.{key}={value}" for key, value in PNP_OVERRIDES.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.mark.ros
def test_replay_answers_every_frame_and_writes_the_metrics(replayed):
    metrics = json.loads((replayed / "metrics.json").read_text())
    for key in ("frames_sent", "frames_received", "frames_answered", "latency_ms_median", "latency_ms_p90",
                "n_instances", "add_s_recall", "ar_mssd", "ar_mspd", "ar_vsd", "ar", "per_object", "nodes", "notes"):
        assert key in metrics
    # 1.1 s between frames is ample for 3 crops: nothing is dropped.
    assert metrics["frames_sent"] == metrics["frames_received"] == metrics["frames_answered"] == 6
    assert 0 < metrics["latency_ms_median"] <= metrics["latency_ms_p90"] < 5000
    assert metrics["n_instances"] == 18 and metrics["ar_vsd"] is not None


@pytest.mark.ros
def test_replay_gives_the_poses_and_scores_of_the_same_pipeline_offline(sequence, replayed):
    frames = list(read_bag(sequence / "bag"))
    detector = make_detector(DetectorConfig(type="oracle", dataset=str(sequence / "data"), split="test"))
    # The estimator file that config/nodes_oracle.yaml names, with the replay's overrides.
    overrides = {"nocs.weights": str(sequence / "nocs_untrained.pt"), "nocs.models_dir": str(MODELS),
                 **{f"nocs.{key}": value for key, value in PNP_OVERRIDES.items()}}
    estimator = load_config(EstimatorConfig, ROOT / "config/estimator.yaml", overrides)
    pipeline = Pipeline(detector, make_estimator(estimator))
    offline = {}
    for im_id, frame in enumerate(frames):
        out = pipeline.process(Frame(frame.rgb, frame.camera, key=ImageKey(0, im_id)))
        offline[frame.stamp_ns] = Answer(frame.stamp_ns, 0, tuple(
            EstimatedPose(e.object_id, e.score, e.T_cam_obj) for e in out.poses))
    recorded = first_answers([PublishedFrame(f.stamp_ns, 0) for f in frames], read_output(replayed / "output")[0])
    compared = 0
    for stamp, answer in offline.items():
        expected = sorted(answer.poses, key=lambda p: p.obj_id)
        replayed_poses = sorted(recorded[stamp].poses, key=lambda p: p.obj_id)
        assert [p.obj_id for p in replayed_poses] == [p.obj_id for p in expected]
        for got, want in zip(replayed_poses, expected):
            # Over DDS a pose travels as float64 position and quaternion: equal to rounding.
            np.testing.assert_allclose(got.T_cam_obj, want.T_cam_obj, atol=1e-6)
            compared += 1
    assert compared == 18
    # Hence the same scores: an error would have to lie within 1e-6 of a threshold to flip one instance.
    metrics = json.loads((replayed / "metrics.json").read_text())
    scores = score_poses(frames, offline, load_models(MODELS), EvalConfig()).overall
    for key in ("add_s_recall", "ar_mssd", "ar_mspd", "ar_vsd"):
        assert metrics[key] == pytest.approx(getattr(scores, key), abs=1e-9)


@pytest.mark.ros
def test_output_bag_holds_the_poses_and_matching_tf(replayed):
    store = typestore()
    poses, tf = {}, []
    with Reader(replayed / "output") as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics["/sixdpose/poses"] == "ros2_sixdpose/msg/ObjectPoseArray"
        assert topics["/tf"] == "tf2_msgs/msg/TFMessage"
        assert topics["/sixdpose/detections3d"] == "vision_msgs/msg/Detection3DArray"  # rosbags knows vision_msgs
        assert "/diagnostics" in topics and "/sixdpose/overlay" in topics
        wanted = [c for c in reader.connections if c.topic in ("/sixdpose/poses", "/tf")]
        for connection, _, raw in reader.messages(wanted):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            if connection.topic == "/tf":
                tf.append(msg)
            else:
                poses[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg
    assert len(poses) == 6
    # One TFMessage per frame with a pose; each transform is that frame's pose of the named object.
    assert len(tf) == sum(1 for msg in poses.values() if msg.poses)
    for msg in tf:
        for transform in msg.transforms:
            frame = poses[(transform.header.stamp.sec, transform.header.stamp.nanosec)]
            stem = transform.child_frame_id.removeprefix("sixdpose/")
            names = [p.object_name if p.instance == 0 else f"{p.object_name}_{p.instance}" for p in frame.poses]
            match = [p for p, name in zip(frame.poses, names) if name == stem]
            assert len(match) == 1 and transform.header.frame_id == "camera_color_optical_frame"
            t = transform.transform.translation
            assert [t.x, t.y, t.z] == pytest.approx([match[0].pose.position.x, match[0].pose.position.y,
                                                     match[0].pose.position.z], abs=1e-12)


@pytest.mark.ros
def test_bag_without_camera_topics_is_refused_before_any_node_starts(tmp_path):
    store = typestore()
    with Writer(tmp_path / "gt_only", version=9) as writer:
        writer.add_connection("/sixdpose/ground_truth", "ros2_sixdpose/msg/ObjectPoseArray", typestore=store)
    result = _replay(str(tmp_path / "gt_only"), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "no /camera/color/image_raw (sensor_msgs/msg/Image) topic" in errors[0], result.stderr
    assert not (tmp_path / "out" / "logs").exists()


@pytest.mark.ros
def test_node_that_cannot_start_stops_the_replay_with_its_reason(sequence, tmp_path):
    result = _replay(
        str(sequence / "bag"), "--config", str(ROOT / "config/nodes_oracle.yaml"), "--out", str(tmp_path / "out"),
        "--param", f"detector.dataset={sequence / 'data'}", "--param", "detector.split=test",
        "--param", "estimator.nocs.weights=/nonexistent/nocs.pt",
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "node sixdpose_pose_estimator exited with code 1" in errors[0], result.stderr
    assert "/nonexistent/nocs.pt: NOCS network weights not found" in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()

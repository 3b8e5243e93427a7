"""tracker_node over real DDS (private namespace): follows two instances of one object through a fresh moving
sequence, each under a stable instance number, published as "estimate" once and "track" afterwards; answers
every frame at once, with no pose until the initialisation (in its child process) has started the tracks.

The node runs in its own process (`sixdpose run --single-process`); detections come from the oracle detector
(ground-truth masks), poses at initialisation from the shipped Pix2Pix NOCS estimator + refiner, and every
later frame from the region-based tracker. The object is the torus, for which the shipped estimator is
reliable (ADD(-S) recall 0.83 on the test split) and which is symmetric, so a flip would show.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from ros2_sixdpose.config import load_config
from ros2_sixdpose.core.geometry import rotation_angle
from ros2_sixdpose.core.messages import matrix_from_pose, stamp_ns
from ros2_sixdpose.core.metrics import add_s
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.data.synth import SynthConfig, generate_split
from test_nodes import BIN, NodeProcess, _deployment_file, _frame, probe  # noqa: F401 (probe: a fixture)

ROOT = Path(__file__).resolve().parents[1]
TORUS = 8
FRAMES = 20
SEED = 9411  # never used for training, validation or test data
TOLERANCE = 0.1  # ADD(-S) in object diameters


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    """A fresh 640x480 30 Hz sequence: the camera moves around two tori."""
    root = tmp_path_factory.mktemp("tracker_node")
    config = load_config(SynthConfig, ROOT / "config/synth.yaml", {
        "scene.objects_per_scene": [2, 2], "scene.max_instances_per_object": 2,
        "scene.distractors_per_scene": [0, 1]})
    generate_split(root / "data", "test", 1, FRAMES, SEED, config, ROOT / "assets/models", object_ids=[TORUS],
                   sequence=True, progress=False)
    return root


@pytest.fixture(scope="module")
def tracker_node(sequence):
    parameters = {"detector.type": "oracle", "detector.dataset": str(sequence / "data"), "detector.split": "test",
                  "oracle_scene": 0, "objects": [TORUS], "diagnostics_period": 0.5,
                  # no retrieved templates and fewer model views than shipped: the node starts in seconds
                  "refiner.retrieval_hypotheses": 0, "tracking.region.n_viewpoints": 150}
    deployment = _deployment_file(sequence / "nodes.yaml", [{"executable": "tracker_node", "parameters": parameters}])
    node = NodeProcess([str(BIN / "sixdpose"), "run", "--single-process", "--config", str(deployment)],
                       sequence / "tracker.log")
    yield node
    assert node.stop() == 0, node.log()


def _send_until_poses(probe, image, info, count: int, timeout: float = 60.0):
    """Publish the frame every 0.25 s until an answer to it holds `count` poses; that answer."""
    since = time.monotonic()
    stamp = stamp_ns(image.header.stamp)
    while time.monotonic() - since < timeout:
        probe.send(image, info)
        if probe.spin(0.25, lambda: any(len(a.poses) >= count for a in probe.answers(stamp, since))):
            return next(a for a in probe.answers(stamp, since) if len(a.poses) >= count)
    raise AssertionError(f"no answer with {count} poses to the frame stamped {stamp} within {timeout} s")


@pytest.mark.ros
def test_tracker_node_follows_a_moving_sequence_with_stable_ids(sequence, probe, tracker_node):
    split = BopSplit(sequence / "data", "test")
    scene = split.read_scene(0)
    model = load_models(ROOT / "assets/models", [TORUS])[TORUS]
    # The camera holds still on the first frame until the initialisation (in the node's child process) has
    # started the tracks: the frame is answered at once with no pose, then with both; the first answer waits for
    # the node's start (torch, the estimator, the tracker's model views).
    image, info, _ = _frame(sequence, 0)
    probe.send_until_answered(image, info, timeout=120.0)
    answers = [_send_until_poses(probe, image, info, 2)]
    for im_id in range(1, FRAMES):
        image, info, _ = _frame(sequence, im_id)
        answers.append(probe.send_until_answered(image, info, timeout=30.0))
    methods = [[p.method for p in a.poses] for a in answers]
    assert all(m == "estimate" for m in methods[0]) and len(methods[0]) == 2, methods[0]
    tracked = sum(all(m == "track" for m in frame) and len(frame) == 2 for frame in methods[1:])
    assert tracked >= FRAMES - 3, methods  # re-initialisation only where a track was lost
    errors, instance_of = [], [set(), set()]
    for im_id, answer in enumerate(answers):
        for k, gt in enumerate(scene.gt[im_id]):
            poses = [(p.instance, matrix_from_pose(p.pose)) for p in answer.poses]
            instance, T = min(poses, key=lambda p: np.linalg.norm(p[1][:3, 3] - gt.T_cam_obj[:3, 3]))
            instance_of[k].add(instance)
            errors.append(add_s(T, gt.T_cam_obj, model.vertices, True) / model.diameter)
    # Each torus keeps one instance number over the whole sequence, and the two differ.
    assert all(len(s) == 1 for s in instance_of) and instance_of[0] != instance_of[1], instance_of
    # Measured: ADD(-S) within 0.1 d in 40 of 40 instance-frames (0.010-0.027 d); every frame after the first tracked.
    assert np.mean(np.array(errors) < TOLERANCE) >= 0.8, np.round(errors, 3)
    # Symmetric object: no flip between equivalent poses from frame to frame (the camera turns < 1 deg per frame).
    for k in range(2):
        R = [matrix_from_pose(min(a.poses, key=lambda p: np.linalg.norm(
            matrix_from_pose(p.pose)[:3, 3] - scene.gt[i][k].T_cam_obj[:3, 3])).pose)[:3, :3]
            for i, a in enumerate(answers)]
        steps = [np.degrees(rotation_angle(a, b)) for a, b in zip(R[:-1], R[1:])]
        assert max(steps) < 10.0, np.round(steps, 1)
    values = {v.key: v.value for v in probe.diagnostics[-1].status[0].values} if probe.diagnostics else {}
    assert "frames skipped" in values and any(k.startswith("track ") for k in values), values

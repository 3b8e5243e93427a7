"""tracker_node over real DDS (private namespace) through a full occlusion: in a fresh sequence a board sweeps
across the view (`sixdpose synth --sequence` events), hiding the object wholly for a few frames; the node drops the
track while nothing of it is visible and re-acquires it, under its old instance number, soon after the board has
passed. Frames are sent one by one (each once the previous one was answered), so the bound is in frames of the
30 Hz sequence; the node is the one of test_tracker_node (oracle detections: the visible masks, so none while
the object is hidden).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ros2_sixdpose.config import load_config
from ros2_sixdpose.core.messages import matrix_from_pose
from ros2_sixdpose.core.metrics import add_s
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.data.sequence_annotation import SEQUENCE_FILE, read_sequence_annotation
from ros2_sixdpose.data.synth import SynthConfig, generate_split
from test_nodes import _frame, probe  # noqa: F401 (probe: a fixture)
from test_tracker_node import TORUS, _send_until_poses, tracker_node  # noqa: F401 (tracker_node: a fixture)

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 60
SEED = 9412  # never used for training, validation or test data
TOLERANCE = 0.1  # ADD(-S) in object diameters
# Only the occlusion, early: 0.3 s of tracking first, then a board 0.12-0.2 m before the camera covering the
# whole view for 4 frames (the torus is hidden for longer: from when the board's edge passes it).
EVENTS = {"events.lead_s": 0.3, "events.stills": 0, "events.moved_objects": [0, 0], "events.occlusions": 1,
          "events.occlusion_frames": [4, 4], "events.light_changes": 0}
# Bound on frames from the occlusion's end to the first correct pose (0.1 s at 30 Hz). Measured: correct (0.009 d)
# in the first frame after it, under the old instance number, resumed from its last good pose (no initialisation);
# the track was dropped from the occlusion's second frame on (error 0.35 d as the board came in).
RECOVERY_FRAMES = 3


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    """A fresh 640x480 30 Hz sequence: one torus 0.35-0.6 m away, a board sweeping across the view."""
    root = tmp_path_factory.mktemp("tracker_occlusion")
    config = load_config(SynthConfig, ROOT / "config/synth.yaml", {
        "scene.objects_per_scene": [1, 1], "scene.distractors_per_scene": [0, 1], "camera.distance": [0.35, 0.6],
        **EVENTS})
    generate_split(root / "data", "test", 1, FRAMES, SEED, config, ROOT / "assets/models", object_ids=[TORUS],
                   sequence=True, progress=False)
    return root


@pytest.mark.ros
def test_tracker_node_recovers_after_a_full_occlusion(sequence, probe, tracker_node):
    split = BopSplit(sequence / "data", "test")
    scene = split.read_scene(0)
    annotation = read_sequence_annotation(split.scene_dir(0) / SEQUENCE_FILE)
    hidden = [f for f, frame in enumerate(annotation.frames) if frame.occluded]
    assert hidden and hidden[-1] - hidden[0] + 1 == len(hidden), hidden  # one full occlusion
    end = hidden[-1] + 1
    assert end + RECOVERY_FRAMES < FRAMES
    model = load_models(ROOT / "assets/models", [TORUS])[TORUS]
    errors, instances = [], []
    for im_id in range(FRAMES):
        image, info, _ = _frame(sequence, im_id)
        # The first frame is sent until the initialisation (in the node's child process) has started the track.
        answer = (_send_until_poses(probe, image, info, 1, timeout=120.0) if im_id == 0
                  else probe.send_until_answered(image, info, timeout=30.0))
        gt = scene.gt[im_id][0].T_cam_obj
        poses = [(p.instance, matrix_from_pose(p.pose)) for p in answer.poses if p.object_id == TORUS]
        instance, T = min(poses, key=lambda p: np.linalg.norm(p[1][:3, 3] - gt[:3, 3]), default=(-1, None))
        errors.append(np.inf if T is None else add_s(T, gt, model.vertices, True) / model.diameter)
        instances.append(instance)
    errors = np.array(errors)
    before = errors[:hidden[0]]
    assert np.mean(before < TOLERANCE) >= 0.8, np.round(before, 3)
    # While the torus is wholly hidden the track is dropped after the tracker's lost_frames (2) low scores.
    assert all(instances[f] == -1 for f in hidden[3:]), (hidden, instances)
    recovered = np.flatnonzero(errors[end:] < TOLERANCE)
    assert recovered.size, np.round(errors[end:], 3)
    assert recovered[0] <= RECOVERY_FRAMES, (recovered[0], np.round(errors[end:], 3))
    first = end + recovered[0]
    # The re-acquired track is the old instance, and it stays on the torus.
    assert instances[first] == instances[0], instances
    assert np.mean(errors[first:] < TOLERANCE) >= 0.8, np.round(errors[first:], 3)

"""Sequence metrics (evaluation.sequence_metrics) against hand-computed values on hand-made series."""
from __future__ import annotations

import numpy as np
import pytest

from ros2_sixdpose.core.geometry import make_pose
from ros2_sixdpose.evaluation.sequence_metrics import (
    InstanceSeries,
    drift_per_100_frames,
    jitter,
    rbot_correct,
    reacquisition_times,
    recall,
    summarise,
)

RATE = 30.0


def _rz(deg: float) -> np.ndarray:
    """Rotation (3, 3) by `deg` about z."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_rbot_needs_both_rotation_and_translation_within_bounds():
    ok = rbot_correct(np.array([4.9, 5.1, 1.0, np.inf]), np.array([0.049, 0.01, 0.051, 0.0]))
    assert ok.tolist() == [True, False, False, False]


def test_recall_counts_only_scored_frames():
    # Scored frames 0, 1, 3: correct in 0 and 3 -> 2 / 3; nothing scored -> None.
    assert recall(np.array([True, False, True, True]), np.array([True, True, False, True])) == pytest.approx(2 / 3)
    assert recall(np.array([True]), np.array([False])) is None


def test_drift_is_the_slope_per_100_frames():
    errors = 2.0 + 0.05 * np.arange(20)  # 0.05 per frame -> 5 per 100 frames
    valid = np.ones(20, bool)
    valid[[3, 7]] = False
    errors[[3, 7]] = 1e6  # left out
    assert drift_per_100_frames(errors, valid) == pytest.approx(5.0)
    assert drift_per_100_frames(errors, np.arange(20) < 5) is None  # too few frames


def test_reacquisition_time_from_occlusion_end_to_first_correct_pose():
    times = np.arange(20) / RATE
    occluded = np.zeros(20, bool)
    occluded[4:7] = True  # ends at frame 7; first correct pose at frame 12 -> 5 frames = 1/6 s
    occluded[14:16] = True  # ends at 16; never correct again -> None
    occluded[19] = True  # at the end of the sequence: not an occlusion to recover from
    correct = np.zeros(20, bool)
    correct[[0, 1, 2, 3, 12, 13]] = True
    out = reacquisition_times(times, occluded, correct)
    assert out[0] == pytest.approx(5 / RATE) and out[1] is None and len(out) == 2


def test_jitter_is_the_rms_deviation_over_a_still_run():
    # Still flags on frames 2-4: the run is frames 1-4 (frame 2 stands as frame 1 did).
    T = np.full((6, 4, 4), np.nan)
    offsets = [0.0, 0.001, -0.001, 0.001, -0.001, 0.05]  # m along x; frame 0 and 5 are outside the run
    angles = [0.0, 0.2, -0.2, 0.2, -0.2, 30.0]  # deg about z
    for i, (dx, a) in enumerate(zip(offsets, angles)):
        T[i] = make_pose(_rz(a), [dx, 0.0, 0.5])
    still = np.array([False, False, True, True, True, False])
    (mm, deg, n), = jitter(T, still)
    # Mean translation x = 0 over frames 1-4, each 1 mm off; mean rotation 0 deg, each 0.2 deg off.
    assert n == 4 and mm == pytest.approx(1.0) and deg == pytest.approx(0.2, abs=1e-6)
    T[3] = np.nan  # a frame without a pose is left out: frames 1, 2, 4 -> x = 1, -1, -1 mm, mean -1/3 mm
    (mm, _, n), = jitter(T, still)
    assert n == 3 and mm == pytest.approx(np.sqrt(((4 / 3) ** 2 + 2 * (2 / 3) ** 2) / 3))


def test_summary_of_one_instance():
    n = 10
    times = np.arange(n) / RATE
    trans = np.array([0.001, 0.002, 0.003, np.inf, np.inf, 0.2, 0.001, 0.001, 0.001, 0.001])
    rot = np.array([1.0, 1.0, 1.0, np.inf, np.inf, 1.0, 6.0, 1.0, 1.0, 1.0])
    T = np.full((n, 4, 4), np.nan)
    finite = np.isfinite(trans)
    T[finite] = np.eye(4)
    occluded = np.zeros(n, bool)
    occluded[3:5] = True  # ends at frame 5, wrong there, correct at 6 -> 1/30 s
    scored = ~occluded
    still = np.zeros(n, bool)
    still[7:10] = True  # frames 6-9, identical poses -> 0 jitter
    series = InstanceSeries(1, 0.1, times, T, add=trans.copy(), rot_deg=rot, trans_m=trans, scored=scored,
                            occluded=occluded, still=still)
    metrics = summarise([series])
    # ADD(-S) (= translation here) < 0.01 in 7 of the 8 scored frames (frame 5 is 0.2); RBOT also fails frame 6.
    assert metrics.instance_frames == 8
    assert metrics.add_s_recall == pytest.approx(7 / 8) and metrics.rbot_success == pytest.approx(6 / 8)
    assert metrics.occlusions == 1 and metrics.reacquired == 1
    assert metrics.reacquisition_s_median == pytest.approx(1 / RATE)
    assert metrics.jitter_mm == pytest.approx(0.0) and metrics.still_runs == 1
    assert metrics.drift_mm_per_100 is None  # 8 posed frames: too few for a slope


def test_build_series_matches_two_instances_of_one_object_and_scores_unanswered_frames_as_failures(tmp_path):
    from pathlib import Path

    from ros2_sixdpose.core.camera import PinholeCamera
    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.data.bags import BagFrame, GtPose
    from ros2_sixdpose.data.sequence_annotation import (
        FrameAnnotation, SequenceAnnotation, SequenceEvent, write_sequence_annotation,
    )
    from ros2_sixdpose.evaluation.replay import Answer, EstimatedPose, score_sequence

    duck = 1
    models = load_models(Path(__file__).resolve().parents[1] / "assets" / "models", [duck])
    left, right = make_pose(np.eye(3), [-0.1, 0.0, 0.5]), make_pose(np.eye(3), [0.1, 0.0, 0.5])
    K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])
    frames = [BagFrame(np.zeros((480, 640, 3), np.uint8), PinholeCamera(K, 640, 480), i, "cam", None,
                       (GtPose(duck, "duck", 0, left), GtPose(duck, "duck", 1, right))) for i in range(4)]
    # Frame 0: both right (given in swapped order); frame 1: unanswered; frame 2: one pose 3 cm off the right
    # duck (the left one has none); frame 3: the right duck is wholly hidden and not counted.
    off = make_pose(np.eye(3), [0.13, 0.0, 0.5])
    answers = {0: Answer(0, 0, (EstimatedPose(duck, 1.0, right), EstimatedPose(duck, 1.0, left))),
               2: Answer(2, 0, (EstimatedPose(duck, 1.0, off),)),
               3: Answer(3, 0, (EstimatedPose(duck, 1.0, left),))}
    plain = FrameAnnotation((0, 1), (1.0, 1.0), False, (), (), False, False)
    hidden = FrameAnnotation((0, 1), (1.0, 0.0), False, (), (1,), True, False)
    path = tmp_path / "scene_sequence.json"
    write_sequence_annotation(path, SequenceAnnotation(30.0, (SequenceEvent("occlusion", 3, 4),),
                                                       (plain, plain, plain, hidden)))
    metrics = score_sequence(frames, answers, path, models, 0.1, [])
    # Counted: 2 instances x 3 frames + the left duck in frame 3 = 7; correct: frame 0 (2) and frame 3 (1). The
    # right duck's 3 cm in frame 2 is beyond 0.1 d (the duck's diameter is under 30 cm) and within RBOT's 5 cm.
    assert models[duck].diameter < 0.3
    assert metrics.instance_frames == 7
    assert metrics.add_s_recall == pytest.approx(3 / 7) and metrics.rbot_success == pytest.approx(4 / 7)

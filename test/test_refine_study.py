"""The refinement study's own arithmetic: the score's ROC and the per-instance matching, on hand-built cases."""
import numpy as np
import pytest

from ros2_sixdpose.core.geometry import make_pose
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.evaluation.refine_study import _by_visib, _Matched, _match, roc

from conftest import MODELS


def test_roc_area_equals_the_hand_computed_value():
    # Scores 0.9 (right), 0.8 (wrong), 0.7 (right), 0.1 (wrong): of the 4 right-wrong pairs, 3 are ordered
    # right above wrong (0.9>0.8, 0.9>0.1, 0.7>0.1), one not (0.7<0.8): AUC = 3/4.
    fpr, tpr, auc = roc(np.array([0.9, 0.8, 0.7, 0.1]), np.array([True, False, True, False]))
    assert auc == pytest.approx(0.75)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1.0, 1.0])
    assert roc(np.array([0.2, 0.9]), np.array([False, True]))[2] == pytest.approx(1.0)


def test_match_takes_the_nearest_estimate_of_the_object_and_its_errors():
    models = load_models(MODELS)
    mug = models[4]
    truth = make_pose(np.eye(3), [0.0, 0.0, 0.5])
    turned = make_pose(np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), [0.0, 0.0, 0.5])  # 90 deg about z
    estimates = [
        PoseEstimate(4, make_pose(np.eye(3), [0.0, 0.02, 0.5]), 0.9, "x"),  # 2 cm off: the nearest
        PoseEstimate(4, turned + np.diag([0, 0, 0, 0]) + make_pose(np.eye(3), [0.3, 0.0, 0.0]) - np.eye(4), 0.8, "x"),
        PoseEstimate(5, truth, 1.0, "x"),  # another object at the very place: ignored
        PoseEstimate.none(4, "x", "no pose"),
    ]
    m = _match(estimates, truth, 4, mug, 0.8)
    assert m.translation == pytest.approx(0.02) and m.rotation == pytest.approx(0.0, abs=1e-6)
    assert m.error == pytest.approx(0.02 / mug.diameter)  # ADD of a pure shift is the shift
    assert m.score == 0.9
    assert not np.isfinite(_match([estimates[3]], truth, 4, mug, 0.8).error)


def test_visibility_bins_count_and_score_each_instance_once():
    # Errors / diameter: 0.05 (right) and 0.2 (wrong) in 0.5-0.7; 0.01 (right) at 0.7 exactly goes to 0.7-0.9; none > 0.9.
    matched = [_Matched(1, 0.6, 0.05), _Matched(1, 0.55, 0.2), _Matched(2, 0.7, 0.01), _Matched(3, 0.4, 0.0)]
    recalls, counts = _by_visib(matched)
    assert counts == (2, 1, 0)
    assert recalls[:2] == (0.5, 1.0) and np.isnan(recalls[2])

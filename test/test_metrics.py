"""Pose error functions and recall helpers against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core import metrics
from ros2_sixdpose.core.objects import ContinuousSymmetry, ObjectModel

K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])
K_SMALL = np.array([[600.0, 0.0, 40.0], [0.0, 600.0, 30.0], [0.0, 0.0, 1.0]])  # for the 80 x 60 px depth maps
FLIP_Z = np.diag([-1.0, -1.0, 1.0, 1.0])  # 180 deg about the model z axis


def _box(symmetric: bool = False) -> ObjectModel:
    """Box 100 x 60 x 40 mm centred on its origin (8 vertices), optionally with its 180 deg z symmetry."""
    syms = FLIP_Z[None] if symmetric else None
    return ObjectModel.from_trimesh(trimesh.creation.box((0.1, 0.06, 0.04)), 1, "box", symmetries_discrete=syms)


def _cylinder() -> ObjectModel:
    """Cylinder r = 30 mm, h = 80 mm about z with 35 sections, declared continuously symmetric about z."""
    mesh = trimesh.creation.cylinder(radius=0.03, height=0.08, sections=35)
    sym = ContinuousSymmetry(axis=np.array([0.0, 0.0, 1.0]), offset=np.zeros(3))
    return ObjectModel.from_trimesh(mesh, 2, "cylinder", symmetries_continuous=(sym,))


def _pose() -> tuple[np.ndarray, np.ndarray]:
    """A generic ground-truth pose (R, t), 0.6 m in front of the camera."""
    return Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix(), np.array([0.02, -0.03, 0.6])


def test_pure_translation_gives_add_adi_mssd_equal_to_the_shift() -> None:
    model = _box()
    pts = model.vertices.astype(np.float64)
    R, t = _pose()
    shift = 0.012 * np.array([0.6, 0.0, 0.8])  # 12 mm
    for error in (metrics.add(R, t + shift, R, t, pts), metrics.adi(R, t + shift, R, t, pts)):
        assert error == pytest.approx(0.012, abs=1e-12)
    assert metrics.mssd(R, t + shift, R, t, pts, model.symmetry_transforms()) == pytest.approx(0.012, abs=1e-12)
    assert metrics.te(t + shift, t) == pytest.approx(0.012, abs=1e-15)
    assert metrics.re(R, R) == pytest.approx(0.0, abs=1e-6)


def test_rotation_about_continuous_symmetry_axis_gives_zero_adi_and_mssd() -> None:
    model = _cylinder()
    pts = model.vertices.astype(np.float64)
    R, t = _pose()
    # 2 of 35 sections = 18 of the 315 samples BOP's 0.01 x diameter step puts on the circle.
    spin = Rotation.from_rotvec([0.0, 0.0, 2 * 2 * np.pi / 35]).as_matrix()
    R_est = R @ spin
    assert metrics.adi(R_est, t, R, t, pts) == pytest.approx(0.0, abs=1e-9)
    assert metrics.mssd(R_est, t, R, t, pts, model.symmetry_transforms(0.01)) == pytest.approx(0.0, abs=1e-9)
    assert metrics.mspd(R_est, t, R, t, K, pts, model.symmetry_transforms(0.01)) == pytest.approx(0.0, abs=1e-6)
    # The 70 rim vertices move by the chord 2 r sin(theta / 2), the 2 cap centres stay; ADD, blind to
    # symmetry, sees it.
    assert len(pts) == 72
    chord = 2 * 0.03 * np.sin(2 * np.pi / 35)
    assert metrics.add(R_est, t, R, t, pts) == pytest.approx(chord * 70 / 72, rel=1e-6)
    assert metrics.re(R_est, R) == pytest.approx(720.0 / 35, abs=1e-9)


def test_off_sample_rotation_about_continuous_axis_gives_mssd_below_the_sampling_step() -> None:
    model = _cylinder()
    pts = model.vertices.astype(np.float64)
    R, t = _pose()
    R_est = R @ Rotation.from_rotvec([0.0, 0.0, 0.123]).as_matrix()
    assert metrics.mssd(R_est, t, R, t, pts, model.symmetry_transforms(0.01)) < 0.01 * model.diameter
    assert metrics.mssd(R_est, t, R, t, pts, np.eye(4)[None]) == pytest.approx(2 * 0.03 * np.sin(0.123 / 2), rel=1e-6)


def test_mssd_and_mspd_of_a_large_model_equal_the_brute_force_definition() -> None:
    # 8194 vertices x 315 symmetries: large enough for the convex-hull pruning path.
    mesh = trimesh.creation.cylinder(radius=0.03, height=0.08, sections=64).subdivide().subdivide().subdivide()
    sym = ContinuousSymmetry(axis=np.array([0.0, 0.0, 1.0]), offset=np.array([0.0, 0.0, 0.01]))
    model = ObjectModel.from_trimesh(mesh, 3, "dense_cylinder", symmetries_continuous=(sym,))
    pts = model.vertices.astype(np.float64)
    syms = model.symmetry_transforms()
    assert len(pts) * len(syms) > 1_000_000
    rng = np.random.default_rng(5)
    R, t = _pose()
    for _ in range(3):
        R_est = Rotation.from_rotvec(rng.normal(size=3) * 0.3).as_matrix() @ R
        t_est = t + rng.normal(size=3) * 0.01
        est = pts @ R_est.T + t_est
        uv_est = est @ K.T
        uv_est = uv_est[:, :2] / uv_est[:, 2:]
        mssd_ref, mspd_ref = np.inf, np.inf
        for S in syms:
            gt = pts @ (R @ S[:3, :3]).T + R @ S[:3, 3] + t
            uv_gt = gt @ K.T
            mssd_ref = min(mssd_ref, np.linalg.norm(est - gt, axis=1).max())
            mspd_ref = min(mspd_ref, np.linalg.norm(uv_est - uv_gt[:, :2] / uv_gt[:, 2:], axis=1).max())
        assert metrics.mssd(R_est, t_est, R, t, pts, syms) == pytest.approx(mssd_ref, rel=1e-12)
        assert metrics.mspd(R_est, t_est, R, t, K, pts, syms) == pytest.approx(mspd_ref, rel=1e-12)


def test_box_flip_with_declared_symmetry_gives_zero_mssd_mspd_but_positive_add() -> None:
    model = _box(symmetric=True)
    pts = model.vertices.astype(np.float64)
    R, t = _pose()
    R_est = R @ FLIP_Z[:3, :3]
    syms = model.symmetry_transforms()
    assert len(syms) == 2
    assert metrics.mssd(R_est, t, R, t, pts, syms) == pytest.approx(0.0, abs=1e-12)
    assert metrics.mspd(R_est, t, R, t, K, pts, syms) == pytest.approx(0.0, abs=1e-9)
    # Every corner (+-50, +-30, +-20) mm moves to (-x, -y, z): 2 sqrt(50^2 + 30^2) mm.
    # (float32 vertices: 1e-7 relative)
    assert metrics.add(R_est, t, R, t, pts) == pytest.approx(2 * np.hypot(0.05, 0.03), rel=1e-7)
    assert metrics.mssd(R_est, t, R, t, pts, np.eye(4)[None]) == pytest.approx(2 * np.hypot(0.05, 0.03), rel=1e-7)
    # ADD(-S) on 4x4 poses: ADD-S for a symmetric object (the flipped box's corners land on corners), else ADD.
    T_est, T = np.eye(4), np.eye(4)
    T_est[:3, :3], T_est[:3, 3], T[:3, :3], T[:3, 3] = R_est, t, R, t
    assert metrics.add_s(T_est, T, pts, symmetric=True) == pytest.approx(0.0, abs=1e-9)
    assert metrics.add_s(T_est, T, pts, symmetric=False) == pytest.approx(2 * np.hypot(0.05, 0.03), rel=1e-7)


def test_mspd_of_a_known_pixel_shift() -> None:
    # Points on the plane z = 1 m facing the camera: a 10 mm x shift moves every projection by fx * 0.01 = 6 px.
    pts = np.array([[x, y, 0.0] for x in (-0.05, 0.0, 0.05) for y in (-0.04, 0.04)])
    R, t = np.eye(3), np.array([0.0, 0.0, 1.0])
    assert metrics.mspd(R, t + [0.01, 0.0, 0.0], R, t, K, pts, np.eye(4)[None]) == pytest.approx(6.0, abs=1e-12)
    assert metrics.mspd_thresholds(640) == pytest.approx(np.arange(5, 55, 5))
    assert metrics.mspd_thresholds(1280) == pytest.approx(np.arange(10, 110, 10))


def _square_depth(x0: int, z: float, shape: tuple[int, int] = (60, 80)) -> np.ndarray:
    """Depth map (H, W) m with a 20 x 20 px square at constant z starting at column x0, rows 20..39."""
    depth = np.zeros(shape, dtype=np.float32)
    depth[20:40, x0 : x0 + 20] = z
    return depth


def test_vsd_identical_maps_is_zero_and_disjoint_maps_is_one() -> None:
    taus = metrics.VSD_TAUS
    same = _square_depth(10, 0.5)
    assert metrics.vsd(same, same, same, K_SMALL, 0.015, taus, True, 0.1) == pytest.approx(np.zeros(10))
    far = _square_depth(50, 0.5)
    assert metrics.vsd(far, same, same, K_SMALL, 0.015, taus, True, 0.1) == pytest.approx(np.ones(10))
    empty = np.zeros_like(same)
    assert metrics.vsd(empty, empty, empty, K_SMALL, 0.015, taus, True, 0.1) == pytest.approx(np.ones(10))


def test_vsd_half_overlapping_squares_is_two_thirds() -> None:
    # Same depth, shifted by 10 px: 200 px in both, 200 px in each only -> (0 + 400) / 600 for every tau.
    gt = _square_depth(10, 0.5)
    est = _square_depth(20, 0.5)
    errors = metrics.vsd(est, gt, gt, K_SMALL, 0.015, metrics.VSD_TAUS, True, 0.1)
    assert errors == pytest.approx(np.full(10, 2.0 / 3.0), abs=1e-12)


def test_vsd_depth_offset_counts_only_for_taus_below_it() -> None:
    # The estimate lies 10 mm behind the truth over the same pixels; 10 mm < delta keeps it visible.
    gt = _square_depth(30, 0.5)
    est = _square_depth(30, 0.51)
    errors = metrics.vsd(est, gt, gt, K_SMALL, 0.015, [0.005, 0.009, 0.011, 0.02], False, None)
    # Distances differ by 10 mm x ray length in [1, 1.0003] (at most 14 px off the principal point).
    assert errors == pytest.approx([1.0, 1.0, 0.0, 0.0])
    linear = metrics.vsd(est, gt, gt, K_SMALL, 0.015, [0.02], False, None, cost_type="tlinear")
    assert linear == pytest.approx([0.5], abs=1e-3)


def test_vsd_occluded_truth_does_not_reward_hiding() -> None:
    # An occluder 0.3 m away covers the left half of the true square; the estimate is perfect.
    gt = _square_depth(10, 0.5)
    test = gt.copy()
    test[20:40, 10:20] = 0.3
    errors = metrics.vsd(gt, gt, test, K_SMALL, 0.015, metrics.VSD_TAUS, True, 0.1)
    assert errors == pytest.approx(np.zeros(10))


def test_recall_and_average_recall_from_hand_made_errors() -> None:
    errors = np.array([0.01, 0.03, 0.2, np.inf])
    assert metrics.recall(errors, 0.02) == pytest.approx(0.25)
    assert metrics.recall(errors, 0.03) == pytest.approx(0.25)  # strictly below
    assert metrics.average_recall(errors, [0.02, 0.04, 0.5]) == pytest.approx((1 + 2 + 3) / 12)
    # VSD-style (N, V): two taus x two thresholds.
    vsd_errors = np.array([[0.0, 0.3], [0.2, 1.0]])
    assert metrics.average_recall(vsd_errors, [0.1, 0.25]) == pytest.approx((1 + 0 + 0 + 0 + 1 + 0 + 1 + 0) / 8)
    assert metrics.average_recall_bop(0.5, 0.7, 0.9) == pytest.approx(0.7)


def test_bop_thresholds_match_the_2019_definition() -> None:
    assert metrics.MSSD_THRESHOLDS == pytest.approx(np.linspace(0.05, 0.5, 10))
    assert metrics.VSD_TAUS == pytest.approx(np.linspace(0.05, 0.5, 10))
    assert metrics.VSD_THRESHOLDS == pytest.approx(np.linspace(0.05, 0.5, 10))
    assert metrics.VSD_DELTA == 0.015
    assert metrics.ADD_THRESHOLD == 0.1


def test_bad_shapes_are_named() -> None:
    R, t = _pose()
    with pytest.raises(ValueError, match="pts"):
        metrics.add(R, t, R, t, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="t_est"):
        metrics.add(R, np.zeros(4), R, t, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="syms"):
        metrics.mssd(R, t, R, t, np.zeros((5, 3)), np.eye(4))
    with pytest.raises(ValueError, match="share one shape"):
        metrics.vsd(np.zeros((4, 4)), np.zeros((4, 5)), np.zeros((4, 4)), K, 0.015, [0.1], True, 0.1)
    with pytest.raises(ValueError, match="diameter"):
        metrics.vsd(np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 4)), K, 0.015, [0.1], True, None)
    with pytest.raises(ValueError, match="empty"):
        metrics.recall(np.array([]), 0.1)

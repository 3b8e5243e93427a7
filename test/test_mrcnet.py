"""MRC-Net: rotation bins, symmetry-aware soft labels, crop-relative translation, the residual stage and the shipped weights."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ros2_sixdpose.config import load_config
from ros2_sixdpose.core import metrics
from ros2_sixdpose.core.camera import CropTransform, square_box
from ros2_sixdpose.core.geometry import make_pose, rotation_angle
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.estimation.factory import ESTIMATORS, EstimatorConfig, make_estimator
from ros2_sixdpose.estimation.mrcnet.bins import (
    RotationBins, healpix_directions, soft_labels, symmetric_vertex_distances,
)
from ros2_sixdpose.estimation.mrcnet.crop_pose import CropPoseGrid, decode_pose, encode_pose
from ros2_sixdpose.estimation.mrcnet.estimator import MrcNetEstimator, MrcNetEstimatorConfig
from ros2_sixdpose.estimation.mrcnet.network import local_correlation, rotation_from_6d
from ros2_sixdpose.estimation.mrcnet.predictor import load_mrcnet
from ros2_sixdpose.estimation.mrcnet.train import label_points
from ros2_sixdpose.estimation.per_object import PerObjectConfig
from ros2_sixdpose.paths import config_file

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "assets" / "models"
WEIGHTS = ROOT / "weights" / "mrcnet.pt"
LEGO, DUCK = 5, 1  # 4-fold symmetry about z; asymmetric

# Bounds on weights/mrcnet.pt (joint 3000 steps, then the residual stage alone 4000 steps), a margin from the values
# measured on the fresh scenes (seed 9300).
BOUNDS = {
    # Residual stage from the best bin's centre: median rotation error 14.2 -> 15.2 deg measured on these 18 crops;
    # on the 547 crops of the held-out split it is 14.1 -> 12.2 deg (59 % of crops improved, docs/mrcnet.md): a
    # modest correction that 18 crops cannot resolve, so the bound only keeps the stage from making poses worse.
    "residual_median_deg": 16.5,
    "fresh_scene_add_s": 0.10,  # measured 0.111 (2 of 18 instances)
    "fresh_scene_position": 0.36,  # median centre error, diameters; measured 0.311
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models():
    return load_models(MODELS)


def test_healpix_cells_are_spread_evenly_over_the_sphere():
    directions = healpix_directions(2)
    assert directions.shape == (48, 3)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(directions.mean(axis=0), 0.0, atol=1e-12)  # no side of the sphere favoured
    # Equal areas: each ring's share of the cells equals its share of the sphere's area between ring boundaries,
    # so nearest-neighbour distances stay within a narrow band (measured 0.44-0.60 rad for nside 2).
    angles = np.arccos(np.clip(directions @ directions.T, -1, 1)) + np.eye(48) * 9
    nearest = angles.min(axis=1)
    assert 0.4 < nearest.min() and nearest.max() < 0.65


def test_bin_rotation_round_trip():
    """Every bin's centre maps back to the bin; a rotation a little off a centre still does."""
    bins = RotationBins()
    assert bins.count == 576 == len(bins.rotations)
    np.testing.assert_array_equal(bins.nearest(bins.rotations), np.arange(bins.count))
    rng = np.random.default_rng(3)
    # 5 degrees off: well inside half the ~29 deg direction spacing and the 30 deg in-plane spacing.
    small = Rotation.from_rotvec(_unit(rng, bins.count) * np.radians(5))
    np.testing.assert_array_equal(bins.nearest(small.as_matrix() @ bins.rotations), np.arange(bins.count))
    with pytest.raises(ValueError, match="bin index"):
        bins.rotation(bins.count)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _labels(model, R_gt: np.ndarray, bins: RotationBins) -> np.ndarray:
    distances = symmetric_vertex_distances(bins.rotations, R_gt, label_points(model), model.symmetry_transforms(0.05))
    return soft_labels(distances, 0.08 * model.diameter)


def test_soft_labels_put_equal_mass_on_bins_equivalent_under_a_symmetry(models):
    """The lego brick looks the same turned by quarter turns about its z axis: bin b and bin b S (S a quarter turn)
    are equivalent and get equal mass; the asymmetric duck does not (so the test can fail)."""
    bins = RotationBins()
    R_gt = Rotation.from_euler("xyz", [0.4, -0.7, 1.1]).as_matrix()
    quarter = models[LEGO].symmetries_discrete[0][:3, :3]
    partner = bins.nearest(bins.rotations @ quarter)  # bin b -> the bin of R_b S
    np.testing.assert_allclose(bins.rotations[partner], bins.rotations @ quarter, atol=1e-9)  # the grid maps onto itself
    lego = _labels(models[LEGO], R_gt, bins)
    np.testing.assert_allclose(lego[partner], lego, rtol=1e-9, atol=1e-15)
    top = np.argsort(-lego)[:4]
    np.testing.assert_allclose(lego[top], lego[top[0]], rtol=1e-9)  # four equally likely best bins
    assert len({int(b) // bins.inplane for b in top}) == 4  # seen from four directions
    duck = _labels(models[DUCK], R_gt, bins)
    assert np.abs(duck[partner] - duck).max() > 0.1 * duck.max()
    assert lego.sum() == pytest.approx(1.0) and duck.sum() == pytest.approx(1.0)


def test_crop_pose_round_trip():
    """encode_pose / decode_pose and the offset and depth bins invert each other."""
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    crop = CropTransform(tuple(square_box(np.array([400.0, 100, 480, 170]))), (64, 64))
    K_crop = crop.K_crop(K)
    T = make_pose(Rotation.from_euler("xyz", [0.3, 1.0, -2.0]).as_matrix(), [0.12, -0.05, 0.7])
    R_allo, offset, q = encode_pose(T, K_crop, 64, 0.1)
    np.testing.assert_allclose(decode_pose(R_allo, offset, q, K_crop, 64, 0.1), T, atol=1e-12)
    # Off the optical axis the allocentric rotation differs from the egocentric one by the turn onto the ray.
    assert rotation_angle(R_allo, T[:3, :3]) > 0.1
    grid = CropPoseGrid()
    for kind, value in (("offset", np.array([-0.31, 0.02, 0.25])), ("depth", np.array([0.55, 1.0, 1.7]))):
        index, residual = grid.encode(value, kind)
        assert np.all(np.abs(residual) <= 0.5)
        np.testing.assert_allclose(grid.decode(index, residual, kind), value, atol=1e-12)


def test_local_correlation_finds_the_shift_and_6d_gives_rotations():
    features = torch.randn(1, 8, 6, 6)
    shifted = torch.roll(features, shifts=1, dims=3)  # rendered features one pixel to the right
    corr = local_correlation(features, shifted, 1)
    # window index (dy + 1) * 3 + (dx + 1): the match sits at dx = +1 in the interior
    assert torch.all(corr[0, :, 1:-1, 1:-2].argmax(dim=0) == 5)
    assert corr.max() <= 1.0 + 1e-5
    R = rotation_from_6d(torch.randn(4, 6, dtype=torch.float64))
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(4, dtype=torch.float64))


def test_mrcnet_configuration_ships_the_code_defaults():
    config = load_config(EstimatorConfig, config_file("estimator_mrcnet.yaml"))
    assert config.type == "mrcnet"
    assert config.mrcnet == MrcNetEstimatorConfig() and config.per_object == PerObjectConfig()
    assert {"mrcnet", "per_object"} <= set(ESTIMATORS)


def test_per_object_configuration_is_checked():
    with pytest.raises(ValueError, match="one method per object id"):
        PerObjectConfig(object_ids=[1, 2], methods=["mrcnet"])
    with pytest.raises(ValueError, match="among"):
        EstimatorConfig(type="per_object", per_object=PerObjectConfig(object_ids=[1], methods=["magic"]))
    with pytest.raises(ValueError, match="itself"):
        PerObjectConfig(default="per_object")


def test_corrupt_or_missing_weights_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="sixdpose train mrcnet"):
        load_mrcnet(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a readable weights file"):
        load_mrcnet(tmp_path / "bad.pt")


# ---------------------------------------------------------------- the shipped weights


@pytest.fixture(scope="module")
def mrcnet_scene(fresh_split):
    """Two fresh scenes of three 640x480 images (seed 9300, never used in training or validation)."""
    return fresh_split(9300)


@pytest.fixture(scope="module")
def estimator():
    estimator = MrcNetEstimator.from_config(MrcNetEstimatorConfig(weights=str(WEIGHTS), models_dir=str(MODELS)))
    yield estimator
    estimator.predictor.renderer.close()


@pytest.fixture(scope="module")
def scene_crops(mrcnet_scene, estimator):
    """Un-jittered crops around the ground-truth boxes of the fresh scenes' instances with visib_fract >= 0.5."""
    from ros2_sixdpose.data.views import ViewConfig
    from ros2_sixdpose.estimation.mrcnet.train import MrcCache, MrcTrainConfig

    p = estimator.predictor
    view = ViewConfig(size=p.size, min_visib_fract=0.5, scale_jitter=0.0, shift_jitter=0.0)
    config = MrcTrainConfig(net=p.net.config, bins=p.bins, grid=p.grid)
    return MrcCache.build(mrcnet_scene, view, config, p.models, p.object_ids, p.renderer, epochs=1, seed=0)


def test_residual_stage_from_the_ground_truth_bin_centre(scene_crops, estimator):
    """Started at the centre of the best rotation bin (true translation), the residual stage's rotation error (symmetry-
    aware) stays within the measured bound; a clear correction (say < 7 deg) is not reached by the shipped weights."""
    p = estimator.predictor
    t = scene_crops.tensors
    obj_ids = [p.object_ids[int(r)] for r in t["row"]]
    K_crops = t["K_crop"].double().numpy()
    T_gt = t["T_gt"].double().numpy()
    T_init = []
    for b, obj_id in enumerate(obj_ids):
        diameter = p.models[obj_id].diameter
        _, offset, q = encode_pose(T_gt[b], K_crops[b], p.size, diameter)
        R_bin = p.bins.rotation(int(np.argmax(t["labels"][b].float().numpy())))
        T_init.append(decode_pose(R_bin, offset, q, K_crops[b], p.size, diameter))
    T_init = np.stack(T_init)
    rgb = np.ascontiguousarray(t["rgb"].permute(0, 2, 3, 1).numpy())
    T_final = p.refine(rgb, K_crops, obj_ids, T_init)
    before, after = [], []
    for b, obj_id in enumerate(obj_ids):
        symmetries = p.models[obj_id].symmetry_transforms(0.05)[:, :3, :3]
        before.append(np.degrees(rotation_angle(T_init[b][:3, :3], T_gt[b][:3, :3] @ symmetries).min()))
        after.append(np.degrees(rotation_angle(T_final[b][:3, :3], T_gt[b][:3, :3] @ symmetries).min()))
    print(f"{len(before)} crops: median rotation error {np.median(before):.1f} -> {np.median(after):.1f} deg")
    assert len(before) >= 15
    assert 10.0 < np.median(before) < 20.0  # about half a bin: the test starts where the residual stage must work
    assert np.median(after) <= BOUNDS["residual_median_deg"]


def test_shipped_weights_in_a_fresh_scene(mrcnet_scene, estimator, oracle_frames):
    """The real estimator with oracle detections on scenes never seen in training: ADD(-S) recall (visib >= 0.5)."""
    models = estimator.predictor.models
    errors, positions = [], []
    for frame, detections, truths in oracle_frames(mrcnet_scene):
        for estimate, (inst, visib) in zip(estimator.estimate(frame.rgb, frame.camera, detections), truths):
            if visib < 0.5:
                continue
            assert estimate.found and estimate.method == "mrcnet" and 0.0 < estimate.score <= 1.0
            model = models[inst.obj_id]
            errors.append(metrics.add_s(estimate.T_cam_obj, inst.T_cam_obj, model.vertices, model.is_symmetric)
                          / model.diameter)
            positions.append(np.linalg.norm(estimate.T_cam_obj[:3, 3] - inst.T_cam_obj[:3, 3]) / model.diameter)
    recall = float(np.mean(np.asarray(errors) < 0.1))
    print(f"{len(errors)} instances: ADD(-S) recall {recall:.3f}, median position error {np.median(positions):.3f} d")
    assert len(errors) >= 15
    assert recall >= BOUNDS["fresh_scene_add_s"]
    assert np.median(positions) <= BOUNDS["fresh_scene_position"]


def test_per_object_configuration_mixes_methods(mrcnet_scene, estimator, oracle_frames):
    """`type: per_object` built by the factory: MRC-Net for some objects of the scene, NOCS for the rest, each
    estimate equal to its method's own, in the detections' order."""
    frames = [(frame, detections) for frame, detections, _ in oracle_frames(mrcnet_scene)]
    present = sorted({d.object_id for _, detections in frames for d in detections})
    assert len(present) >= 2
    to_mrcnet = present[: len(present) // 2]
    config = EstimatorConfig(type="per_object", per_object=PerObjectConfig(
        default="nocs", object_ids=to_mrcnet, methods=["mrcnet"] * len(to_mrcnet)))
    config = dataclasses.replace(config, mrcnet=MrcNetEstimatorConfig(weights=str(WEIGHTS), models_dir=str(MODELS)))
    mixed = make_estimator(config, ROOT)
    nocs = make_estimator(EstimatorConfig(type="nocs"), ROOT)
    seen = set()
    for frame, detections in frames:
        estimates = mixed.estimate(frame.rgb, frame.camera, detections)
        alone_mrc = estimator.estimate(frame.rgb, frame.camera, detections)
        alone_nocs = nocs.estimate(frame.rgb, frame.camera, detections)
        assert [e.object_id for e in estimates] == [d.object_id for d in detections]
        for e, m, n in zip(estimates, alone_mrc, alone_nocs):
            expected = m if e.object_id in to_mrcnet else n
            seen.add(expected.method)
            assert e.method == expected.method and e.found == expected.found
            if e.found:
                # float32 sums differ with the batch's make-up (measured up to 3e-5): equal within 1 mm / 0.06 deg.
                np.testing.assert_allclose(e.T_cam_obj, expected.T_cam_obj, atol=1e-3)
    assert seen == {"mrcnet", "nocs_pix2pix"}

"""RNNPose refiner: the weighted LM step, the shipped weights on a fresh scene, and the no-evidence paths."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ros2_sixdpose.config import load_config
from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.metrics import add_s
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data.bop import read_rgb
from ros2_sixdpose.detection.base import ImageKey
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.evaluation.perturbed_init import Perturbation, PerturbedTruth
from ros2_sixdpose.core.perturb import TRANSLATION_PATTERN_M, perturb_pose
from ros2_sixdpose.paths import package_root, weights_file
from ros2_sixdpose.refinement.factory import RefinerConfig, make_refiner
from ros2_sixdpose.refinement.per_object import PerObjectRefinerConfig
from ros2_sixdpose.refinement.rnnpose.loop import LM_STRIDE, pixel_grid, reference_tensors
from ros2_sixdpose.refinement.rnnpose.network import RNNPoseNet
from ros2_sixdpose.refinement.rnnpose.pose_solver import lm_step, project
from ros2_sixdpose.refinement.rnnpose.refiner import (
    RNNPoseConfig, RNNPoseRefiner, batch_renderer, load_network, nocs_of,
)
from ros2_sixdpose.refinement.rnnpose.train import (
    RNNPoseTrainConfig, alignment_error, ground_truth_flow, instance_pool, make_batch,
)
from ros2_sixdpose.tracking.factory import TrackingConfig, make_frame_refiner
from ros2_sixdpose.tracking.per_object import PerObjectTrackingConfig
from ros2_sixdpose.tracking.rnnpose_tracker import RNNPoseTracker

from conftest import MODELS, fresh_starts

K_CROP = torch.tensor([[[120.0, 0.0, 32.0], [0.0, 120.0, 32.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)


def _pose(euler_deg, t) -> torch.Tensor:
    T = torch.eye(4, dtype=torch.float64)[None].clone()
    T[0, :3, :3] = torch.from_numpy(Rotation.from_euler("xyz", euler_deg, degrees=True).as_matrix())
    T[0, :3, 3] = torch.tensor(t, dtype=torch.float64)
    return T


def test_lm_step_recovers_a_known_pose_from_exact_correspondences_in_four_steps():
    generator = torch.Generator().manual_seed(0)
    X = (torch.rand(1, 400, 3, generator=generator, dtype=torch.float64) - 0.5) * 0.1  # a 10 cm cloud
    T_true = _pose([20, 30, -10], [0.01, -0.02, 0.5])
    q, _ = project(T_true, X, K_CROP)
    T = _pose([35, 45, -25], [0.02, -0.01, 0.55])  # ~26 degrees and 5 cm off
    for _ in range(4):
        T = lm_step(T, X, q, torch.ones(1, 400, dtype=torch.float64), K_CROP)
    R_err = Rotation.from_matrix((T[0, :3, :3].T @ T_true[0, :3, :3]).numpy()).magnitude()
    # Measured: 4.6, 0.61, 0.014, 2.7e-5 degrees and 6.4 cm, 7.4 mm, 0.095 mm, 1.7e-7 m after steps 1-4
    # (Gauss-Newton's quadratic convergence).
    assert np.degrees(R_err) < 1e-3
    assert float((T[0, :3, 3] - T_true[0, :3, 3]).norm()) < 1e-5


def test_lm_step_gradient_matches_finite_differences():
    generator = torch.Generator().manual_seed(1)
    X = (torch.rand(1, 6, 3, generator=generator, dtype=torch.float64) - 0.5) * 0.1
    T_true = _pose([5, -10, 3], [0.0, 0.01, 0.45])
    q, _ = project(T_true, X, K_CROP)
    q = (q + torch.randn(q.shape, generator=generator, dtype=torch.float64)).requires_grad_(True)
    w = torch.rand(1, 6, generator=generator, dtype=torch.float64).add(0.1).requires_grad_(True)
    T0 = _pose([8, -6, 0], [0.01, 0.0, 0.47])
    assert torch.autograd.gradcheck(lambda w, q: lm_step(T0, X, q, w, K_CROP), (w, q))


def test_lm_step_with_zero_weights_keeps_the_pose():
    X = torch.rand(1, 50, 3, dtype=torch.float64) * 0.1
    T = _pose([10, 0, 0], [0.0, 0.0, 0.5])
    q = torch.rand(1, 50, 2, dtype=torch.float64) * 64
    torch.testing.assert_close(lm_step(T, X, q, torch.zeros(1, 50, dtype=torch.float64), K_CROP), T)


@pytest.fixture(scope="module")
def split(fresh_split):
    return fresh_split(9414)


def test_true_flow_on_the_reference_grid_recovers_the_pose(split):
    # The loop's conventions end to end (crop, reference render, LM grid, ground-truth flow, visibility): with the
    # true flow as targets, LM reaches the ground truth. Measured: ADD 0.13-0.51 d -> < 0.005 d after 2 steps, 0 after 3.
    models = load_models(MODELS)
    config = RNNPoseTrainConfig()
    pool = instance_pool(split, models, config, limit=6)
    batch = make_batch(pool, np.arange(len(pool.obj_id)), models, RNNPoseConfig(), np.random.default_rng(0), 15.0,
                       TRANSLATION_PATTERN_M, gaussian=False)
    net = RNNPoseNet()
    with Renderer(models) as renderer:
        references = batch_renderer(renderer, models, batch.obj_ids, batch.K, 64)(batch.T0)
    ref = reference_tensors(references, nocs_of(models), batch.obj_ids, net, torch.device("cpu"))
    K, T_gt = torch.from_numpy(batch.K), torch.from_numpy(batch.T_gt)
    flow, visible = ground_truth_flow(ref, T_gt, K, batch.depth, config.visible_tolerance_m)
    assert visible.sum((1, 2)).min() > 50  # every instance keeps enough visible points
    n = len(batch.obj_ids)
    targets = (pixel_grid(64, flow.device, LM_STRIDE)[None] + flow.permute(0, 2, 3, 1)).reshape(n, -1, 2)
    T = torch.from_numpy(batch.T0)
    for _ in range(3):
        T = lm_step(T, ref.points.reshape(n, -1, 3), targets, visible.reshape(n, -1).double(), K)
    pick = np.random.default_rng(0)
    points = torch.from_numpy(np.stack([models[i].vertices[pick.choice(len(models[i].vertices), 200)]
                                        for i in batch.obj_ids])).double()
    diameters = torch.tensor([models[i].diameter for i in batch.obj_ids], dtype=torch.float64)
    assert float((alignment_error(T, T_gt, points) / diameters).max()) < 0.005


@pytest.fixture(scope="module")
def refiner(one_torch_thread):
    models = load_models(MODELS)
    with Renderer(models) as renderer:
        yield RNNPoseRefiner(load_network(weights_file("rnnpose.pt")), renderer, models, RNNPoseConfig())


def test_shipped_configs_equal_the_code_defaults():
    config = RefinerConfig(type="rnnpose")
    assert load_config(RefinerConfig, package_root() / "config" / "refiner_rnnpose.yaml") == config
    assert config.rnnpose.weights == "weights/rnnpose.pt" and config.rnnpose.crop_size == 64
    tracking = load_config(TrackingConfig, package_root() / "config" / "tracker_rnnpose.yaml")
    assert tracking == TrackingConfig(refiner="rnnpose")
    with pytest.raises(ValueError, match="multiple of 8"):
        RNNPoseConfig(crop_size=60)


def test_a_crop_outside_the_image_returns_the_input_unchanged_with_a_reason(refiner):
    camera = PinholeCamera(np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]]), 640, 480)
    T = np.eye(4)
    T[:3, 3] = [3.0, 0.0, 0.5]  # far right of the image
    start = PoseEstimate(1, T, 0.7, "nocs")
    (out,) = refiner.refine(np.zeros((480, 640, 3), np.uint8), camera, [None], [start])
    np.testing.assert_array_equal(out.T_cam_obj, T)
    assert out.score == 0.0 and "outside the image" in out.reason


def test_vanishing_weights_return_the_input_unchanged_with_a_reason(refiner, split):
    scene_id = split.scene_ids()[0]
    rgb = read_rgb(split.rgb_path(scene_id, 0))
    camera = PinholeCamera(split.read_scene(scene_id).camera[0].K, rgb.shape[1], rgb.shape[0])
    starts = PerturbedTruth(split, refiner.models, Perturbation(15.0))
    detections = starts.detect(rgb, ImageKey(scene_id, 0))
    estimates = starts.estimate(rgb, camera, detections)
    offset = refiner.net.similarity_offset.data.clone()
    refiner.net.similarity_offset.data.fill_(100.0)  # no 3D / 2D descriptor pair agrees: every weight ~ 0
    try:
        out = refiner.refine(rgb, camera, detections, estimates)
    finally:
        refiner.net.similarity_offset.data.copy_(offset)
    for before, after in zip(estimates, out):
        np.testing.assert_array_equal(after.T_cam_obj, before.T_cam_obj)
        assert after.score == 0.0 and "weights vanished" in after.reason



def _add_ratio(model, T, T_gt) -> float:
    return add_s(T, T_gt, model.vertices, model.is_symmetric) / model.diameter


def test_shipped_weights_refine_perturbed_ground_truth_on_a_fresh_scene(refiner, split):
    before, after = [], []
    for rgb, camera, start, T_gt in fresh_starts(split, refiner.models, 15.0):
        out = refiner.refine_one(rgb, camera, start)
        assert 0.0 <= out.score <= 1.0
        model = refiner.models[start.object_id]
        before.append(_add_ratio(model, start.T_cam_obj, T_gt))
        after.append(_add_ratio(model, out.T_cam_obj, T_gt))
    before, after = np.array(before), np.array(after)
    # Measured on these 18 instances (seed 9414): ADD(-S) recall 0.167 -> 0.222, median error 0.214 d -> 0.164 d, one
    # instance made worse; the shipped weights (an hour and a half of CPU training in all) improve the median, but
    # fewer than half of the instances (0.44): far from the paper's recall (docs/rnnpose.md says why).
    assert np.median(before) > 0.2
    assert np.mean(after < 0.1) >= 0.2 and np.median(after) < 0.19


def test_tracker_runs_rnnpose_as_its_per_frame_refiner(split):
    tracker = make_frame_refiner(TrackingConfig(refiner="rnnpose"), package_root())
    assert isinstance(tracker, RNNPoseTracker)
    starts = fresh_starts(split, tracker.refiner.models, 5.0)
    for rgb, camera, start, _ in (next(starts), next(starts)):
        state = tracker.start(start.object_id, rgb, camera, start.T_cam_obj)
        out = tracker.track(state, rgb, camera, start.T_cam_obj)
        refined = tracker.refiner.refine_one(rgb, camera, start)  # the tracker passes RNNPose's pose and score on
        np.testing.assert_allclose(out.T_cam_obj, refined.T_cam_obj, atol=1e-9)
        assert out.score == pytest.approx(refined.score)
    # The first instance lies wholly inside the image, the second is cut by its border (measured share 0.49).
    rgb, camera, start, _ = next(fresh_starts(split, tracker.refiner.models, 5.0))
    assert tracker.track(start.object_id, rgb, camera, start.T_cam_obj).visible == pytest.approx(1.0)
    assert 0.3 < out.visible < 0.7



def _first_image_starts(split, models, rot_deg: float = 15.0):
    """rgb, camera, oracle detections and their perturbed ground-truth starts of the split's first image."""
    scene_id = split.scene_ids()[0]
    rgb = read_rgb(split.rgb_path(scene_id, 0))
    camera = PinholeCamera(split.read_scene(scene_id).camera[0].K, rgb.shape[1], rgb.shape[0])
    starts = PerturbedTruth(split, models, Perturbation(rot_deg))
    detections = starts.detect(rgb, ImageKey(scene_id, 0))
    return rgb, camera, detections, starts.estimate(rgb, camera, detections)


def test_the_refiner_is_chosen_per_object_by_configuration(refiner, split):
    """`type: per_object`: RNNPose for one object, no refinement for another, render-and-compare for the rest; each
    result is its own refiner's, in the detections' order."""
    rgb, camera, detections, estimates = _first_image_starts(split, refiner.models)
    objects = sorted({d.object_id for d in detections})
    assert len(objects) >= 3
    choice = PerObjectRefinerConfig(object_ids=objects[:2], methods=["rnnpose", "none"])
    mixed = make_refiner(RefinerConfig(type="per_object", per_object=choice), package_root())
    out = mixed.refine(rgb, camera, detections, estimates)
    by_rnnpose = refiner.refine(rgb, camera, detections, estimates)
    by_render_compare = make_refiner(RefinerConfig(), package_root()).refine(rgb, camera, detections, estimates)
    assert [e.object_id for e in out] == [d.object_id for d in detections]
    methods = set()
    for got, start, a, b in zip(out, estimates, by_rnnpose, by_render_compare):
        expected = {objects[0]: a, objects[1]: start}.get(got.object_id, b)
        methods.add(expected.method)
        assert got.method == expected.method and got.score == pytest.approx(expected.score)
        np.testing.assert_allclose(got.T_cam_obj, expected.T_cam_obj, atol=1e-9)
    assert methods == {"perturbed+rnnpose", "perturbed", "perturbed+gs_refine"}
    with pytest.raises(ValueError, match="must be among"):
        RefinerConfig(type="per_object", per_object=PerObjectRefinerConfig(object_ids=[1], methods=["magic"]))


def test_the_tracker_carries_each_object_with_its_configured_refiner(split):
    """Tracker `refiner: per_object`: RNNPose carries one object, the region tracker the others."""
    models = load_models(MODELS)
    rgb, camera, detections, estimates = _first_image_starts(split, models, 5.0)
    first = detections[0].object_id
    config = TrackingConfig(refiner="per_object", per_object=PerObjectTrackingConfig(object_ids=[first],
                                                                                     methods=["rnnpose"]))
    tracker = make_frame_refiner(config, package_root())
    assert set(tracker.refiners) == {"rnnpose", "region"}
    assert sorted(tracker.refiners["region"].views) == sorted(set(models) - {first})  # built for its objects only
    alone = {"rnnpose": make_frame_refiner(TrackingConfig(refiner="rnnpose"), package_root()),
             "region": tracker.refiners["region"]}
    for estimate in estimates:
        method = "rnnpose" if estimate.object_id == first else "region"
        state = tracker.start(estimate.object_id, rgb, camera, estimate.T_cam_obj)
        assert state.method == method
        got = tracker.track(state, rgb, camera, estimate.T_cam_obj)
        reference = alone[method]
        expected = reference.track(reference.start(estimate.object_id, rgb, camera, estimate.T_cam_obj), rgb, camera,
                                   estimate.T_cam_obj)
        np.testing.assert_allclose(got.T_cam_obj, expected.T_cam_obj, atol=1e-9)
        assert got.score == pytest.approx(expected.score)


def test_perturbed_init_parses_degrees_and_the_scaled_shift_pattern():
    assert Perturbation.parse("perturbed") == Perturbation(15.0, 1.0)
    p = Perturbation.parse("perturbed:30,2")
    assert (p.rot_deg, p.trans_scale) == (30.0, 2.0) and p.label == "ground truth + 30 deg, 2 / 2 / 10 cm"
    for bad in ("noisy:15", "perturbed:x", "perturbed:1,2,3", "perturbed:-5"):
        with pytest.raises(ValueError):
            Perturbation.parse(bad)


def test_perturb_pose_stays_within_the_drawn_bounds():
    rng = np.random.default_rng(0)
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, 0.6]
    center = np.array([0.01, 0.0, 0.02])
    for _ in range(50):
        out = perturb_pose(T, center, rng, 15.0)
        # The centre moves by the shift alone (the turn is about it): within 1 / 1 / 5 cm per axis.
        moved = out[:3, :3] @ center + out[:3, 3] - (center + T[:3, 3])
        assert np.all(np.abs(moved) <= np.array(TRANSLATION_PATTERN_M) + 1e-12)
        assert np.degrees(Rotation.from_matrix(out[:3, :3]).magnitude()) <= np.sqrt(3) * 15.0 + 1e-9

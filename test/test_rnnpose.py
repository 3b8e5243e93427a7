"""RNNPose refiner: the weighted LM step, the shipped weights on a fresh scene, and the no-evidence paths."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.metrics import add_s
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data.bop import read_rgb
from ros2_sixdpose.detection.base import ImageKey
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.evaluation.perturbed_init import Perturbation, PerturbedTruth
from ros2_sixdpose.paths import weights_file
from ros2_sixdpose.refinement.factory import RefinerConfig
from ros2_sixdpose.refinement.rnnpose.pose_solver import lm_step, project
from ros2_sixdpose.refinement.rnnpose.refiner import RNNPoseConfig, RNNPoseRefiner, load_network

from conftest import MODELS

K_CROP = torch.tensor([[[120.0, 0.0, 32.0], [0.0, 120.0, 32.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)


def _pose(euler_deg, t) -> torch.Tensor:
    T = torch.eye(4, dtype=torch.float64)[None].clone()
    T[0, :3, :3] = torch.from_numpy(Rotation.from_euler("xyz", euler_deg, degrees=True).as_matrix())
    T[0, :3, 3] = torch.tensor(t, dtype=torch.float64)
    return T


def test_lm_step_recovers_a_known_pose_from_exact_correspondences_in_three_steps():
    generator = torch.Generator().manual_seed(0)
    X = (torch.rand(1, 400, 3, generator=generator, dtype=torch.float64) - 0.5) * 0.1  # a 10 cm cloud
    T_true = _pose([20, 30, -10], [0.01, -0.02, 0.5])
    q, _ = project(T_true, X, K_CROP)
    T = _pose([35, 45, -25], [0.02, -0.01, 0.55])  # ~26 degrees and 5 cm off
    for _ in range(3):
        T = lm_step(T, X, q, torch.ones(1, 400, dtype=torch.float64), K_CROP)
    R_err = Rotation.from_matrix((T[0, :3, :3].T @ T_true[0, :3, :3]).numpy()).magnitude()
    # Measured: 1e-5 degrees and 1e-7 m after three steps (quadratic convergence of Gauss-Newton).
    assert np.degrees(R_err) < 1e-3
    assert float((T[0, :3, 3] - T_true[0, :3, 3]).norm()) < 1e-6


def test_lm_step_gradient_matches_finite_differences():
    generator = torch.Generator().manual_seed(1)
    X = (torch.rand(1, 12, 3, generator=generator, dtype=torch.float64) - 0.5) * 0.1
    T_true = _pose([5, -10, 3], [0.0, 0.01, 0.45])
    q, _ = project(T_true, X, K_CROP)
    q = (q + torch.randn(q.shape, generator=generator, dtype=torch.float64)).requires_grad_(True)
    w = torch.rand(1, 12, generator=generator, dtype=torch.float64).add(0.1).requires_grad_(True)
    T0 = _pose([8, -6, 0], [0.01, 0.0, 0.47])
    assert torch.autograd.gradcheck(lambda w, q: lm_step(T0, X, q, w, K_CROP), (w, q))


def test_lm_step_with_zero_weights_keeps_the_pose():
    X = torch.rand(1, 50, 3, dtype=torch.float64) * 0.1
    T = _pose([10, 0, 0], [0.0, 0.0, 0.5])
    q = torch.rand(1, 50, 2, dtype=torch.float64) * 64
    torch.testing.assert_close(lm_step(T, X, q, torch.zeros(1, 50, dtype=torch.float64), K_CROP), T)


@pytest.fixture(scope="module")
def refiner(one_torch_thread):
    models = load_models(MODELS)
    with Renderer(models) as renderer:
        yield RNNPoseRefiner(load_network(weights_file("rnnpose.pt")), renderer, models, RNNPoseConfig())


def test_factory_builds_rnnpose_from_its_config():
    config = RefinerConfig(type="rnnpose")
    assert config.rnnpose.weights == "weights/rnnpose.pt" and config.rnnpose.crop_size == 64
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


def test_vanishing_weights_return_the_input_unchanged_with_a_reason(refiner, fresh_split):
    split = fresh_split(9414)
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

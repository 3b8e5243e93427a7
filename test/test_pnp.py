"""PnP from NOCS maps: exact maps rendered from ground truth give the pose; bad maps give no pose and a reason."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.camera import CropTransform, PinholeCamera, square_box
from ros2_sixdpose.core.geometry import make_pose, rotation_angle
from ros2_sixdpose.core.metrics import adi
from ros2_sixdpose.core.objects import ContinuousSymmetry, ObjectModel
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.estimation.pnp import PnPConfig, nocs_correspondences, pose_from_nocs, solve_pnp

L_SHAPE, CYLINDER = 1, 2
CROP = (64, 64)
CAMERA = PinholeCamera(np.array([[600.0, 0.0, 322.4], [0.0, 590.0, 236.1], [0.0, 0.0, 1.0]]), 640, 480)


def _l_shape() -> ObjectModel:
    """An asymmetric object: a 10 x 4 x 3 cm bar with a 3 x 5 x 3 cm foot at one end, off-centre."""
    bar = trimesh.creation.box((0.10, 0.04, 0.03))
    foot = trimesh.creation.box((0.03, 0.05, 0.03))
    foot.apply_translation((0.035, 0.045, 0.0))
    return ObjectModel.from_trimesh(trimesh.util.concatenate([bar, foot]), L_SHAPE, "l_shape")


def _cylinder() -> ObjectModel:
    """A cylinder of radius 3 cm and height 8 cm, continuously symmetric about its z axis."""
    mesh = trimesh.creation.cylinder(radius=0.03, height=0.08, sections=64)
    sym = ContinuousSymmetry(axis=np.array([0.0, 0.0, 1.0]), offset=np.zeros(3))
    return ObjectModel.from_trimesh(mesh, CYLINDER, "cylinder", symmetries_continuous=(sym,))


@pytest.fixture(scope="module")
def models() -> dict[int, ObjectModel]:
    return {L_SHAPE: _l_shape(), CYLINDER: _cylinder()}


@pytest.fixture(scope="module")
def renderer(models):
    with Renderer(models) as r:
        yield r


def _pose(seed: int) -> np.ndarray:
    """A random rotation at 0.4-0.7 m, within the central part of the 640x480 view."""
    rng = np.random.default_rng(seed)
    t = [rng.uniform(-0.08, 0.08), rng.uniform(-0.06, 0.06), rng.uniform(0.4, 0.7)]
    return make_pose(Rotation.random(random_state=rng).as_matrix(), t)


def _crop_of(model: ObjectModel, T: np.ndarray) -> CropTransform:
    """The 64x64 crop of the square box around the projected model, as the estimator cuts it."""
    uv = CAMERA.project(model.vertices.astype(np.float64) @ T[:3, :3].T + T[:3, 3])
    box = np.concatenate([uv.min(axis=0), uv.max(axis=0) + 1.0])
    return CropTransform(tuple(square_box(box)), CROP)


def _render_crop(renderer: Renderer, model: ObjectModel, T: np.ndarray, crop: CropTransform):
    """Exact NOCS (64, 64, 3) and mask (64, 64) of the model alone, rendered with the crop's K."""
    out = renderer.render(crop.K_crop(CAMERA.K), *CROP, [(model.obj_id, T)], outputs=("nocs", "instance"))
    return out.nocs, out.instance == 0


@pytest.mark.parametrize("seed", range(6))
def test_exact_nocs_gives_the_pose_within_1mm_and_half_a_degree(models, renderer, seed):
    model, T = models[L_SHAPE], _pose(seed)
    crop = _crop_of(model, T)
    nocs, mask = _render_crop(renderer, model, T, crop)
    assert mask.sum() > 300
    result = pose_from_nocs(nocs, mask, model, crop, CAMERA, PnPConfig())
    assert result.reason == ""
    assert np.linalg.norm(result.T_cam_obj[:3, 3] - T[:3, 3]) < 1e-3
    assert np.degrees(rotation_angle(result.T_cam_obj[:3, :3], T[:3, :3])) < 0.5
    assert result.score > 0.9 and result.reprojection_rmse < 0.5


def test_symmetric_object_gives_a_symmetric_equivalent_pose(models, renderer):
    """A map drawn in the pose turned 67.5 deg (12 of its 64 sections) about the axis gives that pose (ADD-S ~ 0), not a broken one."""
    model, T = models[CYLINDER], _pose(11)
    S = make_pose(Rotation.from_rotvec([0.0, 0.0, np.radians(67.5)]).as_matrix(), np.zeros(3))
    crop = _crop_of(model, T)
    nocs, mask = _render_crop(renderer, model, T @ S, crop)
    result = pose_from_nocs(nocs, mask, model, crop, CAMERA, PnPConfig())
    T_est = result.T_cam_obj
    assert np.linalg.norm(T_est[:3, 3] - T[:3, 3]) < 1e-3
    assert np.degrees(rotation_angle(T_est[:3, :3], (T @ S)[:3, :3])) < 0.5
    assert adi(T_est[:3, :3], T_est[:3, 3], T[:3, :3], T[:3, 3], model.vertices) < 1e-3


def test_distorted_camera_is_solved_in_the_full_image():
    """Pixels of a lens with strong radial distortion give the pose when the camera's dist is used."""
    camera = PinholeCamera(CAMERA.K, 640, 480, np.array([-0.3, 0.1, 0.001, -0.002, 0.0]))
    rng = np.random.default_rng(3)
    points = rng.uniform(-0.05, 0.05, (400, 3))
    T = _pose(4)
    uv = camera.project(points @ T[:3, :3].T + T[:3, 3])
    result = solve_pnp(points, uv, camera, 1.0, PnPConfig())
    assert np.linalg.norm(result.T_cam_obj[:3, 3] - T[:3, 3]) < 1e-4
    assert np.degrees(rotation_angle(result.T_cam_obj[:3, :3], T[:3, :3])) < 0.05


def test_empty_mask_gives_no_pose_and_says_why(models):
    crop = CropTransform((100.0, 100.0, 164.0, 164.0), CROP)
    result = pose_from_nocs(np.full((64, 64, 3), 0.5), np.zeros((64, 64), bool), models[L_SHAPE], crop, CAMERA,
                            PnPConfig())
    assert result.T_cam_obj is None and result.score == 0.0
    assert "empty mask" in result.reason


def test_too_few_correspondences_give_no_pose(models, renderer):
    model, T = models[L_SHAPE], _pose(2)
    crop = _crop_of(model, T)
    nocs, mask = _render_crop(renderer, model, T, crop)
    few = np.zeros_like(mask)
    v, u = np.nonzero(mask)
    few[v[:29], u[:29]] = True  # one short of the default minimum of 30
    result = pose_from_nocs(nocs, few, model, crop, CAMERA, PnPConfig())
    assert result.T_cam_obj is None and result.n_correspondences == 29
    assert "only 29 correspondences" in result.reason


def test_random_nocs_never_gives_a_confident_pose(models):
    """Noise in place of a map: no pose, or one whose score says not to trust it."""
    crop = CropTransform((250.0, 180.0, 378.0, 308.0), CROP)
    rng = np.random.default_rng(0)
    for _ in range(5):
        result = pose_from_nocs(rng.uniform(0, 1, (64, 64, 3)), np.ones((64, 64), bool), models[L_SHAPE], crop,
                                CAMERA, PnPConfig())
        assert result.T_cam_obj is None or result.score < 0.1


def test_correspondences_scale_nocs_back_to_model_points(models):
    model = models[L_SHAPE]
    nocs = np.zeros((2, 3, 3))
    nocs[1, 2] = [0.5, 1.0, 0.0]
    mask = np.zeros((2, 3), bool)
    mask[1, 2] = True
    points, uv = nocs_correspondences(nocs, mask, model)
    expected = model.bbox_min + np.array([0.5, 1.0, 0.0]) * model.bbox_size
    np.testing.assert_allclose(points, [expected])
    np.testing.assert_array_equal(uv, [[2.0, 1.0]])
    # The L-shape's box is 10 x 9 x 3 cm from (-5, -2, -1.5) cm.
    np.testing.assert_allclose(expected, [0.0, 0.07, -0.015], atol=1e-7)


def test_bad_shapes_are_rejected(models):
    crop = CropTransform((0.0, 0.0, 64.0, 64.0), CROP)
    with pytest.raises(ValueError, match="crop's size"):
        pose_from_nocs(np.zeros((32, 32, 3)), np.zeros((32, 32), bool), models[L_SHAPE], crop, CAMERA, PnPConfig())
    with pytest.raises(ValueError, match="mask must have"):
        nocs_correspondences(np.zeros((64, 64, 3)), np.zeros((64, 60), bool), models[L_SHAPE])

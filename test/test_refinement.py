"""The render-and-compare refiner: its LM pose delta, its comparison, and poses recovered from perturbed starts."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.camera import CropTransform, PinholeCamera, square_box
from ros2_sixdpose.core.metrics import add_s
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.core.render import Lighting, Renderer
from ros2_sixdpose.core.checks import mask_box
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.refinement.compare import CompareConfig, observe, residuals, score
from ros2_sixdpose.refinement.lm import PoseDelta, levenberg_marquardt
from ros2_sixdpose.refinement.render_compare import RenderCompareConfig, RenderCompareRefiner
from ros2_sixdpose.refinement.views import MeshViews

from conftest import MODELS

# Perturbation trials per object, and the success rates the shipped settings must reach (see the test).
TRIALS = 5
MIN_MEAN_SUCCESS = 0.75  # measured 0.875 (seed 3): duck 0.6, mug, jenga, domino 0.8, the others 1.0; 0.25 before
MIN_OBJECT_SUCCESS = 0.4
K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def models():
    return load_models(MODELS)


@pytest.fixture(scope="module")
def renderer(models):
    with Renderer(models) as r:
        yield r


def _scene(renderer, obj_id, T, rng):
    """A 640x480 image of one object at T under random light on a noisy grey background, and its mask."""
    light = Lighting(direction=tuple(rng.normal(size=3) + [0, 0, 2]), ambient=rng.uniform(0.2, 0.5),
                     diffuse=rng.uniform(0.5, 0.8), color=tuple(rng.uniform(0.8, 1.0, 3)))
    out = renderer.render(K, 640, 480, [(obj_id, T)], lighting=light, outputs=("rgb", "depth"))
    mask = out.depth > 0
    background = rng.integers(60, 180, (480, 640, 3), dtype=np.uint8)
    return np.where(mask[..., None], out.rgb, background), mask


def _random_pose(rng, distance):
    """An object pose at `distance` m, roughly centred in the image, random orientation."""
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
    T[:3, 3] = [rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04), distance]
    return T


def _perturbed(T, rng, degrees, metres):
    """T turned by `degrees` about a random axis through its origin and shifted `metres` in a random direction."""
    axis, shift = rng.normal(size=3), rng.normal(size=3)
    out = T.copy()
    out[:3, :3] = Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.radians(degrees)).as_matrix() @ T[:3, :3]
    out[:3, 3] += shift / np.linalg.norm(shift) * metres
    return out


def test_pose_delta_is_T0_at_zero_and_turns_about_the_centre():
    T0 = _random_pose(np.random.default_rng(0), 0.5)
    center = np.array([0.01, -0.02, 0.03])
    delta = PoseDelta.for_crop(T0, center, radius=0.05, f_crop=100.0)
    np.testing.assert_allclose(delta.pose(np.zeros(6)), T0, atol=1e-12)
    turned = delta.pose(np.array([3.0, -2.0, 1.0, 0, 0, 0]))
    # The centre stays where it was; only the orientation changes.
    np.testing.assert_allclose(turned[:3, :3] @ center + turned[:3, 3], T0[:3, :3] @ center + T0[:3, 3], atol=1e-12)
    # One unit of x/y shift moves the centre's image by one pixel of the crop (f = 100 px, z ~ 0.5 m).
    shifted = delta.pose(np.array([0, 0, 0, 1.0, 0, 0]))
    z = (T0[:3, :3] @ center + T0[:3, 3])[2]
    assert shifted[0, 3] - T0[0, 3] == pytest.approx(z / 100.0)


def test_levenberg_marquardt_solves_a_nonlinear_least_squares_problem():
    # Residuals of a smooth 6-parameter model with a known minimum at x* (cost 0 there).
    rng = np.random.default_rng(1)
    A = rng.normal(size=(40, 6))
    x_star = rng.normal(size=6)
    result = levenberg_marquardt(lambda x: np.tanh(A @ x) - np.tanh(A @ x_star), np.zeros(6),
                                 max_iterations=30, fd_step=1e-4, min_step=1e-6, min_relative_decrease=1e-9)
    np.testing.assert_allclose(result.x, x_star, atol=1e-3)
    assert result.evaluations <= 30 * 10 + 1


def test_comparison_is_best_at_the_true_pose(renderer):
    rng = np.random.default_rng(2)
    views, config = MeshViews(renderer), CompareConfig(shading_weight=1.0)
    for obj_id in (1, 4, 6):  # textured duck, plain mug, textured jenga
        T = _random_pose(rng, 0.45)
        rgb, mask = _scene(renderer, obj_id, T, rng)
        crop = CropTransform(tuple(square_box(mask_box(mask), 1.4)), (64, 64))
        K_crop = crop.K_crop(K)
        obs = observe(crop.warp(rgb), crop.warp(mask, 0), np.zeros((64, 64), bool), K_crop, config)

        def cost_and_score(pose):
            view = views.render_view(obj_id, pose, K_crop, 64)
            r = residuals(view, obs, config)
            return 0.5 * float(r @ r), score(view, obs, config)

        cost_true, score_true = cost_and_score(T)
        for degrees in (5.0, 15.0):
            cost_off, score_off = cost_and_score(_perturbed(T, rng, degrees, 0.0))
            assert cost_true < cost_off and score_true > score_off, (obj_id, degrees)
        # Measured 0.69 (duck), 0.60 (mug), 0.79 (jenga): plain objects score lower, having no texture detail.
        assert score_true > 0.5, obj_id


def test_refiner_recovers_every_object_from_15_degree_2_cm_perturbations(renderer, models):
    rng = np.random.default_rng(3)
    refiner = RenderCompareRefiner(MeshViews(renderer), models, RenderCompareConfig())
    camera = PinholeCamera(K, 640, 480)
    successes, before = {}, {}
    for obj_id, model in models.items():
        ok = ok_before = 0
        for _ in range(TRIALS):
            T = _random_pose(rng, 0.45)
            rgb, mask = _scene(renderer, obj_id, T, rng)
            start = _perturbed(T, rng, 15.0, 0.02)
            detection = Detection(obj_id, mask_box(mask), mask, 1.0)
            (refined,) = refiner.refine(rgb, camera, [detection], [PoseEstimate(obj_id, start, 0.5, "test")])
            assert refined.method == "test+gs_refine"
            ok += add_s(refined.T_cam_obj, T, model.vertices, model.is_symmetric) < 0.1 * model.diameter
            ok_before += add_s(start, T, model.vertices, model.is_symmetric) < 0.1 * model.diameter
        successes[model.name], before[model.name] = ok / TRIALS, ok_before / TRIALS
    print("success per object", successes, "before", before)
    assert np.mean(list(successes.values())) >= MIN_MEAN_SUCCESS, successes
    assert min(successes.values()) >= MIN_OBJECT_SUCCESS, successes


def test_refiner_without_a_start_returns_the_estimate_unchanged(renderer, models):
    refiner = RenderCompareRefiner(MeshViews(renderer), models)
    mask = np.zeros((480, 640), bool)
    mask[200:260, 300:380] = True
    detection = Detection(4, mask_box(mask), mask, 0.9)
    nothing = PoseEstimate.none(4, "nocs", "too few correspondences")
    rgb = np.zeros((480, 640, 3), np.uint8)
    assert refiner.refine(rgb, PinholeCamera(K, 640, 480), [detection], [nothing]) == [nothing]
    # An empty mask gives nothing to compare with: the estimate comes back as it was, not refined into noise.
    start = PoseEstimate(4, _random_pose(np.random.default_rng(5), 0.45), 0.7, "nocs")
    empty = Detection(4, np.zeros(4), np.zeros((480, 640), bool), 0.9)
    assert refiner.refine(rgb, PinholeCamera(K, 640, 480), [empty], [start]) == [start]
    with pytest.raises(ValueError, match="2 detections but 1 estimates"):
        refiner.refine(rgb, PinholeCamera(K, 640, 480), [detection, detection], [nothing])


def test_score_shares_that_leave_the_iou_a_negative_weight_are_refused():
    with pytest.raises(ValueError, match="summing to at most 1"):
        CompareConfig(score_shading_share=0.8, score_detail_share=0.3)


def _occluded(rgb, mask, rng, share):
    """rgb and mask with a grey board hiding about `share` of the object from one side (no detector knows it)."""
    rows, cols = np.nonzero(mask)
    hidden = mask.copy()
    if rng.random() < 0.5:
        cut = np.quantile(cols, 1.0 - share)
        hidden[:, : int(cut)] = False
    else:
        cut = np.quantile(rows, 1.0 - share)
        hidden[: int(cut)] = False
    board = np.zeros_like(mask)
    top, left = rows.min(), cols.min()
    board[top:, left:] = hidden[top:, left:].any(axis=0)[None] & hidden[top:, left:].any(axis=1)[:, None]
    out = rgb.copy()
    out[board] = (90, 95, 100)
    return out, mask & ~board


def _depth_push(renderer, models, outside_weight):
    """Mean depth error (m, + = away from the camera) after refining 8 objects 25 % hidden behind a board."""
    rng = np.random.default_rng(8)
    config = RenderCompareConfig(compare=CompareConfig(outside_weight=outside_weight))
    refiner = RenderCompareRefiner(MeshViews(renderer), models, config)
    camera = PinholeCamera(K, 640, 480)
    errors = []
    for obj_id in (5, 6, 7, 2, 5, 6, 7, 2):  # lego, jenga, domino, bunny: the objects that were pushed away
        T = _random_pose(rng, 0.45)
        rgb, mask = _occluded(*_scene(renderer, obj_id, T, rng), rng, 0.25)
        detection = Detection(obj_id, mask_box(mask), mask, 1.0)
        start = PoseEstimate(obj_id, _perturbed(T, rng, 5.0, 0.01), 0.5, "test")
        (refined,) = refiner.refine(rgb, camera, [detection], [start])
        errors.append(refined.T_cam_obj[2, 3] - T[2, 3])
    return float(np.mean(errors))


def test_partly_occluded_objects_are_pushed_away_less_with_outside_pixels_down_weighted(renderer, models):
    # A silhouette alone cannot tell an occluded part from a missing one: at full weight the render shrinks
    # into the visible part. Measured (seed 8): mean push 6.9 cm at weight 1, 3.3 cm at 0.25 (shipped), 1.4 cm
    # at 0.05 (which costs rotation precision on the validation split: median 3.8 vs 2.9 deg).
    shipped = _depth_push(renderer, models, CompareConfig().outside_weight)
    full = _depth_push(renderer, models, 1.0)
    print(f"mean depth push: {shipped:.3f} m shipped, {full:.3f} m at full weight")
    assert shipped < 0.045 and shipped < 0.7 * full

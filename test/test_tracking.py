"""The tracker: region-based per-frame refinement (Stoiber et al.) and the per-instance state machine, without ROS."""
from pathlib import Path

import numpy as np
import pytest

from ros2_sixdpose.config import load_config
from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.metrics import add_s
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.data.bop import BopSplit, read_mask, read_rgb
from ros2_sixdpose.data.camera_paths import CameraConfig
from ros2_sixdpose.data.synth import SceneConfig, SynthConfig, generate_split
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.evaluation.tracking import track_scene
from ros2_sixdpose.tracking.factory import TrackingConfig, make_tracker
from ros2_sixdpose.tracking.optimizer import apply_variation
from ros2_sixdpose.tracking.region_tracker import RegionTracker
from ros2_sixdpose.tracking.settings import RegionConfig
from ros2_sixdpose.tracking.tracker import Initialisation, Tracker, TrackerConfig, TrackState, closest_equivalent

MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"
CONFIG = Path(__file__).resolve().parents[1] / "config" / "tracker.yaml"
DUCK, LEGO = 1, 5
SEED = 9311  # no training, validation or test set uses it
FRAMES = 30
# Fewer views than the shipped 400 keep the model build of a test at ~2 s per object.
FAST = RegionConfig(n_viewpoints=150)


@pytest.fixture(scope="module")
def models():
    return load_models(MODELS)


@pytest.fixture(scope="module")
def two_ducks(tmp_path_factory) -> BopSplit:
    """One fresh 30 Hz sequence of 30 frames with two instances of the duck, the camera moving 0.35-0.5 m away."""
    root = tmp_path_factory.mktemp("ducks")
    config = SynthConfig(scene=SceneConfig(objects_per_scene=(2, 2), distractors_per_scene=(0, 2)),
                         camera=CameraConfig(distance=(0.35, 0.5)))
    generate_split(root, "test", 1, FRAMES, SEED, config, MODELS, object_ids=[DUCK], sequence=True, progress=False)
    return BopSplit(root, "test")


@pytest.fixture(scope="module")
def duck_tracker(models) -> RegionTracker:
    return RegionTracker({DUCK: models[DUCK]}, FAST)


def test_shipped_config_equals_code_defaults():
    assert load_config(TrackingConfig, CONFIG) == TrackingConfig()


@pytest.mark.parametrize("bad", [dict(scales=(6, 4), standard_deviations=(1.0,)), dict(function_length=7),
                                 dict(function_amplitude=0.6), dict(n_histogram_bins=10), dict(n_viewpoints=3)])
def test_bad_region_settings_raise(bad):
    with pytest.raises(ValueError):
        RegionConfig(**bad)


def test_gradient_matches_finite_differences(models, duck_tracker, two_ducks):
    """The analytic gradient of the line likelihood equals central differences of -1/2 sum (d - mu)^2 / var."""
    scene = two_ducks.read_scene(0)
    rgb = read_rgb(two_ducks.rgb_path(0, 0))
    T = scene.gt[0][0].T_cam_obj
    K = scene.camera[0].K
    modality = duck_tracker.start(DUCK, rgb, PinholeCamera(K, 640, 480), T)
    T_off = apply_variation(T, np.array([0.02, -0.01, 0.03, 0.004, -0.003, 0.002]))
    lines = modality.correspondences(rgb, T_off, K, 2)
    gradient, hessian = modality.gradient_hessian(lines, T_off, K)

    def log_likelihood(theta):
        T_t = apply_variation(T_off, theta)
        X = modality.model.points[lines.view, lines.index] @ T_t[:3, :3].T + T_t[:3, 3]
        uv = X[:, :2] / X[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
        d = np.einsum("lk,lk->l", lines.normals, uv - lines.centers)
        return -0.5 * np.sum((d - lines.mean) ** 2 / lines.variance)
    eps = 1e-6
    numeric = np.array([(log_likelihood(e * eps) - log_likelihood(-e * eps)) / (2 * eps) for e in np.eye(6)])
    np.testing.assert_allclose(gradient, numeric, rtol=1e-3, atol=1e-3 * np.abs(numeric).max())
    assert np.all(np.linalg.eigvalsh(hessian) <= 1e-9)  # Gauss-Newton: negative semi-definite


def test_follows_two_ducks_with_stable_ids(models, duck_tracker, two_ducks):
    """From the first frame's ground truth, both ducks are tracked over the sequence, each under one id."""
    tracker = Tracker(duck_tracker, {DUCK: models[DUCK]}, TrackerConfig(redetect_period=0))
    score = track_scene(two_ducks, 0, tracker, models, [0, 1])
    # Measured (seed 9311): ADD(-S) recall 1.00, RBOT success 1.00, largest ADD(-S) error 0.08 d. (With the camera
    # 0.3-1.0 m away, as in the default synth config, ADD(-S) recall falls to 0.13: depth from a silhouette of
    # ~70 px drifts by 2-3 cm; RBOT success 0.47.)
    assert score.add_recall() >= 0.9
    assert score.rbot_success() >= 0.85
    ids = [set(frame_ids) for frame_ids in score.track_ids]
    assert ids[0] != ids[1] and all(len(i) == 1 for i in ids), ids


def test_lost_track_is_reinitialised_under_its_id(models, duck_tracker, two_ducks):
    """A track pushed out of the image is lost at once; the initialiser then restarts it with the same id."""
    scene = two_ducks.read_scene(0)
    camera = PinholeCamera(scene.camera[0].K, 640, 480)
    gt = scene.gt[0]
    calls = []

    def initialise():
        calls.append(1)
        return [PoseEstimate(g.obj_id, g.T_cam_obj, 0.9, "ground_truth") for g in gt]
    tracker = Tracker(duck_tracker, {DUCK: models[DUCK]}, TrackerConfig(redetect_period=0, reinit_period=1))
    rgb0 = read_rgb(two_ducks.rgb_path(0, 0))
    first = tracker.update(rgb0, camera, initialise)
    assert [p.method for p in first.poses] == ["estimate", "estimate"] and len(calls) == 1
    ids = {p.track_id for p in first.poses}
    second = tracker.update(read_rgb(two_ducks.rgb_path(0, 1)), camera, initialise)
    assert [p.method for p in second.poses] == ["track", "track"] and len(calls) == 1  # tracking needs no detector
    tracker.tracks[0].T_cam_obj = tracker.tracks[0].T_cam_obj.copy()
    tracker.tracks[0].T_cam_obj[0, 3] += 2.0  # far out of the image
    lost_id = tracker.tracks[0].track_id
    third = tracker.update(read_rgb(two_ducks.rgb_path(0, 2)), camera, initialise)
    assert len(calls) == 2
    assert {p.track_id for p in third.poses} == ids
    assert {p.track_id: p.method for p in third.poses}[lost_id] == "estimate"
    assert all(t.state is TrackState.TRACKED for t in tracker.tracks)


def test_track_lost_under_a_full_occlusion_resumes_without_the_initialiser(models, duck_tracker, two_ducks):
    """The camera covered for three frames: both ducks are lost, then tracked again under their ids in the first
    frame they are visible, from their last good poses, while the initialiser finds nothing."""
    scene = two_ducks.read_scene(0)
    camera = PinholeCamera(scene.camera[0].K, 640, 480)
    calls = []

    def initialise():
        calls.append(1)
        return [PoseEstimate(g.obj_id, g.T_cam_obj, 0.9, "ground_truth") for g in scene.gt[0]] if len(calls) == 1 else []
    tracker = Tracker(duck_tracker, {DUCK: models[DUCK]}, TrackerConfig(redetect_period=0))
    ids = {p.track_id for p in tracker.update(read_rgb(two_ducks.rgb_path(0, 0)), camera, initialise).poses}
    for im_id in range(1, 8):  # past confirm_frames: a younger track would be dropped when lost
        tracker.update(read_rgb(two_ducks.rgb_path(0, im_id)), camera, initialise)
    covered = np.full((480, 640, 3), 40, np.uint8)  # a dark board over the lens
    steps = [tracker.update(covered, camera, initialise) for _ in range(3)]
    assert steps[-1].poses == [] and all(t.state is TrackState.LOST for t in tracker.tracks)
    before = len(calls)
    back = tracker.update(read_rgb(two_ducks.rgb_path(0, 8)), camera, initialise)
    assert {p.track_id for p in back.poses} == ids and len(calls) == before
    model = models[DUCK]
    for gt in scene.gt[8]:
        pose = min(back.poses, key=lambda p: np.linalg.norm(p.T_cam_obj[:3, 3] - gt.T_cam_obj[:3, 3]))
        # Measured: 0.014 d and 0.030 d (the camera moved over the three covered frames).
        assert add_s(pose.T_cam_obj, gt.T_cam_obj, model.vertices, False) < 0.1 * model.diameter


def _carried(models, duck_tracker, two_ducks) -> list[float]:
    """ADD(-S) errors (diameters) at the last frame of both ducks started from the first frame's ground truth that an
    initialiser running apart delivers only at the last frame (`Tracker.step`)."""
    scene = two_ducks.read_scene(0)
    camera = PinholeCamera(scene.camera[0].K, 640, 480)
    tracker = Tracker(duck_tracker, {DUCK: models[DUCK]},
                      TrackerConfig(redetect_period=0, catch_up_frames=24, catch_up_per_frame=3))
    rgb0 = read_rgb(two_ducks.rgb_path(0, 0))
    assert tracker.step(rgb0, camera).poses == [] and tracker.wants_initialisation()
    tracker.initialisation_started()
    for im_id in range(1, FRAMES - 1):
        assert tracker.step(read_rgb(two_ducks.rgb_path(0, im_id)), camera).poses == []
    estimates = [PoseEstimate(g.obj_id, g.T_cam_obj, 0.9, "ground_truth") for g in scene.gt[0]]
    last = tracker.step(read_rgb(two_ducks.rgb_path(0, FRAMES - 1)), camera, Initialisation(estimates, rgb0, camera))
    steps = 1
    while not last.poses:  # catching up: 3 kept frames per call, the frame of the call queued too
        last = tracker.step(read_rgb(two_ducks.rgb_path(0, FRAMES - 1)), camera)
        steps += 1
    # 16 kept frames (of 28, thinned to at most 24) and one more per call, 3 carried per call: present after 8 calls
    assert steps == 8 and [p.method for p in last.poses] == ["estimate", "estimate"]
    model = models[DUCK]
    return [min(add_s(p.T_cam_obj, g.T_cam_obj, model.vertices, False) for p in last.poses) / model.diameter
            for g in scene.gt[FRAMES - 1]]


def test_estimates_of_an_earlier_frame_are_carried_to_the_present(models, duck_tracker, two_ducks):
    """Estimates made on frame 0 arrive at frame 29: the new tracks are carried through the frames kept meanwhile."""
    errors = _carried(models, duck_tracker, two_ducks)
    # Measured: 0.050 and 0.019 d. This slow camera moves little in a second (0.023 / 0.016 d with no catch-up);
    # on the replayed seed-7501 sequence (docs/tracking.md) no track survived an initialisation without it.
    assert max(errors) < 0.1, errors


def test_occlusion_mask_is_the_nearer_instances_silhouette(duck_tracker, two_ducks):
    """The mask that hides lines of the farther duck is the nearer duck's silhouette (and empty the other way)."""
    scene = two_ducks.read_scene(0)
    camera = PinholeCamera(scene.camera[0].K, 640, 480)
    near, far = sorted(range(2), key=lambda i: scene.gt[0][i].T_cam_obj[2, 3])
    T_near, T_far = scene.gt[0][near].T_cam_obj, scene.gt[0][far].T_cam_obj
    mask = duck_tracker.occlusion_mask(T_far, camera, [(DUCK, T_near)])
    silhouette = read_mask(two_ducks.mask_path(0, 0, near))
    iou = (mask & silhouette).sum() / (mask | silhouette).sum()
    assert iou > 0.9, iou  # measured 0.98: a 200-point polygon of the closest model view's contour
    assert duck_tracker.occlusion_mask(T_near, camera, [(DUCK, T_far)]) is None


def test_detections_of_tracked_instances_need_no_estimate(models, duck_tracker, two_ducks):
    """Only a detection that no tracked instance explains goes to the estimator (periodic re-detection is cheap)."""
    scene = two_ducks.read_scene(0)
    camera = PinholeCamera(scene.camera[0].K, 640, 480)
    tracker = Tracker(duck_tracker, {DUCK: models[DUCK]})
    tracker.update(read_rgb(two_ducks.rgb_path(0, 0)), camera,
                   lambda: [PoseEstimate(DUCK, scene.gt[0][0].T_cam_obj, 0.9, "ground_truth")])
    info = scene.gt_info[0]
    mask = np.zeros((480, 640), dtype=bool)
    detections = [Detection(DUCK, np.array([x, y, x + w, y + h], dtype=float), mask, 0.9)
                  for x, y, w, h in (i.bbox_obj for i in info)]
    assert tracker.unexplained(detections, camera) == [detections[1]]  # the second duck is not tracked yet


def test_symmetric_object_keeps_the_equivalent_pose_closest_to_the_last(models):
    """Lego (discrete symmetries): a pose turned by a symmetry comes out as the previous one's equivalent."""
    symmetries = models[LEGO].symmetry_transforms()
    assert len(symmetries) > 1
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, 0.5]
    for S in symmetries[1:]:
        out = closest_equivalent(T @ np.linalg.inv(S), T, symmetries)
        np.testing.assert_allclose(out, T, atol=1e-9)


def test_render_compare_per_frame_refiner_follows_the_ducks(models, two_ducks, one_torch_thread):
    """The second per-frame refiner (render-and-compare from the last pose against the learned detector's masks),
    built from the configuration, carries both ducks over the first 8 frames."""
    root = Path(__file__).resolve().parents[1]
    tracker = make_tracker(TrackingConfig(refiner="render_compare", tracker=TrackerConfig(redetect_period=0)), root,
                           [DUCK])
    score = track_scene(two_ducks, 0, tracker, models, [0, 1], frames=8)
    # Measured: ADD(-S) recall 1.00 (largest error 0.044 d); RBOT success 1.00 with main's earlier refiner
    # settings, 0.56 with the current ones (coarse crop 64 px).
    assert score.add_recall() >= 0.9 and score.rbot_success() >= 0.4

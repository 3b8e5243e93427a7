"""BOP file I/O: mm <-> m round trips through every file written, layout, and errors naming file and field."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.objects import read_models_info
from ros2_sixdpose.data import bop
from ros2_sixdpose.data.bop import BopFormatError, BopSplit, CameraParams, GtInfo, GtInstance, PoseResult

K = np.array([[572.4114, 0.0, 325.2611], [0.0, 573.57043, 242.04899], [0.0, 0.0, 1.0]])


def _random_pose(rng: np.random.Generator) -> np.ndarray:
    """A random T (4, 4) in metres, 0.3..1.2 m in front of the camera."""
    T = np.eye(4)
    T[:3, :3] = Rotation.random(rng=rng).as_matrix()
    T[:3, 3] = rng.uniform([-0.2, -0.2, 0.3], [0.2, 0.2, 1.2])
    return T


def _write_json(path: Path, content: object) -> Path:
    path.write_text(json.dumps(content))
    return path


def test_scene_gt_round_trip_in_metres_and_file_in_mm(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scene_gt = {im_id: [GtInstance(obj_id, _random_pose(rng)) for obj_id in (1, 5, 5)] for im_id in (0, 3, 17)}
    path = tmp_path / "scene_gt.json"
    bop.write_scene_gt(path, scene_gt)
    back = bop.read_scene_gt(path)
    assert sorted(back) == [0, 3, 17]
    for im_id, instances in scene_gt.items():
        assert [i.obj_id for i in back[im_id]] == [1, 5, 5]
        for a, b in zip(instances, back[im_id]):
            np.testing.assert_allclose(b.T_cam_obj, a.T_cam_obj, rtol=0, atol=1e-9)
    raw = json.loads(path.read_text())
    np.testing.assert_allclose(raw["3"][1]["cam_t_m2c"], scene_gt[3][1].T_cam_obj[:3, 3] * 1000.0, atol=1e-9)
    assert len(raw["3"][1]["cam_R_m2c"]) == 9


def test_scene_camera_round_trip_with_world_pose(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cameras = {0: CameraParams(K, 0.1, _random_pose(rng)), 1: CameraParams(K * [[2], [2], [1]], 1.0)}
    path = tmp_path / "scene_camera.json"
    bop.write_scene_camera(path, cameras)
    back = bop.read_scene_camera(path)
    np.testing.assert_array_equal(back[0].K, K)
    assert back[0].depth_scale == 0.1
    np.testing.assert_allclose(back[0].T_cam_world, cameras[0].T_cam_world, rtol=0, atol=1e-9)
    assert back[1].T_cam_world is None
    assert back[1].K[0, 0] == pytest.approx(2 * K[0, 0])
    raw = json.loads(path.read_text())
    np.testing.assert_allclose(raw["0"]["cam_t_w2c"], cameras[0].T_cam_world[:3, 3] * 1000.0, atol=1e-9)


def test_scene_gt_info_round_trip(tmp_path: Path) -> None:
    infos = {4: [GtInfo((10, 20, 30, 40), (12, 20, 25, 40), 1200, 1100, 900, 0.75)]}
    path = tmp_path / "scene_gt_info.json"
    bop.write_scene_gt_info(path, infos)
    assert bop.read_scene_gt_info(path) == infos


def test_results_csv_round_trip_in_metres_and_file_in_mm(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    results = [
        PoseResult(1, im_id, obj_id, float(rng.random()), _random_pose(rng), time=0.25)
        for im_id in (0, 1)
        for obj_id in (2, 3)
    ]
    path = tmp_path / "out" / "method_dataset-test.csv"
    bop.write_results_csv(path, results)
    lines = path.read_text().splitlines()
    assert lines[0] == "scene_id,im_id,obj_id,score,R,t,time"
    t_mm = [float(v) for v in lines[1].split(",")[5].split()]
    np.testing.assert_allclose(t_mm, results[0].T_cam_obj[:3, 3] * 1000.0, atol=1e-9)
    back = bop.read_results_csv(path)
    assert [(r.scene_id, r.im_id, r.obj_id, r.score, r.time) for r in back] == [
        (r.scene_id, r.im_id, r.obj_id, r.score, r.time) for r in results
    ]
    for a, b in zip(results, back):
        np.testing.assert_allclose(b.T_cam_obj, a.T_cam_obj, rtol=0, atol=1e-9)


def test_results_csv_without_header_is_read(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("48,1,2,0.9,1 0 0 0 1 0 0 0 1,10 -20 800,0.5\n\n")
    (res,) = bop.read_results_csv(path)
    assert (res.scene_id, res.im_id, res.obj_id, res.score, res.time) == (48, 1, 2, 0.9, 0.5)
    np.testing.assert_allclose(res.T_cam_obj[:3, 3], [0.01, -0.02, 0.8])


def test_depth_round_trip_in_metres_and_png_in_depth_scale_mm(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    depth = rng.integers(3000, 60000, size=(48, 64)) * 1e-4  # multiples of 0.1 mm, 0.3..6 m
    depth[0, :5] = 0.0
    depth[1, 0] = np.nan  # a sensor's "no measurement"
    path = tmp_path / "depth" / "000000.png"
    bop.write_depth(path, depth, depth_scale=0.1)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    assert raw[5, 5] == round(depth[5, 5] * 1e4)
    assert raw[1, 0] == 0
    back = bop.read_depth(path, depth_scale=0.1)
    assert back.dtype == np.float32 and back.shape == (48, 64)
    expected = np.nan_to_num(depth, nan=0.0)
    np.testing.assert_allclose(back, expected, rtol=1e-7, atol=0)


def test_depth_out_of_uint16_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="depth_scale"):
        bop.write_depth(tmp_path / "d.png", np.full((2, 2), 70.0), depth_scale=1.0)
    with pytest.raises(ValueError, match="negative"):
        bop.write_depth(tmp_path / "d.png", np.full((2, 2), -1.0))


def test_rgb_png_jpg_and_mask_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    split = BopSplit(tmp_path, "test")
    bop.write_rgb(split.rgb_path(0, 7), rgb)
    np.testing.assert_array_equal(bop.read_rgb(split.rgb_path(0, 7)), rgb)
    smooth = np.zeros((24, 32, 3), dtype=np.uint8)
    smooth[..., 0] = 200  # pure red must stay red (RGB, not BGR)
    bop.write_rgb(split.rgb_path(0, 8, ext=".jpg"), smooth)
    assert split.rgb_path(0, 8).suffix == ".jpg"
    assert np.abs(bop.read_rgb(split.rgb_path(0, 8)).astype(int) - smooth).max() <= 3
    assert bop.image_size(split.rgb_path(0, 8)) == (32, 24)
    mask = rng.random((24, 32)) > 0.5
    bop.write_mask(split.mask_visib_path(0, 7, 2), mask)
    np.testing.assert_array_equal(bop.read_mask(split.mask_visib_path(0, 7, 2)), mask)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        bop.write_rgb(tmp_path / "x.png", rgb.astype(np.float32))


def test_models_info_written_in_mm_reads_back_in_metres(tmp_path: Path) -> None:
    flip = [-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 12.5, 0, 0, 0, 1]  # 180 deg about z, 12.5 mm up
    box = {"min_x": -10.0, "min_y": -20.0, "min_z": -5.0, "size_x": 20.0, "size_y": 40.0, "size_z": 10.0}
    info = {
        1: {"diameter": 102.1, **box, "symmetries_continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 3.0]}]},
        2: {"diameter": 50.0, **box, "symmetries_discrete": [flip]},
    }
    path = tmp_path / "models" / "models_info.json"
    bop.write_models_info(path, info)
    assert json.loads(path.read_text())["2"]["symmetries_discrete"] == [flip]
    back = read_models_info(path)
    assert back[1].diameter == pytest.approx(0.1021, abs=1e-12)
    np.testing.assert_allclose(back[1].bbox_min, [-0.01, -0.02, -0.005], atol=1e-12)
    np.testing.assert_allclose(back[1].symmetries_continuous[0].offset, [0, 0, 0.003], atol=1e-12)
    np.testing.assert_allclose(back[2].symmetries_discrete[0][:3, 3], [0, 0, 0.0125], atol=1e-12)


def test_split_layout_and_ids(tmp_path: Path) -> None:
    split = BopSplit(tmp_path / "ds", "test")
    assert split.rgb_path(3, 12) == tmp_path / "ds/test/000003/rgb/000012.png"
    assert split.depth_path(3, 12) == tmp_path / "ds/test/000003/depth/000012.png"
    assert split.mask_path(3, 12, 1) == tmp_path / "ds/test/000003/mask/000012_000001.png"
    assert split.mask_visib_path(3, 12, 1) == tmp_path / "ds/test/000003/mask_visib/000012_000001.png"
    assert split.scene_gt_path(3) == tmp_path / "ds/test/000003/scene_gt.json"
    assert split.models_dir == tmp_path / "ds/models"
    with pytest.raises(FileNotFoundError, match="split folder"):
        split.scene_ids()
    for scene_id in (3, 1):
        bop.write_scene_camera(split.scene_camera_path(scene_id), {5: CameraParams(K), 2: CameraParams(K)})
        bop.write_scene_gt(split.scene_gt_path(scene_id), {5: [GtInstance(1, np.eye(4))], 2: []})
    (split.path / "README").write_text("not a scene")
    assert split.scene_ids() == [1, 3]
    assert split.image_ids(3) == [2, 5]
    scene = split.read_scene(3)
    assert scene.gt_info is None and sorted(scene.camera) == [2, 5]
    bop.write_scene_gt_info(split.scene_gt_info_path(3), {5: [], 2: []})
    with pytest.raises(BopFormatError, match="image 5 has 0 entries"):
        split.read_scene(3)


# ---------------------------------------------------------------- malformed files


def test_wrong_length_names_file_image_instance_and_field(tmp_path: Path) -> None:
    entry = {"cam_R_m2c": [1, 0, 0, 0, 1, 0, 0, 0], "cam_t_m2c": [0, 0, 500], "obj_id": 1}
    path = _write_json(tmp_path / "scene_gt.json", {"3": [entry]})
    with pytest.raises(BopFormatError) as info:
        bop.read_scene_gt(path)
    assert str(info.value) == f"{path}: image 3, instance 0: 'cam_R_m2c' has 8 values, expected 9"


IDENTITY_9 = [1, 0, 0, 0, 1, 0, 0, 0, 1]
K_9 = [500, 0, 1, 0, 500, 1, 0, 0, 1]
COUNTS = {"px_count_all": 1, "px_count_valid": 1, "px_count_visib": 1}


@pytest.mark.parametrize(
    ("reader", "name", "content", "message"),
    [
        (
            bop.read_scene_gt,
            "scene_gt.json",
            {"0": [{"cam_R_m2c": IDENTITY_9, "cam_t_m2c": [0, 0, 1]}]},
            "image 0, instance 0: missing 'obj_id'",
        ),
        (
            bop.read_scene_gt,
            "scene_gt.json",
            {"0": [{"cam_R_m2c": IDENTITY_9, "cam_t_m2c": [0, "a", 1], "obj_id": 1}]},
            "'cam_t_m2c' must be a list of 3 numbers",
        ),
        (bop.read_scene_gt, "scene_gt.json", {"zero": []}, "key 'zero' is not an integer image id"),
        (bop.read_scene_gt, "scene_gt.json", [1, 2], "expected an object keyed by image id"),
        (bop.read_scene_camera, "scene_camera.json", {"0": {"depth_scale": 1.0}}, "image 0: missing 'cam_K'"),
        (
            bop.read_scene_camera,
            "scene_camera.json",
            {"0": {"cam_K": [0, 0, 1, 0, 500, 1, 0, 0, 1]}},
            "image 0: 'cam_K' has a non-positive focal length",
        ),
        (
            bop.read_scene_camera,
            "scene_camera.json",
            {"0": {"cam_K": K_9, "cam_R_w2c": IDENTITY_9}},
            "image 0: missing 'cam_t_w2c'",
        ),
        (
            bop.read_scene_gt_info,
            "scene_gt_info.json",
            {"1": [{"bbox_obj": [1, 2, 3, 4], "bbox_visib": [1, 2, 3], **COUNTS, "visib_fract": 1.0}]},
            "image 1, instance 0: 'bbox_visib' has 3 values, expected 4",
        ),
        (
            bop.read_scene_gt_info,
            "scene_gt_info.json",
            {"1": [{"bbox_obj": [1, 2, 3, 4], "bbox_visib": [1, 2, 3, 4], **COUNTS}]},
            "image 1, instance 0: missing 'visib_fract'",
        ),
    ],
)
def test_malformed_json_fields_are_named(tmp_path: Path, reader, name: str, content: object, message: str) -> None:
    path = _write_json(tmp_path / name, content)
    with pytest.raises(BopFormatError, match=name) as info:
        reader(path)
    assert message in str(info.value)


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "scene_camera.json"
    path.write_text("{'0': not json")
    with pytest.raises(BopFormatError, match="scene_camera.json: not valid JSON"):
        bop.read_scene_camera(path)
    with pytest.raises(FileNotFoundError, match="scene_gt.json: file not found"):
        bop.read_scene_gt(tmp_path / "scene_gt.json")
    with pytest.raises(FileNotFoundError, match="results file not found"):
        bop.read_results_csv(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="000001.png: image not found"):
        bop.read_depth(tmp_path / "000001.png", 1.0)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(BopFormatError, match="broken.png: not a readable image"):
        bop.read_rgb(broken)
    bop.write_rgb(tmp_path / "rgb.png", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(BopFormatError, match="single-channel 16-bit"):
        bop.read_depth(tmp_path / "rgb.png", 1.0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,2,3,0.5,1 0 0 0 1 0 0 0,0 0 1,-1", "line 2: 'R' has 8 values, expected 9"),
        ("1,2,3,0.5,1 0 0 0 1 0 0 0 1,0 0,-1", "line 2: 't' has 2 values, expected 3"),
        ("1,2,3,0.5,1 0 0 0 1 0 0 0 1,0 0 1", "line 2: expected 7 comma-separated fields"),
        ("1,x,3,0.5,1 0 0 0 1 0 0 0 1,0 0 1,-1", "line 2: 'im_id' is not a number: 'x'"),
        ("1,2,3,nan,1 0 0 0 1 0 0 0 1,0 0 1,-1", "line 2: 'score' has non-finite values"),
    ],
)
def test_malformed_results_csv_names_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "results.csv"
    path.write_text("scene_id,im_id,obj_id,score,R,t,time\n" + line + "\n")
    with pytest.raises(BopFormatError, match="results.csv") as info:
        bop.read_results_csv(path)
    assert message in str(info.value)


def test_value_types_check_shapes() -> None:
    with pytest.raises(ValueError, match=r"T_cam_obj must have shape \(4, 4\), got \(3, 4\)"):
        GtInstance(1, np.eye(4)[:3])
    with pytest.raises(ValueError, match=r"K must have shape \(3, 3\)"):
        CameraParams(np.eye(4))

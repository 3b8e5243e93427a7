"""The evaluator on tiny hand-made BOP splits, with and without depth, against hand-computed recalls."""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import trimesh

from ros2_sixdpose.cli import eval as eval_cli
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data import bop
from ros2_sixdpose.data.bop import BopSplit, CameraParams, GtInfo, GtInstance, PoseResult
from ros2_sixdpose.data.ply import write_ply
from ros2_sixdpose.evaluation.scoring import EvalConfig, EvalImage, Evaluator, evaluate_split, match_greedy

K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])
WIDTH, HEIGHT = 640, 480
FLIP_Z = np.diag([-1.0, -1.0, 1.0, 1.0])  # 180 deg about the model z axis
# Off the pixel grid, so no silhouette edge passes exactly through pixel centres.
CENTRE = np.array([0.0013, -0.0021, 0.5])

# One GT instance: (obj_id, T_cam_obj, visib_fract); one image: list of instances.
Instance = tuple[int, np.ndarray, float]


def _pose(offset: Sequence[float] = (0.0, 0.0, 0.0), R: np.ndarray | None = None) -> np.ndarray:
    """T_cam_obj (4, 4) m: rotation R (identity by default) at CENTRE + offset."""
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    T[:3, 3] = CENTRE + np.asarray(offset)
    return T


@pytest.fixture(scope="module")
def models() -> dict[int, ObjectModel]:
    """A 40 mm cube without declared symmetry (diameter 69.3 mm) and a 60 x 40 x 30 mm box symmetric about z."""
    cube = ObjectModel.from_trimesh(trimesh.creation.box((0.04, 0.04, 0.04)), 1, "cube")
    box = ObjectModel.from_trimesh(
        trimesh.creation.box((0.06, 0.04, 0.03)), 2, "flat_box", symmetries_discrete=FLIP_Z[None]
    )
    return {1: cube, 2: box}


@pytest.fixture(scope="module")
def renderer(models: dict[int, ObjectModel]) -> Iterator[Renderer]:
    with Renderer(models) as r:
        yield r


def _write_split(
    root: Path, images: dict[int, list[Instance]], renderer: Renderer | None, scene_id: int = 0
) -> BopSplit:
    """Write a one-scene BOP split with bop's writers; depth (rendered from the ground truth) only with a renderer."""
    split = BopSplit(root, "test")
    gt, info, cameras = {}, {}, {}
    for im_id, instances in images.items():
        gt[im_id] = [GtInstance(obj_id, T) for obj_id, T, _ in instances]
        info[im_id] = [GtInfo((0, 0, 1, 1), (0, 0, 1, 1), 100, 100, round(100 * v), v) for _, _, v in instances]
        cameras[im_id] = CameraParams(K, depth_scale=0.1)
        bop.write_rgb(split.rgb_path(scene_id, im_id), np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8))
        if renderer is not None:
            objects = [(obj_id, T) for obj_id, T, _ in instances]
            depth = renderer.render(K, WIDTH, HEIGHT, objects, outputs=("depth",)).depth
            bop.write_depth(split.depth_path(scene_id, im_id), depth, depth_scale=0.1)
    bop.write_scene_gt(split.scene_gt_path(scene_id), gt)
    bop.write_scene_gt_info(split.scene_gt_info_path(scene_id), info)
    bop.write_scene_camera(split.scene_camera_path(scene_id), cameras)
    return split


def _result(im_id: int, obj_id: int, T: np.ndarray, score: float = 1.0, scene_id: int = 0) -> PoseResult:
    return PoseResult(scene_id, im_id, obj_id, score, T, time=0.1)


def test_match_greedy_takes_estimates_in_score_order_and_lowest_error_below_threshold() -> None:
    errors = np.array([[0.10, 0.05], [0.02, 0.30]])  # rows: estimates by decreasing score; columns: GT
    np.testing.assert_array_equal(match_greedy(errors, 0.2), [True, True])
    np.testing.assert_array_equal(match_greedy(errors, 0.04), [True, False])
    # The best-scored estimate takes GT 0 even though the second one fits it better: greedy, as BOP.
    np.testing.assert_array_equal(match_greedy(np.array([[0.01, 0.02], [0.005, 0.5]]), 0.1), [True, False])
    np.testing.assert_array_equal(match_greedy(np.zeros((0, 3)), 0.1), [False, False, False])


def test_split_with_depth_gives_hand_computed_recalls(tmp_path: Path, models, renderer) -> None:
    images = {
        0: [(1, _pose(), 1.0)],  # perfect estimate
        1: [(1, _pose(), 1.0)],  # estimate 50 mm off sideways: silhouettes disjoint, 62.5 px, 0.72 d
        2: [(1, _pose(), 1.0)],  # no estimate
        3: [(2, _pose(), 1.0)],  # symmetric box, estimate flipped by its symmetry
    }
    split = _write_split(tmp_path, images, renderer)
    results = [
        _result(0, 1, _pose()),
        _result(1, 1, _pose([0.05, 0.0, 0.0])),
        _result(3, 2, _pose(R=FLIP_Z[:3, :3])),
        _result(9, 1, _pose()),  # an image that is not in the split: ignored
    ]
    report = evaluate_split(split, results, models, renderer=renderer)
    out = report.to_dict()
    assert out["n_instances"] == 4 and out["n_images"] == 4 and out["n_estimates"] == 3
    for key in ("add_s_recall", "ar_mssd", "ar_mspd", "ar_vsd", "ar"):
        assert out[key] == pytest.approx(0.5), key
    cube, box = out["per_object"]["1"], out["per_object"]["2"]
    assert cube["name"] == "cube" and cube["n_instances"] == 3
    for key in ("add_s_recall", "ar_mssd", "ar_mspd", "ar_vsd", "ar"):
        assert cube[key] == pytest.approx(1 / 3), key
        assert box[key] == pytest.approx(1.0), key
    assert out["notes"] == []
    report.write_json(tmp_path / "eval" / "metrics.json")
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == out


def test_split_without_depth_has_null_vsd_with_a_note(tmp_path: Path, models) -> None:
    images = {im_id: [(1, _pose(), 1.0)] for im_id in range(4)}
    split = _write_split(tmp_path, images, renderer=None)
    results = [
        _result(0, 1, _pose()),  # perfect: all thresholds
        # 10 mm deeper: ADD 0.144 d (miss at 0.1 d), MSSD 0.144 d (8 of 10 thresholds), MSPD 0.78 px (10 of 10).
        _result(1, 1, _pose([0.0, 0.0, 0.01])),
        _result(2, 1, _pose([0.05, 0.0, 0.0])),  # 50 mm off: nothing
    ]  # image 3: missing
    report = evaluate_split(split, results, models)
    out = report.to_dict()
    assert out["n_instances"] == 4
    assert out["add_s_recall"] == pytest.approx(1 / 4)
    assert out["ar_mssd"] == pytest.approx((10 + 8) / 40)
    assert out["ar_mspd"] == pytest.approx((10 + 10) / 40)
    assert out["ar_vsd"] is None and out["ar"] is None
    (note,) = out["notes"]
    assert "VSD not computed" in note and "4 of 4 images have no depth" in note


def test_one_perfect_one_50mm_off_one_missing_gives_one_third(tmp_path: Path, models) -> None:
    split = _write_split(tmp_path, {im_id: [(1, _pose(), 1.0)] for im_id in range(3)}, renderer=None)
    results = [_result(0, 1, _pose()), _result(1, 1, _pose([0.0, 0.05, 0.0]))]
    out = evaluate_split(split, results, models, EvalConfig(metrics=("add",))).to_dict()
    assert out["add_s_recall"] == pytest.approx(1 / 3)
    assert out["ar_mssd"] is None and out["ar_mspd"] is None and out["ar"] is None
    assert "metric 'mssd' not requested" in out["notes"]


def test_only_the_best_scored_estimates_count_and_min_visib_drops_instances(models) -> None:
    visible, hidden = _pose([-0.05, 0.0, 0.0]), _pose([0.05, 0.0, 0.0])
    image = EvalImage(0, 0, K, WIDTH, HEIGHT, [GtInstance(1, visible), GtInstance(1, hidden)], [0.9, 0.05])
    results = [_result(0, 1, hidden, score=0.9), _result(0, 1, visible, score=0.5), _result(0, 1, visible, score=0.1)]
    with Evaluator(models, EvalConfig(metrics=("add", "mssd"), min_visib=0.0)) as evaluator:
        both = evaluator.evaluate([image], results)
    assert both.overall.n_instances == 2 and both.overall.add_s_recall == pytest.approx(1.0)
    # By default, BOP's cut (10 % visible): one instance is kept, so only the best-scored estimate (on the
    # hidden one) counts; metrics.json states the cut.
    with Evaluator(models, EvalConfig(metrics=("add", "mssd"))) as evaluator:
        visible_only = evaluator.evaluate([image], results)
    assert visible_only.overall.n_instances == 1 and visible_only.overall.add_s_recall == 0.0
    assert visible_only.to_dict()["min_visib"] == 0.1
    with Evaluator(models, EvalConfig(metrics=("add",), min_visib=0.95)) as evaluator:
        with pytest.raises(ValueError, match="no ground-truth instance"):
            evaluator.evaluate([image], results)


def test_bad_inputs_are_named(tmp_path: Path, models) -> None:
    with pytest.raises(ValueError, match="metrics must be a non-empty subset"):
        EvalConfig(metrics=("add", "auc"))
    image = EvalImage(0, 0, K, WIDTH, HEIGHT, [GtInstance(7, _pose())], None)
    with Evaluator(models, EvalConfig(metrics=("add",), min_visib=0.0)) as evaluator:
        with pytest.raises(ValueError, match=r"obj_id 7, but the models are \[1, 2\]"):
            evaluator.evaluate([image], [])
    with Evaluator(models, EvalConfig(metrics=("add",), min_visib=0.5)) as evaluator:
        with pytest.raises(ValueError, match="needs visib_fract"):
            evaluator.evaluate([EvalImage(0, 0, K, WIDTH, HEIGHT, [GtInstance(1, _pose())], None)], [])
    with Evaluator(models, EvalConfig(metrics=("vsd",), min_visib=0.0)) as evaluator:
        small_depth = EvalImage(0, 0, K, WIDTH, HEIGHT, [GtInstance(1, _pose())], None, np.zeros((48, 64)))
        with pytest.raises(ValueError, match=r"depth has shape \(48, 64\), expected \(480, 640\)"):
            evaluator.evaluate([small_depth], [])
    with pytest.raises(FileNotFoundError, match="split folder not found"):
        evaluate_split(BopSplit(tmp_path, "val"), [], models)


def _run_cli(argv: list[str]) -> int:
    """Run `sixdpose eval` through its own parser registration (independent of the other subcommands)."""
    parser = argparse.ArgumentParser(prog="sixdpose")
    eval_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_metrics_json_and_prints_the_table(tmp_path: Path, models, capsys, caplog) -> None:
    cube = models[1]
    models_dir = tmp_path / "ds" / "models"
    models_dir.mkdir(parents=True)
    write_ply(models_dir / "obj_000001.ply", cube.vertices * 1000.0, cube.faces, cube.normals)
    box_mm = np.concatenate([cube.bbox_min, cube.bbox_size]) * 1000.0
    box_keys = ("min_x", "min_y", "min_z", "size_x", "size_y", "size_z")
    info = {"diameter": cube.diameter * 1000.0, **dict(zip(box_keys, box_mm))}
    bop.write_models_info(models_dir / "models_info.json", {1: info})
    (models_dir / "models_names.json").write_text('{"1": "cube"}')
    split = _write_split(tmp_path / "ds", {im_id: [(1, _pose(), 1.0)] for im_id in range(3)}, renderer=None)
    results_csv = tmp_path / "results.csv"
    bop.write_results_csv(results_csv, [_result(0, 1, _pose()), _result(1, 1, _pose([0.05, 0.0, 0.0]))])
    out_dir = tmp_path / "eval"
    argv = ["eval", "--dataset", str(split.root), "--split", "test", "--results", str(results_csv)]
    argv += ["--out", str(out_dir)]
    assert _run_cli(argv) == 0
    out = json.loads((out_dir / "metrics.json").read_text())
    assert out["n_instances"] == 3 and out["add_s_recall"] == pytest.approx(1 / 3)
    assert out["ar_vsd"] is None and out["ar"] is None and "VSD not computed" in out["notes"][0]
    table = capsys.readouterr().out
    assert "1 cube" in table and "0.333" in table  # fractions, as demo and replay print them
    # An earlier metrics.json is kept unless --overwrite says otherwise, as replay does.
    assert _run_cli(argv) == 1
    assert "pass --overwrite" in caplog.text
    assert _run_cli([*argv, "--overwrite", "--min-visib", "2"]) == 1
    assert _run_cli([*argv[:-1], str(tmp_path / "eval2"), "--results", str(tmp_path / "none.csv")]) == 1
    # An object id without a model is refused; an empty results file scores zeros with a warning.
    bop.write_results_csv(results_csv, [_result(0, 1, _pose()), _result(1, 7, _pose())])
    assert _run_cli([*argv, "--overwrite"]) == 1
    assert "object ids [7], which have no model (models: [1])" in caplog.text
    bop.write_results_csv(results_csv, [])
    assert _run_cli([*argv, "--overwrite"]) == 0
    assert "holds no estimates: every ground-truth instance scores as a miss" in caplog.text
    assert json.loads((out_dir / "metrics.json").read_text())["add_s_recall"] == 0.0

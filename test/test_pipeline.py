"""The pipeline (detector + estimator, no ROS) and its evaluation mode on a freshly synthesised split."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from ros2_sixdpose.cli import eval as eval_cli
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.data.bop import BopSplit, read_results_csv
from ros2_sixdpose.detection.base import DetectorConfig, ImageKey
from ros2_sixdpose.detection.factory import make_detector
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.estimation.factory import EstimatorConfig, make_estimator
from ros2_sixdpose.estimation.nocs_estimator import NocsEstimatorConfig
from ros2_sixdpose.evaluation.scoring import EvalConfig, evaluate_split
from ros2_sixdpose.evaluation.split_run import METRICS_FILE, RESULTS_FILE, evaluate_pipeline, split_frames
from ros2_sixdpose.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
PIX2PIX = ROOT / "weights" / "nocs_pix2pix.pt"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def split(fresh_split) -> BopSplit:
    """Two fresh scenes of three 640x480 images (seed 9100, never used in training)."""
    return fresh_split(9100)


def _estimator_config() -> EstimatorConfig:
    return EstimatorConfig(nocs=NocsEstimatorConfig(weights=str(PIX2PIX), models_dir=str(ROOT / "assets" / "models")))


def test_split_frames_carry_the_split_cameras(split):
    frames = list(split_frames(split))
    assert len(frames) == 6
    scene = split.read_scene(1)
    frame = next(f for f in frames if f.key == ImageKey(1, 2))
    np.testing.assert_array_equal(frame.camera.K, scene.camera[2].K)
    assert frame.rgb.shape == (480, 640, 3) and (frame.camera.width, frame.camera.height) == (640, 480)


def test_process_gives_one_estimate_per_detection(split):
    oracle = make_detector(DetectorConfig(type="oracle", dataset=str(split.root), split=split.split))
    pipeline = Pipeline(oracle, make_estimator(_estimator_config()))
    frame = next(iter(split_frames(split)))
    out = pipeline.process(frame)
    assert len(out.detections) >= 1 and len(out.estimates) == len(out.detections)
    assert [e.object_id for e in out.estimates] == [d.object_id for d in out.detections]
    assert all(e.method == "nocs_pix2pix" and (e.found or e.reason) for e in out.estimates)
    assert out.seconds["total"] >= out.seconds["detect"] + out.seconds["estimate"] - 1e-9


def test_evaluate_pipeline_writes_results_and_the_evaluators_metrics(split, tmp_path):
    models = load_models(split.models_dir)
    config = EvalConfig(metrics=("add", "mssd", "mspd"), min_visib=0.5)
    report = evaluate_pipeline(DetectorConfig(type="oracle"), _estimator_config(), split, models, tmp_path, config)
    metrics = json.loads((tmp_path / METRICS_FILE).read_text())
    for key in ("n_instances", "add_s_recall", "ar_mssd", "ar_mspd", "ar_vsd", "ar", "per_object"):
        assert key in metrics
    assert metrics["ar_vsd"] is None and metrics["n_instances"] == report.overall.n_instances > 0
    # The CSV scored again by the evaluator gives the same numbers: the pipeline mode is the evaluator's.
    results = read_results_csv(tmp_path / RESULTS_FILE)
    assert len(results) == metrics["n_estimates"] > 0
    again = evaluate_split(split, results, models, config)
    assert again.overall == report.overall
    # BOP's time column is the image's time, the same for every estimate of an image.
    by_image: dict[tuple[int, int], set[float]] = {}
    for r in results:
        by_image.setdefault((r.scene_id, r.im_id), set()).add(r.time)
    assert all(len(times) == 1 and min(times) > 0 for times in by_image.values())


def test_pose_estimate_without_a_pose_needs_a_reason():
    assert PoseEstimate.none(3, "nocs_bbdm", "empty mask").score == 0.0
    with pytest.raises(ValueError, match="reason"):
        PoseEstimate(3, None, 0.0, "nocs_bbdm")
    with pytest.raises(ValueError, match="score"):
        PoseEstimate(3, np.eye(4), 1.5, "nocs_bbdm")


def test_eval_cli_pipeline_mode_scores_what_it_ran(split, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="sixdpose")
    eval_cli.register(parser.add_subparsers(dest="command", required=True))
    estimator_yaml = tmp_path / "estimator.yaml"
    estimator_yaml.write_text(f"type: nocs\nnocs:\n  weights: {PIX2PIX}\n  models_dir: {ROOT / 'assets' / 'models'}\n")
    argv = ["eval", "--dataset", str(split.root), "--split", "test", "--out", str(tmp_path / "eval"),
            "--metrics", "add,mssd,mspd", "--min-visib", "0.5"]
    args = parser.parse_args([*argv, "--pipeline", "--oracle", "--estimator-config", str(estimator_yaml)])
    assert args.func(args) == 0
    metrics = json.loads((tmp_path / "eval" / METRICS_FILE).read_text())
    results = read_results_csv(tmp_path / "eval" / RESULTS_FILE)
    assert len(results) == metrics["n_estimates"] > 0
    again = evaluate_split(split, results, load_models(split.models_dir), EvalConfig(metrics=("add", "mssd", "mspd"), min_visib=0.5))
    assert metrics["add_s_recall"] == pytest.approx(again.overall.add_s_recall)
    assert metrics["n_instances"] == again.overall.n_instances > 0
    assert "all" in capsys.readouterr().out
    # --oracle only means something in pipeline mode, and pipeline mode makes its own results.
    args = parser.parse_args([*argv, "--oracle"])
    assert args.func(args) == 2
    args = parser.parse_args([*argv, "--pipeline", "--results", str(tmp_path / "eval" / RESULTS_FILE)])
    assert args.func(args) == 2

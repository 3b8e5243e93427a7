"""The detection stage: shipped weights on a fresh scene, the oracle, instance decoding, matching, bad input."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_sixdpose.cli import main
from ros2_sixdpose.config import load_config
from ros2_sixdpose.data.bop import BopSplit, read_mask, read_scene_gt_info
from ros2_sixdpose.data.views import FrameDataset
from ros2_sixdpose.detection.base import Detection, DetectorConfig, ImageKey
from ros2_sixdpose.detection.evaluate import EvalFrame, GtMask, evaluate, iter_frames, match_frame
from ros2_sixdpose.detection.factory import make_detector
from ros2_sixdpose.detection.misses import instance_outcomes, summarise
from ros2_sixdpose.detection.oracle import OracleDetector
from ros2_sixdpose.detection.segmentation import (
    NetConfig, SegmentationDetector, SegNet, decode_instances, export_weights, load_weights,
)
from ros2_sixdpose.detection.train import CachedFrames, DetectorTask, DetectorTrainConfig, encode_targets, start_from
from ros2_sixdpose.train.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "assets" / "models"
FRESH_SEED = 4242  # never used for training, validation or test data
# The shipped weights (10k steps + 4k fine-tuning) with the shipped thresholds measured recall 0.78, precision
# 0.95, mask IoU 0.88 on the held-out split (seed 1000, 621 instances with visib_fract >= 0.3), short of the
# 0.90 targets (docs/detector_misses.md); these bounds guard that level with room for a small scene's spread
# (this one: recall 12/21, precision 12/14, mask IoU 0.93).
MIN_RECALL = 0.5
MIN_PRECISION = 0.8


@pytest.fixture(scope="module")
def scene(fresh_split) -> BopSplit:
    """A fresh synthetic split: 2 scenes x 3 images, 640x480."""
    return fresh_split(FRESH_SEED)


def _config(**overrides) -> DetectorConfig:
    """The shipped detector configuration with paths made absolute."""
    config = load_config(DetectorConfig, ROOT / "config" / "detector.yaml", overrides)
    config.weights, config.models_dir = str(ROOT / config.weights), str(ROOT / config.models_dir)
    return config


def test_code_defaults_equal_the_shipped_yaml():
    assert load_config(DetectorConfig, ROOT / "config" / "detector.yaml") == DetectorConfig()


def test_shipped_weights_find_the_objects_of_a_fresh_scene(scene):
    detector = make_detector(_config())
    metrics = evaluate(detector, iter_frames(scene), min_visib=0.3, iou_threshold=0.5)
    assert metrics.overall["n_gt"] >= 10
    assert metrics.overall["recall"] >= MIN_RECALL, metrics.overall
    assert metrics.overall["precision"] >= MIN_PRECISION, metrics.overall
    assert metrics.overall["mean_mask_iou"] >= 0.75, metrics.overall


def test_oracle_returns_exactly_the_ground_truth_masks(scene):
    detector = make_detector(_config(type="oracle", dataset=str(scene.root), split=scene.split))
    assert isinstance(detector, OracleDetector)
    scene_id = scene.scene_ids()[1]
    gt = scene.read_scene(scene_id).gt
    info = read_scene_gt_info(scene.scene_gt_info_path(scene_id))
    for im_id, instances in gt.items():
        rgb = np.zeros((480, 640, 3), np.uint8)
        detections = detector.detect(rgb, ImageKey(scene_id, im_id))
        visible = [i for i, inf in enumerate(info[im_id]) if inf.px_count_visib > 0]
        assert [d.object_id for d in detections] == [instances[i].obj_id for i in visible]
        for det, index in zip(detections, visible):
            np.testing.assert_array_equal(det.mask, read_mask(scene.mask_visib_path(scene_id, im_id, index)))
            x, y, w, h = info[im_id][index].bbox_visib
            np.testing.assert_array_equal(det.box, [x, y, x + w, y + h])
            assert det.score == 1.0
    with pytest.raises(ValueError, match="key"):
        detector.detect(np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(ValueError, match="320x240"):
        detector.detect(np.zeros((240, 320, 3), np.uint8), ImageKey(scene_id, 0))


def _two_touching_squares() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outputs for a 128x128 image holding two touching squares of class 1, with one heatmap peak each."""
    logits = np.zeros((3, 32, 32), np.float32)  # background, object 7, object 9; stride 2 of a 64x64 input
    logits[0] = 10.0
    logits[1, 8:24, 4:28] = 20.0  # full-image pixels rows 32..95, columns 16..111
    heatmap = np.zeros((16, 16), np.float32)
    heatmap[8, 5] = heatmap[8, 11] = 0.9
    offsets = np.zeros((2, 16, 16), np.float32)
    rows, cols = np.mgrid[0:16, 0:16]
    left = cols < 8
    offsets[0] = np.where(left, 5 - cols, 11 - cols)
    offsets[1] = 8 - rows
    return logits, heatmap, offsets


def test_decoding_splits_two_touching_instances_of_one_object():
    logits, heatmap, offsets = _two_touching_squares()
    config = DetectorConfig(score_threshold=0.5, min_area=16)
    detections = decode_instances(logits, heatmap, offsets, (128, 128), [7, 9], config)
    assert [d.object_id for d in detections] == [7, 7]
    boxes = sorted(d.box.tolist() for d in detections)
    assert boxes == [[16, 32, 64, 96], [64, 32, 112, 96]]
    for det in detections:
        x0, y0, x1, y1 = det.box.astype(int)
        # Bilinear upsampling of the class logits rounds each square's two free corners by one pixel.
        assert det.mask.sum() == det.mask[y0:y1, x0:x1].sum() == (x1 - x0) * (y1 - y0) - 2
        assert det.score == pytest.approx(0.9, abs=1e-4)  # peak height x class probability (~1)


def test_small_instances_score_less():
    logits, heatmap, offsets = _two_touching_squares()
    # Each square is 48 x 64 = 3072 full-image pixels: a quarter of full_score_area halves its score.
    config = DetectorConfig(score_threshold=0.0, full_score_area=4 * 3072)
    detections = decode_instances(logits, heatmap, offsets, (128, 128), [7, 9], config)
    assert [d.score for d in detections] == pytest.approx([0.45, 0.45], abs=1e-4)
    assert [d.score for d in decode_instances(logits, heatmap, offsets, (128, 128), [7, 9], DetectorConfig(
        score_threshold=0.0, full_score_area=3072))] == pytest.approx([0.9, 0.9], abs=1e-4)


def test_decoding_keeps_an_object_whose_centre_was_missed():
    logits, heatmap, offsets = _two_touching_squares()
    logits[1, 8:24, 16:28], logits[2, 8:24, 16:28] = 0.0, 20.0  # the right square is object 9 ...
    heatmap[8, 11] = 0.0  # ... whose peak is missing: its pixels join the left centre but stay object 9
    detections = decode_instances(logits, heatmap, offsets, (128, 128), [7, 9], DetectorConfig())
    assert sorted((d.object_id, d.box.tolist()) for d in detections) == [(7, [16, 32, 64, 96]), (9, [64, 32, 112, 96])]


def test_miss_causes_of_hand_built_outputs():
    """Each cause of `detection.misses` on the two-squares outputs, with ground truth placed to provoke it."""
    def box_mask(x0, x1, y0, y1):
        mask = np.zeros((128, 128), bool)
        mask[y0:y1, x0:x1] = True
        return mask

    left, right = box_mask(16, 64, 32, 96), box_mask(64, 112, 32, 96)
    frame = EvalFrame(ImageKey(0, 0), np.zeros((128, 128, 3), np.uint8), [
        GtMask(7, left, 1.0),  # the left square: found
        GtMask(7, box_mask(0, 16, 0, 16), 1.0),  # where the class map says background
        GtMask(9, right, 0.8),  # where the class map says object 7
    ])
    outputs = _two_touching_squares()
    outcomes = instance_outcomes(frame, *outputs, [7, 9], DetectorConfig(min_area=16))
    assert [o.cause for o in outcomes] == ["found", "background", "other object"]
    assert [(o.area, o.box_size, o.border) for o in outcomes] == [(3072, 55.4, 16), (256, 16.0, 0), (3072, 55.4, 16)]
    assert [(o.same_object, o.touches_same, o.touches_other) for o in outcomes] == [
        (True, False, True), (True, False, False), (False, False, True)]
    # Both peaks at 0.9 score 0.9: a threshold above that drops instances the decoding found.
    high = instance_outcomes(frame, *outputs, [7, 9], DetectorConfig(min_area=16, score_threshold=0.95))
    assert high[0].cause == "score"
    # Without the right square's peak its pixels join the left centre: one instance covers both squares, with
    # mask IoU just under 0.5 with each (about 3071 / 6142): both are merged misses.
    logits, heatmap, offsets = outputs
    heatmap[8, 11] = 0.0
    frame.gt[2] = GtMask(7, right, 0.8)
    merged = instance_outcomes(frame, logits, heatmap, offsets, [7, 9], DetectorConfig(min_area=16))
    assert [o.cause for o in merged] == ["merged", "background", "merged"]
    summary = summarise(merged, {7: "duck"}, min_visib=0.9)
    assert summary["overall"] == {"n": 2, "recall": 0.0, "found": 0, "background": 1, "other object": 0, "merged": 1,
                                  "score": 0, "no peak": 0, "mask IoU": 0}
    assert summary["not_scored"] == {"n": 1, "found": 0}  # the right square, visib_fract 0.8
    assert summary["groups"]["object"]["duck"]["n"] == 2


def test_training_targets_decode_back_to_the_ground_truth(scene):
    """Perfect network outputs (the training targets) give every instance back with high mask IoU."""
    frames = FrameDataset(scene, size=(320, 240))
    object_ids = list(range(1, 9))
    lookup = np.zeros(9, np.int64)
    lookup[object_ids] = np.arange(1, 9)
    config = DetectorConfig(score_threshold=0.1, min_area=1)
    detectors_frames = list(iter_frames(scene))
    ious, counts = [], []
    for index, frame in enumerate(detectors_frames):
        sample = frames[index]
        classes = torch.from_numpy(lookup[sample["obj_map"].numpy()])[None]
        targets = encode_targets(classes, sample["instance_map"][None], 9, 2.0, 16)
        detections = decode_instances(
            torch.log(targets.classes[0].clamp_min(1e-4)).numpy(), targets.heatmap[0, 0].numpy(),
            targets.offsets[0].numpy(), (480, 640), object_ids, config,
        )
        for obj in match_frame(detections, frame.gt, 0.3, 0.5).values():
            counts.append((obj.tp, obj.fp, obj.n_gt))
            ious.append(obj.iou_sum)
    tp, fp, n_gt = np.sum(counts, axis=0)
    assert tp == n_gt and fp == 0
    assert sum(ious) / tp > 0.93  # the 2x downscaled input and stride-2 class grid bound the mask IoU


def test_matching_counts_by_hand():
    def square(x0, x1):
        mask = np.zeros((10, 10), bool)
        mask[0:4, x0:x1] = True
        return mask

    gt = [GtMask(1, square(0, 4), 0.9), GtMask(1, square(5, 9), 0.1), GtMask(2, square(0, 4), 0.8)]
    detections = [
        Detection(1, (0, 0, 3, 4), square(0, 3), 0.9),  # IoU 12/16 = 0.75 with gt 0: true positive
        Detection(1, (0, 0, 4, 4), square(0, 4), 0.8),  # gt 0 already taken: false positive
        Detection(1, (5, 0, 9, 4), square(5, 9), 0.7),  # matches the barely visible gt 1: not counted
        Detection(2, (6, 0, 8, 4), square(6, 8), 0.6),  # no overlap with object 2: false positive
    ]
    counts = match_frame(detections, gt, min_visib=0.3, iou_threshold=0.5)
    assert (counts[1].tp, counts[1].fp, counts[1].n_gt, counts[1].iou_sum) == (1, 1, 1, 0.75)
    assert (counts[2].tp, counts[2].fp, counts[2].n_gt) == (0, 1, 1)


def _net_weights(tmp_path: Path, object_ids: list[int]) -> Path:
    """A weights file of an untrained network for `object_ids`."""
    path = tmp_path / "detector.pt"
    net = SegNet(NetConfig(num_classes=len(object_ids) + 1, widths=(8, 8, 16, 16)))
    torch.save(export_weights(net, object_ids), path)
    return path


def test_missing_corrupt_or_mismatched_weights_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_weights(tmp_path / "nowhere.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(ValueError, match="garbage.pt"):
        load_weights(garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(_net_weights(tmp_path, [1, 2]).read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated.pt"):
        load_weights(truncated)
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(ValueError, match="other.pt.*format"):
        load_weights(other)
    two_objects = _net_weights(tmp_path, [1, 2])
    with pytest.raises(ValueError, match=r"detector.pt: trained for objects \[1, 2\]"):
        SegmentationDetector.from_config(DetectorConfig(), two_objects, MODELS)


def test_bad_images_get_clear_errors(tmp_path):
    object_ids = list(range(1, 9))
    detector = SegmentationDetector.from_config(DetectorConfig(), _net_weights(tmp_path, object_ids), MODELS)
    assert isinstance(detector.detect(np.zeros((48, 64, 3), np.uint8)), list)
    bad = {
        "uint8": np.zeros((480, 640, 3), np.float32),
        r"\(H, W, 3\)": np.zeros((480, 640), np.uint8),
        r"\(480, 640, 4\)": np.zeros((480, 640, 4), np.uint8),
        "empty": np.zeros((0, 640, 3), np.uint8),
        "numpy array": [[0, 0, 0]],
    }
    for message, image in bad.items():
        with pytest.raises(ValueError, match=message):
            detector.detect(image)


@pytest.mark.slow
def test_training_resumes_and_writes_loadable_weights(scene, tmp_path):
    object_ids = list(range(1, 9))
    config = DetectorTrainConfig(widths=(8, 8, 16, 16), batch_size=2, crop=(64, 64))
    frames = CachedFrames(scene, (160, 128), object_ids)
    loader = torch.utils.data.DataLoader(frames, batch_size=2, shuffle=True, drop_last=True)
    loop = TrainConfig(steps=3, warmup_steps=1, eval_every=3, checkpoint_every=1, threads=2)
    out = tmp_path / "detector.pt"

    def task():
        return DetectorTask(object_ids, config, DetectorConfig(), list(iter_frames(scene, 2)), seed=0)

    train(task(), loader, loop, out, until=2)
    result = train(task(), loader, loop, out)
    assert result.history["step"] == [1, 2, 3]
    assert set(result.final_metrics) == {"recall", "precision", "mean_mask_iou"}
    assert all(np.isfinite(list(losses.values())).all() for losses in result.history["losses"])
    net, ids = load_weights(out)
    assert ids == object_ids and net.config.widths == (8, 8, 16, 16)


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    weights = _net_weights(tmp_path, [1, 2])
    net = SegNet(NetConfig(num_classes=3, widths=(8, 8, 16, 16)))
    start_from(net, [1, 2], weights)
    for name, value in load_weights(weights)[0].state_dict().items():
        torch.testing.assert_close(net.state_dict()[name], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"trained for objects \[1, 2\]"):
        start_from(SegNet(NetConfig(num_classes=4, widths=(8, 8, 16, 16))), [1, 2, 3], weights)


def test_eval_command_writes_metrics_json(scene, tmp_path):
    config = tmp_path / "oracle.yaml"
    config.write_text(f"type: oracle\ndataset: {scene.root}\nsplit: {scene.split}\n")
    assert main(["eval", "detector", "--dataset", str(scene.root), "--split", scene.split, "--out",
                 str(tmp_path / "eval"), "--config", str(config)]) == 0
    report = json.loads((tmp_path / "eval" / "detector_metrics.json").read_text())
    assert report["overall"]["recall"] == report["overall"]["precision"] == report["overall"]["mean_mask_iou"] == 1.0
    assert report["n_images"] == 6 and report["ms_per_frame"]["median"] > 0
    assert {summary["name"] for summary in report["per_object"].values()} <= {
        "duck", "bunny", "teddy", "mug", "lego", "jenga", "domino", "torus"}


def _disc_image(rng):
    """A 120x160 image of a red, lightly textured disc (radius 30 px) on grey clutter, and the disc's mask."""
    rows, cols = np.mgrid[:120, :160]
    disc = (rows - 60) ** 2 + (cols - 80) ** 2 <= 30 ** 2
    rgb = rng.integers(70, 160, (120, 160, 3)).astype(np.uint8)
    rgb[disc] = np.clip(np.array([200, 40, 40]) + rng.integers(-20, 20, (disc.sum(), 3)), 0, 255).astype(np.uint8)
    return rgb, disc


def test_grabcut_moves_a_coarse_boundary_onto_the_object():
    from ros2_sixdpose.detection.mask_refinement import grabcut_mask

    rng = np.random.default_rng(0)
    rgb, disc = _disc_image(rng)
    # The detector's kind of error: the mask off by a few pixels (here shifted 3 px right and down, blocky).
    coarse = np.roll(disc, (3, 3), axis=(0, 1))
    coarse = np.kron(coarse[::4, ::4], np.ones((4, 4), bool))[:120, :160]

    def iou(mask):
        return (mask & disc).sum() / (mask | disc).sum()

    refined = grabcut_mask(rgb, coarse, np.zeros_like(disc), band=4, iterations=3)
    # Measured 0.76 -> 0.955.
    assert iou(coarse) < 0.8 and iou(refined) > 0.93
    # Pixels another detection claims stay background, and a tiny mask is left as it is.
    others = np.zeros_like(disc)
    others[:, 100:] = True
    assert not (grabcut_mask(rgb, coarse, others, band=4, iterations=3) & others & ~coarse).any()
    tiny = np.zeros_like(disc)
    tiny[60:63, 80:83] = True
    assert grabcut_mask(rgb, tiny, np.zeros_like(disc), band=4, iterations=3) is tiny


def test_grabcut_sharpens_the_learned_detectors_masks_on_a_fresh_scene(scene):
    plain = evaluate(make_detector(_config(mask_refinement="none")), iter_frames(scene), min_visib=0.3,
                     iou_threshold=0.5)
    sharp = evaluate(make_detector(_config()), iter_frames(scene), min_visib=0.3, iou_threshold=0.5)
    print("mean mask IoU", plain.overall["mean_mask_iou"], "->", sharp.overall["mean_mask_iou"])
    # Measured 0.93 -> 0.95 on this scene (held-out validation median 0.91 -> 0.96).
    assert sharp.overall["mean_mask_iou"] >= plain.overall["mean_mask_iou"] + 0.01
    assert sharp.overall["recall"] >= plain.overall["recall"]

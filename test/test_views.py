"""Tests of the training views: crop geometry against NOCS and masks, jitter determinism, full frames, bad input."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ros2_sixdpose.core.camera import CropTransform, PinholeCamera, square_box
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.data.bop import BopSplit, read_mask
from ros2_sixdpose.data.camera_paths import CameraConfig
from ros2_sixdpose.data.objectset import build_object_set
from ros2_sixdpose.data.synth import SceneConfig, SynthConfig, generate_split
from ros2_sixdpose.data.views import CropDataset, FrameDataset, InstanceIndex, ViewConfig

WIDTH, HEIGHT = 320, 240


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> BopSplit:
    """A tiny synthetic split: 2 scenes x 3 images at 320x240 with 3-5 objects each."""
    root = tmp_path_factory.mktemp("views")
    build_object_set(root / "object_set")
    config = SynthConfig(
        camera=CameraConfig(width=WIDTH, height=HEIGHT, fx=300.0, fy=300.0),
        scene=SceneConfig(objects_per_scene=(3, 5), texture_size=128),
    )
    generate_split(root / "data", "train", 2, 3, seed=11, config=config, models_dir=root / "object_set",
                   progress=False)
    return BopSplit(root / "data", "train")


@pytest.fixture(scope="module")
def models(split):
    return load_models(split.models_dir)


def _project(K: np.ndarray, T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) of model points (N, 3) m under pose T (4, 4) and intrinsics K (3, 3)."""
    return PinholeCamera(K, 1, 1).project(points @ T[:3, :3].T + T[:3, 3])


def test_index_filters_by_visibility(split):
    info = {}
    for scene_id in split.scene_ids():
        info[scene_id] = json.loads(split.scene_gt_info_path(scene_id).read_text())
    fractions = [e["visib_fract"] for scene in info.values() for entries in scene.values() for e in entries]
    assert len(InstanceIndex.from_split(split)) == len(fractions) >= 6
    dataset = CropDataset(split, ViewConfig(min_visib_fract=0.5))
    assert len(dataset) == sum(f >= 0.5 for f in fractions) > 0
    assert np.all(dataset.index.visib_fract >= 0.5)
    only = CropDataset(split, ViewConfig(min_visib_fract=0.0, obj_ids=(int(dataset.index.obj_id[0]),)))
    assert set(only.index.obj_id.tolist()) == {int(dataset.index.obj_id[0])}


def test_nocs_pixels_project_back_onto_themselves(split, models):
    """Every valid NOCS pixel, lifted to its model point and projected with K_crop and T_cam_obj, lands on itself.

    The crop samples NOCS with nearest-neighbour, so a crop pixel holds the surface point of the nearest
    full-image pixel centre: up to sqrt(2) / 2 full-image pixels away, i.e. sqrt(2) / 2 x scale crop pixels.
    """
    dataset = CropDataset(split, ViewConfig(size=64, min_visib_fract=0.2), seed=5)
    magnifying = 0
    for item in range(len(dataset)):
        sample = dataset[item]
        mask = sample["mask"][0].numpy() > 0
        assert mask.sum() > 20
        v, u = np.nonzero(mask)
        model = models[int(sample["obj_id"])]
        nocs = sample["nocs"].numpy().transpose(1, 2, 0)
        assert np.all(nocs[~mask] == 0)
        points = model.nocs_to_points(nocs[mask].astype(np.float64))
        uv = _project(sample["K_crop"].numpy(), sample["T_cam_obj"].numpy(), points)
        error = np.linalg.norm(uv - np.stack([u, v], axis=1), axis=1)
        box = sample["box"].numpy()
        scale = 64 / (box[2] - box[0])
        assert error.max() <= np.sqrt(0.5) * max(scale, 1.0) + 0.02, (item, error.max(), scale)
        if scale <= np.sqrt(2.0):
            assert error.max() <= 1.0
        else:
            magnifying += 1
        assert np.median(error) < 0.5 * max(scale, 1.0)
    assert magnifying < len(dataset)


def test_crop_intrinsics_follow_the_crop(split, models):
    """The model centre projects through K_crop where the full-image K + crop map put it; the mask lies
    inside the projected model bounding box."""
    dataset = CropDataset(split, ViewConfig(size=48, min_visib_fract=0.2), seed=2)
    for item in range(len(dataset)):
        sample = dataset[item]
        index = dataset.index
        T = sample["T_cam_obj"].numpy()
        model = models[int(sample["obj_id"])]
        crop = CropTransform(tuple(sample["box"].numpy()), (48, 48))
        centre = (model.bbox_min + model.bbox_size / 2)[None]
        np.testing.assert_allclose(
            _project(sample["K_crop"].numpy(), T, centre), crop.to_crop(_project(index.K[item], T, centre)), atol=1e-9
        )
        corners = model.bbox_min + model.bbox_size * np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T
        uv = _project(sample["K_crop"].numpy(), T, corners)
        v, u = np.nonzero(sample["mask"][0].numpy())
        assert u.min() >= uv[:, 0].min() - 1 and u.max() <= uv[:, 0].max() + 1
        assert v.min() >= uv[:, 1].min() - 1 and v.max() <= uv[:, 1].max() + 1


def test_jitter_is_deterministic_and_changes_with_epoch(split):
    config = ViewConfig(size=32, scale_jitter=0.2, shift_jitter=0.1)
    a, b = CropDataset(split, config, seed=3), CropDataset(split, config, seed=3)
    assert torch.equal(a[1]["box"], b[1]["box"]) and torch.equal(a[1]["rgb"], b[1]["rgb"])
    assert not torch.equal(a[1]["box"], CropDataset(split, config, seed=4)[1]["box"])
    b.set_epoch(1)
    assert not torch.equal(a[1]["box"], b[1]["box"])
    still = CropDataset(split, ViewConfig(size=32, scale_jitter=0.0, shift_jitter=0.0))
    expected = square_box(still.index.bbox_visib[0], 1.2, 16.0)
    np.testing.assert_allclose(still[0]["box"].numpy(), expected)


def test_jitter_stays_within_configured_range(split):
    config = ViewConfig(size=32, scale_jitter=0.2, shift_jitter=0.1)
    dataset = CropDataset(split, config, seed=0)
    for item in range(len(dataset)):
        square = square_box(dataset.index.bbox_visib[item], config.pad_scale, config.min_box_px)
        box = dataset.crop_transform(item).box
        side, base = box[2] - box[0], square[2] - square[0]
        assert 0.8 * base - 1e-9 <= side <= 1.2 * base + 1e-9
        shift = (np.add(box[:2], box[2:]) - (square[:2] + square[2:])) / 2
        assert np.all(np.abs(shift) <= 0.1 * side + 1e-9)


def test_samples_batch_with_default_collate(split):
    dataset = CropDataset(split, ViewConfig(size=32, min_visib_fract=0.0))
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["rgb"].shape == (4, 3, 32, 32) and batch["rgb"].dtype == torch.float32
    assert batch["nocs"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    assert batch["T_cam_obj"].shape == (4, 4, 4) and batch["K_crop"].shape == (4, 3, 3)
    assert batch["obj_id"].dtype == torch.int64 and batch["box"].shape == (4, 4)
    assert 0.0 <= float(batch["rgb"].min()) and float(batch["rgb"].max()) <= 1.0
    assert float(batch["rgb"].std()) > 0.02


def test_frames_label_every_visible_instance(split):
    full = FrameDataset(split)
    assert len(full) == 6
    sample = full[2]
    scene_id, im_id = int(sample["scene_id"]), int(sample["im_id"])
    gt = json.loads(split.scene_gt_path(scene_id).read_text())[str(im_id)]
    assert sample["rgb"].shape == (3, HEIGHT, WIDTH)
    for gt_index, entry in enumerate(gt):
        visible = read_mask(split.mask_visib_path(scene_id, im_id, gt_index))
        assert np.all(sample["instance_map"].numpy()[visible] == gt_index + 1)
        assert np.all(sample["obj_map"].numpy()[visible] == entry["obj_id"])
    assert (sample["instance_map"] == 0).sum() > 0 and (sample["obj_map"] > 0).sum() > 100


def test_resized_frames_scale_intrinsics(split):
    full, half = FrameDataset(split)[0], FrameDataset(split, size=(WIDTH // 2, HEIGHT // 2))[0]
    assert half["rgb"].shape == (3, HEIGHT // 2, WIDTH // 2) and half["obj_map"].shape == (HEIGHT // 2, WIDTH // 2)
    K, K_half = full["K"].numpy(), half["K"].numpy()
    np.testing.assert_allclose(K_half[:2, :2], K[:2, :2] / 2)
    np.testing.assert_allclose(K_half[:2, 2], (K[:2, 2] + 0.5) / 2 - 0.5)
    assert set(half["obj_map"].unique().tolist()) <= set(full["obj_map"].unique().tolist())


def test_bad_input_raises(split, tmp_path):
    with pytest.raises(ValueError, match="box_source"):
        ViewConfig(box_source="mask")
    with pytest.raises(ValueError, match="size"):
        ViewConfig(size=0)
    with pytest.raises(ValueError, match="size"):
        FrameDataset(split, size=(0, 10))
    copy = BopSplit(tmp_path, "train")
    shutil.copytree(split.scene_dir(0), copy.scene_dir(0))
    copy.scene_gt_info_path(0).unlink()
    with pytest.raises(FileNotFoundError, match="scene_gt_info.json"):
        CropDataset(copy)
    dataset = CropDataset(split)
    with pytest.raises(IndexError):
        dataset[len(dataset)]

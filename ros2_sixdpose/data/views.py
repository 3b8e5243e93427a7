"""Training views of a BOP split, shared by every network: object-centred crops and whole (resized) frames.

`CropDataset` gives one sample per ground-truth instance that is visible enough: a square box around the
instance's bbox_visib (or bbox_obj) with random jitter of centre and scale, cut out and resized to a fixed
size by `core.camera.CropTransform`, with the RGB, the NOCS map and visible mask of that instance, its pose
and the crop's intrinsics. `FrameDataset` gives whole images (optionally resized) with per-pixel object-id
and instance maps, for the detector. Both index the split from its JSON files only and read images lazily
with OpenCV; random jitter is drawn from (seed, epoch, index), so a sample does not depend on the order or
the worker it is loaded in. Samples are dicts of tensors, so torch's default collate batches them.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ros2_sixdpose.core.camera import CropTransform, square_box
from ros2_sixdpose.data.bop import BopSplit, read_mask, read_rgb
from ros2_sixdpose.data.nocs_maps import read_nocs

logger = logging.getLogger(__name__)

__all__ = ["CropDataset", "CropSample", "FrameDataset", "FrameSample", "InstanceIndex", "ViewConfig"]

BOX_SOURCES = ("visib", "obj")


@dataclass(frozen=True)
class ViewConfig:
    """How crops are cut: which instances, which box, how much jitter, what output size."""

    size: int = 64  # output side, pixels
    min_visib_fract: float = 0.3  # instances less visible than this are left out
    box_source: str = "visib"  # "visib": around bbox_visib (what a detector sees); "obj": around bbox_obj
    pad_scale: float = 1.2  # square side = pad_scale x the longer side of the box
    scale_jitter: float = 0.15  # side multiplied by a factor drawn in [1 - j, 1 + j]
    shift_jitter: float = 0.1  # centre moved by up to j x side along each axis
    min_box_px: float = 16.0  # smallest square side, pixels of the full image
    obj_ids: tuple[int, ...] = ()  # objects to keep; empty keeps all

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size must be a positive integer, got {self.size!r}")
        if not 0.0 <= self.min_visib_fract <= 1.0:
            raise ValueError(f"min_visib_fract must be in [0, 1], got {self.min_visib_fract}")
        if self.box_source not in BOX_SOURCES:
            raise ValueError(f"box_source must be one of {BOX_SOURCES}, got {self.box_source!r}")
        if self.pad_scale <= 0 or self.min_box_px < 0:
            raise ValueError(f"pad_scale must be > 0 and min_box_px >= 0, got {self.pad_scale}, {self.min_box_px}")
        if not 0.0 <= self.scale_jitter < 1.0 or not 0.0 <= self.shift_jitter <= 1.0:
            raise ValueError(f"scale_jitter must be in [0, 1) and shift_jitter in [0, 1], "
                             f"got {self.scale_jitter}, {self.shift_jitter}")


class CropSample(TypedDict):
    """One object-centred crop (S = ViewConfig.size).

    rgb: (3, S, S) float32 in [0, 1].
    nocs: (3, S, S) float32 in [0, 1], 0 outside `mask`.
    mask: (1, S, S) float32 in {0, 1}, the instance's visible pixels.
    obj_id: () int64.
    T_cam_obj: (4, 4) float64, metres, object -> camera.
    K_crop: (3, 3) float64, intrinsics of the crop in crop pixels.
    box: (4,) float64, (x0, y0, x1, y1) pixel edges of the crop in the full image.
    scene_id, im_id, gt_index: () int64, where the instance comes from.
    """

    rgb: torch.Tensor
    nocs: torch.Tensor
    mask: torch.Tensor
    obj_id: torch.Tensor
    T_cam_obj: torch.Tensor
    K_crop: torch.Tensor
    box: torch.Tensor
    scene_id: torch.Tensor
    im_id: torch.Tensor
    gt_index: torch.Tensor


class FrameSample(TypedDict):
    """One whole frame, resized to (w, h) = FrameDataset's size.

    rgb: (3, h, w) float32 in [0, 1].
    obj_map: (h, w) int64, the object id seen at each pixel, 0 for background.
    instance_map: (h, w) int64, 1 + the ground-truth index of the instance seen at each pixel, 0 for background.
    K: (3, 3) float64, intrinsics of the resized image.
    scene_id, im_id: () int64.
    """

    rgb: torch.Tensor
    obj_map: torch.Tensor
    instance_map: torch.Tensor
    K: torch.Tensor
    scene_id: torch.Tensor
    im_id: torch.Tensor


@dataclass(frozen=True)
class InstanceIndex:
    """Ground-truth instances of a split, one row each, built from scene_gt / scene_gt_info / scene_camera JSON.

    Arrays (N rows): scene_id, im_id, gt_index, obj_id (N,) int64; visib_fract (N,) float64;
    bbox_visib, bbox_obj (N, 4) float64 (x0, y0, x1, y1) pixel edges; K (N, 3, 3) float64;
    T_cam_obj (N, 4, 4) float64 metres.
    """

    scene_id: np.ndarray
    im_id: np.ndarray
    gt_index: np.ndarray
    obj_id: np.ndarray
    visib_fract: np.ndarray
    bbox_visib: np.ndarray
    bbox_obj: np.ndarray
    K: np.ndarray
    T_cam_obj: np.ndarray

    def __len__(self) -> int:
        return len(self.obj_id)

    @classmethod
    def from_split(cls, split: BopSplit, scene_ids: Iterable[int] | None = None) -> InstanceIndex:
        """Index every instance of the split's scenes (all by default); needs scene_gt_info.json."""
        rows: dict[str, list] = {name: [] for name in cls.__dataclass_fields__}
        for scene_id in split.scene_ids() if scene_ids is None else scene_ids:
            scene = split.read_scene(scene_id)
            if scene.gt_info is None:
                raise FileNotFoundError(f"{split.scene_gt_info_path(scene_id)}: needed for visibility and boxes")
            for im_id, instances in sorted(scene.gt.items()):
                for gt_index, (inst, info) in enumerate(zip(instances, scene.gt_info[im_id])):
                    rows["scene_id"].append(scene_id)
                    rows["im_id"].append(im_id)
                    rows["gt_index"].append(gt_index)
                    rows["obj_id"].append(inst.obj_id)
                    rows["visib_fract"].append(info.visib_fract)
                    rows["bbox_visib"].append(_edges(info.bbox_visib))
                    rows["bbox_obj"].append(_edges(info.bbox_obj))
                    rows["K"].append(scene.camera[im_id].K)
                    rows["T_cam_obj"].append(inst.T_cam_obj)
        shapes = {"bbox_visib": (0, 4), "bbox_obj": (0, 4), "K": (0, 3, 3), "T_cam_obj": (0, 4, 4)}
        arrays = {}
        for name, values in rows.items():
            dtype = np.float64 if name in shapes or name == "visib_fract" else np.int64
            arrays[name] = np.asarray(values, dtype=dtype) if values else np.zeros(shapes.get(name, (0,)), dtype)
        return cls(**arrays)

    def select(self, keep: np.ndarray) -> InstanceIndex:
        """The rows where `keep` (N,) bool is true."""
        return InstanceIndex(**{name: getattr(self, name)[keep] for name in self.__dataclass_fields__})


def _edges(bbox: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """BOP (x, y, width, height) -> (x0, y0, x1, y1) pixel edges."""
    x, y, w, h = bbox
    return float(x), float(y), float(x + w), float(y + h)


def nocs_path(split: BopSplit, scene_id: int, im_id: int) -> Path:
    """Path of the NOCS map of an image, `<scene>/nocs/<im_id:06d>.png`."""
    return split.scene_dir(scene_id) / "nocs" / f"{im_id:06d}.png"


def _image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1].

    Converted in NumPy: torch's intra-op threads only add overhead on one small image.
    """
    return torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0))


class CropDataset(Dataset):
    """Object-centred crops of the visible-enough ground-truth instances of a BOP split (see `CropSample`).

    The split needs rgb/, mask_visib/, nocs/ and scene_gt_info.json per scene. Indexing reads JSON only;
    `__getitem__` reads the image, the instance's visible mask and the NOCS map with OpenCV.
    """

    def __init__(self, split: BopSplit, config: ViewConfig = ViewConfig(), seed: int = 0,
                 scene_ids: Iterable[int] | None = None) -> None:
        self.split = split
        self.config = config
        self.seed = seed
        self.epoch = 0
        index = InstanceIndex.from_split(split, scene_ids)
        keep = index.visib_fract >= config.min_visib_fract
        if config.obj_ids:
            keep &= np.isin(index.obj_id, config.obj_ids)
        box = index.bbox_visib if config.box_source == "visib" else index.bbox_obj
        keep &= np.all(box[:, 2:] > box[:, :2], axis=1)  # an instance without visible pixels has an empty box
        self.index = index.select(keep)
        logger.info("%s: %d of %d instances as crops (visib_fract >= %.2f%s)", split.path, len(self.index),
                    len(index), config.min_visib_fract, f", objects {list(config.obj_ids)}" if config.obj_ids else "")

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """Draw new jitter for every sample from now on (call before creating the DataLoader iterator)."""
        self.epoch = int(epoch)

    def crop_transform(self, item: int, epoch: int | None = None) -> CropTransform:
        """The jittered crop of sample `item` at `epoch` (default: the current one): deterministic in (seed, epoch, item)."""
        cfg = self.config
        source = self.index.bbox_visib if cfg.box_source == "visib" else self.index.bbox_obj
        square = square_box(source[item], cfg.pad_scale, cfg.min_box_px)
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch), item])
        side = (square[2] - square[0]) * rng.uniform(1.0 - cfg.scale_jitter, 1.0 + cfg.scale_jitter)
        centre = (square[:2] + square[2:]) / 2 + rng.uniform(-cfg.shift_jitter, cfg.shift_jitter, 2) * side
        box = np.concatenate([centre - side / 2, centre + side / 2])
        return CropTransform(tuple(box), (cfg.size, cfg.size))

    def __getitem__(self, item: int) -> CropSample:
        if not -len(self) <= item < len(self):
            raise IndexError(f"sample {item} out of range for {len(self)} crops")
        item %= len(self)
        idx = self.index
        scene_id, im_id, gt_index = int(idx.scene_id[item]), int(idx.im_id[item]), int(idx.gt_index[item])
        crop = self.crop_transform(item)
        rgb = crop.warp(read_rgb(self.split.rgb_path(scene_id, im_id)), cv2.INTER_LINEAR)
        mask = crop.warp(read_mask(self.split.mask_visib_path(scene_id, im_id, gt_index)), cv2.INTER_NEAREST)
        nocs, valid = read_nocs(nocs_path(self.split, scene_id, im_id))
        nocs = crop.warp(nocs, cv2.INTER_NEAREST)
        mask &= crop.warp(valid, cv2.INTER_NEAREST)
        nocs[~mask] = 0.0
        return CropSample(
            rgb=_image_tensor(rgb),
            nocs=torch.from_numpy(np.ascontiguousarray(nocs.transpose(2, 0, 1))),
            mask=torch.from_numpy(mask[None].astype(np.float32)),
            obj_id=torch.tensor(idx.obj_id[item]),
            T_cam_obj=torch.from_numpy(idx.T_cam_obj[item].copy()),
            K_crop=torch.from_numpy(crop.K_crop(idx.K[item])),
            box=torch.tensor(crop.box, dtype=torch.float64),
            scene_id=torch.tensor(scene_id),
            im_id=torch.tensor(im_id),
            gt_index=torch.tensor(gt_index),
        )


class FrameDataset(Dataset):
    """Whole frames of a BOP split with per-pixel object-id and instance maps, resized to `size` (see `FrameSample`).

    `size` is (width, height); None keeps each image's size. The maps come from the mask_visib files,
    so every annotated instance is labelled wherever it is visible.
    """

    def __init__(self, split: BopSplit, size: tuple[int, int] | None = None,
                 scene_ids: Iterable[int] | None = None) -> None:
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be (width, height) of positive integers or None, got {size!r}")
        self.split = split
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.frames: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # scene, image, K (3, 3), obj ids (n,)
        for scene_id in split.scene_ids() if scene_ids is None else scene_ids:
            scene = split.read_scene(scene_id)
            for im_id in sorted(scene.camera):
                obj_ids = np.array([inst.obj_id for inst in scene.gt.get(im_id, [])], dtype=np.int64)
                self.frames.append((scene_id, im_id, scene.camera[im_id].K, obj_ids))

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, item: int) -> FrameSample:
        scene_id, im_id, K, obj_ids = self.frames[item]
        rgb = read_rgb(self.split.rgb_path(scene_id, im_id))
        height, width = rgb.shape[:2]
        instance_map = np.zeros((height, width), dtype=np.int32)
        for gt_index in range(len(obj_ids)):
            instance_map[read_mask(self.split.mask_visib_path(scene_id, im_id, gt_index))] = gt_index + 1
        crop = CropTransform((0.0, 0.0, float(width), float(height)), self.size or (width, height))
        if crop.size != (width, height):
            # cv2.resize maps pixels as the crop does (u' = s (u + 0.5) - 0.5) and averages when shrinking;
            # warpAffine has no area filter.
            shrink = crop.size[0] < width
            rgb = cv2.resize(rgb, crop.size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            instance_map = crop.warp(instance_map, cv2.INTER_NEAREST)
        lookup = np.concatenate([[0], obj_ids])
        return FrameSample(
            rgb=_image_tensor(rgb),
            obj_map=torch.from_numpy(lookup[instance_map]),
            instance_map=torch.from_numpy(instance_map.astype(np.int64)),
            K=torch.from_numpy(crop.K_crop(K)),
            scene_id=torch.tensor(scene_id),
            im_id=torch.tensor(im_id),
        )

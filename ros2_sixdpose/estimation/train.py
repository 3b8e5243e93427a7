"""Training of the NOCS networks: crop cache, symmetry-canonical targets, the Pix2Pix and BBDM `TrainTask`s, and
`sixdpose train nocs`.

Targets: the NOCS map and visible mask of each crop (data.views.CropDataset), with the map of a symmetric
object redrawn in its canonical symmetric pose (estimation.symmetry), so that one appearance has one
target for both models. Online augmentation (data.augment) changes the RGB crop only; pixels it covers with
occluding patches leave the mask and the map, as a real occluder would.

Losses:
- Pix2Pix (Isola et al. 2017): conditional GAN (binary cross-entropy on PatchGAN logits) plus
  `l1_weight` x (L1 of the NOCS map inside the true mask + binary cross-entropy of the mask logits).
- BBDM (Li et al. 2023): L1 between the predicted and the true bridge objective (estimation.bbdm).
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.augment import AugmentConfig, augment
from ros2_sixdpose.data.bop import BopSplit, read_mask, read_rgb
from ros2_sixdpose.data.nocs_maps import read_nocs
from ros2_sixdpose.data.views import CropDataset, ViewConfig, nocs_path
from ros2_sixdpose.estimation.bbdm import BBDM, BridgeConfig
from ros2_sixdpose.estimation.nocs_net import CropSpec, NocsNet, NocsPrediction
from ros2_sixdpose.estimation.nocs_weights import save_nocs_net
from ros2_sixdpose.estimation.pix2pix import PatchDiscriminator, PatchDiscriminatorConfig, Pix2PixGenerator
from ros2_sixdpose.estimation.symmetry import canonical_nocs
from ros2_sixdpose.estimation.visualize import save_examples

logger = logging.getLogger(__name__)

CACHE_FORMAT = "sixdpose-nocs-crops-1"


@dataclass
class NocsTrainConfig:
    """Network shape, crops and losses of one NOCS training run (config/estimator_nocs_train.yaml)."""

    widths: tuple[int, ...] = (16, 32, 64, 96)
    crop_size: int = 64
    crop_scale: float = 1.2  # square crop side / longer side of the visible box, as at inference
    batch_size: int = 16
    min_visib_fract: float = 0.3  # training instances less visible than this are left out
    cache_epochs: int = 2  # box-jitter draws per instance held in the crop cache
    val_crops: int = 64
    l1_weight: float = 100.0  # Pix2Pix: weight of the reconstruction terms against the GAN term (Isola et al.)
    disc_width: int = 32
    disc_layers: int = 2  # 34x34 patches on 64x64 crops
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def crop(self) -> CropSpec:
        """The crop geometry the network is trained on (and must see at inference)."""
        return CropSpec(size=self.crop_size, scale=self.crop_scale)


def crop_items(
    split: BopSplit, view: ViewConfig, object_ids: list[int], epochs: int, seed: int, limit: int | None = None,
) -> tuple[CropDataset, list[tuple[int, int]]]:
    """The crop dataset of `split` and its (epoch, instance) pairs, `epochs` per instance, at most `limit` evenly spread.

    Raises ValueError when no instance is visible enough or one shows an object outside `object_ids`.
    """
    dataset = CropDataset(split, view, seed=seed)
    if len(dataset) == 0:
        raise ValueError(f"{split.path}: no instance with visib_fract >= {view.min_visib_fract}")
    unknown = sorted(set(dataset.index.obj_id.tolist()) - set(object_ids))
    if unknown:
        raise ValueError(f"{split.path}: objects {unknown} have no model (models: {object_ids})")
    items = [(epoch, i) for epoch in range(epochs) for i in range(len(dataset))]
    if limit is not None and len(items) > limit:
        items = [items[int(k)] for k in np.linspace(0, len(items) - 1, limit).round()]
    return dataset, items


class CropCache(Dataset):
    """Object-centred training crops held in memory, symmetric maps already canonical.

    Reading a 640x480 frame, its mask and its 16-bit NOCS map for each crop takes far longer than a
    training step's share of it, so crops are cut once (`cache_epochs` box-jitter draws per instance)
    and kept: rgb (N, 3, S, S) uint8, nocs (N, 3, S, S) float16 in [0, 1] (0 off the mask), mask
    (N, 1, S, S) bool, obj_id (N,) int64.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.rgb, self.nocs, self.mask, self.obj_id = (tensors[k] for k in ("rgb", "nocs", "mask", "obj_id"))

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"rgb": self.rgb[index], "nocs": self.nocs[index], "mask": self.mask[index], "obj_id": self.obj_id[index]}

    @classmethod
    def build(
        cls, split: BopSplit, view: ViewConfig, models: dict[int, ObjectModel], epochs: int, seed: int,
        limit: int | None = None, progress: bool = True, workers: int = 1,
    ) -> "CropCache":
        """Cut `epochs` jittered crops (CropDataset's boxes) of every instance of `split`, at most `limit` evenly spread.

        Crops are cut image by image rather than through `CropDataset.__getitem__`, so that each frame and
        NOCS map is decoded once for all its instances and epochs instead of once per crop (7x fewer decodes
        on the synthetic data, ~3.4 instances per image). `workers` threads cut images in parallel (decoding and
        warping run in OpenCV outside the interpreter lock); each writes only its own rows, so the cache is the
        same for any number.
        """
        dataset, items = crop_items(split, view, sorted(models), epochs, seed, limit)
        index = dataset.index
        by_image: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
        for row, (epoch, item) in enumerate(items):
            by_image[(int(index.scene_id[item]), int(index.im_id[item]))].append((row, epoch, item))
        size = view.size
        tensors = {
            "rgb": torch.empty((len(items), 3, size, size), dtype=torch.uint8),
            "nocs": torch.empty((len(items), 3, size, size), dtype=torch.float16),
            "mask": torch.empty((len(items), 1, size, size), dtype=torch.bool),
            "obj_id": torch.empty(len(items), dtype=torch.int64),
        }

        def cut(image: tuple[int, int], rows: list[tuple[int, int, int]]) -> None:
            scene_id, im_id = image
            rgb = read_rgb(split.rgb_path(scene_id, im_id))
            nocs_full, valid = read_nocs(nocs_path(split, scene_id, im_id))
            for row, epoch, item in rows:
                crop = dataset.crop_transform(item, epoch)
                model = models[int(index.obj_id[item])]
                visible = read_mask(split.mask_visib_path(scene_id, im_id, int(index.gt_index[item]))) & valid
                mask = crop.warp(visible, cv2.INTER_NEAREST)
                nocs = crop.warp(nocs_full, cv2.INTER_NEAREST)
                nocs[~mask] = 0.0
                nocs[mask] = canonical_nocs(nocs[mask], model, index.T_cam_obj[item])[0]
                tensors["rgb"][row] = torch.from_numpy(crop.warp(rgb, cv2.INTER_LINEAR)).permute(2, 0, 1)
                tensors["nocs"][row] = torch.from_numpy(nocs).permute(2, 0, 1).to(torch.float16)
                tensors["mask"][row] = torch.from_numpy(mask)[None]
                tensors["obj_id"][row] = int(index.obj_id[item])

        with ThreadPoolExecutor(max(1, workers)) as pool, \
                tqdm(total=len(by_image), desc=f"crops of {split.split}", unit="img", disable=not progress) as bar:
            for done in as_completed([pool.submit(cut, image, rows) for image, rows in by_image.items()]):
                done.result()
                bar.update(1)
        return cls(tensors)

    def save(self, path: Path, info: dict[str, Any]) -> None:
        """Write the cache with a description of how it was made (compared on load)."""
        tensors = {"rgb": self.rgb, "nocs": self.nocs, "mask": self.mask, "obj_id": self.obj_id}
        save_tensors(path, CACHE_FORMAT, info, tensors)

    @classmethod
    def load(cls, path: Path, info: dict[str, Any]) -> "CropCache | None":
        """The cache at `path` if it was made as `info` describes, else None."""
        content = load_tensors(path, CACHE_FORMAT, info)
        return None if content is None else cls(content)


def save_tensors(path: Path, file_format: str, info: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write a cache of `tensors` with its format and a description of how it was made (compared on load)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed, so that a training started meanwhile never reads half a cache.
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save({"format": file_format, "info": info, **tensors}, partial)
    os.replace(partial, path)


def load_tensors(path: Path, file_format: str, info: dict[str, Any]) -> dict[str, Any] | None:
    """The content of the cache at `path` if it has `file_format` and was made as `info` describes, else None."""
    if not path.is_file():
        return None
    content = torch.load(path, map_location="cpu", weights_only=True)
    if content.get("format") != file_format or content.get("info") != info:
        logger.info("%s was made differently; rebuilding it", path)
        return None
    return content


def cached_crops(
    split: BopSplit, view: ViewConfig, models: dict[int, ObjectModel], epochs: int, seed: int,
    limit: int | None = None, workers: int = 1,
) -> CropCache:
    """Crops of `split` from its cache file (`<split>/../nocs_crops/<split>_<size>px.pt`), built on first use
    (by `workers` threads)."""
    info = {"split": split.split, "view": asdict(view), "epochs": epochs, "seed": seed, "limit": limit}
    path = split.root / "nocs_crops" / f"{split.split}_{view.size}px.pt"
    cache = CropCache.load(path, info)
    if cache is None:
        cache = CropCache.build(split, view, models, epochs, seed, limit, workers=workers)
        cache.save(path, info)
        logger.info("wrote %d crops to %s", len(cache), path)
    return cache


def batch_tensors(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rgb (B, 3, S, S), obj_id (B,) int64, nocs (B, 3, S, S), mask (B, 1, S, S)) from a cache batch; maps float32 in [0, 1]."""
    return batch["rgb"].float() / 255.0, batch["obj_id"], batch["nocs"].float(), batch["mask"].float()


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of maps (B, C, S, S) over the pixels of mask (B, 1, S, S) in {0, 1}."""
    return ((pred - target).abs() * mask).sum() / (mask.sum() * pred.shape[1]).clamp_min(1.0)


def map_metrics(prediction: NocsPrediction, nocs: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """NOCS L1 inside the true mask (NOCS units) and IoU of the predicted mask (> 0.5) with the true one."""
    predicted = prediction.mask > 0.5
    truth = mask > 0.5
    union = (predicted | truth).sum().clamp_min(1)
    return {
        "nocs_l1": float(masked_l1(prediction.nocs, nocs, mask)),
        "mask_iou": float((predicted & truth).sum() / union),
    }


class NocsTask:
    """What both models share as `TrainTask`s: augmentation, validation on fixed crops, checkpoints, export.

    Networks, batches, augmentation and noise live on `device`; a checkpoint resumes on the device kind it was
    written on (a CUDA generator's state does not fit a CPU one).
    """

    net: NocsNet

    def __init__(self, config: NocsTrainConfig, object_ids: list[int], val: CropCache, seed: int,
                 device: str = "cpu") -> None:
        self.config = config
        self.object_ids = list(object_ids)
        self.val = val
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def to_device(self) -> None:
        """Move every module to the task's device (after the subclass built them on the CPU, seeded)."""
        for module in self.modules():
            module.to(self.device)

    def restore_generator(self, state: torch.Tensor) -> None:
        """Set the generator of augmentation and noise from a checkpoint; ValueError if written on another device kind."""
        try:
            self.generator.set_state(state)
        except RuntimeError as exc:
            raise ValueError(f"the checkpoint's random state does not fit a {self.device.type} generator; resume on "
                             f"the device kind it was written on ({exc})") from exc

    def inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rgb, obj_id, nocs, mask) of a training batch on the device, after online augmentation (when enabled)."""
        rgb, obj_id, nocs, mask = (t.to(self.device, non_blocking=True) for t in batch_tensors(batch))
        if self.config.augment.enabled:
            out = augment(rgb, mask, self.config.augment, self.generator)
            rgb, mask = out.rgb, out.mask
            nocs = nocs * mask
        return rgb, obj_id, nocs, mask

    def validate(self) -> dict[str, float]:
        """NOCS L1 and mask IoU on the validation crops."""
        rgb, obj_id, nocs, mask = (t.to(self.device) for t in batch_tensors(self.val[:]))
        return map_metrics(self.net.predict(rgb, obj_id), nocs, mask)

    def train_mode(self, training: bool) -> None:
        """Switch every module between train and eval mode."""
        for module in self.modules():
            module.train(training)

    def modules(self) -> list[torch.nn.Module]:
        """Every trained module."""
        return [self.net]

    def export(self) -> dict[str, Any]:
        """The weights file `load_nocs_net` reads."""
        return save_nocs_net(self.net, self.config.crop(), path=None)

    def save_examples(self, path: Path, count: int = 8) -> None:
        """A PNG of validation crops with their true and predicted maps and masks."""
        self.train_mode(False)
        with torch.no_grad():
            rgb, obj_id, nocs, mask = batch_tensors(self.val[: min(count, len(self.val))])
            prediction = self.net.predict(rgb.to(self.device), obj_id.to(self.device))
            prediction = NocsPrediction(prediction.nocs.cpu(), prediction.mask.cpu())
        save_examples(path, rgb, nocs, mask, {self.net.kind: prediction}, title=path.stem)


class Pix2PixTask(NocsTask):
    """Pix2Pix: U-Net generator and PatchGAN discriminator, each with its own Adam (beta1 0.5, as Isola et al.)."""

    def __init__(self, config: NocsTrainConfig, object_ids: list[int], val: CropCache, seed: int,
                 device: str = "cpu") -> None:
        super().__init__(config, object_ids, val, seed, device)
        torch.manual_seed(seed)
        self.net = Pix2PixGenerator(config.widths, self.object_ids)
        disc_in = self.net.unet.config.in_channels + 3  # the generator's input and NOCS
        self.disc = PatchDiscriminator(PatchDiscriminatorConfig(disc_in, config.disc_width, config.disc_layers))
        self.to_device()  # before the optimizers, which hold the parameters' device
        self.opt_g = torch.optim.Adam(self.net.parameters(), betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), betas=(0.5, 0.999))

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Generator and discriminator optimizers."""
        return [self.opt_g, self.opt_d]

    def modules(self) -> list[torch.nn.Module]:
        """Generator and discriminator."""
        return [self.net, self.disc]

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """One discriminator step, then one generator step."""
        rgb, obj_id, nocs, mask = self.inputs(batch)
        condition = self.net.network_input(rgb, obj_id)
        fake_nocs, logits = self.net.generate(condition)

        real_logits = self.disc(condition, nocs, mask)
        fake_logits = self.disc(condition, fake_nocs.detach(), mask)
        loss_d = 0.5 * (
            F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        )
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        judged = self.disc(condition, fake_nocs, mask)
        adversarial = F.binary_cross_entropy_with_logits(judged, torch.ones_like(judged))
        l1 = masked_l1(fake_nocs, nocs, mask)
        mask_bce = F.binary_cross_entropy_with_logits(logits, mask)
        loss_g = adversarial + self.config.l1_weight * (l1 + mask_bce)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return {"d": loss_d.item(), "g_adv": adversarial.item(), "nocs_l1": l1.item(), "mask_bce": mask_bce.item()}

    def state_dict(self) -> dict[str, Any]:
        """Both networks, both optimizers and the augmentation generator."""
        return {
            "net": self.net.state_dict(), "disc": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.net.load_state_dict(state["net"])
        self.disc.load_state_dict(state["disc"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.restore_generator(state["generator"])


class BBDMTask(NocsTask):
    """BBDM: the time-conditioned U-Net trained on the bridge objective with Adam."""

    def __init__(self, config: NocsTrainConfig, object_ids: list[int], val: CropCache, seed: int,
                 device: str = "cpu") -> None:
        super().__init__(config, object_ids, val, seed, device)
        torch.manual_seed(seed)
        self.net = BBDM(config.widths, self.object_ids, config.bridge)
        self.to_device()
        self.optimizer = torch.optim.Adam(self.net.parameters())

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The one Adam optimizer."""
        return [self.optimizer]

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """One step on the bridge loss at random timesteps."""
        rgb, obj_id, nocs, mask = self.inputs(batch)
        loss = self.net.loss(rgb, obj_id, nocs, mask, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"bridge_l1": loss.item()}

    def state_dict(self) -> dict[str, Any]:
        """Network, optimizer and the generator of augmentation and bridge noise."""
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.restore_generator(state["generator"])


TASKS = {"pix2pix": Pix2PixTask, "bbdm": BBDMTask}

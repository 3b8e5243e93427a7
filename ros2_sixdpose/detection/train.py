"""Training of the learned detector: targets, losses, its `TrainTask` for the shared loop, `sixdpose train detector`.

Targets are made per batch from the (augmented) instance map, so occluding patches of the online
augmentation move centres and shrink masks as real occluders would:
- classes: the share of each class in each 2x2 block of the network input (soft targets at the class
  head's stride), so the logits learn sub-cell boundaries;
- centres: a Gaussian of `center_sigma` cells around each instance's centroid on the stride-4 grid,
  trained with CenterNet's penalty-reduced focal loss (Zhou et al., 2019);
- offsets: from each stride-4 cell to its instance's centroid, L1, on every cell that holds a pixel of an
  instance or touches one (boundary cells vote too at inference, so they must learn where to point).
The class loss keeps the hardest `hard_pixel_fraction` of pixels (Panoptic-DeepLab's hard pixel mining).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from ros2_sixdpose.data.augment import AugmentConfig, BackgroundConfig, augment
from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.data.views import FrameDataset
from ros2_sixdpose.detection.base import DetectorConfig
from ros2_sixdpose.detection.evaluate import EvalFrame, evaluate
from ros2_sixdpose.detection.segmentation import (
    CENTER_STRIDE, CLASS_STRIDE, NetConfig, NetOutput, SegmentationDetector, SegNet, export_weights, load_weights,
    normalise,
)

logger = logging.getLogger(__name__)


# Background swap draws procedural textures only: another training image as background would bring its
# objects along, labelled background here, and teach the network to ignore them.
DETECTOR_AUGMENT = AugmentConfig(background=BackgroundConfig(procedural_fraction=1.0))


@dataclass
class DetectorTrainConfig:
    """Network shape, targets and loss weights of a detector training run."""

    widths: tuple[int, int, int, int] = (16, 48, 96, 192)
    batch_size: int = 12
    # Random crops (width, height) of the network-input-sized frames, multiples of 16: a step costs less
    # than on whole frames, and the network is fully convolutional, so it runs on whole frames after.
    crop: tuple[int, int] = (192, 160)
    weight_decay: float = 1e-4
    center_sigma: float = 2.0  # cells of the stride-4 grid
    min_instance_pixels: int = 16  # pixels of the network input; smaller instances get no centre
    center_weight: float = 1.0
    offset_weight: float = 0.1
    hard_pixel_fraction: float = 0.25
    val_images: int = 60
    augment: AugmentConfig = field(default_factory=lambda: DETECTOR_AUGMENT)


@dataclass
class Targets:
    """Training targets of a batch of B images of network input size (H, W).

    classes: (B, C, H/2, W/2) float32, share of each class per cell (sums to 1).
    heatmap: (B, 1, H/4, W/4) float32 in [0, 1], exactly 1 at each instance's centre cell.
    offsets: (B, 2, H/4, W/4) float32, (dx, dy) to the owning instance's centroid, in cells.
    offset_weight: (B, 1, H/4, W/4) float32 in {0, 1}, cells whose offsets are trained.
    num_centers: number of instances with a centre in the batch.
    """

    classes: torch.Tensor
    heatmap: torch.Tensor
    offsets: torch.Tensor
    offset_weight: torch.Tensor
    num_centers: int


def _cell_shares(labels: torch.Tensor, num_labels: int, stride: int) -> torch.Tensor:
    """Share of each label in each stride x stride cell: labels (B, H, W) int64 -> (B, L, H/stride, W/stride) float32.

    One bincount over (image, cell, label) does what one-hot + average pooling would, without the
    (B, L, H, W) intermediate.
    """
    batch, height, width = labels.shape
    rows = torch.arange(height) // stride
    cols = torch.arange(width) // stride
    cells = (rows[:, None] * (width // stride) + cols[None, :]).flatten()  # (H W,)
    num_cells = (height // stride) * (width // stride)
    image = torch.arange(batch)[:, None] * num_cells
    index = ((image + cells[None, :]) * num_labels + labels.reshape(batch, -1)).flatten()
    counts = torch.bincount(index, minlength=batch * num_cells * num_labels).to(torch.float32)
    shares = counts.reshape(batch, height // stride, width // stride, num_labels) / stride**2
    return shares.permute(0, 3, 1, 2).contiguous()


def encode_targets(
    class_map: torch.Tensor, instance_map: torch.Tensor, num_classes: int, sigma: float, min_pixels: int
) -> Targets:
    """Targets from per-pixel class indices (B, H, W) int64 and instance indices (B, H, W) int64 (0 = none)."""
    batch, height, width = class_map.shape
    h4, w4 = height // CENTER_STRIDE, width // CENTER_STRIDE
    classes = _cell_shares(class_map, num_classes, CLASS_STRIDE)

    num_instances = int(instance_map.max()) + 1
    flat = (instance_map + num_instances * torch.arange(batch)[:, None, None]).flatten()
    size = batch * num_instances
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    counts = torch.bincount(flat, minlength=size).float()
    sum_x = torch.bincount(flat, weights=xs.expand(batch, -1, -1).flatten(), minlength=size).float()
    sum_y = torch.bincount(flat, weights=ys.expand(batch, -1, -1).flatten(), minlength=size).float()
    # Centroids in cells of the stride-4 grid, whose cell j spans input pixels 4j .. 4j + 3 (centre 4j + 1.5).
    half = (CENTER_STRIDE - 1) / 2
    cx = ((sum_x / counts.clamp_min(1) - half) / CENTER_STRIDE).reshape(batch, num_instances)
    cy = ((sum_y / counts.clamp_min(1) - half) / CENTER_STRIDE).reshape(batch, num_instances)
    valid = counts.reshape(batch, num_instances) >= min_pixels
    valid[:, 0] = False

    rows = torch.arange(h4, dtype=torch.float32)[:, None]
    cols = torch.arange(w4, dtype=torch.float32)[None, :]
    peak_x, peak_y = cx.round()[..., None, None], cy.round()[..., None, None]
    gauss = torch.exp(-((cols - peak_x) ** 2 + (rows - peak_y) ** 2) / (2 * sigma**2))  # (B, K, h4, w4)
    heatmap = (gauss * valid[..., None, None]).amax(dim=1, keepdim=True)

    # Owner of each cell: the instance with most pixels in it; a cell without any takes the one with most
    # pixels in its 3x3 neighbourhood, so cells just outside an instance learn to point at it too.
    shares = _cell_shares(instance_map, num_instances, CENTER_STRIDE) * valid[..., None, None]
    around = F.avg_pool2d(shares, 3, stride=1, padding=1)
    inside = shares.sum(dim=1, keepdim=True) > 0
    owner = torch.where(inside, shares.argmax(dim=1, keepdim=True), around.argmax(dim=1, keepdim=True))
    offset_weight = (around.sum(dim=1, keepdim=True) > 0).float()
    target_x = torch.gather(cx, 1, owner.flatten(1)).reshape(batch, 1, h4, w4) - cols
    target_y = torch.gather(cy, 1, owner.flatten(1)).reshape(batch, 1, h4, w4) - rows
    return Targets(
        classes=classes,
        heatmap=heatmap,
        offsets=torch.cat([target_x, target_y], dim=1) * offset_weight,
        offset_weight=offset_weight,
        num_centers=int(valid.sum()),
    )


def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor, num_centers: int) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss (alpha 2, beta 4), normalised by the number of centres."""
    prob = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    positive = target >= 1.0 - 1e-6
    pos_loss = -((1 - prob) ** 2) * log_p * positive
    neg_loss = -((1 - target) ** 4) * prob**2 * log_not_p * ~positive
    return (pos_loss.sum() + neg_loss.sum()) / max(1, num_centers)


def class_loss(logits: torch.Tensor, target: torch.Tensor, hard_fraction: float) -> torch.Tensor:
    """KL divergence of the predicted class distribution from the soft target, over the hardest pixels."""
    per_pixel = (target * (torch.log(target.clamp_min(1e-8)) - F.log_softmax(logits, dim=1))).sum(dim=1).flatten()
    keep = max(1, int(hard_fraction * per_pixel.numel()))
    return torch.topk(per_pixel, keep, sorted=False).values.mean()


def detector_losses(out: NetOutput, targets: Targets, config: DetectorTrainConfig) -> dict[str, torch.Tensor]:
    """Class, centre and offset losses of a batch, and their weighted sum ('total')."""
    losses = {
        "class": class_loss(out.class_logits, targets.classes, config.hard_pixel_fraction),
        "center": focal_heatmap_loss(out.center_logits, targets.heatmap, targets.num_centers),
        "offset": (F.l1_loss(out.offsets, targets.offsets, reduction="none") * targets.offset_weight).sum()
        / targets.offset_weight.sum().clamp_min(1.0),
    }
    losses["total"] = (
        losses["class"] + config.center_weight * losses["center"] + config.offset_weight * losses["offset"]
    )
    return losses


def random_crop(
    rgb: torch.Tensor, classes: torch.Tensor, instances: torch.Tensor, size: tuple[int, int], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same random (width, height) window of each image (B, 3, H, W) and its maps (B, H, W), per sample."""
    width, height = size
    batch, _, full_height, full_width = rgb.shape
    if width > full_width or height > full_height:
        raise ValueError(f"crop {width}x{height} is larger than the frames ({full_width}x{full_height})")
    x0 = torch.randint(0, full_width - width + 1, (batch,), generator=generator).tolist()
    y0 = torch.randint(0, full_height - height + 1, (batch,), generator=generator).tolist()
    windows = [(slice(y, y + height), slice(x, x + width)) for x, y in zip(x0, y0)]
    return (
        torch.stack([image[:, rows, cols] for image, (rows, cols) in zip(rgb, windows)]),
        torch.stack([image[rows, cols] for image, (rows, cols) in zip(classes, windows)]),
        torch.stack([image[rows, cols] for image, (rows, cols) in zip(instances, windows)]),
    )


class CachedFrames(Dataset):
    """Whole frames of a BOP split at the network's input size, held in memory as uint8.

    Reading a frame's JPEG and its mask PNGs costs more than a training step's share of it, so each frame
    is read once. Items: rgb (3, H, W) uint8, classes (H, W) int64 class indices, instances (H, W) int64
    (0 = none).
    """

    def __init__(self, split: BopSplit, size: tuple[int, int], object_ids: list[int]) -> None:
        frames = FrameDataset(split, size=size)
        lookup = np.zeros(max(object_ids) + 1, dtype=np.uint8)
        lookup[object_ids] = np.arange(1, len(object_ids) + 1)
        self.rgb = torch.empty((len(frames), 3, size[1], size[0]), dtype=torch.uint8)
        self.classes = torch.empty((len(frames), size[1], size[0]), dtype=torch.uint8)
        self.instances = torch.empty((len(frames), size[1], size[0]), dtype=torch.uint8)
        for index in tqdm(range(len(frames)), desc=f"reading {split.split}", unit="img"):
            sample = frames[index]
            obj_map = sample["obj_map"].numpy()
            unknown = sorted(set(np.unique(obj_map).tolist()) - set(object_ids) - {0})
            if unknown:
                raise ValueError(f"{split.path}: objects {unknown} are not among the detector's objects {object_ids}")
            if int(sample["instance_map"].max()) > 255:
                raise ValueError(f"{split.path}: image {index} has more than 255 instances")
            self.rgb[index] = (sample["rgb"] * 255.0).round().to(torch.uint8)
            self.classes[index] = torch.from_numpy(lookup[obj_map])
            self.instances[index] = sample["instance_map"].to(torch.uint8)

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "rgb": self.rgb[index], "classes": self.classes[index].long(), "instances": self.instances[index].long()
        }


class DetectorTask:
    """The detector as a `TrainTask` of the shared loop: one optimizer, augmentation, validation by the real metrics."""

    def __init__(
        self,
        object_ids: list[int],
        config: DetectorTrainConfig,
        detector_config: DetectorConfig,
        val_frames: list[EvalFrame],
        seed: int,
    ) -> None:
        self.object_ids = list(object_ids)
        self.config = config
        self.detector_config = detector_config
        self.val_frames = val_frames
        # Channels-last activations take oneDNN's fast depthwise convolutions: about half the CPU time per step.
        self.net = SegNet(NetConfig(num_classes=len(object_ids) + 1, widths=config.widths)).to(
            memory_format=torch.channels_last
        )
        self.optimizer = torch.optim.AdamW(self.net.parameters(), weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The one AdamW optimizer."""
        return [self.optimizer]

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """Augment, make targets, one AdamW step; returns the losses."""
        rgb, classes, instances = random_crop(
            batch["rgb"].float() / 255.0, batch["classes"], batch["instances"], self.config.crop, self.generator
        )
        if self.config.augment.enabled:
            out = augment(rgb, (classes > 0)[:, None], self.config.augment, self.generator)
            rgb = out.rgb
            hidden = out.occluded[:, 0]
            classes, instances = classes.masked_fill(hidden, 0), instances.masked_fill(hidden, 0)
        targets = encode_targets(
            classes, instances, len(self.object_ids) + 1, self.config.center_sigma, self.config.min_instance_pixels
        )
        losses = detector_losses(
            self.net(normalise(rgb).contiguous(memory_format=torch.channels_last)), targets, self.config
        )
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.optimizer.step()
        return {name: float(value.detach()) for name, value in losses.items()}

    def validate(self) -> dict[str, float]:
        """Recall, precision, mean mask IoU (visib_fract >= 0.3, IoU 0.5) of the detector on the validation frames."""
        detector = SegmentationDetector(self.net, self.object_ids, self.detector_config)
        overall = evaluate(detector, self.val_frames).overall
        return {name: float(overall[name] or 0.0) for name in ("recall", "precision", "mean_mask_iou")}

    def train_mode(self, training: bool) -> None:
        """Switch the network between train and eval mode."""
        self.net.train(training)

    def state_dict(self) -> dict[str, Any]:
        """Network, optimizer and augmentation generator, for resumable checkpoints."""
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])

    def export(self) -> dict[str, Any]:
        """The weights file `SegmentationDetector` loads."""
        return export_weights(self.net, self.object_ids)


def start_from(net: SegNet, object_ids: list[int], path: Path) -> None:
    """Load the parameters of an earlier run's weights file into `net`, which must have its objects and widths.

    A checkpoint of the new run, if one exists, is loaded after this and wins, so a fine-tuning run resumes.
    """
    init_net, init_ids = load_weights(path)
    if init_ids != list(object_ids) or init_net.config != net.config:
        raise ValueError(
            f"{path}: trained for objects {init_ids} with widths {list(init_net.config.widths)}; this run trains "
            f"objects {list(object_ids)} with widths {list(net.config.widths)}"
        )
    net.load_state_dict(init_net.state_dict())

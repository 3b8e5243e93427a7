"""The learned detector: a small encoder-decoder that segments object classes and votes for instance centres.

The network (`SegNet`) sees the image resized by `DetectorConfig.input_scale` (320x240 for a 640x480
frame) and predicts, in the bottom-up manner of Panoptic-DeepLab (Cheng et al., CVPR 2020):
- per-pixel class logits (background + one class per object) at 1/2 of its input resolution;
- an instance-centre heatmap and, per cell, the offset to its instance's centre at 1/4 of it.
`decode_instances` turns these into instances: heatmap peaks are the centres, and every pixel joins the
centre of its class nearest to where its cell's offset points. Class boundaries come from the class logits
upsampled to the full image, so masks are full-resolution; only the boundary between two touching
instances of the same object follows the coarser centre grid.
"""
from __future__ import annotations

import copy
import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ros2_sixdpose.core.checks import check_rgb, mask_box
from ros2_sixdpose.core.objects import MODELS_INFO_FILE, read_models_info
from ros2_sixdpose.detection.base import Detection, Detector, DetectorConfig, ImageKey

logger = logging.getLogger(__name__)

WEIGHTS_FORMAT = "sixdpose-detector/1"
STRIDE = 16  # the network's input sides must be multiples of its coarsest stride
CENTER_STRIDE = 4  # heatmap and offsets, in input pixels per cell
CLASS_STRIDE = 2  # class logits, in input pixels per cell


@dataclass(frozen=True)
class NetConfig:
    """Shape of a `SegNet`: number of classes (background + objects) and channels per stride 2, 4, 8, 16."""

    num_classes: int
    widths: tuple[int, int, int, int] = (16, 32, 64, 128)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + at least one object), got {self.num_classes}")
        if len(self.widths) != 4 or min(self.widths) < 1:
            raise ValueError(f"widths must be 4 positive channel counts, got {self.widths}")


def _conv_bn_relu(
    c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1
) -> nn.Sequential:
    """Convolution, batch norm, ReLU; 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, dilation * (kernel // 2), dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _SeparableBlock(nn.Module):
    """Residual depthwise-separable block: depthwise 3x3 (dilated), pointwise 1x1, identity shortcut."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = _conv_bn_relu(channels, channels, 3, groups=channels, dilation=dilation)
        self.pointwise = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.pointwise(self.depthwise(x)))


def _downsample(c_in: int, c_out: int) -> nn.Sequential:
    """Halve the resolution with a strided depthwise 3x3, then change channels with a 1x1."""
    return nn.Sequential(_conv_bn_relu(c_in, c_in, 3, stride=2, groups=c_in), _conv_bn_relu(c_in, c_out, 1))


def _upsample_add(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize `x` to `skip`'s size and add them."""
    return F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False) + skip


@dataclass
class NetOutput:
    """Raw network outputs for a batch of B images of input size (H, W).

    class_logits: (B, C, H/2, W/2) float32; class 0 is background, class i the i-th object id.
    center_logits: (B, 1, H/4, W/4) float32; sigmoid gives the instance-centre heatmap.
    offsets: (B, 2, H/4, W/4) float32, (dx, dy) from each cell to its instance's centre, in cells.
    """

    class_logits: torch.Tensor
    center_logits: torch.Tensor
    offsets: torch.Tensor


class SegNet(nn.Module):
    """Encoder-decoder with a class head at stride 2 and centre / offset heads at stride 4."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        w2, w4, w8, w16 = config.widths
        self.stem = _conv_bn_relu(3, w2, 3, stride=2)
        self.enc4 = nn.Sequential(_conv_bn_relu(w2, w4, 3, stride=2), _SeparableBlock(w4))
        self.enc8 = nn.Sequential(_downsample(w4, w8), _SeparableBlock(w8), _SeparableBlock(w8))
        # Growing dilations widen the receptive field to whole objects, which centre voting needs.
        self.enc16 = nn.Sequential(
            _downsample(w8, w16), _SeparableBlock(w16), _SeparableBlock(w16, 2), _SeparableBlock(w16, 4),
            _SeparableBlock(w16, 8),
        )
        self.lateral16 = _conv_bn_relu(w16, w8, 1)
        self.dec8 = _SeparableBlock(w8)
        self.lateral8 = _conv_bn_relu(w8, w4, 1)
        self.dec4 = nn.Sequential(_SeparableBlock(w4), _SeparableBlock(w4))
        self.center_head = nn.Sequential(_conv_bn_relu(w4, w4, 3), nn.Conv2d(w4, 3, 1))
        self.lateral4 = _conv_bn_relu(w4, w2, 1)
        self.dec2 = _conv_bn_relu(w2, w2, 3)
        self.class_head = nn.Conv2d(w2, config.num_classes, 1)
        # Start the heatmap near zero (CenterNet's prior), so early training is not swamped by false peaks.
        nn.init.constant_(self.center_head[-1].bias[:1], -4.0)

    def forward(self, x: torch.Tensor) -> NetOutput:
        """Outputs for images x (B, 3, H, W) float32 normalised by `normalise`, H and W multiples of 16."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % STRIDE or x.shape[3] % STRIDE:
            raise ValueError(f"SegNet input must be (B, 3, H, W) with H, W multiples of {STRIDE}, got {tuple(x.shape)}")
        x2 = self.stem(x)
        x4 = self.enc4(x2)
        x8 = self.enc8(x4)
        x16 = self.enc16(x8)
        y8 = self.dec8(_upsample_add(self.lateral16(x16), x8))
        y4 = self.dec4(_upsample_add(self.lateral8(y8), x4))
        center = self.center_head(y4)
        y2 = self.dec2(_upsample_add(self.lateral4(y4), x2))
        return NetOutput(class_logits=self.class_head(y2), center_logits=center[:, :1], offsets=center[:, 1:])


def inference_copy(net: SegNet) -> SegNet:
    """A copy of `net` for inference: eval mode, each batch norm folded into its convolution, channels-last.

    Folding removes a pass over every feature map; channels-last memory lets oneDNN run the depthwise
    convolutions about three times faster on the CPU. Outputs equal the eval-mode network's to ~1e-6.
    """
    fused = copy.deepcopy(net).eval()
    for module in fused.modules():
        if isinstance(module, nn.Sequential):
            for index in range(len(module) - 1):
                if isinstance(module[index], nn.Conv2d) and isinstance(module[index + 1], nn.BatchNorm2d):
                    module[index] = fuse_conv_bn_eval(module[index], module[index + 1])
                    module[index + 1] = nn.Identity()
    return fused.to(memory_format=torch.channels_last)


def normalise(rgb: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] to the network's input range [-1, 1]."""
    return rgb * 2.0 - 1.0


def input_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """Network input (width, height) for a full image: scaled, rounded to multiples of 16 (at least 16)."""
    return (max(STRIDE, round(width * scale / STRIDE) * STRIDE), max(STRIDE, round(height * scale / STRIDE) * STRIDE))


def decode_instances(
    class_logits: np.ndarray,
    center_heatmap: np.ndarray,
    offsets: np.ndarray,
    image_size: tuple[int, int],
    object_ids: list[int],
    config: DetectorConfig,
) -> list[Detection]:
    """Instances of one image from its network outputs, masks at full resolution, highest score first.

    Args:
        class_logits: (C, h2, w2) float32 class logits, class 0 background, class i object `object_ids[i - 1]`.
        center_heatmap: (h4, w4) float32 instance-centre heatmap in [0, 1] (h2 = 2 h4, w2 = 2 w4).
        offsets: (2, h4, w4) float32 (dx, dy) from each cell to its instance's centre, in cells.
        image_size: (height, width) of the full image the masks are returned at.
        object_ids: object id of each non-background class.
        config: peak threshold and window, instance limit, minimum area, score threshold.

    Each heatmap peak is a centre. A centre's class is the one most of the pixels voting for it (whose
    offsets point nearest to it) have. Each pixel of class c joins the nearest of the centres of class c,
    or, if no centre has class c (its own peak was missed), the nearest centre of any class. Each
    (centre, class) group is an instance, scored by the centre's height times the mean probability of
    class c over its pixels times sqrt(min(1, area / `config.full_score_area`)), and kept if that reaches
    `config.score_threshold` and its full-resolution mask covers at least `config.min_area` pixels.
    """
    num_classes, h2, w2 = class_logits.shape
    h4, w4 = center_heatmap.shape
    if num_classes != len(object_ids) + 1 or (h2, w2) != (2 * h4, 2 * w4) or offsets.shape != (2, h4, w4):
        raise ValueError(
            f"inconsistent outputs: class logits {class_logits.shape} for {len(object_ids)} objects, "
            f"heatmap {center_heatmap.shape}, offsets {offsets.shape}"
        )
    height, width = image_size
    centers, center_scores = find_peaks(center_heatmap, config)
    if len(centers) == 0:
        return []
    rows, cols = np.mgrid[0:h4, 0:w4].astype(np.float32)
    voted = np.stack([cols + offsets[0], rows + offsets[1]], axis=-1).reshape(-1, 1, 2)  # (h4 w4, 1, 2) x, y
    distances = ((voted - centers[None]) ** 2).sum(-1)  # (h4 w4, K), squared cells
    nearest = distances.argmin(axis=1)

    top = class_logits.max(axis=0)
    classes = class_logits.argmax(axis=0)  # (h2, w2)
    confidence = 1.0 / np.exp(class_logits - top).sum(axis=0)  # softmax probability of the winning class
    votes = np.bincount((_to_class_grid(nearest, h4, w4) * num_classes + classes).ravel(),
                        minlength=len(centers) * num_classes).reshape(len(centers), num_classes)
    votes[:, 0] = 0
    center_class = np.where(votes.max(axis=1) > 0, votes.argmax(axis=1), 0)

    # Small instances are where the false positives are (docs/detector_misses.md): their score shrinks with
    # the square root of their area below `full_score_area` full-image pixels.
    cell_area = height * width / (h2 * w2)
    detections = []
    for cls in np.unique(classes):
        if cls == 0:
            continue
        members = np.flatnonzero(center_class == cls)
        assignment = (members[distances[:, members].argmin(axis=1)] if members.size else nearest).reshape(h4, w4)
        in_class = classes == cls
        labels = _to_class_grid(assignment, h4, w4)[in_class]
        counts = np.bincount(labels, minlength=len(centers))
        size_factor = np.sqrt(np.minimum(1.0, counts * cell_area / config.full_score_area)) if config.full_score_area else 1.0
        sums = np.bincount(labels, weights=confidence[in_class], minlength=len(centers))
        scores = center_scores * sums / np.maximum(counts, 1) * size_factor
        kept = np.flatnonzero((counts > 0) & (scores >= config.score_threshold))
        if kept.size == 0:
            continue
        class_mask, (u0, v0, u1, v1) = _full_class_mask(class_logits, classes, int(cls), (height, width))
        # Nearest resampling: cell k covers full-image pixels [k W / w4, (k + 1) W / w4).
        region_assignment = assignment[
            (np.arange(v0, v1) * h4 // height)[:, None], (np.arange(u0, u1) * w4 // width)[None, :]
        ]
        for center in kept:
            region = class_mask & (region_assignment == center)
            if np.count_nonzero(region) < max(1, config.min_area):
                continue
            mask = np.zeros((height, width), dtype=bool)
            mask[v0:v1, u0:u1] = region
            score = min(float(scores[center]), 1.0)
            detections.append(Detection(object_id=object_ids[cls - 1], box=mask_box(mask), mask=mask, score=score))
    detections.sort(key=lambda d: d.score, reverse=True)
    return detections


def _to_class_grid(labels: np.ndarray, h4: int, w4: int) -> np.ndarray:
    """Labels (h4 w4,) or (h4, w4) of the stride-4 grid repeated onto the class logits' stride-2 grid (2 h4, 2 w4)."""
    grid = labels.reshape(h4, w4)
    return np.repeat(np.repeat(grid, 2, axis=0), 2, axis=1).astype(np.int64)


def find_peaks(heatmap: np.ndarray, config: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of an (h, w) heatmap over `config.center_window` cells, at least `center_threshold` high.

    Returns (K, 2) float32 (x, y) cell coordinates and (K,) heights, highest first, K <= max_instances.
    """
    window = config.center_window
    pooled = F.max_pool2d(torch.from_numpy(heatmap)[None, None], window, stride=1, padding=window // 2)[0, 0].numpy()
    ys, xs = np.nonzero((heatmap == pooled) & (heatmap >= config.center_threshold))
    scores = heatmap[ys, xs]
    order = np.argsort(-scores, kind="stable")[: config.max_instances]
    return np.stack([xs[order], ys[order]], axis=1).astype(np.float32), scores[order]


def _full_class_mask(
    class_logits: np.ndarray, classes: np.ndarray, cls: int, image_size: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Full-image pixels where class `cls` wins once every class logit is bilinearly upsampled.

    Only the region around the class's cells (grown by one cell, the reach of bilinear interpolation) is
    computed, against the classes that win somewhere in it: class c beats class j at a pixel iff the
    upsampled difference l_c - l_j is positive there (upsampling is linear), so this equals the argmax of
    the upsampled logits at a fraction of its cost.

    Args:
        class_logits: (C, h2, w2) float32 logits; classes: (h2, w2) their argmax.
        image_size: (height, width) of the full image.

    Returns:
        (v1 - v0, u1 - u0) bool mask of the region and the region's box (u0, v0, u1, v1), full-image pixels.
    """
    h2, w2 = classes.shape
    height, width = image_size
    scale_x, scale_y = width / w2, height / h2
    rows = np.flatnonzero((classes == cls).any(axis=1))
    cols = np.flatnonzero((classes == cls).any(axis=0))
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, h2)
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, w2)
    v0, v1 = int(np.floor(r0 * scale_y)), min(int(np.ceil(r1 * scale_y)), height)
    u0, u1 = int(np.floor(c0 * scale_x)), min(int(np.ceil(c1 * scale_x)), width)
    # Pixel-area convention: full-image pixel u samples logit column (u + 0.5) / scale_x - 0.5.
    to_region = np.array([[scale_x, 0.0, 0.5 * scale_x - 0.5 - u0], [0.0, scale_y, 0.5 * scale_y - 0.5 - v0]])
    mask = np.ones((v1 - v0, u1 - u0), dtype=bool)
    for other in np.unique(classes[r0:r1, c0:c1]):
        if other == cls:
            continue
        difference = np.ascontiguousarray(class_logits[cls] - class_logits[other])
        mask &= cv2.warpAffine(difference, to_region, (u1 - u0, v1 - v0), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE) > 0.0
    return mask, (u0, v0, u1, v1)


def _weights_error(path: Path, reason: str) -> ValueError:
    """A ValueError naming the weights file and what is wrong with it."""
    return ValueError(f"{path}: not usable detector weights: {reason}")


def load_weights(path: str | Path) -> tuple[SegNet, list[int]]:
    """Load a `SegNet` and its object ids from a weights file written by `sixdpose train detector`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: detector weights not found (make them with `sixdpose train detector`)")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _weights_error(path, f"cannot read it ({type(exc).__name__}: {exc})") from exc
    if not isinstance(content, dict) or content.get("format") != WEIGHTS_FORMAT:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise _weights_error(path, f"'format' is {found!r}, expected {WEIGHTS_FORMAT!r}")
    for key in ("object_ids", "widths", "state_dict"):
        if key not in content:
            raise _weights_error(path, f"missing '{key}'")
    object_ids = [int(i) for i in content["object_ids"]]
    try:
        net = SegNet(NetConfig(num_classes=len(object_ids) + 1, widths=tuple(int(w) for w in content["widths"])))
        net.load_state_dict(content["state_dict"])
    except (RuntimeError, ValueError, TypeError) as exc:
        raise _weights_error(path, f"its tensors do not fit the network ({exc})") from exc
    return net.eval(), object_ids


def export_weights(net: SegNet, object_ids: list[int]) -> dict[str, Any]:
    """What `load_weights` reads: format tag, object ids, network widths and parameters."""
    return {
        "format": WEIGHTS_FORMAT,
        "object_ids": list(object_ids),
        "widths": list(net.config.widths),
        "state_dict": net.state_dict(),
    }


class SegmentationDetector(Detector):
    """Detects the objects a trained `SegNet` knows; masks and boxes at the full image's resolution."""

    def __init__(self, net: SegNet, object_ids: list[int], config: DetectorConfig) -> None:
        if net.config.num_classes != len(object_ids) + 1:
            raise ValueError(f"network has {net.config.num_classes} classes, expected {len(object_ids) + 1}")
        self.net = inference_copy(net)
        self.object_ids = list(object_ids)
        self.config = config

    @classmethod
    def from_config(cls, config: DetectorConfig, weights: str | Path, models_dir: str | Path) -> "SegmentationDetector":
        """Load `weights`, checking that they were trained for exactly the objects of `models_dir`."""
        if config.threads:
            torch.set_num_threads(config.threads)
        net, object_ids = load_weights(weights)
        known = sorted(read_models_info(Path(models_dir) / MODELS_INFO_FILE))
        if sorted(object_ids) != known:
            raise ValueError(
                f"{weights}: trained for objects {sorted(object_ids)}, but {models_dir} holds objects {known}; "
                "retrain the detector for this object set or point models_dir at the one it was trained for"
            )
        return cls(net, object_ids, config)

    def predict(self, rgb: np.ndarray) -> NetOutput:
        """Network outputs (batch of 1) for an (H, W, 3) uint8 image, resized by `config.input_scale`."""
        height, width = rgb.shape[:2]
        size = input_size(width, height, self.config.input_scale)
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        x = normalise(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0)
        with torch.inference_mode():
            return self.net(x.contiguous(memory_format=torch.channels_last))

    def detect(self, rgb: np.ndarray, key: ImageKey | None = None) -> list[Detection]:
        """Detections in `rgb` (H, W, 3) uint8, highest score first; `key` is ignored."""
        check_rgb(rgb)
        out = self.predict(rgb)
        return decode_instances(
            out.class_logits[0].contiguous().numpy(),
            torch.sigmoid(out.center_logits[0, 0]).contiguous().numpy(),
            out.offsets[0].contiguous().numpy(),
            rgb.shape[:2],
            self.object_ids,
            self.config,
        )

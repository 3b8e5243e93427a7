"""The MRC-Net network: a Siamese ResNet-style encoder, the pose classifier and the residual regressor.

Li et al. 2024, "MRC-Net: 6-DoF Pose Estimation with MultiScale Residual Correlation". Stage 1 classifies
the crop's pose into rotation bins (`bins.RotationBins`) and centre-offset / depth bins with residuals
(`crop_pose.CropPoseGrid`). The object is rendered at the classified pose; the same encoder (shared
weights) encodes the render; a multi-scale residual correlation (MRC) layer correlates real and rendered
features in local windows at three scales; stage 2 regresses the residual rotation (6D representation,
Zhou et al. 2019) and translation.

Shrunk for a 2-core CPU: 64 px crops instead of 256, a strided stem and 3 basic blocks (widths 24-128) instead of ResNet-34, correlation windows 5x5 / 5x5 / 3x3 on 16x16 / 8x8 / 4x4 maps.
Inputs: RGB plus two channels holding each pixel's normalised camera ray (x/z, y/z) -- the paper's
"box map" and field of view in one: they say where in the image the crop was cut and how wide it sees.
Every head has one output block per object (indexed by the object's row), as the network serves a set.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MrcNetConfig:
    """Shape of the network (saved with the weights)."""

    crop_size: int = 64
    widths: tuple[int, ...] = (24, 48, 80, 128)  # stem (stride 2), then 3 stages each halving the resolution
    hidden: int = 256
    windows: tuple[int, ...] = (2, 2, 1)  # correlation radius at the 3 finest-to-coarsest scales
    rotation_bins: int = 576
    offset_bins: int = 8
    depth_bins: int = 12
    objects: int = 8

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or len(self.windows) != 3 or self.crop_size % 16:
            raise ValueError(f"need 5 widths, 3 windows and a crop size divisible by 16, got {self}")


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs, batch norm, identity or 1x1 shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Identity() if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class Encoder(nn.Module):
    """(B, 5, S, S) -> features at S/4, S/8, S/16: (B, w1, S/4, S/4), (B, w2, S/8, S/8), (B, w3, S/16, S/16)."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(5, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.stages = nn.ModuleList(BasicBlock(widths[i], widths[i + 1], 2) for i in range(3))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def local_correlation(real: torch.Tensor, rendered: torch.Tensor, radius: int) -> torch.Tensor:
    """Cosine similarity (B, (2r+1)^2, H, W) of real features (B, C, H, W) with rendered ones shifted by up to r px."""
    real = F.normalize(real, dim=1)
    rendered = F.normalize(rendered, dim=1)
    B, C, H, W = real.shape
    k = 2 * radius + 1
    windows = F.unfold(rendered, k, padding=radius).view(B, C, k * k, H, W)
    return (windows * real[:, :, None]).sum(dim=1)


def rotation_from_6d(x: torch.Tensor) -> torch.Tensor:
    """Rotations (B, 3, 3) from the 6D representation (B, 6) (two columns, Gram-Schmidt; Zhou et al. 2019)."""
    a, b = x[:, :3], x[:, 3:]
    c1 = F.normalize(a, dim=1)
    c2 = F.normalize(b - (c1 * b).sum(dim=1, keepdim=True) * c1, dim=1)
    return torch.stack([c1, c2, torch.cross(c1, c2, dim=1)], dim=2)


@dataclass
class Stage1Output:
    """Classifier logits and residuals of one batch (B crops), for each crop's own object.

    rotation: (B, R) logits; offset: (B, 2, O) logits and offset_residual (B, 2, O) per bin, bin widths;
    depth: (B, D) logits and depth_residual (B, D).
    """

    rotation: torch.Tensor
    offset: torch.Tensor
    offset_residual: torch.Tensor
    depth: torch.Tensor
    depth_residual: torch.Tensor


class MrcNet(nn.Module):
    """Siamese encoder, stage-1 classifier and stage-2 MRC residual regressor (see the module docstring)."""

    def __init__(self, config: MrcNetConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        side = config.crop_size // 16
        self.encoder = Encoder(w)
        c = config
        self._stage1_sizes = [c.rotation_bins, 2 * c.offset_bins, 2 * c.offset_bins, c.depth_bins, c.depth_bins]
        self.classifier = nn.Sequential(
            nn.Conv2d(w[3], 64, 1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * side * side, c.hidden), nn.ReLU(),
        )
        self.stage1_out = nn.Linear(c.hidden, c.objects * sum(self._stage1_sizes))
        corr = [(2 * r + 1) ** 2 for r in c.windows]
        # MRC: at each scale the correlation volume plus 1x1-reduced real and rendered features (their residual
        # is learnt from both), merged coarse-wards by strided convolutions.
        self.reduce = nn.ModuleList(nn.Conv2d(2 * w[i + 1], 16, 1) for i in range(3))
        self.merge1 = nn.Sequential(nn.Conv2d(corr[0] + 16, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU())
        self.merge2 = nn.Sequential(nn.Conv2d(64 + corr[1] + 16, 96, 3, 2, 1), nn.BatchNorm2d(96), nn.ReLU())
        self.merge3 = nn.Sequential(nn.Conv2d(96 + corr[2] + 16, 96, 3, 1, 1), nn.BatchNorm2d(96), nn.ReLU())
        # Leaky: with plain ReLU every hidden unit of this layer died in the first joint run (all pre-activations
        # negative), so the zero-initialised output layer never received a gradient and stage 2 learnt nothing.
        self.regressor = nn.Sequential(nn.Flatten(), nn.Linear(96 * side * side, c.hidden), nn.LeakyReLU(0.1))
        self.stage2_out = nn.Linear(c.hidden, c.objects * 9)
        # Start stage 2 at "no correction": identity rotation, zero translation residual.
        nn.init.zeros_(self.stage2_out.weight)
        with torch.no_grad():
            self.stage2_out.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 0]).repeat(c.objects))

    def stage1_modules(self) -> list[nn.Module]:
        """The encoder and the classifier (what a residual-stage-only run keeps frozen)."""
        return [self.encoder, self.classifier, self.stage1_out]

    def stage2_parameters(self) -> list[nn.Parameter]:
        """Parameters of the MRC layer and the residual regressor."""
        frozen = {id(p) for m in self.stage1_modules() for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in frozen]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features at three scales of crops (B, 5, S, S) (RGB in [0, 1] and ray channels)."""
        return self.encoder(x)

    def stage1(self, features: list[torch.Tensor], row: torch.Tensor) -> Stage1Output:
        """Classifier outputs for crops whose objects are `row` (B,) int64 (the object's row in the net)."""
        out = self.stage1_out(self.classifier(features[-1]))
        out = out.view(len(row), self.config.objects, -1)[torch.arange(len(row)), row]
        rot, off, off_res, depth, depth_res = torch.split(out, self._stage1_sizes, dim=1)
        return Stage1Output(rot, off.view(-1, 2, self.config.offset_bins),
                            torch.tanh(off_res.view(-1, 2, self.config.offset_bins)), depth, torch.tanh(depth_res))

    def stage2(self, real: list[torch.Tensor], rendered: list[torch.Tensor], row: torch.Tensor) -> torch.Tensor:
        """Residual (B, 9): 6D rotation (camera frame, applied on the left) and (du, dv, dlog z) translation."""
        x = None
        for i, (a, b) in enumerate(zip(real, rendered)):
            parts = [local_correlation(a, b, self.config.windows[i]), self.reduce[i](torch.cat([a, b], dim=1))]
            if x is not None:
                parts.insert(0, x)
            x = (self.merge1, self.merge2, self.merge3)[i](torch.cat(parts, dim=1))
        out = self.stage2_out(self.regressor(x))
        return out.view(len(row), self.config.objects, 9)[torch.arange(len(row)), row]


def ray_channels(K_crop: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 2, S, S) normalised camera rays (x/z, y/z) of every crop pixel, for intrinsics K_crop (B, 3, 3)."""
    coords = torch.arange(size, dtype=K_crop.dtype, device=K_crop.device)
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], dim=0).view(3, -1)
    rays = torch.linalg.solve(K_crop, pixels.expand(len(K_crop), 3, -1))
    return (rays[:, :2] / rays[:, 2:3]).view(-1, 2, size, size)

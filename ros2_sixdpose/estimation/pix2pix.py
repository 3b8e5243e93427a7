"""Pix2Pix for NOCS maps: a U-Net generator and a PatchGAN discriminator (Isola et al., CVPR 2017).

The generator maps an RGB crop (and the object's conditioning planes, see `nocs_net`) to a NOCS map
(3 channels, sigmoid) and an object-mask logit (1 channel).
The discriminator is conditional: it judges (RGB crop, NOCS inside the true object mask) pairs patch by
patch, so the adversarial loss pushes the map to be locally plausible for the image while the L1 term
(weighted 100 as in the paper) keeps it close to the ground truth. The predicted mask is left to its own
cross-entropy term: a true (binary) mask is told from a predicted (soft) one by its edges alone, and with
masks in its input the discriminator won outright (loss 1e-3) and its gradient drowned the map's.
The losses are in `estimation/train.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ros2_sixdpose.estimation.nocs_net import NocsNet, NocsPrediction, ObjectConditioning, check_crops
from ros2_sixdpose.estimation.unet import UNet, UNetConfig


class Pix2PixGenerator(NocsNet):
    """U-Net generator, RGB (B, 3, S, S) in [0, 1] -> NOCS (B, 3, S, S) in [0, 1] + mask logit (B, 1, S, S)."""

    kind = "pix2pix"

    def __init__(self, widths: tuple[int, ...], object_ids: list[int]) -> None:
        super().__init__()
        self.conditioning = ObjectConditioning(object_ids)
        self.unet = UNet(UNetConfig(in_channels=3 + self.conditioning.channels, out_channels=4, widths=widths))

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "Pix2PixGenerator":
        """Rebuild from `settings()`."""
        return cls(tuple(settings["widths"]), list(settings["object_ids"]))

    def settings(self) -> dict[str, Any]:
        """U-Net widths and object ids."""
        return {"widths": list(self.unet.config.widths), "object_ids": self.object_ids}

    def network_input(self, rgb: torch.Tensor, obj_id: torch.Tensor) -> torch.Tensor:
        """What the generator (and the discriminator) sees: RGB in [-1, 1] and the conditioning planes, (B, 3 + C, S, S)."""
        check_crops(rgb)
        return torch.cat([rgb * 2.0 - 1.0, self.conditioning(obj_id, rgb.shape[-1])], dim=1)

    def generate(self, network_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(NOCS (B, 3, S, S) in [0, 1], mask logits (B, 1, S, S)) from `network_input(...)`."""
        out = self.unet(network_input)
        return torch.sigmoid(out[:, :3]), out[:, 3:]

    def forward(self, rgb: torch.Tensor, obj_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(NOCS (B, 3, S, S) in [0, 1], mask logits (B, 1, S, S)) of crops rgb (B, 3, S, S) in [0, 1] of objects obj_id (B,)."""
        return self.generate(self.network_input(rgb, obj_id))

    def predict(self, rgb: torch.Tensor, obj_id: torch.Tensor) -> NocsPrediction:
        """NOCS and mask probability of crops rgb (B, 3, S, S) in [0, 1] of objects obj_id (B,)."""
        nocs, logits = self(rgb, obj_id)
        return NocsPrediction(nocs=nocs, mask=torch.sigmoid(logits))


@dataclass(frozen=True)
class PatchDiscriminatorConfig:
    """PatchGAN shape: `layers` stride-2 stages after the first; 2 stages judge 34x34 patches, 3 stages 70x70."""

    in_channels: int  # the generator's input channels + NOCS (3)
    width: int = 32
    layers: int = 2

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.width < 1 or self.layers < 1:
            raise ValueError(f"in_channels, width and layers must be >= 1, got {self}")


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): 4x4 convolutions, InstanceNorm, LeakyReLU 0.2; one real/fake logit per patch."""

    def __init__(self, config: PatchDiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        width = config.width
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = width
        for index in range(1, config.layers + 1):
            out = width * min(2**index, 8)
            stride = 2 if index < config.layers else 1
            layers += [nn.Conv2d(channels, out, 4, stride=stride, padding=1), nn.InstanceNorm2d(out), nn.LeakyReLU(0.2)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, condition: torch.Tensor, nocs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Patch logits (B, 1, h, w) judging NOCS (B, 3, S, S) in [0, 1] inside the true mask (B, 1, S, S) for the
        generator's input `condition` (B, C, S, S) (`Pix2PixGenerator.network_input`)."""
        return self.net(torch.cat([condition, nocs * mask * 2.0 - 1.0], dim=1))

"""What both NOCS networks share: their conditioning, the prediction they return and the crop they were trained
on (their weights file: `estimation/nocs_weights.py`).

A NOCS network maps an RGB crop (B, 3, S, S) in [0, 1] of a detected object to a NOCS map (B, 3, S, S) in
[0, 1] and an object mask probability (B, 1, S, S). Besides the image, the network sees which object the
detector says it is (one constant one-hot plane per known object: the map of one object is a different
function of the image than another's, as per-object networks such as Pix2Pose have it, but one network
serves all objects) and each pixel's position in the crop (two planes in [-1, 1], CoordConv, Liu et al.
2018: NOCS values are positions on the object, which translation-equivariant convolutions cannot place
on their own).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn



@dataclass(frozen=True)
class CropSpec:
    """How crops are cut: a square box `scale` times the detection box's longer side, resized to `size` pixels."""

    size: int = 64
    scale: float = 1.2

    def __post_init__(self) -> None:
        if self.size < 8 or not self.scale > 0:
            raise ValueError(f"crop size must be >= 8 px and scale > 0, got {self.size}, {self.scale}")


@dataclass
class NocsPrediction:
    """Network output for a batch of crops.

    nocs: (B, 3, S, S) float32 in [0, 1], normalised object coordinates per pixel.
    mask: (B, 1, S, S) float32 in [0, 1], probability that the pixel shows the object.
    """

    nocs: torch.Tensor
    mask: torch.Tensor


class ObjectConditioning(nn.Module):
    """Constant input planes (B, len(object_ids) + 2, S, S): one-hot object id, then crop x and y in [-1, 1]."""

    def __init__(self, object_ids: list[int]) -> None:
        super().__init__()
        if not object_ids or len(set(object_ids)) != len(object_ids):
            raise ValueError(f"object_ids must be distinct and non-empty, got {object_ids}")
        self.object_ids = [int(i) for i in object_ids]
        lookup = torch.full((max(self.object_ids) + 1,), -1, dtype=torch.long)
        lookup[self.object_ids] = torch.arange(len(self.object_ids))
        self.register_buffer("lookup", lookup, persistent=False)

    @property
    def channels(self) -> int:
        """Number of planes."""
        return len(self.object_ids) + 2

    def forward(self, obj_id: torch.Tensor, size: int) -> torch.Tensor:
        """Planes (B, channels, size, size) for object ids obj_id (B,) int64; unknown ids raise ValueError."""
        known = (obj_id >= 0) & (obj_id < len(self.lookup))
        index = self.lookup[obj_id.clamp(0, len(self.lookup) - 1)]
        if not bool(torch.all(known & (index >= 0))):
            raise ValueError(f"object ids {obj_id.tolist()} include ids the network was not trained on ({self.object_ids})")
        batch = obj_id.shape[0]
        one_hot = nn.functional.one_hot(index, len(self.object_ids)).float()[:, :, None, None]
        axis = torch.linspace(-1.0, 1.0, size, device=obj_id.device)
        xy = torch.stack(torch.meshgrid(axis, axis, indexing="xy"))[None]
        return torch.cat([one_hot.expand(-1, -1, size, size), xy.expand(batch, -1, -1, -1)], dim=1)


class NocsNet(nn.Module, abc.ABC):
    """A network that predicts NOCS maps and masks from RGB crops of known objects."""

    kind: str
    conditioning: ObjectConditioning

    @property
    def object_ids(self) -> list[int]:
        """The objects the network knows."""
        return self.conditioning.object_ids

    @abc.abstractmethod
    def predict(self, rgb: torch.Tensor, obj_id: torch.Tensor) -> NocsPrediction:
        """NOCS and mask of crops rgb (B, 3, S, S) float32 in [0, 1] showing objects obj_id (B,) int64."""

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """The constructor settings (plain values) needed to rebuild the network."""


def check_crops(rgb: torch.Tensor, size: int | None = None) -> None:
    """Raise ValueError unless rgb is a float batch (B, 3, S, S) (S = size when given)."""
    if not isinstance(rgb, torch.Tensor) or rgb.ndim != 4 or rgb.shape[1] != 3 or not rgb.is_floating_point():
        desc = f"{tuple(rgb.shape)} {rgb.dtype}" if isinstance(rgb, torch.Tensor) else type(rgb).__name__
        raise ValueError(f"crops must be a float tensor (B, 3, S, S) in [0, 1], got {desc}")
    if size is not None and tuple(rgb.shape[2:]) != (size, size):
        raise ValueError(f"crops must be {size}x{size}, got {tuple(rgb.shape[2:])}")

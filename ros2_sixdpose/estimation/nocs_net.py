"""What both NOCS networks share: their conditioning, the prediction they return, the crop they were trained
on, and their weights file.

A NOCS network maps an RGB crop (B, 3, S, S) in [0, 1] of a detected object to a NOCS map (B, 3, S, S) in
[0, 1] and an object mask probability (B, 1, S, S). Besides the image, the network sees which object the
detector says it is (one constant one-hot plane per known object: the map of one object is a different
function of the image than another's, as per-object networks such as Pix2Pose have it, but one network
serves all objects) and each pixel's position in the crop (two planes in [-1, 1], CoordConv, Liu et al.
2018: NOCS values are positions on the object, which translation-equivariant convolutions cannot place
on their own). Its weights file (written by `sixdpose train nocs`, read with `torch.load(weights_only=True)`)
holds the model kind, the U-Net shape, the kind's own settings, the object ids, the crop geometry it was
trained with and the weights, so inference needs nothing else.
"""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "sixdpose-nocs-1"
MODEL_KINDS = ("pix2pix", "bbdm")


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


def save_nocs_net(net: NocsNet, crop: CropSpec, path: str | Path) -> dict[str, Any]:
    """The weights-file content of `net` (written to `path` unless it is None); returns it."""
    content = {
        "format": FORMAT,
        "kind": net.kind,
        "settings": net.settings(),
        "crop": asdict(crop),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    if path is not None:
        torch.save(content, path)
    return content


def load_nocs_net(path: str | Path) -> tuple[NocsNet, CropSpec]:
    """Read a weights file written by `sixdpose train nocs`: the network (eval mode, CPU) and its crop spec."""
    from ros2_sixdpose.estimation.bbdm import BBDM
    from ros2_sixdpose.estimation.pix2pix import Pix2PixGenerator

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: NOCS network weights not found (train them with `sixdpose train nocs`)")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files; name the file
        raise ValueError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"{path}: not a NOCS network file (format {found!r}, expected {FORMAT!r})")
    classes = {"pix2pix": Pix2PixGenerator, "bbdm": BBDM}
    kind = content.get("kind")
    if kind not in classes:
        raise ValueError(f"{path}: unknown model kind {kind!r}; known: {MODEL_KINDS}")
    try:
        net = classes[kind].from_settings(content["settings"])
        net.load_state_dict(content["state_dict"])
        crop = CropSpec(**content["crop"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{path}: weights do not match a {kind} network ({type(exc).__name__}: {exc})") from exc
    return net.eval(), crop

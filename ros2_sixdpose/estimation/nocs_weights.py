"""The NOCS networks' weights file: written by `sixdpose train nocs`, read with `torch.load(weights_only=True)`.

It holds the model kind, the U-Net shape, the kind's own settings, the object ids, the crop geometry the
network was trained with and the weights, so inference needs nothing else.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ros2_sixdpose.estimation.bbdm import BBDM
from ros2_sixdpose.estimation.nocs_net import CropSpec, NocsNet
from ros2_sixdpose.estimation.pix2pix import Pix2PixGenerator
from ros2_sixdpose.train.weights import read_weights

FORMAT = "sixdpose-nocs-1"
# Model kind -> network class; the kind is stored in the file.
NETWORKS: dict[str, type[NocsNet]] = {"pix2pix": Pix2PixGenerator, "bbdm": BBDM}
MODEL_KINDS = tuple(NETWORKS)


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
    content = read_weights(path, FORMAT, "NOCS network", "sixdpose train nocs")
    kind = content.get("kind")
    if kind not in NETWORKS:
        raise ValueError(f"{path}: unknown model kind {kind!r}; known: {MODEL_KINDS}")
    try:
        net = NETWORKS[kind].from_settings(content["settings"])
        net.load_state_dict(content["state_dict"])
        crop = CropSpec(**content["crop"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{path}: weights do not match a {kind} network ({type(exc).__name__}: {exc})") from exc
    return net.eval(), crop

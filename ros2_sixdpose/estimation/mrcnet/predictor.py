"""MRC-Net inference on crops: classify, decode the bin pose, render it, regress the residual.

Shared by the estimator (`estimation.mrcnet.estimator`) and the training's validation, so both measure the
same path. The weights file (written by `sixdpose train mrcnet`, read with `torch.load(weights_only=True)`)
holds the network shape, the bin grids, the object ids and the weights.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.estimation.mrcnet.bins import RotationBins
from ros2_sixdpose.estimation.mrcnet.crop_pose import CropPoseGrid, decode_pose, encode_pose
from ros2_sixdpose.estimation.mrcnet.network import MrcNet, MrcNetConfig, ray_channels, rotation_from_6d
from ros2_sixdpose.train.weights import read_weights

FORMAT = "sixdpose-mrcnet-1"


@dataclass
class MrcPrediction:
    """Poses of B crops.

    T_stage1: (B, 4, 4) m, the classified pose (top-1 bins plus the stage-1 residuals); T_final: (B, 4, 4) m after
    the residual stage; rotation_probs: (B, R) bin probabilities; score: (B,) the top-1 bin's probability.
    """

    T_stage1: np.ndarray
    T_final: np.ndarray
    rotation_probs: np.ndarray
    score: np.ndarray


def network_input(rgb: torch.Tensor, K_crop: torch.Tensor) -> torch.Tensor:
    """(B, 5, S, S): crops (B, 3, S, S) float in [0, 1] with their pixel rays for intrinsics (B, 3, 3)."""
    return torch.cat([rgb, ray_channels(K_crop.to(rgb.dtype), rgb.shape[-1])], dim=1)


def render_crops(renderer: Renderer, obj_ids: list[int], poses: np.ndarray, K_crops: np.ndarray, size: int) -> np.ndarray:
    """Renders (B, S, S, 3) uint8 of objects `obj_ids` at poses (B, 4, 4) m seen by crop cameras (B, 3, 3)."""
    return np.stack([
        renderer.render(K, size, size, [(obj_id, T)], outputs="rgb").rgb
        for obj_id, T, K in zip(obj_ids, poses, K_crops)
    ])


def apply_residual(residual: np.ndarray, T_init: np.ndarray, K_crop: np.ndarray, size: int, diameter: float) -> np.ndarray:
    """T_cam_obj (4, 4) m: the stage-2 residual (9,) (6D rotation on the left, offset delta, log depth ratio) applied to T_init."""
    R_delta = rotation_from_6d(torch.as_tensor(residual[None, :6], dtype=torch.float64))[0].numpy()
    R_allo, offset, q = encode_pose(T_init, K_crop, size, diameter)
    T = decode_pose(R_allo, offset + residual[6:8], q * np.exp(residual[8]), K_crop, size, diameter)
    T[:3, :3] = R_delta @ T_init[:3, :3]
    return T


class MrcPredictor:
    """The network with its bins, the object models and a renderer (the render of the classified pose)."""

    def __init__(self, net: MrcNet, bins: RotationBins, grid: CropPoseGrid, object_ids: list[int],
                 models: dict[int, ObjectModel], renderer: Renderer) -> None:
        self.net = net
        self.bins = bins
        self.grid = grid
        self.object_ids = list(object_ids)
        self.rows = {obj_id: row for row, obj_id in enumerate(self.object_ids)}
        self.models = models
        self.renderer = renderer

    @property
    def size(self) -> int:
        """Crop side, pixels."""
        return self.net.config.crop_size

    def stage1_pose(self, out_row: dict[str, np.ndarray], K_crop: np.ndarray, diameter: float) -> np.ndarray:
        """T_cam_obj (4, 4) of one crop's top-1 bins plus residuals; `out_row` holds numpy stage-1 outputs."""
        ox = int(np.argmax(out_row["offset"][0]))
        oy = int(np.argmax(out_row["offset"][1]))
        offset = np.array([
            self.grid.decode(ox, out_row["offset_residual"][0, ox], "offset"),
            self.grid.decode(oy, out_row["offset_residual"][1, oy], "offset"),
        ])
        d = int(np.argmax(out_row["depth"]))
        q = float(self.grid.decode(d, out_row["depth_residual"][d], "depth"))
        R_allo = self.bins.rotation(int(np.argmax(out_row["rotation"])))
        return decode_pose(R_allo, offset, q, K_crop, self.size, diameter)

    def _checked(self, rgb: np.ndarray, obj_ids: list[int]) -> torch.Tensor:
        """Object rows (B,) of `obj_ids`, after checking the objects and the crops' shape."""
        unknown = sorted(set(obj_ids) - set(self.rows))
        if unknown:
            raise ValueError(f"objects {unknown} are not among the network's {self.object_ids}")
        size = self.size
        if rgb.ndim != 4 or rgb.shape[1:] != (size, size, 3) or len(rgb) != len(obj_ids):
            raise ValueError(f"crops must be (B, {size}, {size}, 3) with one object id each, got {rgb.shape}, "
                             f"{len(obj_ids)} ids")
        return torch.tensor([self.rows[o] for o in obj_ids])

    def _encode(self, rgb: np.ndarray, K_crops: np.ndarray) -> list[torch.Tensor]:
        """Features of crops (B, S, S, 3) uint8 with intrinsics (B, 3, 3)."""
        K = torch.from_numpy(np.asarray(K_crops, dtype=np.float32))
        return self.net.encode(network_input(torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0, K))

    def _residual(self, real: list[torch.Tensor], rows: torch.Tensor, T_init: np.ndarray, K_crops: np.ndarray,
                  obj_ids: list[int]) -> np.ndarray:
        """Poses (B, 4, 4) after the residual stage from initial poses T_init (B, 4, 4), given the real features."""
        rendered = render_crops(self.renderer, obj_ids, T_init, K_crops, self.size)
        residual = self.net.stage2(real, self._encode(rendered, K_crops), rows).double().numpy()
        return np.stack([
            apply_residual(residual[b], T_init[b], K_crops[b], self.size, self.models[obj_ids[b]].diameter)
            for b in range(len(obj_ids))
        ])

    @torch.no_grad()
    def predict(self, rgb: np.ndarray, K_crops: np.ndarray, obj_ids: list[int], residual: bool = True) -> MrcPrediction:
        """Poses of crops rgb (B, S, S, 3) uint8 with intrinsics K_crops (B, 3, 3) of objects `obj_ids` (B,).

        With `residual` false the residual stage is skipped (T_final = T_stage1), saving the render.
        """
        rows = self._checked(rgb, obj_ids)
        real = self._encode(rgb, K_crops)
        out = self.net.stage1(real, rows)
        probs = torch.softmax(out.rotation, dim=1).numpy()
        fields = {k: v.numpy() for k, v in asdict(out).items()}
        T1 = np.stack([
            self.stage1_pose({k: v[b] for k, v in fields.items()}, K_crops[b], self.models[obj_ids[b]].diameter)
            for b in range(len(obj_ids))
        ])
        T2 = self._residual(real, rows, T1, K_crops, obj_ids) if residual else T1.copy()
        return MrcPrediction(T1, T2, probs, probs.max(axis=1))

    @torch.no_grad()
    def refine(self, rgb: np.ndarray, K_crops: np.ndarray, obj_ids: list[int], T_init: np.ndarray) -> np.ndarray:
        """The residual stage alone: poses (B, 4, 4) m corrected from given initial poses T_init (B, 4, 4)."""
        rows = self._checked(rgb, obj_ids)
        return self._residual(self._encode(rgb, K_crops), rows, np.asarray(T_init, dtype=np.float64), K_crops, obj_ids)


def weights_content(net: MrcNet, bins: RotationBins, grid: CropPoseGrid, object_ids: list[int]) -> dict[str, Any]:
    """What `sixdpose train mrcnet` saves: format, shapes, grids, object ids and the weights."""
    return {
        "format": FORMAT,
        "config": asdict(net.config),
        "bins": asdict(bins),
        "grid": asdict(grid),
        "object_ids": list(object_ids),
        # float16 storage halves the file (10.4 -> 5.2 MB); load_state_dict casts back to the float32 parameters.
        "state_dict": {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
                       for k, v in net.state_dict().items()},
    }


def load_mrcnet(path: str | Path) -> tuple[MrcNet, RotationBins, CropPoseGrid, list[int]]:
    """Read a weights file written by `sixdpose train mrcnet`: network (eval mode, CPU), bins, grid, object ids."""
    content = read_weights(path, FORMAT, "MRC-Net", "sixdpose train mrcnet")
    try:
        config = content["config"]
        net = MrcNet(MrcNetConfig(**{**config, "widths": tuple(config["widths"]), "windows": tuple(config["windows"])}))
        net.load_state_dict(content["state_dict"])
        grid = content["grid"]
        bins = RotationBins(**content["bins"])
        grid = CropPoseGrid(**{**grid, "depth_range": tuple(grid["depth_range"])})
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{path}: weights do not match an MRC-Net network ({type(exc).__name__}: {exc})") from exc
    return net.eval(), bins, grid, [int(o) for o in content["object_ids"]]

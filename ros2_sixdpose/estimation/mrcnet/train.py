"""Training of MRC-Net: a crop cache with soft labels and rendered initial poses, and the `TrainTask`.

Both stages train jointly on every batch (Li et al. 2024 train them end to end). Stage 2 needs a render of a
classified pose; rendering inside the step would cost more than the step itself on this CPU, so each cached
crop carries one initial pose drawn as the classifier's errors look (half the time the ground-truth bin,
half a bin drawn from the soft labels, i.e. a neighbour; centre and depth jittered by about a bin's
residual error) and its render, made once when the cache is built.

Losses (weights in `MrcTrainConfig`):
- rotation bins: cross entropy with the symmetry-aware soft labels (equals the KL divergence up to the
  labels' entropy), as MRC-Net;
- centre-offset and depth bins: cross entropy, plus L1 of the residual in the true bin;
- residual stage: symmetry-aware vertex distance of the corrected rotation (ADD-S-like, min over the
  declared symmetries, in diameters) plus L1 of the corrected offset and log depth ratio.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from ros2_sixdpose.core.metrics import add_s
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data.augment import AugmentConfig, augment
from ros2_sixdpose.data.bop import BopSplit, read_mask, read_rgb
from ros2_sixdpose.data.views import ViewConfig
from ros2_sixdpose.estimation.mrcnet.bins import RotationBins, soft_labels, symmetric_vertex_distances
from ros2_sixdpose.estimation.mrcnet.crop_pose import CropPoseGrid, decode_pose, encode_pose
from ros2_sixdpose.estimation.mrcnet.network import MrcNet, MrcNetConfig, rotation_from_6d
from ros2_sixdpose.estimation.mrcnet.predictor import MrcPredictor, network_input, render_crops, weights_content
from ros2_sixdpose.estimation.symmetry import symmetric_rotation_error
from ros2_sixdpose.estimation.train import crop_items, load_tensors, save_tensors

logger = logging.getLogger(__name__)

CACHE_FORMAT = "sixdpose-mrcnet-crops-1"
LABEL_SYMMETRY_STEP = 0.05  # continuous symmetries sampled every 5 % of the diameter for labels and losses
LABEL_POINTS = 64  # model vertices used for label distances and the vertex loss


@dataclass
class MrcTrainConfig:
    """Data, labels, initial-pose draws and loss weights of `sixdpose train mrcnet` (config/mrcnet_train.yaml)."""

    net: MrcNetConfig = field(default_factory=MrcNetConfig)
    bins: RotationBins = field(default_factory=RotationBins)
    grid: CropPoseGrid = field(default_factory=CropPoseGrid)
    crop_scale: float = 1.2  # square crop side / longer side of the visible box, as at inference
    batch_size: int = 24
    min_visib_fract: float = 0.3
    cache_epochs: int = 2  # box-jitter draws (each with its own initial pose) per instance
    val_crops: int = 64
    label_sigma: float = 0.08  # soft-label width, diameters of vertex distance (~ a third of the bin spacing)
    init_offset_std: float = 0.02  # crop sides
    init_log_depth_std: float = 0.04
    w_rotation: float = 1.0
    w_translation_bins: float = 1.0
    w_residual1: float = 1.0
    w_vertex: float = 5.0  # the vertex loss is in diameters (~0.05-0.3): weighed up to the cross entropies' scale
    w_translation2: float = 5.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def model_points(model: ObjectModel, count: int = LABEL_POINTS) -> np.ndarray:
    """(count, 3) m model vertices, evenly spread over the vertex list (deterministic)."""
    index = np.linspace(0, len(model.vertices) - 1, count).round().astype(int)
    return np.asarray(model.vertices[index], dtype=np.float64)


def label_points(model: ObjectModel, count: int = LABEL_POINTS) -> np.ndarray:
    """(count x (1 + discrete symmetries), 3) m: `model_points` and their images under each discrete symmetry.

    A vertex distance averaged over a point set that a symmetry S maps onto itself gives R and R S the same
    distance to any pose, so equivalent bins get exactly equal labels (a sample of the mesh is not such a set).
    """
    points = model_points(model, count)
    return np.concatenate([points] + [points @ S[:3, :3].T + S[:3, 3] for S in model.symmetries_discrete])


class MrcCache(Dataset):
    """Training crops with targets, held in memory (N crops, S px, R rotation bins).

    rgb, render: (N, 3, S, S) uint8; mask: (N, 1, S, S) bool; K_crop: (N, 3, 3) float32; row: (N,) int64 object row;
    labels: (N, R) float16 soft rotation labels; R_gt, R_init: (N, 3, 3) float32 egocentric rotations;
    offset_bin (N, 2) int64, offset_res (N, 2), depth_bin (N,) int64, depth_res (N,): stage-1 targets;
    offset_gt, offset_init (N, 2) crop sides, log_q_gt, log_q_init (N,): stage-2 targets and inputs;
    T_gt, T_init: (N, 4, 4) float32 m.
    """

    KEYS = ("rgb", "render", "mask", "K_crop", "row", "labels", "R_gt", "R_init", "offset_bin", "offset_res",
            "depth_bin", "depth_res", "offset_gt", "offset_init", "log_q_gt", "log_q_init", "T_gt", "T_init")

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = {k: tensors[k] for k in self.KEYS}

    def __len__(self) -> int:
        return len(self.tensors["rgb"])

    def __getitem__(self, index: Any) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}

    @classmethod
    def build(cls, split: BopSplit, view: ViewConfig, config: MrcTrainConfig, models: dict[int, ObjectModel],
              object_ids: list[int], renderer: Renderer, epochs: int, seed: int, limit: int | None = None) -> "MrcCache":
        """Cut `epochs` jittered crops of every instance of `split` (at most `limit`), with labels and initial renders."""
        dataset, items = crop_items(split, view, object_ids, epochs, seed, limit)
        index = dataset.index
        items.sort(key=lambda item: (index.scene_id[item[1]], index.im_id[item[1]]))
        rng = np.random.default_rng(seed)
        symmetries = {o: models[o].symmetry_transforms(LABEL_SYMMETRY_STEP) for o in object_ids}
        points = {o: label_points(models[o]) for o in object_ids}
        size, bins, grid = view.size, config.bins, config.grid
        rows: dict[str, list] = {k: [] for k in cls.KEYS}
        frame_key, rgb_full = None, None
        for epoch, item in tqdm(items, desc=f"mrcnet crops of {split.split}", unit="crop"):
            scene_id, im_id = int(index.scene_id[item]), int(index.im_id[item])
            if frame_key != (scene_id, im_id):
                frame_key, rgb_full = (scene_id, im_id), read_rgb(split.rgb_path(scene_id, im_id))
            crop = dataset.crop_transform(item, epoch)
            obj_id = int(index.obj_id[item])
            model = models[obj_id]
            K_crop = crop.K_crop(index.K[item])
            T_gt = index.T_cam_obj[item]
            R_allo, offset, q = encode_pose(T_gt, K_crop, size, model.diameter)
            distances = symmetric_vertex_distances(bins.rotations, R_allo, points[obj_id], symmetries[obj_id])
            labels = soft_labels(distances, config.label_sigma * model.diameter)
            start_bin = int(np.argmax(labels)) if rng.random() < 0.5 else int(rng.choice(len(labels), p=labels))
            offset_init = offset + rng.normal(0.0, config.init_offset_std, 2)
            q_init = q * np.exp(rng.normal(0.0, config.init_log_depth_std))
            T_init = decode_pose(bins.rotation(start_bin), offset_init, q_init, K_crop, size, model.diameter)
            offset_bin, offset_res = grid.encode(offset, "offset")
            depth_bin, depth_res = grid.encode(q, "depth")
            visible = read_mask(split.mask_visib_path(scene_id, im_id, int(index.gt_index[item])))
            values = {
                "rgb": crop.warp(rgb_full, cv2.INTER_LINEAR).transpose(2, 0, 1),
                "render": render_crops(renderer, [obj_id], T_init[None], K_crop[None], size)[0].transpose(2, 0, 1),
                "mask": crop.warp(visible, cv2.INTER_NEAREST)[None],
                "K_crop": K_crop.astype(np.float32), "row": object_ids.index(obj_id),
                "labels": labels.astype(np.float16), "R_gt": T_gt[:3, :3].astype(np.float32),
                "R_init": T_init[:3, :3].astype(np.float32), "offset_bin": offset_bin, "offset_res": offset_res,
                "depth_bin": depth_bin, "depth_res": depth_res, "offset_gt": offset, "offset_init": offset_init,
                "log_q_gt": np.log(q), "log_q_init": np.log(q_init), "T_gt": T_gt.astype(np.float32),
                "T_init": T_init.astype(np.float32),
            }
            for k, v in values.items():
                rows[k].append(np.asarray(v))
        tensors = {k: torch.from_numpy(np.stack(v)) for k, v in rows.items()}
        for k in ("offset_res", "depth_res", "offset_gt", "offset_init", "log_q_gt", "log_q_init"):
            tensors[k] = tensors[k].float()
        return cls(tensors)

    def save(self, path: Path, info: dict[str, Any]) -> None:
        """Write the cache with a description of how it was made (compared on load)."""
        save_tensors(path, CACHE_FORMAT, info, self.tensors)

    @classmethod
    def load(cls, path: Path, info: dict[str, Any]) -> "MrcCache | None":
        """The cache at `path` if it was made as `info` describes, else None."""
        content = load_tensors(path, CACHE_FORMAT, info)
        return None if content is None else cls(content)


def cached_mrc_crops(split: BopSplit, view: ViewConfig, config: MrcTrainConfig, models: dict[int, ObjectModel],
                     object_ids: list[int], renderer: Renderer, epochs: int, seed: int, cache_dir: Path,
                     limit: int | None = None) -> MrcCache:
    """Crops of `split` from `cache_dir/<split>_mrcnet.pt`, built on first use."""
    info = {"split": str(split.path), "view": asdict(view), "config": asdict(config), "epochs": epochs,
            "seed": seed, "limit": limit, "object_ids": object_ids}
    info = {k: str(v) for k, v in info.items()}  # tuples and lists come back from torch.load as they went in
    path = cache_dir / f"{split.split}_mrcnet.pt"
    cache = MrcCache.load(path, info)
    if cache is None:
        cache = MrcCache.build(split, view, config, models, object_ids, renderer, epochs, seed, limit)
        cache.save(path, info)
        logger.info("wrote %d crops to %s", len(cache), path)
    return cache


class SymmetricVertexLoss:
    """Mean over a batch of min_S mean_p |R p - R_gt (S_R p + S_t)| / diameter, per object row."""

    def __init__(self, models: dict[int, ObjectModel], object_ids: list[int]) -> None:
        self.points = [torch.from_numpy(label_points(models[o])).float() for o in object_ids]
        self.symmetries = [torch.from_numpy(models[o].symmetry_transforms(LABEL_SYMMETRY_STEP)).float()
                           for o in object_ids]
        self.diameters = torch.tensor([models[o].diameter for o in object_ids], dtype=torch.float32)

    def __call__(self, R: torch.Tensor, R_gt: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Loss () for rotations R, R_gt (B, 3, 3) of objects `rows` (B,)."""
        losses = []
        for b in range(len(rows)):
            row = int(rows[b])
            p, S = self.points[row], self.symmetries[row]
            moved = p @ R[b].T
            targets = (p @ S[:, :3, :3].transpose(1, 2) + S[:, None, :3, 3]) @ R_gt[b].T
            losses.append((moved[None] - targets).norm(dim=-1).mean(dim=-1).min() / self.diameters[row])
        return torch.stack(losses).mean()


def bin_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of crops whose top-k bins (by probs (N, R)) hold a best bin of the soft labels (N, R) (ties: symmetries)."""
    top = np.argsort(-probs, axis=1)[:, :k]
    best = labels >= labels.max(axis=1, keepdims=True) * 0.999
    return float(np.mean([best[i, top[i]].any() for i in range(len(probs))]))


class MrcTask:
    """MRC-Net as a `TrainTask`: joint stage-1 / stage-2 steps on cached crops, validation through `MrcPredictor`."""

    def __init__(self, config: MrcTrainConfig, models: dict[int, ObjectModel], object_ids: list[int], val: MrcCache,
                 renderer: Renderer, seed: int, device: str = "cpu", stage1_from: MrcNet | None = None) -> None:
        """`stage1_from`: train the residual stage only, on the frozen encoder and classifier of this network."""
        torch.manual_seed(seed)
        self.config = config
        self.object_ids = list(object_ids)
        self.models = models
        self.val = val
        self.device = torch.device(device)
        self.net = MrcNet(config.net)
        self.residual_only = stage1_from is not None
        if stage1_from is not None:
            for mine, theirs in zip(self.net.stage1_modules(), stage1_from.stage1_modules()):
                mine.load_state_dict(theirs.state_dict())
                mine.requires_grad_(False)
        self.net.to(self.device)
        trained = self.net.stage2_parameters() if self.residual_only else list(self.net.parameters())
        self.optimizer = torch.optim.AdamW(trained, weight_decay=1e-4)
        self.generator = torch.Generator().manual_seed(seed)
        self.vertex_loss = SymmetricVertexLoss(models, object_ids)
        self.predictor = MrcPredictor(self.net, config.bins, config.grid, object_ids, models, renderer)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The one optimizer."""
        return [self.optimizer]

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """Both stages (or the residual stage alone) on one batch of cached crops."""
        c = self.config
        rgb = batch["rgb"].float() / 255.0
        if c.augment.enabled:
            rgb = augment(rgb, batch["mask"], c.augment, self.generator).rgb
        dev = self.device
        K = batch["K_crop"].to(dev)
        rows = batch["row"].to(dev)
        # Real and rendered crops share one pass, so batch norm's statistics during training are those of the
        # mixture its running averages describe at inference.
        both = torch.cat([network_input(rgb.to(dev), K), network_input(batch["render"].float().to(dev) / 255.0, K)])
        with torch.set_grad_enabled(not self.residual_only):
            features = self.net.encode(both)
        real = [f[: len(rows)] for f in features]
        rendered = [f[len(rows):] for f in features]
        if self.residual_only:
            loss_vertex, loss_t2 = self._residual_losses(real, rendered, rows, batch)
            loss = c.w_vertex * loss_vertex + c.w_translation2 * loss_t2
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            return {"vertex": loss_vertex.item(), "t2": loss_t2.item()}
        out = self.net.stage1(real, rows)
        labels = batch["labels"].float().to(dev)
        loss_rot = -(labels * F.log_softmax(out.rotation, dim=1)).sum(dim=1).mean()
        offset_bin, depth_bin = batch["offset_bin"].to(dev), batch["depth_bin"].to(dev)
        loss_tbins = F.cross_entropy(out.offset.reshape(-1, c.grid.offset_bins), offset_bin.reshape(-1)) \
            + F.cross_entropy(out.depth, depth_bin)
        offset_res = out.offset_residual.gather(2, offset_bin[..., None])[..., 0]
        depth_res = out.depth_residual.gather(1, depth_bin[:, None])[:, 0]
        loss_res1 = (offset_res - batch["offset_res"].to(dev)).abs().mean() \
            + (depth_res - batch["depth_res"].to(dev)).abs().mean()
        loss_vertex, loss_t2 = self._residual_losses(real, rendered, rows, batch)
        loss = (c.w_rotation * loss_rot + c.w_translation_bins * loss_tbins + c.w_residual1 * loss_res1
                + c.w_vertex * loss_vertex + c.w_translation2 * loss_t2)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"rot_ce": loss_rot.item(), "t_bins": loss_tbins.item(), "res1": loss_res1.item(),
                "vertex": loss_vertex.item(), "t2": loss_t2.item()}

    def _residual_losses(self, real: list[torch.Tensor], rendered: list[torch.Tensor], rows: torch.Tensor,
                         batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(symmetry-aware vertex loss in diameters, L1 of offset and log depth) of the residual stage on a batch."""
        dev = self.device
        residual = self.net.stage2(real, rendered, rows)
        R = rotation_from_6d(residual[:, :6]) @ batch["R_init"].to(dev)
        loss_vertex = self.vertex_loss(R.cpu(), batch["R_gt"], rows.cpu()).to(dev)
        offset_error = batch["offset_init"].to(dev) + residual[:, 6:8] - batch["offset_gt"].to(dev)
        depth_error = batch["log_q_init"].to(dev) + residual[:, 8] - batch["log_q_gt"].to(dev)
        return loss_vertex, offset_error.abs().mean() + depth_error.abs().mean()

    def validate(self) -> dict[str, float]:
        """Bin accuracies and ADD(-S) recall (0.1 d) of the classified and of the final poses on the validation crops."""
        self.net.cpu()
        metrics = crop_metrics(self.predictor, self.val)
        self.net.to(self.device)
        return {k: metrics[k] for k in ("top1", "top5", "add_stage1", "add_final")}

    def train_mode(self, training: bool) -> None:
        """Switch the network between train and eval mode (frozen stage-1 modules stay in eval mode)."""
        self.net.train(training)
        if self.residual_only:
            for module in self.net.stage1_modules():
                module.eval()

    def state_dict(self) -> dict[str, Any]:
        """Network, optimizer and augmentation generator."""
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])

    def export(self) -> dict[str, Any]:
        """The weights file `load_mrcnet` reads."""
        return weights_content(self.net, self.config.bins, self.config.grid, self.object_ids)


def crop_metrics(predictor: MrcPredictor, crops: MrcCache, batch: int = 64) -> dict[str, float]:
    """The classifier and the residual stage on cached crops (ground-truth boxes), without augmentation.

    top1 / top5: share of crops whose top-k rotation bins hold a best bin of the soft labels; add_stage1 /
    add_final: ADD(-S) recall at 0.1 d of the classified pose and after the residual stage; rot_stage1_deg /
    rot_final_deg: median symmetry-aware rotation errors; n: crops.
    """
    tensors = crops.tensors
    obj_ids = [predictor.object_ids[int(r)] for r in tensors["row"]]
    rgb = np.ascontiguousarray(tensors["rgb"].permute(0, 2, 3, 1).numpy())
    K_crops = tensors["K_crop"].double().numpy()
    parts = [predictor.predict(rgb[i:i + batch], K_crops[i:i + batch], obj_ids[i:i + batch])
             for i in range(0, len(obj_ids), batch)]
    probs = np.concatenate([p.rotation_probs for p in parts])
    labels = tensors["labels"].float().numpy()
    T_gt = tensors["T_gt"].double().numpy()
    metrics = {"top1": bin_accuracy(probs, labels, 1), "top5": bin_accuracy(probs, labels, 5), "n": float(len(obj_ids))}
    for name, poses in (("stage1", np.concatenate([p.T_stage1 for p in parts])),
                        ("final", np.concatenate([p.T_final for p in parts]))):
        models = [predictor.models[o] for o in obj_ids]
        metrics[f"add_{name}"] = float(np.mean([pose_correct(m, T, T_true) for m, T, T_true in zip(models, poses, T_gt)]))
        metrics[f"rot_{name}_deg"] = float(np.degrees(np.median([
            symmetric_rotation_error(T[:3, :3], T_true[:3, :3], m.symmetry_transforms(LABEL_SYMMETRY_STEP))
            for m, T, T_true in zip(models, poses, T_gt)
        ])))
    return metrics


def pose_correct(model: ObjectModel, T_est: np.ndarray, T_gt: np.ndarray, threshold: float = 0.1) -> bool:
    """ADD (ADD-S for symmetric objects) below `threshold` x diameter."""
    return add_s(T_est, T_gt, model_points(model, 500), model.is_symmetric) < threshold * model.diameter

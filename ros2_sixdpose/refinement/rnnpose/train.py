"""Training of RNNPose (`sixdpose train rnnpose`, in cli/): perturbed ground truth, online reference renders.

Each instance of a synthetic split (`sixdpose synth`) is cut out once around its ground-truth box (colour and scene
depth, `region_size` px). A sample disturbs the ground-truth pose as the paper does (each axis angle ~ N(0, 15 deg),
capped at 45 deg; shift ~ N(0, 1 / 1 / 5 cm)), crops around the disturbed pose and refines it with the recurrent loop,
rendering the reference online. Losses (RNNPose): the sequence flow loss (L1 to the ground-truth flow of the visible
reference pixels, gamma-weighted towards later updates), the 3D alignment loss (mean distance of model points under
each update's pose and the ground truth, / diameter, gamma-weighted), and a descriptor loss (InfoNCE: each visible
reference pixel's 3D descriptor against the 2D descriptors of every observed cell, its true match the positive).
Visibility: the ground-truth reprojection of a rendered point must agree with the scene's depth there.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset
from tqdm import tqdm

from ros2_sixdpose.core.camera import CropTransform, square_box
from ros2_sixdpose.core.metrics import ADD_THRESHOLD
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.perturb import TRANSLATION_PATTERN_M, perturb_pose
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data.augment import ColorJitterConfig, NoiseConfig, color_jitter, sensor_noise
from ros2_sixdpose.data.bop import BopSplit, read_depth, read_rgb
from ros2_sixdpose.refinement.rnnpose.loop import LM_STRIDE, LoopResult, ReferenceTensors, pixel_grid, refine_loop
from ros2_sixdpose.refinement.rnnpose.network import NetworkConfig, RNNPoseNet
from ros2_sixdpose.refinement.rnnpose.pose_solver import project
from ros2_sixdpose.refinement.rnnpose.references import pose_crop
from ros2_sixdpose.refinement.rnnpose.refiner import (
    RNNPoseConfig, batch_renderer, load_network, network_state, nocs_of,
)

logger = logging.getLogger(__name__)


@dataclass
class RNNPoseTrainConfig:
    """Batches, disturbances and losses of one training run."""

    batch_size: int = 8
    # Renders per training sample (inference: RNNPoseConfig.renders). One halves a step's time; later renders start
    # nearer the truth, which the disturbances' small draws already cover.
    renders: int = 1
    updates: int = 3  # updates per render
    gamma: float = 0.8  # sequence weights gamma^(N - 1 - i) (RAFT, RNNPose)
    # Flow dominant: with 0.1 / 10 / 0.2 the alignment loss drowned the flow loss and the flow did not learn (one
    # batch overfit for 35 steps: flow L1 9.7 -> 7.1 px against 9.7 -> 3.1 with these).
    flow_weight: float = 1.0  # x mean L1 flow error, crop px
    pose_weight: float = 3.0  # x mean model-point distance / diameter ...
    pose_warmup_steps: int = 400  # ... ramped up from 0 over these steps: poses solved from untrained flow teach nothing
    descriptor_weight: float = 0.5  # x InfoNCE
    descriptor_temperature: float = 0.1
    rot_sigma_deg: float = 15.0  # per axis (the paper's training disturbance) ...
    rot_cap_deg: float = 45.0  # ... with the total angle capped
    trans_sigma_m: tuple[float, float, float] = TRANSLATION_PATTERN_M
    min_visib_fract: float = 0.3  # instances less visible are not trained on
    region_size: int = 128  # px of the stored cut-out around each instance ...
    region_scale: float = 2.2  # ... this many times its box, enough for the disturbed crops
    visible_tolerance_m: float = 0.01  # rendered point vs scene depth at its true match
    val_instances: int = 48
    val_rot_deg: float = 15.0  # validation starts: uniform per axis, 1 / 1 / 5 cm
    model_points: int = 256  # points of the 3D alignment loss
    network: NetworkConfig = field(default_factory=NetworkConfig)


@dataclass
class InstancePool:
    """Cut-outs of every usable instance: rgb (N, P, P, 3) uint8, depth (N, P, P) float32 m, K (N, 3, 3) of the cut-out
    camera, T_gt (N, 4, 4), obj_id (N,)."""

    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    T_gt: np.ndarray
    obj_id: np.ndarray


def instance_pool(split: BopSplit, models: dict[int, ObjectModel], config: RNNPoseTrainConfig,
                  limit: int | None = None) -> InstancePool:
    """Cut every instance of `split` with visib_fract >= min_visib_fract out around its full silhouette box."""
    rows: dict[str, list] = {name: [] for name in InstancePool.__dataclass_fields__}
    for scene_id in tqdm(split.scene_ids(), desc=f"instances {split.split}", unit="scene"):
        scene = split.read_scene(scene_id)
        for im_id, instances in sorted(scene.gt.items()):
            rgb = depth = None
            for instance, info in zip(instances, scene.gt_info[im_id]):
                if info.visib_fract < config.min_visib_fract or instance.obj_id not in models:
                    continue
                if rgb is None:
                    rgb = read_rgb(split.rgb_path(scene_id, im_id))
                    depth = read_depth(split.depth_path(scene_id, im_id), scene.camera[im_id].depth_scale)
                x, y, w, h = info.bbox_obj
                box = square_box(np.array([x, y, x + w, y + h], dtype=np.float64), config.region_scale)
                crop = CropTransform(tuple(box), (config.region_size, config.region_size))
                rows["rgb"].append(crop.warp(rgb))
                rows["depth"].append(crop.warp(depth, cv2.INTER_NEAREST))
                rows["K"].append(crop.K_crop(scene.camera[im_id].K))
                rows["T_gt"].append(instance.T_cam_obj)
                rows["obj_id"].append(instance.obj_id)
                if limit is not None and len(rows["obj_id"]) >= limit:
                    return InstancePool(**{k: np.asarray(v) for k, v in rows.items()})
    return InstancePool(**{k: np.asarray(v) for k, v in rows.items()})


@dataclass
class Batch:
    """Instances to refine: observed (B, 3, S, S) in [0, 1], depth (B, S, S) m, K (B, 3, 3) crop intrinsics, T0 and
    T_gt (B, 4, 4) (T_gt the symmetric equivalent nearest T0), obj_ids."""

    observed: torch.Tensor
    depth: torch.Tensor
    K: np.ndarray
    T0: np.ndarray
    T_gt: np.ndarray
    obj_ids: list[int]


def _nearest_symmetric(model: ObjectModel, T_gt: np.ndarray, T0: np.ndarray) -> np.ndarray:
    """The pose equivalent to T_gt under the model's symmetries whose rotation is nearest T0's."""
    poses = T_gt @ model.symmetry_transforms(0.05)
    traces = np.einsum("ij,nij->n", T0[:3, :3], poses[:, :3, :3])
    return poses[int(np.argmax(traces))]


def make_batch(pool: InstancePool, indices: np.ndarray, models: dict[int, ObjectModel], refiner: RNNPoseConfig,
               rng: np.random.Generator, rot_deg: float, trans_m, gaussian: bool, cap_deg: float = 45.0) -> Batch:
    """Disturb the ground truth of pool instances `indices` and cut their crops around the disturbed poses."""
    size = refiner.crop_size
    observed, depth, K, T0s, T_gts, ids = [], [], [], [], [], []
    for i in indices:
        model = models[int(pool.obj_id[i])]
        center = model.bbox_min + model.bbox_size / 2
        while True:
            T0 = perturb_pose(pool.T_gt[i], center, rng, rot_deg, trans_m, gaussian, cap_deg)
            crop = pose_crop(model, T0, pool.K[i], size, refiner.crop_scale)
            if crop is not None:
                break
        observed.append(crop.warp(pool.rgb[i]))
        depth.append(crop.warp(pool.depth[i], cv2.INTER_NEAREST))
        K.append(crop.K_crop(pool.K[i]))
        T0s.append(T0)
        T_gts.append(_nearest_symmetric(model, pool.T_gt[i], T0))
        ids.append(int(pool.obj_id[i]))
    rgb = torch.from_numpy(np.stack(observed)).permute(0, 3, 1, 2).float() / 255.0
    return Batch(rgb, torch.from_numpy(np.stack(depth)), np.stack(K), np.stack(T0s), np.stack(T_gts), ids)


class TrainingBatches(IterableDataset):
    """Endless random batches of disturbed instances with photometric augmentation of the observed crops."""

    def __init__(self, pool: InstancePool, models: dict[int, ObjectModel], config: RNNPoseTrainConfig,
                 refiner: RNNPoseConfig, seed: int) -> None:
        self.pool, self.models, self.config, self.refiner = pool, models, config, refiner
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[Batch]:
        c = self.config
        while True:
            indices = self.rng.integers(0, len(self.pool.obj_id), c.batch_size)
            batch = make_batch(self.pool, indices, self.models, self.refiner, self.rng, c.rot_sigma_deg,
                               c.trans_sigma_m, gaussian=True, cap_deg=c.rot_cap_deg)
            rgb = color_jitter(batch.observed, ColorJitterConfig(), self.generator)
            batch.observed = sensor_noise(rgb, NoiseConfig(), self.generator)
            yield batch


def ground_truth_flow(ref: ReferenceTensors, T_gt: torch.Tensor, K: torch.Tensor, depth: torch.Tensor,
                      tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow (B, 2, n, n) crop px from each LM-grid reference pixel to its true match, and where that is visible (B, n, n)."""
    B, n = ref.mask_lm.shape[:2]
    S = depth.shape[-1]
    uv, P = project(T_gt, ref.points.reshape(B, -1, 3).double(), K)
    uv = uv.float().reshape(B, n, n, 2)
    flow = (uv - pixel_grid(S, uv.device, LM_STRIDE)[None]).permute(0, 3, 1, 2)
    col, row = uv[..., 0].round().long(), uv[..., 1].round().long()
    inside = (col >= 0) & (col < S) & (row >= 0) & (row < S)
    flat = (row.clamp(0, S - 1) * S + col.clamp(0, S - 1)).reshape(B, -1)
    scene_z = torch.gather(depth.reshape(B, -1), 1, flat).reshape(B, n, n)
    z = P[..., 2].float().reshape(B, n, n)
    visible = ref.mask_lm & inside & (scene_z > 0) & ((z - scene_z).abs() < tolerance)
    return flow, visible


def alignment_error(T: torch.Tensor, T_gt: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Mean distance (B,) m of model points (B, P, 3) under T and T_gt (B, 4, 4)."""
    a = points @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]
    b = points @ T_gt[:, :3, :3].transpose(1, 2) + T_gt[:, None, :3, 3]
    return (a - b).norm(dim=-1).mean(1)


def descriptor_loss(ref: ReferenceTensors, d_obs: torch.Tensor, flow_gt: torch.Tensor, visible: torch.Tensor,
                    temperature: float, per_instance: int, generator: torch.Generator) -> torch.Tensor:
    """InfoNCE of visible reference pixels' 3D descriptors against all observed cells' 2D descriptors."""
    B, D, h, w = d_obs.shape
    target = pixel_grid(4 * h, flow_gt.device, LM_STRIDE)[None] + flow_gt.permute(0, 2, 3, 1)
    cell = (target / 4.0).floor().long()
    losses = []
    for b in range(B):
        idx = visible[b].flatten().nonzero()[:, 0]
        if idx.numel() == 0:
            continue
        idx = idx[torch.randperm(idx.numel(), generator=generator)[:per_instance]]
        d3 = ref.descriptors[b].reshape(D, -1)[:, idx].T  # (n, D)
        logits = d3 @ d_obs[b].reshape(D, -1) / temperature  # (n, h*w)
        c = cell[b].reshape(-1, 2)[idx]
        labels = c[:, 1].clamp(0, h - 1) * w + c[:, 0].clamp(0, w - 1)
        losses.append(F.cross_entropy(logits, labels))
    return torch.stack(losses).mean() if losses else d_obs.sum() * 0.0


class RNNPoseTask:
    """`TrainTask` of RNNPose: flow + 3D alignment + descriptor losses; validation = ADD(-S) from perturbed starts."""

    def __init__(self, config: RNNPoseTrainConfig, refiner: RNNPoseConfig, models: dict[int, ObjectModel],
                 val: Batch, seed: int, device: str = "cpu") -> None:
        self.config, self.refiner, self.models, self.val = config, refiner, models, val
        self.device = torch.device(device)
        self.net = RNNPoseNet(config.network).to(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), weight_decay=1e-4)
        self.generator = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.points = {i: torch.from_numpy(m.vertices[rng.choice(len(m.vertices), config.model_points)]).double()
                       for i, m in models.items()}
        self._renderer: Renderer | None = None

    @property
    def renderer(self) -> Renderer:
        """The reference renderer, made on first use (in the thread that trains)."""
        if self._renderer is None:
            self._renderer = Renderer(self.models)
        return self._renderer

    def run(self, batch: Batch, renders: int, updates: int) -> LoopResult:
        """The recurrent loop on a batch."""
        render = batch_renderer(self.renderer, self.models, batch.obj_ids, batch.K, self.refiner.crop_size)
        return refine_loop(self.net, render, nocs_of(self.models), batch.observed.to(self.device),
                           torch.from_numpy(batch.K).to(self.device), torch.from_numpy(batch.T0).to(self.device),
                           batch.obj_ids, renders, updates, self.refiner.damping)

    def start_from(self, path: Path) -> None:
        """Load the network of an RNNPose weights file (its settings must equal this run's)."""
        net = load_network(path)
        if net.config != self.net.config:
            raise ValueError(f"{path} holds a network with settings {net.config}, this run trains {self.net.config}")
        self.net.load_state_dict(net.state_dict())

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def losses(self, batch: Batch, result: LoopResult) -> dict[str, torch.Tensor]:
        """The three losses of one batch's refinement."""
        c = self.config
        K = torch.from_numpy(batch.K).to(self.device)
        T_gt = torch.from_numpy(batch.T_gt).to(self.device)
        depth = batch.depth.to(self.device)
        points = torch.stack([self.points[i] for i in batch.obj_ids]).to(self.device)
        diameters = torch.tensor([self.models[i].diameter for i in batch.obj_ids], dtype=torch.float64,
                                 device=self.device)
        truth = [ground_truth_flow(ref, T_gt, K, depth, c.visible_tolerance_m) for ref in result.references]
        n = len(result.steps)
        flow_loss = pose_loss = 0.0
        for i, step in enumerate(result.steps):
            weight = c.gamma ** (n - 1 - i)
            flow_gt, visible = truth[step.render]
            error = (step.flow - flow_gt).abs().sum(1)
            flow_loss = flow_loss + weight * (error * visible).sum() / visible.sum().clamp(min=1)
            pose_loss = pose_loss + weight * (alignment_error(step.T.double(), T_gt, points) / diameters).mean()
        flow_gt, visible = truth[0]
        desc = descriptor_loss(result.references[0], result.observed_descriptors, flow_gt, visible,
                               c.descriptor_temperature, 256, self.generator)
        return {"flow": flow_loss, "pose": pose_loss.float(), "descriptor": desc}

    def training_step(self, batch: Batch, step: int) -> dict[str, float]:
        c = self.config
        result = self.run(batch, c.renders, c.updates)
        parts = self.losses(batch, result)
        pose_weight = c.pose_weight * min(1.0, step / max(c.pose_warmup_steps, 1))
        loss = c.flow_weight * parts["flow"] + pose_weight * parts["pose"] + c.descriptor_weight * parts["descriptor"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.optimizer.step()
        out = {k: float(v.detach()) for k, v in parts.items()}
        out["loss"] = float(loss.detach())
        return out

    def validate(self) -> dict[str, float]:
        """ADD(-S) recall (0.1 d) and median errors from the fixed validation starts, inference iteration counts."""
        result = self.run(self.val, self.refiner.renders, self.refiner.updates)
        T = result.T.double().cpu().numpy()
        hits, before, rot = [], [], []
        for b, obj_id in enumerate(self.val.obj_ids):
            model = self.models[obj_id]
            pts = model.vertices
            for pose, out in ((T[b], hits), (self.val.T0[b], before)):
                a = pts @ pose[:3, :3].T + pose[:3, 3]
                g = pts @ self.val.T_gt[b, :3, :3].T + self.val.T_gt[b, :3, 3]
                out.append(np.linalg.norm(a - g, axis=1).mean() < ADD_THRESHOLD * model.diameter)
            R = T[b, :3, :3].T @ self.val.T_gt[b, :3, :3]
            rot.append(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))
        return {"val_add": float(np.mean(hits)), "val_add_start": float(np.mean(before)),
                "val_median_rot_deg": float(np.median(rot)), "val_score": float(result.score.mean())}

    def train_mode(self, training: bool) -> None:
        self.net.train(training)

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])

    def export(self) -> dict[str, Any]:
        return network_state(self.net)

    def save_examples(self, path: Path, count: int = 4) -> None:
        """Flow and weight maps of the first `count` validation instances as a PNG."""
        from ros2_sixdpose.refinement.rnnpose.figures import flow_weight_figure

        sub = Batch(self.val.observed[:count], self.val.depth[:count], self.val.K[:count], self.val.T0[:count],
                    self.val.T_gt[:count], self.val.obj_ids[:count])
        self.net.eval()
        with torch.no_grad():
            result = self.run(sub, self.refiner.renders, self.refiner.updates)
        rows = [(result, b, f"score {float(result.score[b]):.2f}") for b in range(len(sub.obj_ids))]
        flow_weight_figure(rows, path, "RNNPose: validation instances")

"""Training of the rotation-aware encoder: InfoNCE with positives of nearby rotation (`sixdpose train retrieval`, in cli/).

Each step takes one object and B queries of it: crops of the object in synthetic scenes (`sixdpose synth`
data, true visible masks, turned by a random in-plane angle) and renders in random rotations under random
lights (`data.randomize.sample_light`), all through the project's augmentation (occluding patches, colour
jitter, blur, noise; no background: queries are masked as at inference). Keys are bank-style templates
(default light, on the optical axis) of three rotations per query: its own (the rotation a matching template
has, see `translation`), one turned 20-45 degrees away, and one flipped 180 degrees about an object axis
(what a silhouette cannot tell apart). As in GS-Pose (Cai et al. 2024), a key is a positive of a query when
their rotations are within `positive_deg` under the object's symmetries; the loss is the multi-positive
InfoNCE, -log(sum over positives of exp(q.k / T) / sum over all keys of exp(q.k / T)).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import IterableDataset
from tqdm import tqdm

from ros2_sixdpose.core.camera import CropTransform, PinholeCamera, square_box
from ros2_sixdpose.core.checks import mask_box
from ros2_sixdpose.core.geometry import random_rotations
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data.augment import AugmentConfig, BackgroundConfig, augment
from ros2_sixdpose.data.bop import BopSplit, read_mask, read_rgb
from ros2_sixdpose.data.randomize import LightingConfig, camera_lighting, sample_light
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.retrieval.bank import BankConfig, render_views
from ros2_sixdpose.estimation.retrieval.crops import normalised_crops
from ros2_sixdpose.estimation.retrieval.embedding import (
    EmbeddingScorer, EncoderConfig, RotationEncoder, crops_to_tensor, encoder_state,
)
from ros2_sixdpose.estimation.retrieval.retriever import RetrievalConfig, Retriever
from ros2_sixdpose.estimation.retrieval.viewpoints import axis_to_ray, inplane_rotation
from ros2_sixdpose.estimation.symmetry import symmetric_rotation_error

logger = logging.getLogger(__name__)

# Side of the stored scene crops around each instance's visible box, pixels (turned and normalised later).
_POOL_SIZE = 96


@dataclass
class RetrievalTrainConfig:
    """Encoder shape, batches and loss of one training run."""

    batch_size: int = 32  # queries per step (3 keys each)
    temperature: float = 0.1
    positive_deg: float = 10.0  # keys within this rotation of the query (symmetry-aware) are positives
    near_deg: tuple[float, float] = (20.0, 45.0)  # the hard negative's turn from the query's rotation
    rendered_fraction: float = 0.5  # share of queries rendered rather than cut from synthetic scenes
    min_visib_fract: float = 0.3  # scene instances less visible than this are not used
    val_instances: int = 120
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    augment: AugmentConfig = field(
        default_factory=lambda: AugmentConfig(background=BackgroundConfig(p=0.0))
    )


@dataclass
class ScenePool:
    """Instances of a synthetic split: crops rgb (N, P, P, 3) uint8, visible mask (N, P, P) bool, obj_id (N,),
    R_cam_obj (N, 3, 3), t (N, 3) m."""

    rgb: np.ndarray
    mask: np.ndarray
    obj_id: np.ndarray
    R_cam_obj: np.ndarray
    t: np.ndarray


def scene_pool(split: BopSplit, min_visib: float, obj_ids: set[int]) -> ScenePool:
    """Cut every visible-enough instance of `split` out once (crops around the visible box, _POOL_SIZE px)."""
    rows: dict[str, list] = {name: [] for name in ScenePool.__dataclass_fields__}
    for scene_id in tqdm(split.scene_ids(), desc=f"crops {split.split}", unit="scene"):
        scene = split.read_scene(scene_id)
        for im_id, instances in sorted(scene.gt.items()):
            rgb = None
            for index, (instance, info) in enumerate(zip(instances, scene.gt_info[im_id])):
                if info.visib_fract < min_visib or instance.obj_id not in obj_ids:
                    continue
                rgb = read_rgb(split.rgb_path(scene_id, im_id)) if rgb is None else rgb
                mask = read_mask(split.mask_visib_path(scene_id, im_id, index))
                crop = CropTransform(tuple(square_box(mask_box(mask), 1.05)), (_POOL_SIZE, _POOL_SIZE))
                rows["rgb"].append(crop.warp(rgb))
                rows["mask"].append(crop.warp(mask, cv2.INTER_NEAREST))
                rows["obj_id"].append(instance.obj_id)
                rows["R_cam_obj"].append(instance.T_cam_obj[:3, :3])
                rows["t"].append(instance.T_cam_obj[:3, 3])
    return ScenePool(**{name: np.asarray(values) for name, values in rows.items()})


class ContrastiveBatches(IterableDataset):
    """Endless batches: queries (B, 4, S, S), keys (3B, 4, S, S), positives (B, 3B) bool, obj_id."""

    def __init__(self, pool: ScenePool, models: dict[int, ObjectModel], config: RetrievalTrainConfig,
                 bank: BankConfig, seed: int) -> None:
        self.pool, self.models, self.config, self.bank = pool, models, config, bank
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.symmetries = {obj_id: m.symmetry_transforms(0.05)[:, :3, :3] for obj_id, m in models.items()}
        self.renderer: Renderer | None = None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.renderer is None:
            self.renderer = Renderer(self.models)
        while True:
            yield self.batch()

    def batch(self) -> dict[str, torch.Tensor]:
        """One batch of one random object."""
        config, rng = self.config, self.rng
        obj_id = int(rng.choice(sorted(self.models)))
        model = self.models[obj_id]
        size = self.bank.crop_size
        candidates = np.flatnonzero(self.pool.obj_id == obj_id)
        # An object the scenes never show is learnt from renders alone.
        n_rendered = int(round(config.batch_size * config.rendered_fraction)) if candidates.size else config.batch_size
        rgb, mask, rotations = [], [], []
        # Rendered queries: random rotation and light, on the axis.
        R_rendered = random_rotations(n_rendered, rng)
        lights = [camera_lighting(sample_light(rng, LightingConfig()), _random_pose(rng))
                  for _ in range(n_rendered)]
        views_rgb, views_mask = render_views(self.renderer, model, R_rendered, self.bank, lights)
        for v in range(n_rendered):
            crop = normalised_crops(views_rgb[v], views_mask[v], np.zeros(1), size)
            rgb.append(crop.rgb[0]), mask.append(crop.mask[0]), rotations.append(R_rendered[v])
        # Scene queries, turned by a random in-plane angle; a matching template's rotation is
        # Rz(angle)^T axis_to_ray(t)^T R (see translation.pose_from_match).
        for index in rng.choice(candidates, config.batch_size - n_rendered):
            angle = rng.uniform(0.0, 2 * np.pi)
            crop = normalised_crops(self.pool.rgb[index], self.pool.mask[index], np.array([angle]), size)
            R = inplane_rotation(np.array([angle]))[0].T @ axis_to_ray(self.pool.t[index]).T @ self.pool.R_cam_obj[index]
            rgb.append(crop.rgb[0]), mask.append(crop.mask[0]), rotations.append(R)
        queries = crops_to_tensor(np.stack(rgb), np.stack(mask))
        out = augment(queries[:, :3], queries[:, 3:4], config.augment, self.generator)
        queries = torch.cat([out.rgb * out.mask, out.mask], dim=1)
        R_query = np.stack(rotations)
        R_keys = np.concatenate([R_query, self._near(R_query), self._flipped(R_query)])
        keys_rgb, keys_mask = render_views(self.renderer, model, R_keys, self.bank)
        key_crops = [normalised_crops(keys_rgb[v], keys_mask[v], np.zeros(1), size) for v in range(len(R_keys))]
        keys = crops_to_tensor(np.stack([c.rgb[0] for c in key_crops]), np.stack([c.mask[0] for c in key_crops]))
        # trace(R_q^T R_k S) > 1 + 2 cos(positive angle) for some symmetry S.
        traces = np.einsum("qji,kjl,sli->qks", R_query, R_keys, self.symmetries[obj_id]).max(axis=2)
        positives = traces > 1.0 + 2.0 * np.cos(np.radians(config.positive_deg))
        return {"queries": queries, "keys": keys, "positives": torch.from_numpy(positives)}

    def _near(self, R: np.ndarray) -> np.ndarray:
        """R (N, 3, 3) turned by near_deg about random axes."""
        axes = Rotation.random(len(R), rng=self.rng).apply([1.0, 0.0, 0.0])
        angles = np.radians(self.rng.uniform(*self.config.near_deg, len(R)))
        return Rotation.from_rotvec(axes * angles[:, None]).as_matrix() @ R

    def _flipped(self, R: np.ndarray) -> np.ndarray:
        """R (N, 3, 3) followed by a 180 degree turn about a random object axis."""
        axes = np.eye(3)[self.rng.integers(0, 3, len(R))]
        return R @ Rotation.from_rotvec(np.pi * axes).as_matrix()


def _random_pose(rng: np.random.Generator) -> np.ndarray:
    """A random T_world_cam (4, 4) rotation: where the scene's light comes from relative to the camera."""
    T = np.eye(4)
    T[:3, :3] = random_rotations(1, rng)[0]
    return T


class RetrievalTask:
    """`TrainTask` of the encoder: multi-positive InfoNCE; validation = top-1 within 15 degrees on scene crops."""

    def __init__(self, config: RetrievalTrainConfig, val: list[tuple], models: dict[int, ObjectModel],
                 retrieval: RetrievalConfig, banks: dict, device: str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        self.net = RotationEncoder(config.encoder).to(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), weight_decay=1e-4)
        self.val, self.models, self.retrieval, self.banks = val, models, retrieval, banks

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        q = self.net(batch["queries"].to(self.device))
        k = self.net(batch["keys"].to(self.device))
        logits = q @ k.T / self.config.temperature
        log_prob = logits.log_softmax(dim=1)
        positives = batch["positives"].to(self.device)
        loss = -(torch.logsumexp(log_prob.masked_fill(~positives, -torch.inf), dim=1)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        top1 = positives[torch.arange(len(q)), logits.argmax(dim=1)].float().mean()
        return {"infonce": float(loss.detach()), "batch_top1": float(top1)}

    def validate(self) -> dict[str, float]:
        retriever = Retriever(self.models, self.banks, EmbeddingScorer(self.net, self.banks), self.retrieval)
        hits = []
        for rgb, camera, detection, R_gt in self.val:
            (best,) = retriever.hypotheses(rgb, camera, detection, 1)
            symmetries = self.models[detection.object_id].symmetry_transforms(0.01)
            hits.append(np.degrees(symmetric_rotation_error(best.T_cam_obj[:3, :3], R_gt, symmetries)) < 15.0)
        return {"val_top1_15deg": float(np.mean(hits))}

    def train_mode(self, training: bool) -> None:
        self.net.train(training)

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.net.to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])

    def export(self) -> dict[str, Any]:
        """The weights file: a CPU copy of the encoder (it runs on CPUs)."""
        copy = RotationEncoder(self.config.encoder)
        copy.load_state_dict({k: v.cpu() for k, v in self.net.state_dict().items()})
        return encoder_state(copy)


def validation_instances(split: BopSplit, count: int, min_visib: float) -> list[tuple]:
    """Up to `count` (rgb, camera, detection, R_gt) of `split` with visib_fract >= min_visib, image by image."""
    out: list[tuple] = []
    for scene_id in split.scene_ids():
        scene = split.read_scene(scene_id)
        for im_id, instances in sorted(scene.gt.items()):
            if len(out) >= count:
                return out
            rgb = read_rgb(split.rgb_path(scene_id, im_id))
            camera = PinholeCamera(scene.camera[im_id].K, rgb.shape[1], rgb.shape[0])
            for index, (instance, info) in enumerate(zip(instances, scene.gt_info[im_id])):
                if info.visib_fract >= min_visib:
                    mask = read_mask(split.mask_visib_path(scene_id, im_id, index))
                    detection = Detection(instance.obj_id, mask_box(mask), mask, 1.0)
                    out.append((rgb, camera, detection, instance.T_cam_obj[:3, :3]))
    return out[:count]

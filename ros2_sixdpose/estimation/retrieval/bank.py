"""Template banks: one object rendered on the optical axis from V viewpoints at a canonical distance.

Each viewpoint is rendered once by the project's mesh renderer (`core.render.Renderer`, default lighting)
into a square camera whose principal point is the image centre, so the object's origin projects there
and a turn of the image about its centre is a turn of the camera about its axis. The bank keeps the
normalised crop of each render (`crops.normalised_crops`, angle 0) with what turns a match into a pose:
the crop's side and the offset of the origin's image from the crop centre (render pixels) and the mask area.
In-plane rotations are applied to the query at retrieval time (see `crops`), so V viewpoints x A angles
are searched. Banks are cached in one .npz per object, keyed by the model's geometry and the settings.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ros2_sixdpose.core.geometry import make_pose
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import Lighting, Renderer
from ros2_sixdpose.estimation.retrieval.crops import normalised_crops
from ros2_sixdpose.estimation.retrieval.viewpoints import fibonacci_sphere, view_rotations

logger = logging.getLogger(__name__)

BANK_FORMAT = "sixdpose-template-bank-1"


@dataclass(frozen=True)
class BankConfig:
    """How a template bank is rendered."""

    viewpoints: int = 642  # directions on the Fibonacci sphere (~8 degrees apart)
    render_size: int = 128  # square render, pixels
    crop_size: int = 64  # normalised crop side, pixels
    distance: float = 0.6  # canonical camera distance, m (mid-range of the synthetic scenes' 0.3-1.0 m)
    fill: float = 0.8  # the model's diameter spans this fraction of the render

    def __post_init__(self) -> None:
        if self.viewpoints < 1 or self.crop_size < 8 or self.render_size < self.crop_size:
            raise ValueError(f"need viewpoints >= 1 and render_size >= crop_size >= 8, got {self}")
        if not (self.distance > 0 and 0 < self.fill <= 1):
            raise ValueError(f"need distance > 0 and 0 < fill <= 1, got {self.distance}, {self.fill}")


@dataclass(frozen=True)
class TemplateBank:
    """V upright templates of one object (S = crop size).

    obj_id: the object.
    R_cam_obj: (V, 3, 3) float64, rotation of each template's camera (object at (0, 0, distance)).
    rgb: (V, S, S, 3) uint8, normalised colour crops, zero off the mask.
    mask: (V, S, S) bool, normalised mask crops.
    offset: (V, 2) float64, the origin's image minus the crop centre, render pixels.
    side: (V,) float64, crop side, render pixels.
    area: (V,) float64, mask area, render pixels.
    focal: the render's focal length, pixels; distance: m.
    """

    obj_id: int
    R_cam_obj: np.ndarray
    rgb: np.ndarray
    mask: np.ndarray
    offset: np.ndarray
    side: np.ndarray
    area: np.ndarray
    focal: float
    distance: float

    def __len__(self) -> int:
        return len(self.R_cam_obj)

    def save(self, path: Path) -> None:
        """Write the bank as a compressed .npz."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, format=BANK_FORMAT, **asdict(self))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "TemplateBank":
        """Read a bank written by `save`."""
        with np.load(path) as data:
            if str(data["format"]) != BANK_FORMAT:
                raise ValueError(f"{path}: not a {BANK_FORMAT} file")
            fields = {name: data[name] for name in cls.__dataclass_fields__}
        fields["obj_id"] = int(fields["obj_id"])
        fields["focal"] = float(fields["focal"])
        fields["distance"] = float(fields["distance"])
        return cls(**fields)


def render_camera(model: ObjectModel, config: BankConfig) -> np.ndarray:
    """K (3, 3) of the bank's square render: principal point at the centre, the diameter filling `fill`."""
    focal = config.fill * config.render_size * config.distance / model.diameter
    centre = (config.render_size - 1) / 2
    return np.array([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]])


def render_views(
    renderer: Renderer, model: ObjectModel, R_cam_obj: np.ndarray, config: BankConfig,
    lighting: list[Lighting] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render the model on the optical axis at the canonical distance in rotations R_cam_obj (V, 3, 3).

    `lighting`: one per view (the renderer's default light when None, as in the bank).
    Returns (rgb (V, R, R, 3) uint8, mask (V, R, R) bool) with R = render_size.
    """
    K = render_camera(model, config)
    size = config.render_size
    rgb = np.empty((len(R_cam_obj), size, size, 3), np.uint8)
    mask = np.empty((len(R_cam_obj), size, size), bool)
    for v, R in enumerate(R_cam_obj):
        T = make_pose(R, [0.0, 0.0, config.distance])
        light = None if lighting is None else lighting[v]
        result = renderer.render(K, size, size, [(model.obj_id, T)], lighting=light, outputs=("rgb", "instance"))
        rgb[v], mask[v] = result.rgb, result.instance >= 0
    return rgb, mask


def build_bank(renderer: Renderer, model: ObjectModel, config: BankConfig, progress: bool = False) -> TemplateBank:
    """Render and crop the bank of one model (the renderer must hold it under model.obj_id)."""
    R_cam_obj = view_rotations(fibonacci_sphere(config.viewpoints))
    rgb, mask = render_views(renderer, model, R_cam_obj, config)
    principal = np.full(2, (config.render_size - 1) / 2)
    crops_rgb, crops_mask, offset, side = [], [], [], []
    views = tqdm(range(len(R_cam_obj)), desc=f"bank {model.name}", disable=not progress, leave=False)
    for v in views:
        crop = normalised_crops(rgb[v], mask[v], np.zeros(1), config.crop_size)
        crops_rgb.append(crop.rgb[0])
        crops_mask.append(crop.mask[0])
        offset.append(principal - crop.centre[0])
        side.append(crop.side[0])
    return TemplateBank(
        obj_id=model.obj_id,
        R_cam_obj=R_cam_obj,
        rgb=np.stack(crops_rgb),
        mask=np.stack(crops_mask),
        offset=np.stack(offset),
        side=np.asarray(side),
        area=mask.reshape(len(mask), -1).sum(axis=1).astype(np.float64),
        focal=float(render_camera(model, config)[0, 0]),
        distance=config.distance,
    )


def bank_key(model: ObjectModel, config: BankConfig) -> str:
    """A short hash of the model's geometry and appearance and the bank settings: the cache file's name."""
    digest = hashlib.sha1(BANK_FORMAT.encode())
    for array in (model.vertices, model.faces, model.colors, model.texture):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(repr(sorted(asdict(config).items())).encode())
    return digest.hexdigest()[:16]


def load_or_build_banks(
    models: dict[int, ObjectModel], config: BankConfig, cache_dir: Path | None, progress: bool = False
) -> dict[int, TemplateBank]:
    """Banks of every model, read from `cache_dir` where cached, else rendered (and cached when a folder is given)."""
    banks: dict[int, TemplateBank] = {}
    missing = []
    for obj_id, model in models.items():
        path = None if cache_dir is None else cache_dir / f"bank_{obj_id:06d}_{bank_key(model, config)}.npz"
        if path is not None and path.is_file():
            banks[obj_id] = TemplateBank.load(path)
        else:
            missing.append((obj_id, path))
    if missing:
        with Renderer({obj_id: models[obj_id] for obj_id, _ in missing}) as renderer:
            for obj_id, path in missing:
                banks[obj_id] = build_bank(renderer, models[obj_id], config, progress)
                if path is not None:
                    banks[obj_id].save(path)
                    logger.info("cached the template bank of object %d in %s", obj_id, path)
    return banks

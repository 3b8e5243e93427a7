"""Object models: meshes in metres, their symmetries, NOCS normalisation, and a registry over a BOP models folder."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.checks import number_list

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContinuousSymmetry:
    """Rotation symmetry about `axis` (unit, model frame) through `offset` (metres, model frame)."""

    axis: np.ndarray  # (3,)
    offset: np.ndarray  # (3,) m


@dataclass
class ObjectModel:
    """A rigid object: triangle mesh in its model frame, in metres.

    Arrays:
        vertices: (N, 3) float32, metres, model frame.
        faces: (F, 3) int32 vertex indices.
        normals: (N, 3) float32 unit vertex normals.
        colors: (N, 3) float32 in [0, 1], or None.
        uvs: (N, 2) float32 texture coordinates (OpenGL convention, v up), or None.
        texture: (H, W, 3) uint8 RGB image, or None.
        symmetries_discrete: (K, 4, 4) float64 transforms in metres (BOP `symmetries_discrete`, mm -> m).
    """

    obj_id: int
    name: str
    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    diameter: float  # m
    bbox_min: np.ndarray  # (3,) m, model frame
    bbox_size: np.ndarray  # (3,) m
    colors: np.ndarray | None = None
    uvs: np.ndarray | None = None
    texture: np.ndarray | None = None
    symmetries_discrete: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))
    symmetries_continuous: tuple[ContinuousSymmetry, ...] = ()

    @property
    def is_symmetric(self) -> bool:
        """True when the object has any discrete or continuous symmetry."""
        return len(self.symmetries_discrete) > 0 or len(self.symmetries_continuous) > 0

    def points_to_nocs(self, points: np.ndarray) -> np.ndarray:
        """Map model points (*, 3) m to NOCS (*, 3) in [0, 1]: per-axis normalisation by the bounding box."""
        return (points - self.bbox_min) / self.bbox_size

    def nocs_to_points(self, nocs: np.ndarray) -> np.ndarray:
        """Map NOCS (*, 3) in [0, 1] back to model points (*, 3) m."""
        return nocs * self.bbox_size + self.bbox_min

    def symmetry_transforms(self, max_sym_disc_step: float = 0.01) -> np.ndarray:
        """All symmetry transforms (K, 4, 4), metres, identity first; continuous ones discretised.

        As in BOP (Hodan et al., ECCV 2020): a continuous symmetry is sampled so that no point of the
        object moves by more than `max_sym_disc_step` x diameter between neighbouring samples.
        """
        discrete = [np.eye(4)] + [np.asarray(T, dtype=np.float64) for T in self.symmetries_discrete]
        continuous = []
        for sym in self.symmetries_continuous:
            steps = max(1, int(np.ceil(np.pi / max_sym_disc_step)))
            for angle in np.arange(steps) * 2.0 * np.pi / steps:
                T = np.eye(4)
                T[:3, :3] = Rotation.from_rotvec(angle * np.asarray(sym.axis, dtype=np.float64)).as_matrix()
                T[:3, 3] = sym.offset - T[:3, :3] @ sym.offset
                continuous.append(T)
        if not continuous:
            return np.stack(discrete)
        return np.stack([C @ D for D in discrete for C in continuous])

    @classmethod
    def from_trimesh(
        cls,
        mesh: trimesh.Trimesh,
        obj_id: int,
        name: str,
        symmetries_discrete: np.ndarray | None = None,
        symmetries_continuous: tuple[ContinuousSymmetry, ...] = (),
    ) -> "ObjectModel":
        """Build a model from a trimesh mesh already in metres (colours and texture taken from its visual)."""
        vertices = np.asarray(mesh.vertices, dtype=np.float32)
        colors = uvs = texture = None
        visual = mesh.visual
        if isinstance(visual, trimesh.visual.TextureVisuals) and visual.uv is not None:
            uvs = np.asarray(visual.uv, dtype=np.float32)
            image = getattr(visual.material, "image", None) or getattr(visual.material, "baseColorTexture", None)
            if image is not None:
                texture = np.asarray(image.convert("RGB"), dtype=np.uint8)
        elif isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "vertex":
            colors = np.asarray(visual.vertex_colors[:, :3], dtype=np.float32) / 255.0
        hull = vertices[ConvexHull(vertices).vertices]
        bbox_min = vertices.min(axis=0).astype(np.float64)
        return cls(
            obj_id=obj_id,
            name=name,
            vertices=vertices,
            faces=np.asarray(mesh.faces, dtype=np.int32),
            normals=np.asarray(mesh.vertex_normals, dtype=np.float32),
            diameter=float(pdist(hull).max()),
            bbox_min=bbox_min,
            bbox_size=vertices.max(axis=0).astype(np.float64) - bbox_min,
            colors=colors,
            uvs=uvs,
            texture=texture,
            symmetries_discrete=np.zeros((0, 4, 4)) if symmetries_discrete is None else np.asarray(symmetries_discrete),
            symmetries_continuous=symmetries_continuous,
        )


# ---------------------------------------------------------------- registry over a BOP models folder

MODELS_INFO_FILE = "models_info.json"
MODELS_NAMES_FILE = "models_names.json"  # optional, {"1": "duck", ...}; not part of BOP
MM_PER_M = 1000.0
_BBOX_KEYS = ("min_x", "min_y", "min_z", "size_x", "size_y", "size_z")
# Largest disagreement between models_info's box and the mesh's own extent, as a fraction of the diameter:
# beyond it the PLY is most likely in metres rather than millimetres, or belongs to another object.
_BBOX_TOLERANCE = 0.02


def model_file_name(obj_id: int) -> str:
    """BOP file name of an object's mesh, e.g. `obj_000001.ply`."""
    return f"obj_{obj_id:06d}.ply"


def default_model_name(obj_id: int) -> str:
    """Name of an object that models_names.json does not name, e.g. `obj_000001`."""
    return f"obj_{obj_id:06d}"


@dataclass(frozen=True)
class ModelInfo:
    """One object's entry of BOP models_info.json, converted to metres.

    Arrays:
        bbox_min: (3,) float64, metres, model frame.
        bbox_size: (3,) float64, metres.
        symmetries_discrete: (K, 4, 4) float64 transforms, translations in metres.
    """

    diameter: float  # m
    bbox_min: np.ndarray
    bbox_size: np.ndarray
    symmetries_discrete: np.ndarray
    symmetries_continuous: tuple[ContinuousSymmetry, ...] = ()


def read_models_info(path: str | Path) -> dict[int, ModelInfo]:
    """Read a BOP models_info.json (millimetres) into `ModelInfo`s in metres, keyed by object id."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: models_info.json not found (every BOP models folder needs one)")
    content = _read_json(path)
    if not isinstance(content, dict) or not content:
        raise ValueError(f"{path}: expected a non-empty object keyed by object id")
    return {_object_id(path, key): _parse_model_info(path, key, entry) for key, entry in content.items()}


def read_model_names(path: str | Path, obj_ids: Iterable[int]) -> dict[int, str]:
    """Names of `obj_ids` from models_names.json when it exists, `obj_XXXXXX` for any it does not name."""
    path = Path(path)
    obj_ids = list(obj_ids)
    names = {obj_id: default_model_name(obj_id) for obj_id in obj_ids}
    if not path.is_file():
        return names
    content = _read_json(path)
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected an object mapping object id to name")
    for key, name in content.items():
        obj_id = _object_id(path, key)
        if obj_id not in names:
            raise ValueError(f"{path}: object {obj_id} is not in models_info.json (ids there: {sorted(obj_ids)})")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{path}: object {obj_id}: name must be a non-empty string, got {name!r}")
        names[obj_id] = name.strip()
    seen: dict[str, int] = {}
    for obj_id, name in names.items():
        if name in seen:
            raise ValueError(f"{path}: objects {seen[name]} and {obj_id} share the name {name!r}")
        seen[name] = obj_id
    return names


def model_names(models_dir: str | Path) -> dict[int, str]:
    """Names by id (ascending) of the objects of a BOP models folder (models_names.json, else `obj_XXXXXX`)."""
    models_dir = Path(models_dir)
    return read_model_names(models_dir / MODELS_NAMES_FILE, sorted(read_models_info(models_dir / MODELS_INFO_FILE)))


def load_model(ply_path: str | Path, obj_id: int, name: str, info: ModelInfo) -> ObjectModel:
    """Read one BOP model (PLY in millimetres, texture image beside it) into an `ObjectModel` in metres."""
    ply_path = Path(ply_path)
    if not ply_path.is_file():
        raise FileNotFoundError(f"{ply_path}: mesh of object {obj_id} (listed in models_info.json) not found")
    texture_file = _check_ply_header(ply_path)
    with open(ply_path, "rb") as f:
        try:
            # fix_texture=False keeps the file's vertex order, so normals, colours and uvs stay aligned.
            data = trimesh.exchange.ply.load_ply(f, fix_texture=False, skip_materials=True)
        except Exception as exc:  # trimesh raises many types on corrupt files; report them with the file name
            raise ValueError(f"{ply_path}: cannot parse PLY ({type(exc).__name__}: {exc})") from exc
    vertices = np.asarray(data.get("vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(data.get("faces", np.zeros((0, 3))))
    if len(vertices) == 0 or faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"{ply_path}: 'vertex' and 'face' elements must hold a non-empty triangle mesh")
    if not np.all(np.isfinite(vertices)):
        raise ValueError(f"{ply_path}: 'vertex' x/y/z contain non-finite values")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"{ply_path}: 'face' vertex_indices outside [0, {len(vertices)})")
    vertices /= MM_PER_M

    normals = data.get("vertex_normals")
    if normals is None:
        logger.debug("%s has no nx/ny/nz; computing vertex normals", ply_path)
        normals = trimesh.Trimesh(vertices, faces, process=False).vertex_normals
    elif not np.all(np.isfinite(normals)):
        raise ValueError(f"{ply_path}: 'vertex' nx/ny/nz contain non-finite values")
    else:  # some exporters write unnormalised normals
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.divide(normals, length, out=np.zeros_like(normals, dtype=np.float64), where=length > 1e-12)

    colors = data.get("vertex_colors")
    if colors is not None:
        colors = np.asarray(colors, dtype=np.float32)[:, :3] / 255.0
    uvs = texture = None
    visual = data.get("visual")
    if isinstance(visual, trimesh.visual.TextureVisuals) and visual.uv is not None:
        if texture_file is None:
            raise ValueError(f"{ply_path}: has texture_u/texture_v but no 'comment TextureFile' header line")
        uvs = np.asarray(visual.uv, dtype=np.float32)
        texture = _read_texture(ply_path.parent / texture_file, ply_path)
    elif texture_file is not None:
        raise ValueError(f"{ply_path}: names TextureFile {texture_file} but has no texture_u/texture_v")

    _check_bbox(ply_path, obj_id, vertices, info)
    return ObjectModel(
        obj_id=obj_id,
        name=name,
        vertices=vertices.astype(np.float32),
        faces=faces.astype(np.int32),
        normals=np.asarray(normals, dtype=np.float32),
        diameter=info.diameter,
        bbox_min=info.bbox_min,
        bbox_size=info.bbox_size,
        colors=colors,
        uvs=uvs,
        texture=texture,
        symmetries_discrete=info.symmetries_discrete,
        symmetries_continuous=info.symmetries_continuous,
    )


def load_models(models_dir: str | Path, obj_ids: Iterable[int] | None = None) -> dict[int, ObjectModel]:
    """Read every object (or those of `obj_ids`) of a BOP models folder, keyed by object id, in metres."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise FileNotFoundError(f"{models_dir}: models folder not found")
    infos = read_models_info(models_dir / MODELS_INFO_FILE)
    if obj_ids is None:
        obj_ids = sorted(infos)
    else:
        obj_ids = list(obj_ids)
        unknown = [obj_id for obj_id in obj_ids if obj_id not in infos]
        if unknown:
            raise KeyError(f"{models_dir / MODELS_INFO_FILE}: no objects {unknown} (ids there: {sorted(infos)})")
    names = read_model_names(models_dir / MODELS_NAMES_FILE, infos)
    return {
        obj_id: load_model(models_dir / model_file_name(obj_id), obj_id, names[obj_id], infos[obj_id])
        for obj_id in obj_ids
    }


class ObjectRegistry:
    """The object models of one models folder (or any list of models), looked up by id or by name."""

    def __init__(self, models: Iterable[ObjectModel]) -> None:
        self._by_id: dict[int, ObjectModel] = {}
        self._by_name: dict[str, ObjectModel] = {}
        for model in models:
            if model.obj_id in self._by_id:
                raise ValueError(f"object id {model.obj_id} appears twice")
            if model.name in self._by_name:
                raise ValueError(f"object name {model.name!r} appears twice")
            self._by_id[model.obj_id] = model
            self._by_name[model.name] = model

    @classmethod
    def from_dir(cls, models_dir: str | Path, obj_ids: Iterable[int] | None = None) -> "ObjectRegistry":
        """Registry of a BOP models folder (see `load_models`)."""
        return cls(load_models(models_dir, obj_ids).values())

    def __getitem__(self, key: int | str) -> ObjectModel:
        """The model with object id `key` (int) or name `key` (str)."""
        table: dict = self._by_name if isinstance(key, str) else self._by_id
        if isinstance(key, bool) or key not in table:
            known = ", ".join(f"{obj_id} ({model.name})" for obj_id, model in self._by_id.items())
            raise KeyError(f"unknown object {key!r}; known: {known}")
        return table[key]

    def __contains__(self, key: object) -> bool:
        return not isinstance(key, bool) and (key in self._by_id or key in self._by_name)

    def __iter__(self) -> Iterator[ObjectModel]:
        return iter(self._by_id[obj_id] for obj_id in sorted(self._by_id))

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def ids(self) -> list[int]:
        """Object ids, ascending."""
        return sorted(self._by_id)

    @property
    def models(self) -> dict[int, ObjectModel]:
        """Models keyed by object id (a copy), the form renderers and evaluators take."""
        return {obj_id: self._by_id[obj_id] for obj_id in self.ids}


def _read_json(path: Path) -> object:
    """Parse a JSON file, naming it in the error."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def _object_id(path: Path, key: str) -> int:
    """A JSON key as a positive object id."""
    try:
        obj_id = int(key)
    except ValueError:
        obj_id = 0
    if obj_id <= 0:
        raise ValueError(f"{path}: key {key!r} is not a positive integer object id")
    return obj_id


def _parse_model_info(path: Path, key: str, entry: object) -> ModelInfo:
    """One models_info.json entry (millimetres) as a `ModelInfo` in metres, every field checked."""
    where = f"object {key}"
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: {where}: expected an object, got {type(entry).__name__}")
    for required in ("diameter",) + _BBOX_KEYS:
        if required not in entry:
            raise ValueError(f"{path}: {where}: missing '{required}'")
    diameter = float(number_list(path, where, "diameter", entry["diameter"], 1)[0])
    if diameter <= 0:
        raise ValueError(f"{path}: {where}: 'diameter' must be positive, got {diameter}")
    box = np.array([number_list(path, where, k, entry[k], 1)[0] for k in _BBOX_KEYS]) / MM_PER_M
    if np.any(box[3:] <= 0):
        raise ValueError(f"{path}: {where}: 'size_x/y/z' must be positive, got {(box[3:] * MM_PER_M).tolist()}")

    discrete = []
    for index, values in enumerate(_list_field(path, where, entry, "symmetries_discrete")):
        T = number_list(path, where, f"symmetries_discrete[{index}]", values, 16).reshape(4, 4)
        R = T[:3, :3]
        rigid = np.allclose(T[3], [0, 0, 0, 1]) and np.allclose(R @ R.T, np.eye(3), atol=1e-3) and np.linalg.det(R) > 0
        if not rigid:
            raise ValueError(f"{path}: {where}: 'symmetries_discrete[{index}]' is not a rigid transform: {values}")
        T[:3, 3] /= MM_PER_M
        discrete.append(T)
    continuous = []
    for index, sym in enumerate(_list_field(path, where, entry, "symmetries_continuous")):
        sym_where = f"{where}, symmetries_continuous[{index}]"
        if not isinstance(sym, dict) or "axis" not in sym or "offset" not in sym:
            raise ValueError(f"{path}: {sym_where}: expected an object with 'axis' and 'offset', got {sym!r}")
        axis = number_list(path, sym_where, "axis", sym["axis"], 3)
        norm = np.linalg.norm(axis)
        if norm < 1e-9:
            raise ValueError(f"{path}: {sym_where}: 'axis' must be non-zero")
        offset = number_list(path, sym_where, "offset", sym["offset"], 3) / MM_PER_M
        continuous.append(ContinuousSymmetry(axis=axis / norm, offset=offset))
    return ModelInfo(
        diameter=diameter / MM_PER_M,
        bbox_min=box[:3],
        bbox_size=box[3:],
        symmetries_discrete=np.stack(discrete) if discrete else np.zeros((0, 4, 4)),
        symmetries_continuous=tuple(continuous),
    )


def _list_field(path: Path, where: str, entry: dict, key: str) -> list:
    """An optional list field of a models_info entry ([] when absent)."""
    value = entry.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{path}: {where}: '{key}' must be a list, got {type(value).__name__}")
    return value


def _check_ply_header(ply_path: Path) -> str | None:
    """Check that a PLY header describes a mesh this reader takes; return its `comment TextureFile` name."""
    with open(ply_path, "rb") as f:
        head = f.read(65536)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise ValueError(f"{ply_path}: not a PLY file (no 'ply' magic or no 'end_header' in the header)")
    lines = head[:end].decode("ascii", errors="replace").splitlines()
    properties = {line.split()[-1] for line in lines if line.startswith("property")}
    missing = [axis for axis in "xyz" if axis not in properties]
    if missing:
        raise ValueError(f"{ply_path}: 'vertex' element lacks properties {missing}")
    if "texcoord" in properties:
        raise ValueError(
            f"{ply_path}: per-face texture coordinates ('texcoord' of 'face') are not supported; "
            "store them per vertex as texture_u/texture_v (as BOP models do)"
        )
    for line in lines:
        words = line.split()
        if len(words) >= 3 and words[0] == "comment" and words[1] == "TextureFile":
            return " ".join(words[2:])
    return None


def _read_texture(path: Path, ply_path: Path) -> np.ndarray:
    """A model's texture image as (H, W, 3) uint8 RGB."""
    if not path.is_file():
        raise FileNotFoundError(f"{ply_path}: TextureFile {path.name} not found beside it")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read texture image of {ply_path.name} ({exc})") from exc


def _check_bbox(ply_path: Path, obj_id: int, vertices: np.ndarray, info: ModelInfo) -> None:
    """Raise if the mesh's extent (m) disagrees with models_info's box (wrong units or wrong file)."""
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    error = max(np.abs(low - info.bbox_min).max(), np.abs(high - (info.bbox_min + info.bbox_size)).max())
    if error > _BBOX_TOLERANCE * info.diameter:
        raise ValueError(
            f"{ply_path}: vertices span {_mm_list(low)} to {_mm_list(high)} mm but models_info.json gives object "
            f"{obj_id} min_x/y/z, size_x/y/z of {_mm_list(info.bbox_min)}, {_mm_list(info.bbox_size)} mm "
            "(is the PLY in millimetres?)"
        )


def _mm_list(values_m: np.ndarray) -> list[float]:
    """Lengths in metres as a list of millimetres rounded to 0.01, for messages."""
    return np.round(np.asarray(values_m) * MM_PER_M, 2).tolist()

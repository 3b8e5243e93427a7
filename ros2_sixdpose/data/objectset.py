"""The project's object set: meshes shipped in pybullet_data turned into a BOP models folder.

Each object is scaled as its URDF says (then to a graspable size), turned so that it stands on z (a symmetry
axis, where it has one, is z), centred on its bounding-box centre, given crease-aware normals and either its
texture or a uniform colour, and written as obj_XXXXXX.ply (millimetres) with models_info.json and
models_names.json. Symmetries are declared only where both the geometry and the colours repeat
(test/test_objectset.py checks every one).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import pybullet_data
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.objects import (
    MM_PER_M,
    MODELS_INFO_FILE,
    MODELS_NAMES_FILE,
    ContinuousSymmetry,
    ObjectModel,
    load_models,
    model_file_name,
)
from ros2_sixdpose.data import ply
from ros2_sixdpose.data.bop import write_models_info

logger = logging.getLogger(__name__)

STAMP_FILE = ".objectset-stamp"
# Edges between faces bent by more than this stay sharp (box edges); flatter ones are smoothed over.
CREASE_ANGLE_DEG = 40.0
# Pixels kept around the used part of a texture when it is cropped (bilinear filtering reads neighbours).
TEXTURE_MARGIN_PX = 4

# Rotations from a source mesh's axes to the model frame (rows: model x, y, z in mesh coordinates).
MESH_AXES = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
Y_UP = ((1, 0, 0), (0, 0, -1), (0, 1, 0))  # modelled with y up: y becomes z
DOMINO_FLAT = ((0, 0, 1), (1, 0, 0), (0, 1, 0))  # long side (z) becomes x, thickness (y) becomes z


@dataclass(frozen=True)
class ObjectSpec:
    """How one pybullet_data mesh becomes an object of the set.

    `urdf` (relative to pybullet_data) gives the mesh scale of its <visual> mesh; `scale` multiplies it to
    reach a graspable size. `color` (RGB in [0, 1]) replaces the mesh's texture or material by a uniform
    colour; None keeps the texture. `discrete` lists (axis, degrees) rotations about the model origin and
    `continuous` unit axes through it, each a symmetry of geometry and colours. `rebuild_as_torus` replaces
    the mesh by a finely tessellated torus about z of the same extent.
    """

    name: str
    mesh: str
    urdf: str | None = None
    scale: float = 1.0
    rotation: tuple[tuple[int, int, int], ...] = MESH_AXES
    color: tuple[float, float, float] | None = None
    discrete: tuple[tuple[str, float], ...] = ()
    continuous: tuple[tuple[float, float, float], ...] = ()
    rebuild_as_torus: bool = False

    def __post_init__(self) -> None:
        R = np.asarray(self.rotation, dtype=np.float64)
        if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3)) or np.linalg.det(R) < 0:
            raise ValueError(f"ObjectSpec {self.name!r}: rotation must be a proper 3x3 rotation, got {self.rotation}")
        if self.rebuild_as_torus and self.color is None:
            raise ValueError(f"ObjectSpec {self.name!r}: a rebuilt torus has no texture coordinates; give a colour")


# Object ids are positions in this tuple, from 1. Appending keeps existing ids; reordering changes them.
OBJECT_SET = (
    ObjectSpec("duck", "duck.obj", urdf="duck_vhacd.urdf", rotation=Y_UP),
    ObjectSpec("bunny", "bunny.obj", scale=0.06, rotation=Y_UP, color=(0.86, 0.80, 0.68)),
    ObjectSpec("teddy", "teddy2_VHACD_CHs.obj", urdf="teddy_vhacd.urdf", rotation=Y_UP, color=(0.58, 0.38, 0.20)),
    # The colour is the one of mug.urdf's material.
    ObjectSpec("mug", "objects/mug.obj", urdf="objects/mug.urdf", color=(1.0, 0.2, 0.2)),
    # A 2x2 Duplo brick, doubled in size; square with four studs, so a quarter turn about z maps it onto itself.
    ObjectSpec(
        "lego", "lego/lego.obj", urdf="lego/lego.urdf", scale=2.0, rotation=Y_UP, color=(1.0, 0.78, 0.08),
        discrete=(("z", 90.0), ("z", 180.0), ("z", 270.0)),
    ),
    # Box-shaped, but its texture labels every face, so it has no symmetry.
    ObjectSpec("jenga", "jenga/jenga.obj", urdf="jenga/jenga.urdf"),
    # A 6|1 domino doubled in size; its pips break the box's symmetries.
    ObjectSpec("domino", "domino/domino.obj", urdf="domino/domino.urdf", scale=2.0, rotation=DOMINO_FLAT),
    # Untextured (its checker texture would break the continuous symmetry): any turn about z, and upside down.
    # The shipped mesh is coarse and lumpy (vertices up to 1.6 mm off a true torus, facets up to 1.4 mm off
    # their turned copies), so its continuous symmetry would hold only to 1% of the diameter; it is rebuilt.
    ObjectSpec(
        "torus", "torus/torus_textured.obj", scale=0.1, rotation=Y_UP, color=(0.20, 0.45, 0.85),
        discrete=(("x", 180.0),), continuous=((0.0, 0.0, 1.0),), rebuild_as_torus=True,
    ),
)


def build_object_set(out_dir: str | Path, force: bool = False, data_dir: str | Path | None = None) -> bool:
    """Write the object set as a BOP models folder unless its stamp shows it up to date; True if written."""
    out_dir = Path(out_dir)
    data_dir = Path(data_dir or pybullet_data.getDataPath())
    digest = _inputs_digest(data_dir)
    stamp = out_dir / STAMP_FILE
    expected = [out_dir / MODELS_INFO_FILE, out_dir / MODELS_NAMES_FILE]
    expected += [out_dir / model_file_name(obj_id) for obj_id in range(1, len(OBJECT_SET) + 1)]
    if not force and stamp.is_file() and stamp.read_text() == digest and all(p.is_file() for p in expected):
        logger.info("object set in %s is up to date", out_dir)
        return False
    start = time.perf_counter()
    models = make_object_set(data_dir)
    stamp.unlink(missing_ok=True)  # a build that fails half-way must not look complete
    write_models(out_dir, models)
    stamp.write_text(digest)
    logger.info("wrote %d objects to %s in %.1f s", len(models), out_dir, time.perf_counter() - start)
    return True


def make_object_set(data_dir: str | Path | None = None) -> list[ObjectModel]:
    """The object set's models (ids 1..N in `OBJECT_SET` order), in metres."""
    data_dir = Path(data_dir or pybullet_data.getDataPath())
    return [make_model(spec, obj_id, data_dir) for obj_id, spec in enumerate(OBJECT_SET, start=1)]


def make_model(spec: ObjectSpec, obj_id: int, data_dir: Path) -> ObjectModel:
    """Turn one pybullet_data mesh into a centred, scaled, shaded `ObjectModel` (metres)."""
    source = data_dir / spec.mesh
    if not source.is_file():
        raise FileNotFoundError(f"{source}: mesh of object {spec.name!r} not found in pybullet_data")
    mesh = trimesh.load(source, force="mesh", process=False)
    scale = spec.scale * (_urdf_mesh_scale(data_dir / spec.urdf, source.name) if spec.urdf else np.ones(3))
    vertices = (np.asarray(mesh.vertices) * scale) @ np.asarray(spec.rotation, dtype=np.float64).T
    vertices -= (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0
    faces = np.asarray(mesh.faces)
    if spec.rebuild_as_torus:
        size = vertices.max(axis=0) - vertices.min(axis=0)
        tube_radius = size[2] / 2.0
        torus = trimesh.creation.torus(size[0] / 2.0 - tube_radius, tube_radius, major_sections=64, minor_sections=32)
        vertices, faces = np.asarray(torus.vertices), np.asarray(torus.faces)
    faces = faces[trimesh.triangles.area(vertices[faces]) > 1e-12]  # degenerate faces have no normal
    faces = _outward_faces(vertices, faces, source)
    keep, faces, normals = crease_normals(vertices, faces, np.radians(CREASE_ANGLE_DEG))

    if spec.color is None:
        visual = mesh.visual
        image = getattr(getattr(visual, "material", None), "image", None)
        if not isinstance(visual, trimesh.visual.TextureVisuals) or visual.uv is None or image is None:
            raise ValueError(f"{source}: object {spec.name!r} has no colour given and no texture")
        uvs, image = _crop_texture(np.asarray(visual.uv)[keep], image.convert("RGB"))
        visual = trimesh.visual.TextureVisuals(uv=uvs, image=image)
    else:
        rgba = np.append(np.round(np.asarray(spec.color) * 255.0), 255).astype(np.uint8)
        visual = trimesh.visual.ColorVisuals(vertex_colors=np.tile(rgba, (len(keep), 1)))
    shaded = trimesh.Trimesh(vertices[keep], faces, vertex_normals=normals, visual=visual, process=False)
    discrete = np.array([_rotation_about(axis, degrees) for axis, degrees in spec.discrete]).reshape(-1, 4, 4)
    continuous = tuple(
        ContinuousSymmetry(axis=np.asarray(axis, dtype=np.float64), offset=np.zeros(3)) for axis in spec.continuous
    )
    return ObjectModel.from_trimesh(shaded, obj_id, spec.name, discrete, continuous)


def add_object(
    models_dir: str | Path, mesh: str | Path, name: str, scale: float = 1.0,
    color: tuple[float, float, float] | None = None,
) -> ObjectModel:
    """Add a mesh file as a new object (the next free id) to a BOP models folder, prepared as the set's objects.

    `scale` turns mesh units into metres; `color` (RGB in [0, 1]) replaces a missing or unwanted texture. The
    object gets no symmetry. Nothing is trained: retrieval and refinement need only the model.
    """
    models_dir, mesh = Path(models_dir), Path(mesh).resolve()
    existing = load_models(models_dir)
    if any(model.name == name for model in existing.values()):
        raise ValueError(f"{models_dir}: an object named {name!r} exists already")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    obj_id = max(existing, default=0) + 1
    model = make_model(ObjectSpec(name, str(mesh), scale=scale, color=color), obj_id, mesh.parent)
    write_models(models_dir, [*existing.values(), model])
    return model


def write_models(models_dir: str | Path, models: list[ObjectModel]) -> None:
    """Write models as a BOP models folder: obj_XXXXXX.ply (mm), textures, models_info.json, models_names.json."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    for model in models:
        ply_path = models_dir / model_file_name(model.obj_id)
        texture_file = None
        if model.texture is not None:
            texture_file = ply_path.with_suffix(".png").name
            Image.fromarray(model.texture).save(models_dir / texture_file, format="PNG")
        colors = None if model.colors is None else np.round(np.clip(model.colors, 0.0, 1.0) * 255.0).astype(np.uint8)
        ply.write_ply(
            ply_path,
            model.vertices.astype(np.float64) * MM_PER_M,
            model.faces,
            model.normals,
            colors=colors,
            uvs=model.uvs if texture_file else None,
            texture_file=texture_file,
        )
    write_models_info(models_dir / MODELS_INFO_FILE, {model.obj_id: models_info_entry(model) for model in models})
    names = {str(model.obj_id): model.name for model in sorted(models, key=lambda m: m.obj_id)}
    (models_dir / MODELS_NAMES_FILE).write_text(json.dumps(names, indent=2) + "\n")


def models_info_entry(model: ObjectModel) -> dict:
    """A model's BOP models_info.json entry, in millimetres."""
    entry = {"diameter": _mm(model.diameter)[0]}
    entry.update(zip(("min_x", "min_y", "min_z"), _mm(model.bbox_min)))
    entry.update(zip(("size_x", "size_y", "size_z"), _mm(model.bbox_size)))
    if len(model.symmetries_discrete):
        transforms = np.array(model.symmetries_discrete, dtype=np.float64)
        transforms[:, :3, 3] *= MM_PER_M
        entry["symmetries_discrete"] = [[_clean(v) for v in T.ravel()] for T in transforms]
    if model.symmetries_continuous:
        entry["symmetries_continuous"] = [
            {"axis": [_clean(v) for v in sym.axis], "offset": _mm(sym.offset)} for sym in model.symmetries_continuous
        ]
    return entry


def crease_normals(
    vertices: np.ndarray, faces: np.ndarray, crease_angle: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertex normals smooth across edges flatter than `crease_angle` (rad), split where the mesh is sharper.

    trimesh's vertex normals average over every face at a vertex, which rounds off box edges, and stop at
    texture seams, where meshes duplicate vertices; here each face corner averages (angle-weighted) the
    faces that meet at its position within the crease angle, and a vertex is split when its corners differ.

    Args:
        vertices: (N, 3) float positions.
        faces: (F, 3) int, counter-clockwise seen from outside.
    Returns:
        keep: (M,) int, the input vertex each output vertex copies (take uvs/colours with it).
        faces: (F, 3) int32 indices into the output vertices.
        normals: (M, 3) float64 unit normals.
    """
    triangles = vertices[faces]
    face_normals, valid = trimesh.triangles.normals(triangles)
    if not valid.all():
        raise ValueError("crease_normals needs non-degenerate faces")
    corner_angles = trimesh.triangles.angles(triangles).ravel()  # (3F,)
    _, position = np.unique(vertices, axis=0, return_inverse=True)
    corner_position = position.ravel()[faces.ravel()]  # (3F,)
    corner_face = np.repeat(np.arange(len(faces)), 3)

    # Every ordered pair of corners at the same position, built group by group without a Python loop.
    order = np.argsort(corner_position, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(corner_position[order]) != 0])
    sizes = np.diff(np.r_[starts, len(order)])
    group_start = np.repeat(starts, sizes)  # per sorted corner
    group_size = np.repeat(sizes, sizes)
    first = np.repeat(order, group_size)
    offset = np.arange(len(first)) - np.repeat(np.cumsum(group_size) - group_size, group_size)
    second = order[np.repeat(group_start, group_size) + offset]

    n_first, n_second = face_normals[corner_face[first]], face_normals[corner_face[second]]
    smooth = np.einsum("ij,ij->i", n_first, n_second) >= np.cos(crease_angle)
    corner_normals = np.zeros((len(corner_face), 3))
    np.add.at(corner_normals, first[smooth], n_second[smooth] * corner_angles[second[smooth], None])
    corner_normals /= np.linalg.norm(corner_normals, axis=1, keepdims=True)

    # One output vertex per (input vertex, normal); 1e-6 merges normals that differ by rounding only.
    keys = np.column_stack([faces.ravel(), np.round(corner_normals * 1e6)])
    _, first_corner, new_index = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return faces.ravel()[first_corner], new_index.reshape(-1, 3).astype(np.int32), corner_normals[first_corner]


def _outward_faces(vertices: np.ndarray, faces: np.ndarray, source: Path) -> np.ndarray:
    """Faces wound counter-clockwise seen from outside (flipped when the mesh is inside out)."""
    welded = trimesh.Trimesh(vertices, faces, process=True)
    if not welded.is_winding_consistent:
        raise ValueError(f"{source}: faces are wound inconsistently; cannot orient normals")
    return faces[:, ::-1] if welded.volume < 0 else faces


def _crop_texture(uvs: np.ndarray, image: Image.Image) -> tuple[np.ndarray, Image.Image]:
    """Crop a texture to the part the uvs (N, 2, v up) use, remapping them; unchanged if they wrap around."""
    if uvs.min() < 0.0 or uvs.max() > 1.0:
        return uvs, image
    width, height = image.size
    left = max(int(np.floor(uvs[:, 0].min() * width)) - TEXTURE_MARGIN_PX, 0)
    right = min(int(np.ceil(uvs[:, 0].max() * width)) + TEXTURE_MARGIN_PX, width)
    top = max(int(np.floor((1.0 - uvs[:, 1].max()) * height)) - TEXTURE_MARGIN_PX, 0)
    bottom = min(int(np.ceil((1.0 - uvs[:, 1].min()) * height)) + TEXTURE_MARGIN_PX, height)
    u = (uvs[:, 0] * width - left) / (right - left)
    v = 1.0 - ((1.0 - uvs[:, 1]) * height - top) / (bottom - top)
    return np.column_stack([u, v]), image.crop((left, top, right, bottom))


def _urdf_mesh_scale(urdf: Path, mesh_name: str) -> np.ndarray:
    """The (3,) scale a URDF gives to its visual mesh `mesh_name` (1 where it gives none)."""
    if not urdf.is_file():
        raise FileNotFoundError(f"{urdf}: URDF not found in pybullet_data")
    for mesh in ET.parse(urdf).getroot().iterfind(".//visual/geometry/mesh"):
        if Path(mesh.get("filename", "")).name == mesh_name:
            return np.array([float(s) for s in mesh.get("scale", "1 1 1").split()])
    raise ValueError(f"{urdf}: no <visual> mesh with filename {mesh_name}")


def _rotation_about(axis: str, degrees: float) -> np.ndarray:
    """(4, 4) rotation about a model axis ('x', 'y' or 'z') through the origin; right angles come out exact."""
    T = np.eye(4)
    T[:3, :3] = np.round(Rotation.from_euler(axis, degrees, degrees=True).as_matrix(), 12) + 0.0
    return T


def _mm(values: float | np.ndarray) -> list[float]:
    """Lengths in metres as a flat list of cleaned millimetre floats."""
    return [_clean(v * MM_PER_M) for v in np.ravel(values)]


def _clean(value: float) -> float:
    """A float rounded to 1e-9 (mm in models_info: sub-micrometre noise and -0.0 would only add clutter)."""
    return float(np.round(value, 9)) + 0.0


def _inputs_digest(data_dir: Path) -> str:
    """SHA-256 over everything the output depends on: specs, source files, this code and library versions."""
    digest = hashlib.sha256()
    digest.update(repr(OBJECT_SET).encode())
    digest.update(f"{np.__version__} {trimesh.__version__} {PIL.__version__}".encode())
    for code in (Path(__file__), Path(ply.__file__)):
        digest.update(code.read_bytes())
    for spec in OBJECT_SET:
        mesh = data_dir / spec.mesh
        sources = [mesh] + ([data_dir / spec.urdf] if spec.urdf else [])
        for material in mesh.parent.glob(mesh.stem + ".mtl"):
            sources.append(material)
            lines = material.read_text(errors="replace").splitlines()
            sources += [material.parent / line.split()[-1] for line in lines if line.strip().startswith("map_Kd")]
        for path in sources:
            digest.update(path.read_bytes() if path.is_file() else b"missing " + str(path).encode())
    return digest.hexdigest()

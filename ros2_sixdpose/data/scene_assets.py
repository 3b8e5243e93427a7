"""Renderable scene dressing: the room (floor and walls), tray and table, and distractor objects.

All of it is built as `ObjectModel`s in metres so that one `Renderer` draws objects, distractors and room in
the same pass with the same lighting, depth test and depth output. Distractors are meshes from
pybullet_data that are not in the object set (the 1000 generated shapes of `random_urdfs/` and a few
toys) and procedural boxes, cylinders, capsules and spheres, recoloured or retextured per scene. None of
these models is ever annotated; their diameters are bounding-box diagonals (an upper bound; unused).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet_data
import trimesh

from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.objectset import CREASE_ANGLE_DEG, OBJECT_SET, crease_normals
from ros2_sixdpose.data.scene_physics import SupportSpec
from ros2_sixdpose.data.textures import random_colors, random_texture

__all__ = [
    "MeshSource", "ShadedMesh", "distractor_sources", "shaded_mesh", "load_source_mesh", "primitive_mesh",
    "distractor_model",
    "floor_model", "walls_model", "tray_model", "table_model",
]

N_RANDOM_URDFS = 1000
# Extra pybullet_data meshes usable as distractors: (path, scale to metres). Meshes of the object set are
# removed from this list by `distractor_sources`, so a user who adds one of them to the set stays safe.
EXTRA_DISTRACTORS = (
    ("toys/cylinder.obj", 1.0),
    ("toys/prism.obj", 1.0),
    ("toys/shape_sorter.obj", 0.3),
    ("cube.obj", 0.05),
    ("sphere_smooth.obj", 0.03),
    ("soccerball.obj", 0.09),
)
PRIMITIVES = ("box", "cylinder", "capsule", "sphere")
TRAY_MESH = "tray/tray_textured.obj"
TRAY_SCALE = 0.5  # as traybox.urdf scales its visual mesh
# traybox.urdf's visual mesh lies 1 cm below its collision plate; raised so that bodies rest on what is seen.
TRAY_VISUAL_LIFT = 0.01
WALL_SEGMENTS = 64
TABLE_LEG_SIDE = 0.05  # m
_URDF_SCALE = re.compile(r'<mesh\s+filename="[^"]*"\s+scale="([^"]+)"')


@dataclass(frozen=True)
class MeshSource:
    """A distractor mesh file in pybullet_data and the scale that makes it metres."""

    path: str  # relative to the pybullet_data folder
    scale: float


def distractor_sources(data_dir: str | Path | None = None) -> list[MeshSource]:
    """Every distractor mesh: random_urdfs/000..999 (scale read from their URDF) and `EXTRA_DISTRACTORS`."""
    data_dir = Path(data_dir or pybullet_data.getDataPath())
    in_set = {spec.mesh for spec in OBJECT_SET}
    sources = [MeshSource(path, scale) for path, scale in EXTRA_DISTRACTORS if path not in in_set]
    for index in range(N_RANDOM_URDFS):
        folder = data_dir / "random_urdfs" / f"{index:03d}"
        urdf = folder / f"{index:03d}.urdf"
        if urdf.is_file():
            match = _URDF_SCALE.search(urdf.read_text())
            scale = float(match.group(1).split()[0]) if match else 1.0
            sources.append(MeshSource(f"random_urdfs/{index:03d}/{index:03d}.obj", scale))
    if not sources:
        raise FileNotFoundError(f"{data_dir}: no distractor meshes found (random_urdfs/ missing?)")
    return sources


@dataclass(frozen=True)
class ShadedMesh:
    """Geometry of a distractor: vertices (N, 3) float64 m centred on the bounding box, faces (F, 3) int32,
    normals (N, 3) unit, smooth across edges flatter than the object set's crease angle and sharp elsewhere."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray


def shaded_mesh(vertices: np.ndarray, faces: np.ndarray) -> ShadedMesh:
    """A `ShadedMesh` of a triangle mesh (metres): degenerate faces dropped, centred, crease-aware normals.

    Raises ValueError for an empty mesh or non-finite vertices.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if len(vertices) == 0 or len(faces) == 0 or not np.all(np.isfinite(vertices)):
        raise ValueError(f"mesh is empty or has non-finite vertices ({len(vertices)} vertices, {len(faces)} faces)")
    faces = faces[trimesh.triangles.area(vertices[faces]) > 1e-12]
    vertices = vertices - (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0
    keep, faces, normals = crease_normals(vertices, faces, np.radians(CREASE_ANGLE_DEG))
    return ShadedMesh(vertices[keep], faces, normals)


@functools.lru_cache(maxsize=256)
def load_source_mesh(data_dir: str, path: str, scale: float) -> ShadedMesh:
    """A distractor mesh of pybullet_data in metres (cached: scenes reuse meshes); ValueError naming a broken file."""
    mesh = trimesh.load(Path(data_dir) / path, force="mesh")
    try:
        return shaded_mesh(np.asarray(mesh.vertices) * scale, mesh.faces)
    except ValueError as exc:
        raise ValueError(f"{Path(data_dir) / path}: {exc}") from exc


def primitive_mesh(rng: np.random.Generator) -> ShadedMesh:
    """A random box, cylinder, capsule or sphere of 2-16 cm: the packaging, cans and balls of real clutter."""
    kind = rng.choice(PRIMITIVES)
    if kind == "box":
        mesh = trimesh.creation.box(extents=rng.uniform(0.02, 0.16, 3))
    elif kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=rng.uniform(0.015, 0.05), height=rng.uniform(0.03, 0.16), sections=32)
    elif kind == "capsule":
        mesh = trimesh.creation.capsule(height=rng.uniform(0.02, 0.1), radius=rng.uniform(0.01, 0.035), count=[16, 16])
    else:
        mesh = trimesh.creation.icosphere(subdivisions=2, radius=rng.uniform(0.015, 0.05))
    return shaded_mesh(mesh.vertices, mesh.faces)


def distractor_model(mesh: ShadedMesh, obj_id: int, rng: np.random.Generator, scale: float,
                     texture_size: int = 128, texture_probability: float = 0.5) -> ObjectModel:
    """A distractor of `mesh` scaled by `scale`, with a random colour or a random texture (box-projected uvs)."""
    vertices = mesh.vertices * scale
    normals, faces = mesh.normals, mesh.faces
    if rng.random() < texture_probability:
        texture = random_texture(rng, texture_size, tileable=True)
        tile = rng.uniform(0.03, 0.15)  # m of surface per texture repeat
        return _model(obj_id, "distractor", vertices, faces, normals, uvs=_box_uvs(vertices, normals, tile),
                      texture=texture)
    base = random_colors(rng, 1)[0]
    return _model(obj_id, "distractor", vertices, faces, normals, colors=_vertex_tint(base, len(vertices), rng))


def floor_model(obj_id: int, texture: np.ndarray, half_size: float, tile: float) -> ObjectModel:
    """A square floor at z = 0 of side 2 * half_size (m), the texture repeating every `tile` metres."""
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * half_size
    vertices = np.column_stack([corners, np.zeros(4)])
    faces = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32)
    normals = np.tile([0.0, 0.0, 1.0], (4, 1))
    return _model(obj_id, "floor", vertices, faces, normals, uvs=corners / tile, texture=texture)


def walls_model(obj_id: int, texture: np.ndarray, radius: float, height: float, tile: float) -> ObjectModel:
    """A round room's wall: an open cylinder about the z axis, from z = 0 to `height` (m), normals inward."""
    angles = np.linspace(0.0, 2.0 * np.pi, WALL_SEGMENTS + 1)
    ring = np.column_stack([radius * np.cos(angles), radius * np.sin(angles)])
    vertices = np.vstack([np.column_stack([ring, np.zeros(len(ring))]),
                          np.column_stack([ring, np.full(len(ring), height)])])
    normals = np.vstack([-np.column_stack([ring / radius, np.zeros(len(ring))])] * 2)
    u = angles * radius / tile
    uvs = np.vstack([np.column_stack([u, np.zeros(len(u))]), np.column_stack([u, np.full(len(u), height / tile)])])
    n = len(ring)
    i = np.arange(WALL_SEGMENTS)
    faces = np.vstack([np.column_stack([i, i + 1, n + i + 1]), np.column_stack([i, n + i + 1, n + i])])
    return _model(obj_id, "walls", vertices, faces.astype(np.int32), normals, uvs=uvs, texture=texture)


def tray_model(obj_id: int, rng: np.random.Generator, data_dir: str | Path | None = None,
               texture_size: int = 256) -> ObjectModel:
    """pybullet's tray (as traybox.urdf shows it) with its own texture or, half of the time, a random one."""
    data_dir = Path(data_dir or pybullet_data.getDataPath())
    mesh = trimesh.load(data_dir / TRAY_MESH, force="mesh", process=False)
    vertices = np.asarray(mesh.vertices, dtype=np.float64) * TRAY_SCALE + [0.0, 0.0, TRAY_VISUAL_LIFT]
    keep, faces, normals = crease_normals(vertices, np.asarray(mesh.faces), np.radians(CREASE_ANGLE_DEG))
    uvs = np.asarray(mesh.visual.uv, dtype=np.float64)[keep]
    if rng.random() < 0.5:
        texture = np.asarray(mesh.visual.material.image.convert("RGB"), dtype=np.uint8)
    else:
        texture = random_texture(rng, texture_size, tileable=True)
    return _model(obj_id, "tray", vertices[keep], faces, normals, uvs=uvs, texture=texture)


def table_model(obj_id: int, support: SupportSpec, texture: np.ndarray, tile: float) -> ObjectModel:
    """A table: `support`'s top (a box under z = top_z) on four square legs standing on the floor."""
    hx, hy = support.half_size
    top_center = (0.0, 0.0, support.top_z - support.thickness / 2)
    boxes = [_box(top_center, (hx, hy, support.thickness / 2), tile)]
    leg_half = TABLE_LEG_SIDE / 2
    leg_height = support.top_z - support.thickness
    for sx in (-1, 1):
        for sy in (-1, 1):
            center = (sx * (hx - 2 * leg_half), sy * (hy - 2 * leg_half), leg_height / 2)
            boxes.append(_box(center, (leg_half, leg_half, leg_height / 2), tile))
    offsets = np.cumsum([0] + [len(b[0]) for b in boxes[:-1]])
    vertices = np.vstack([b[0] for b in boxes])
    faces = np.vstack([b[1] + o for b, o in zip(boxes, offsets)]).astype(np.int32)
    normals = np.vstack([b[2] for b in boxes])
    uvs = np.vstack([b[3] for b in boxes])
    return _model(obj_id, "table", vertices, faces, normals, uvs=uvs, texture=texture)


def _box(center: tuple[float, float, float], half: tuple[float, float, float],
         tile: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An axis-aligned box with flat faces: vertices (24, 3) m, faces (12, 3), normals (24, 3), uvs (24, 2)."""
    vertices, faces, normals, uvs = [], [], [], []
    for axis in range(3):
        u_axis, v_axis = [a for a in range(3) if a != axis]
        for sign in (-1.0, 1.0):
            corners = np.zeros((4, 3))
            corners[:, axis] = sign * half[axis]
            corners[:, u_axis] = np.array([-1, 1, 1, -1]) * half[u_axis]
            corners[:, v_axis] = np.array([-1, -1, 1, 1]) * half[v_axis]
            corners += center
            base = len(vertices) * 4
            vertices.append(corners)
            normal = np.zeros(3)
            normal[axis] = sign
            normals.append(np.tile(normal, (4, 1)))
            uvs.append(corners[:, [u_axis, v_axis]] / tile)
            faces.append(np.array([[0, 1, 2], [0, 2, 3]]) + base)
    return np.vstack(vertices), np.vstack(faces), np.vstack(normals), np.vstack(uvs)


def _box_uvs(vertices: np.ndarray, normals: np.ndarray, tile: float) -> np.ndarray:
    """Texture coordinates (N, 2) projecting each vertex along the axis its normal is closest to."""
    axis = np.argmax(np.abs(normals), axis=1)
    plane_axes = np.array([[1, 2], [0, 2], [0, 1]])[axis]
    return np.take_along_axis(vertices, plane_axes, axis=1) / tile


def _vertex_tint(base: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-vertex colours (n, 3) in [0, 1]: `base` with a little brightness variation (worn, dusty paint)."""
    variation = 1.0 + rng.uniform(0.0, 0.12) * rng.standard_normal((n, 1))
    return np.clip(base[None, :] * variation, 0.0, 1.0)


def _model(obj_id: int, name: str, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray,
           colors: np.ndarray | None = None, uvs: np.ndarray | None = None,
           texture: np.ndarray | None = None) -> ObjectModel:
    """An `ObjectModel` of a dressing mesh; diameter is the bounding-box diagonal."""
    vertices = np.asarray(vertices, dtype=np.float32)
    bbox_min = vertices.min(axis=0).astype(np.float64)
    bbox_size = vertices.max(axis=0).astype(np.float64) - bbox_min
    return ObjectModel(
        obj_id=obj_id,
        name=name,
        vertices=vertices,
        faces=np.asarray(faces, dtype=np.int32),
        normals=np.asarray(normals, dtype=np.float32),
        diameter=float(np.linalg.norm(bbox_size)),
        bbox_min=bbox_min,
        bbox_size=bbox_size,
        colors=None if colors is None else np.asarray(colors, dtype=np.float32),
        uvs=None if uvs is None else np.asarray(uvs, dtype=np.float32),
        texture=texture,
    )

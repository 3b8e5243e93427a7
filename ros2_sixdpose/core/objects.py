"""Object models: meshes in metres, their symmetries, NOCS normalisation, and a registry over a BOP models folder."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist
from scipy.spatial.transform import Rotation


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

"""First guesses of a Gaussian object: flat Gaussians on a mesh's surface, or on the visual hull of masks.

Both give N Gaussians lying flat on a surface (smallest axis along its outward normal, stored in `normals`),
spread so neighbours overlap: tangential sigma = `spread` x the mean sample spacing sqrt(area / N). Colours
are first guesses (the mesh's albedo; grey for masks) that the fit (gaussian_fit.py) replaces.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.gaussians import GaussianModel, rgb_to_sh_dc
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import DEFAULT_GREY

OVERSAMPLE = 8  # candidate surface samples per Gaussian, thinned to an even subset


@dataclass
class PosedMask:
    """A silhouette seen by a posed camera: mask (H, W) bool, K (3, 3), T_cam_obj (4, 4) m."""

    mask: np.ndarray
    K: np.ndarray
    T_cam_obj: np.ndarray


def frames_from_normals(normals: np.ndarray) -> np.ndarray:
    """Quaternions (N, 4) w, x, y, z of rotations whose third axis is `normals` (N, 3, unit)."""
    helper = np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    t1 = np.cross(normals, helper)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(normals, t1)
    return Rotation.from_matrix(np.stack([t1, t2, normals], axis=2)).as_quat(scalar_first=True)


def flat_gaussians(points: np.ndarray, normals: np.ndarray, area: float, colors: np.ndarray,
                   spread: float, flatness: float, opacity: float, inset: float) -> GaussianModel:
    """Gaussians flat along normals (N, 3), sized for a surface of `area` m^2, at points (N, 3) m moved
    `inset` x their tangential sigma inwards.

    Why the inset: splats lying exactly on the surface draw a silhouette about one pixel too wide all round
    (stacked footprints along grazing rays, each widened by the 0.3 px^2 low-pass); sunk half a sigma, the
    duck's held-out silhouette IoU went from 0.950 to 0.988 and its PSNR from 21.7 to 24.5 dB before any fit.
    """
    sigma = spread * np.sqrt(area / len(points))
    scales = np.tile([sigma, sigma, flatness * sigma], (len(points), 1))
    return GaussianModel(means=points - inset * sigma * normals, quats=frames_from_normals(normals), scales=scales,
                         opacities=np.full(len(points), opacity), sh=rgb_to_sh_dc(colors)[:, None, :],
                         normals=normals)


def sample_mesh_surface(model: ObjectModel, n: int, rng: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """n area-weighted points on the mesh: positions (n, 3) m, unit face normals (n, 3) oriented like the
    vertex normals, albedo (n, 3) in [0, 1] (texture, vertex colours or the renderer's grey), total area m^2."""
    v = model.vertices.astype(np.float64)[model.faces]  # (F, 3, 3)
    cross = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    m = OVERSAMPLE * n
    face = rng.choice(len(areas), size=m, p=areas / areas.sum())
    r1, r2 = np.sqrt(rng.random(m)), rng.random(m)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)  # uniform on each triangle
    keep = even_subset(np.einsum("nk,nkj->nj", bary, v[face]), n, float(areas.sum()), rng)
    face, bary = face[keep], bary[keep]
    points = np.einsum("nk,nkj->nj", bary, v[face])
    normals = cross[face] / np.maximum(2 * areas[face], 1e-20)[:, None]
    # The winding may disagree with the exported normals; they decide which side is out.
    vertex_normal = np.einsum("nk,nkj->nj", bary, model.normals.astype(np.float64)[model.faces[face]])
    normals *= np.where(np.einsum("ij,ij->i", normals, vertex_normal) < 0, -1.0, 1.0)[:, None]
    albedo = np.full((n, 3), DEFAULT_GREY)
    if model.colors is not None:
        albedo = np.einsum("nk,nkj->nj", bary, model.colors.astype(np.float64)[model.faces[face]])
    if model.texture is not None and model.uvs is not None:
        uv = np.einsum("nk,nkj->nj", bary, model.uvs.astype(np.float64)[model.faces[face]]) % 1.0
        h, w = model.texture.shape[:2]
        texel = model.texture[((1 - uv[:, 1]) * (h - 1)).round().astype(int), (uv[:, 0] * (w - 1)).round().astype(int)]
        albedo = albedo * texel / 255.0 if model.colors is not None else texel / 255.0
    return points, normals, albedo, float(areas.sum())


def even_subset(points: np.ndarray, n: int, area: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of n of `points` (M, 3) spread evenly over a surface of `area` m^2: one point per cell of a 3D
    grid sized so that about n cells are occupied, topped up at random. Random samples clump and leave holes
    that wider Gaussians would have to cover, blurring the silhouette; even ones can stay narrow."""
    order = rng.permutation(len(points))
    cell = np.sqrt(area / n)
    for _ in range(8):
        keys = np.floor(points[order] / cell).astype(np.int64)
        _, first = np.unique(keys, axis=0, return_index=True)
        if len(first) >= n:
            break
        cell *= 0.85 * np.sqrt(len(first) / n)
    chosen = order[np.sort(first)[:n]] if len(first) >= n else order[first]
    if len(chosen) < n:  # the grid could not resolve the surface finely enough: fill up at random
        rest = np.setdiff1d(order, chosen)
        chosen = np.concatenate([chosen, rest[:n - len(chosen)]])
    return rng.permutation(chosen)[:n]


def visual_hull(views: Sequence[PosedMask], resolution: int, radius: float
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """Surface voxels of the space carved by the masks inside a cube of half-size `radius` m at the origin:
    centres (M, 3) m, outward unit normals (M, 3), voxel size m. A voxel stays when every view that sees
    it projects it inside the mask."""
    if not views:
        raise ValueError("visual_hull needs at least one posed mask")
    axis = (np.arange(resolution) + 0.5) / resolution * 2 * radius - radius
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = np.ones(len(grid), bool)
    for view in views:
        p = grid @ view.T_cam_obj[:3, :3].T + view.T_cam_obj[:3, 3]
        z = np.maximum(p[:, 2], 1e-9)
        u = np.round(view.K[0, 0] * p[:, 0] / z + view.K[0, 1] * p[:, 1] / z + view.K[0, 2]).astype(int)
        vv = np.round(view.K[1, 1] * p[:, 1] / z + view.K[1, 2]).astype(int)
        h, w = view.mask.shape
        seen = (p[:, 2] > 0) & (u >= 0) & (u < w) & (vv >= 0) & (vv < h)
        hit = np.zeros(len(grid), bool)
        hit[seen] = view.mask[vv[seen], u[seen]]
        inside &= hit | ~seen
    occupancy = inside.reshape((resolution,) * 3)
    if not occupancy.any():
        raise ValueError("the masks carve away every voxel: check the poses (T_cam_obj, metres) and K")
    surface = occupancy & ~ndimage.binary_erosion(occupancy)
    # Outward normals: minus the gradient of the smoothed occupancy.
    smooth = ndimage.gaussian_filter(occupancy.astype(np.float64), 1.5)
    gradient = np.stack(np.gradient(smooth), axis=-1)[surface]
    normals = -gradient / np.maximum(np.linalg.norm(gradient, axis=1, keepdims=True), 1e-12)
    return grid[surface.reshape(-1)], normals, 2 * radius / resolution


def seed_from_mesh(model: ObjectModel, n: int, spread: float, flatness: float, opacity: float, inset: float,
                   rng: np.random.Generator) -> GaussianModel:
    """n flat Gaussians sampled on the mesh surface, coloured by its albedo."""
    points, normals, albedo, area = sample_mesh_surface(model, n, rng)
    return flat_gaussians(points, normals, area, albedo, spread, flatness, opacity, inset)


def seed_from_masks(views: Sequence[PosedMask], n: int, spread: float, flatness: float, opacity: float,
                    inset: float, resolution: int, rng: np.random.Generator) -> GaussianModel:
    """n flat Gaussians on the visual hull of posed masks (an object with no mesh), grey."""
    radius = _object_radius(views)
    centres, normals, voxel = visual_hull(views, resolution, radius)
    pick = rng.choice(len(centres), size=n, replace=len(centres) < n)
    # Jitter within the voxel's tangent plane so repeated picks do not stack.
    jitter = rng.uniform(-0.5, 0.5, (n, 3)) * voxel
    jitter -= np.einsum("ij,ij->i", jitter, normals[pick])[:, None] * normals[pick]
    area = len(centres) * voxel**2
    return flat_gaussians(centres[pick] + jitter, normals[pick], area, np.full((n, 3), DEFAULT_GREY),
                          spread, flatness, opacity, inset)


def _object_radius(views: Sequence[PosedMask]) -> float:
    """Half-size (m) of a cube at the model origin that holds the object: the largest mask extent back-projected
    at the origin's depth, with a margin."""
    radius = 0.0
    for view in views:
        vs, us = np.nonzero(view.mask)
        if len(us) == 0:
            continue
        z = view.T_cam_obj[2, 3]
        if z <= 0:
            raise ValueError("a view has the model origin behind its camera (T_cam_obj[2, 3] <= 0)")
        cx, cy = view.K[0, 2], view.K[1, 2]
        extent = max(np.abs(us - cx).max() / view.K[0, 0], np.abs(vs - cy).max() / view.K[1, 1])
        radius = max(radius, extent * z)
    if radius == 0:
        raise ValueError("every mask is empty")
    return 1.1 * radius

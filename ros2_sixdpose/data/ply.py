"""Writer of BOP-style PLY meshes (binary little endian, per-vertex normals, colours or texture coordinates).

trimesh reads these files correctly (texture_u/texture_v and `comment TextureFile`), so the registry reads
with trimesh; its PLY export, however, names texture coordinates `s`/`t` and writes no TextureFile comment,
which BOP tools (and our reader) would not find, hence this small writer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_ply(
    path: str | Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    normals: np.ndarray,
    colors: np.ndarray | None = None,
    uvs: np.ndarray | None = None,
    texture_file: str | None = None,
) -> None:
    """Write a triangle mesh as binary little-endian PLY with BOP's property names.

    Args:
        vertices: (N, 3) float, in the file's unit (BOP: millimetres).
        faces: (F, 3) int vertex indices.
        normals: (N, 3) float unit normals.
        colors: (N, 3) uint8 RGB, or None.
        uvs: (N, 2) float texture coordinates (v up), or None; needs `texture_file`.
        texture_file: image file name beside the PLY, written as `comment TextureFile <name>`.
    """
    path = Path(path)
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    n = len(vertices)
    _check_array(path, "vertices", vertices, (n, 3))
    _check_array(path, "faces", faces, (len(faces), 3))
    _check_array(path, "normals", normals, (n, 3))
    if colors is not None:
        _check_array(path, "colors", colors, (n, 3))
    if uvs is not None:
        _check_array(path, "uvs", uvs, (n, 2))
        if not texture_file:
            raise ValueError(f"{path}: texture coordinates given without a texture file name")
    if len(faces) and (faces.min() < 0 or faces.max() >= n):
        raise ValueError(f"{path}: face indices must lie in [0, {n}), got [{faces.min()}, {faces.max()}]")

    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if uvs is not None:
        fields += [("texture_u", "<f4"), ("texture_v", "<f4")]
    vertex_data = np.empty(n, dtype=np.dtype(fields))
    for i, axis in enumerate("xyz"):
        vertex_data[axis] = vertices[:, i]
        vertex_data["n" + axis] = normals[:, i]
    if colors is not None:
        for i, channel in enumerate(("red", "green", "blue")):
            vertex_data[channel] = colors[:, i]
    if uvs is not None:
        vertex_data["texture_u"] = uvs[:, 0]
        vertex_data["texture_v"] = uvs[:, 1]
    face_data = np.empty(len(faces), dtype=np.dtype([("n", "u1"), ("vertex_indices", "<i4", (3,))]))
    face_data["n"] = 3
    face_data["vertex_indices"] = faces

    ply_types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0"]
    if uvs is not None:
        header.append(f"comment TextureFile {texture_file}")
    header.append(f"element vertex {n}")
    header += [f"property {ply_types[dtype]} {name}" for name, dtype in fields]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(vertex_data.tobytes())
        f.write(face_data.tobytes())


def _check_array(path: Path, name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    """Raise ValueError naming the file and array unless `array` has `shape` and finite values."""
    array = np.asarray(array)
    if array.shape != shape:
        raise ValueError(f"{path}: {name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: {name} contains non-finite values")

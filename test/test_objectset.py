"""The object set (built from pybullet_data) and the registry that reads any BOP models folder."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pybullet_data
import pytest
import trimesh
from PIL import Image
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist
from scipy.spatial.transform import Rotation

from ros2_sixdpose.cli import main
from ros2_sixdpose.core.objects import (
    ContinuousSymmetry,
    ObjectModel,
    ObjectRegistry,
    load_models,
    model_file_name,
)
from ros2_sixdpose.data.objectset import OBJECT_SET, STAMP_FILE, build_object_set, crease_normals, write_models

NAMES = ["duck", "bunny", "teddy", "mug", "lego", "jenga", "domino", "torus"]


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    assert build_object_set(out)
    return out


@pytest.fixture(scope="module")
def registry(set_dir: Path) -> ObjectRegistry:
    return ObjectRegistry.from_dir(set_dir)


class SurfaceProbe:
    """Samples a model's surface with colours and finds, for any point, the closest surface point and its colour.

    Triangles are subdivided to <= 2% of the diameter so that the closest triangle is among the few with the
    nearest centroids; the distances found are never below the true ones, so a check that passes is sound.
    """

    def __init__(self, model: ObjectModel) -> None:
        self.model = model
        self.triangles = model.vertices[model.faces].astype(np.float64)
        vertices, faces, self.parent = trimesh.remesh.subdivide_to_size(
            model.vertices.astype(np.float64), model.faces, 0.02 * model.diameter, return_index=True
        )
        self.fine = vertices[faces]
        self.tree = cKDTree(self.fine.mean(axis=1))

    def colors(self, face_ids: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """(n, 3) colours in [0, 1] at barycentric points (n, 3) of faces (n,)."""
        corners = self.model.faces[face_ids]
        if self.model.texture is not None:
            uv = np.einsum("nk,nkj->nj", bary, self.model.uvs[corners])
            height, width = self.model.texture.shape[:2]
            col = np.clip(np.round(uv[:, 0] * (width - 1)), 0, width - 1).astype(int)
            row = np.clip(np.round((1.0 - uv[:, 1]) * (height - 1)), 0, height - 1).astype(int)
            return self.model.texture[row, col] / 255.0
        return np.einsum("nk,nkj->nj", bary, self.model.colors[corners])

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Area-uniform surface points (n, 3) m and their colours (n, 3)."""
        area = trimesh.triangles.area(self.triangles)
        face_ids = rng.choice(len(area), n, p=area / area.sum())
        r = rng.random((n, 2))
        r[r.sum(axis=1) > 1] = 1.0 - r[r.sum(axis=1) > 1]
        bary = np.column_stack([1.0 - r.sum(axis=1), r])
        return np.einsum("nk,nkj->nj", bary, self.triangles[face_ids]), self.colors(face_ids, bary)

    def closest(self, points: np.ndarray, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Distance (n,) m from each point to the surface, and the colour (n, 3) at the closest surface point."""
        k = min(k, len(self.fine))
        _, candidates = self.tree.query(points, k=k)
        repeated = np.repeat(points, k, axis=0)
        on_surface = trimesh.triangles.closest_point(self.fine[candidates.ravel()], repeated)
        distance = np.linalg.norm(on_surface - repeated, axis=1).reshape(-1, k)
        best = distance.argmin(axis=1)
        rows = np.arange(len(points))
        face_ids = self.parent[candidates[rows, best]]
        nearest = on_surface.reshape(-1, k, 3)[rows, best]
        bary = np.clip(trimesh.triangles.points_to_barycentric(self.triangles[face_ids], nearest), 0.0, 1.0)
        return distance[rows, best], self.colors(face_ids, bary / bary.sum(axis=1, keepdims=True))


def symmetry_residual(probe: SurfaceProbe, T: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """How far T (4, 4) is from mapping the model onto itself: (max surface distance / diameter of the moved
    vertices and samples, 99th percentile of the largest per-channel colour difference at the samples)."""
    points, colors = probe.sample(n, np.random.default_rng(seed))
    moved = np.vstack([probe.model.vertices, points]) @ T[:3, :3].T + T[:3, 3]
    distance, moved_colors = probe.closest(moved)
    color_error = np.abs(moved_colors[len(probe.model.vertices):] - colors).max(axis=1)
    return float(distance.max() / probe.model.diameter), float(np.percentile(color_error, 99))


def rotation(axis: str, degrees: float) -> np.ndarray:
    """(4, 4) rotation about a model axis through the origin."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler(axis, degrees, degrees=True).as_matrix()
    return T


# ---------------------------------------------------------------- the built set


def test_object_set_loads_through_registry(registry: ObjectRegistry) -> None:
    assert registry.ids == list(range(1, 9))
    assert [model.name for model in registry] == NAMES
    assert registry["torus"] is registry[8]
    for model in registry:
        assert 0.05 <= model.diameter <= 0.20, model.name  # graspable
        assert model.faces.max() < len(model.vertices)
        assert np.allclose(np.linalg.norm(model.normals, axis=1), 1.0, atol=1e-5)
        assert (model.texture is not None) != (model.colors is not None), model.name
        # Centred on the bounding-box centre.
        assert np.allclose(model.bbox_min + model.bbox_size / 2.0, 0.0, atol=1e-6)
    assert {m.name for m in registry if m.texture is not None} == {"duck", "jenga", "domino"}
    assert [m.name for m in registry if m.symmetries_continuous] == ["torus"]
    assert [m.name for m in registry if len(m.symmetries_discrete)] == ["lego", "torus"]
    np.testing.assert_allclose(registry["torus"].symmetries_continuous[0].axis, [0.0, 0.0, 1.0])


def test_models_info_equals_values_recomputed_from_vertices(registry: ObjectRegistry) -> None:
    for model in registry:
        vertices = model.vertices.astype(np.float64)
        assert model.diameter == pytest.approx(pdist(vertices).max(), abs=1e-6), model.name
        np.testing.assert_allclose(model.bbox_min, vertices.min(axis=0), atol=1e-6)
        np.testing.assert_allclose(model.bbox_size, vertices.max(axis=0) - vertices.min(axis=0), atol=1e-6)


def test_known_sizes(registry: ObjectRegistry) -> None:
    # Jenga: a unit cube scaled 0.15 x 0.05 x 0.03 m by its URDF; torus: 150 mm across, 49.5 mm thick.
    np.testing.assert_allclose(registry["jenga"].bbox_size, [0.15, 0.05, 0.03], atol=1e-6)
    assert registry["jenga"].diameter == pytest.approx(math.sqrt(0.15**2 + 0.05**2 + 0.03**2), abs=1e-6)
    np.testing.assert_allclose(registry["torus"].bbox_size, [0.15, 0.15, 0.049491], atol=1e-5)
    # Duck: duck.obj spans 1.6548 x 1.1525 x 1.5404 units (y up), scaled by 0.05 in duck_vhacd.urdf.
    np.testing.assert_allclose(registry["duck"].bbox_size, np.array([1.6548, 1.1525, 1.5404]) * 0.05, atol=1e-4)


@pytest.mark.parametrize("name", ["lego", "torus"])
def test_declared_symmetries_map_the_object_onto_itself(registry: ObjectRegistry, name: str) -> None:
    model = registry[name]
    probe = SurfaceProbe(model)
    transforms = model.symmetry_transforms()[1:]  # without the identity
    if model.symmetries_continuous:  # 630 sampled turns; check a seeded selection of them
        transforms = transforms[np.random.default_rng(1).choice(len(transforms), 10, replace=False)]
    for T in transforms:
        distance, color_error = symmetry_residual(probe, T)
        assert distance < 0.01, (name, T.round(3), distance)
        assert color_error < 0.02, (name, T.round(3), color_error)


@pytest.mark.parametrize("name", ["jenga", "domino"])
def test_textures_break_the_box_symmetries(registry: ObjectRegistry, name: str) -> None:
    # The shape has the three 180-degree flips of a box, but the printed faces do not: none is declared.
    probe = SurfaceProbe(registry[name])
    for axis in "xyz":
        distance, color_error = symmetry_residual(probe, rotation(axis, 180.0))
        assert distance < 0.01
        assert color_error > 0.5, (name, axis, color_error)


@pytest.mark.parametrize("name", ["duck", "bunny", "teddy", "mug"])
def test_asymmetric_shapes_have_no_turn_symmetry(registry: ObjectRegistry, name: str) -> None:
    probe = SurfaceProbe(registry[name])
    for axis, degrees in (("x", 180.0), ("y", 180.0), ("z", 180.0), ("z", 90.0)):
        distance, _ = symmetry_residual(probe, rotation(axis, degrees), n=500)
        assert distance > 0.05, (name, axis, degrees, distance)


def _face_centre_colors(uvs: np.ndarray, faces: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """(F, 3) int texture colours at the uv centre of each face."""
    uv = uvs[faces].mean(axis=1)
    height, width = texture.shape[:2]
    return texture[((1.0 - uv[:, 1]) * height).astype(int), (uv[:, 0] * width).astype(int)].astype(int)


def test_texture_crop_keeps_the_colours(registry: ObjectRegistry) -> None:
    root = Path(pybullet_data.getDataPath())
    for name in ("duck", "jenga", "domino"):
        spec = next(s for s in OBJECT_SET if s.name == name)
        source = trimesh.load(root / spec.mesh, force="mesh", process=False)
        model = registry[name]
        assert len(model.faces) == len(source.faces)  # no face dropped, order kept
        image = np.asarray(source.visual.material.image.convert("RGB"))
        original = _face_centre_colors(np.asarray(source.visual.uv), np.asarray(source.faces), image)
        cropped = _face_centre_colors(model.uvs, model.faces, model.texture)
        assert np.mean(np.abs(original - cropped).max(axis=1) <= 2) > 0.98, name
        assert model.texture.size <= image.size


def test_build_is_deterministic_and_skipped_when_up_to_date(set_dir: Path, tmp_path: Path) -> None:
    assert not build_object_set(set_dir)  # the fixture built it; the stamp matches
    assert build_object_set(tmp_path, force=True)
    for path in sorted(set_dir.iterdir()):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
    (tmp_path / model_file_name(3)).unlink()
    assert build_object_set(tmp_path)  # a missing output forces a rebuild
    (tmp_path / STAMP_FILE).write_text("stale")
    assert build_object_set(tmp_path)
    assert (tmp_path / model_file_name(3)).read_bytes() == (set_dir / model_file_name(3)).read_bytes()


def test_cli_lists_the_set(set_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["objects", "build", "--out", str(set_dir)]) == 0
    assert main(["objects", "list", "--models", str(set_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"up to date: {set_dir}"
    assert lines[1].split()[:3] == ["id", "name", "diameter"]
    rows = {line.split()[1]: line for line in lines[2:]}
    assert list(rows) == NAMES
    assert rows["torus"].split()[2] == "150.0"
    assert rows["torus"].endswith("continuous about z; 180 deg about x")
    assert rows["lego"].endswith("90 deg about z; 180 deg about z; 270 deg about z")
    assert rows["duck"].endswith("none")
    assert main(["objects", "list", "--models", str(set_dir / "missing")]) == 1


# ---------------------------------------------------------------- normals


def test_crease_normals_split_box_edges_and_keep_spheres_smooth() -> None:
    box = trimesh.creation.box([0.1, 0.2, 0.3])
    keep, faces, normals = crease_normals(box.vertices, box.faces, np.radians(40.0))
    assert len(keep) == 24  # 8 corners x 3 faces
    np.testing.assert_allclose(np.sort(np.abs(normals), axis=1), np.tile([0.0, 0.0, 1.0], (24, 1)), atol=1e-12)
    face_normals = trimesh.triangles.normals(box.vertices[keep][faces])[0]
    np.testing.assert_allclose(normals[faces].mean(axis=1), face_normals, atol=1e-12)  # flat, outward

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    keep, faces, normals = crease_normals(sphere.vertices, sphere.faces, np.radians(40.0))
    assert len(keep) == len(sphere.vertices)
    radial = sphere.vertices[keep] / np.linalg.norm(sphere.vertices[keep], axis=1, keepdims=True)
    assert np.degrees(np.arccos(np.clip(np.sum(normals * radial, axis=1), -1, 1))).max() < 1.0


# ---------------------------------------------------------------- any BOP models folder


def _cylinder_model(obj_id: int, name: str) -> ObjectModel:
    """A cylinder (radius 20 mm, height 80 mm, axis z through (10, 0, 0) mm) coloured by height, so that any
    turn about its axis is a symmetry; declared as a continuous one and as a half turn (20 mm translation)."""
    mesh = trimesh.creation.cylinder(radius=0.02, height=0.08, sections=32)
    mesh.apply_translation([0.01, 0.0, 0.0])
    shade = (mesh.vertices[:, 2] + 0.04) / 0.08
    rgb = np.column_stack([shade, 1.0 - shade, np.full(len(shade), obj_id / 10.0)])
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.round(rgb * 255).astype(np.uint8))
    half_turn = rotation("z", 180.0)
    half_turn[:3, 3] = [0.02, 0.0, 0.0]
    return ObjectModel.from_trimesh(
        mesh, obj_id, name, symmetries_discrete=half_turn[None],
        symmetries_continuous=(ContinuousSymmetry(axis=np.array([0.0, 0.0, 1.0]), offset=np.array([0.01, 0.0, 0.0])),),
    )


def _textured_model(obj_id: int) -> ObjectModel:
    """An icosphere of radius 30 mm with spherical texture coordinates and a seeded random texture."""
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.03)
    v = mesh.vertices / 0.03
    uv = np.column_stack([(np.arctan2(v[:, 1], v[:, 0]) + np.pi) / (2 * np.pi), (v[:, 2] + 1.0) / 2.0])
    texture = np.random.default_rng(7).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(texture))
    return ObjectModel.from_trimesh(mesh, obj_id, "ball")


def test_write_and_read_round_trip_mm_to_m(tmp_path: Path) -> None:
    written = {3: _cylinder_model(3, "box"), 7: _textured_model(7)}
    write_models(tmp_path, list(written.values()))

    info = json.loads((tmp_path / "models_info.json").read_text())
    assert info["3"]["min_x"] == pytest.approx(-10.0)  # the cylinder spans -10..30 mm in x
    assert info["3"]["size_z"] == pytest.approx(80.0)
    assert info["3"]["symmetries_discrete"][0][3] == pytest.approx(20.0)  # translation in mm
    assert info["3"]["symmetries_continuous"][0]["offset"] == pytest.approx([10.0, 0.0, 0.0])
    raw = trimesh.load(tmp_path / model_file_name(3), process=False)
    np.testing.assert_allclose(raw.vertices, written[3].vertices * 1000.0, atol=1e-3)  # the file is in mm

    loaded = load_models(tmp_path)
    assert sorted(loaded) == [3, 7]
    for obj_id, original in written.items():
        model = loaded[obj_id]
        assert model.name == original.name
        np.testing.assert_allclose(model.vertices, original.vertices, atol=1e-6)
        np.testing.assert_array_equal(model.faces, original.faces)
        np.testing.assert_allclose(model.normals, original.normals, atol=1e-6)
        assert model.diameter == pytest.approx(original.diameter, abs=1e-6)
        np.testing.assert_allclose(model.bbox_min, original.bbox_min, atol=1e-6)
        np.testing.assert_allclose(model.bbox_size, original.bbox_size, atol=1e-6)
        np.testing.assert_allclose(model.symmetries_discrete, original.symmetries_discrete, atol=1e-9)
        assert len(model.symmetries_continuous) == len(original.symmetries_continuous)
        for got, want in zip(model.symmetries_continuous, original.symmetries_continuous):
            np.testing.assert_allclose(got.axis, want.axis, atol=1e-9)
            np.testing.assert_allclose(got.offset, want.offset, atol=1e-9)
    np.testing.assert_allclose(loaded[3].colors, written[3].colors, atol=0.5 / 255)
    np.testing.assert_allclose(loaded[7].uvs, written[7].uvs, atol=1e-7)
    np.testing.assert_array_equal(loaded[7].texture, written[7].texture)
    assert loaded[7].colors is None and loaded[3].texture is None


def test_reads_a_hand_written_ascii_ply(tmp_path: Path) -> None:
    # A user's model as other tools write it: ASCII, no normals, colours, quads allowed.
    (tmp_path / "obj_000012.ply").write_text(
        "ply\nformat ascii 1.0\ncomment made by hand\nelement vertex 5\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "element face 5\nproperty list uchar int vertex_indices\nend_header\n"
        "-50 -50 0 255 0 0\n50 -50 0 255 0 0\n50 50 0 255 0 0\n-50 50 0 255 0 0\n0 0 100 0 0 255\n"
        "4 3 2 1 0\n3 0 1 4\n3 1 2 4\n3 2 3 4\n3 3 0 4\n"
    )
    (tmp_path / "models_info.json").write_text(
        '{"12": {"diameter": 150.0, "min_x": -50, "min_y": -50, "min_z": 0, '
        '"size_x": 100, "size_y": 100, "size_z": 100}}'
    )
    model = ObjectRegistry.from_dir(tmp_path)["obj_000012"]  # a square pyramid, 100 mm base and height
    assert model.obj_id == 12 and not model.is_symmetric
    np.testing.assert_allclose(model.vertices[[0, 4]], [[-0.05, -0.05, 0.0], [0.0, 0.0, 0.1]])
    assert len(model.faces) == 6  # the square base split in two
    assert model.diameter == pytest.approx(0.15)
    np.testing.assert_allclose(model.colors[[0, 4]], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(model.normals[4], [0.0, 0.0, 1.0], atol=1e-6)  # computed: the apex points up
    np.testing.assert_allclose(model.bbox_size, [0.1, 0.1, 0.1])


def test_registry_lookups(tmp_path: Path) -> None:
    write_models(tmp_path, [_cylinder_model(1, "box"), _cylinder_model(2, "crate")])
    (tmp_path / "models_names.json").unlink()
    registry = ObjectRegistry.from_dir(tmp_path)
    assert [m.name for m in registry] == ["obj_000001", "obj_000002"]  # default names
    assert "obj_000002" in registry and 2 in registry and 3 not in registry
    with pytest.raises(KeyError, match=r"unknown object 'box'.*1 \(obj_000001\)"):
        registry["box"]
    assert list(load_models(tmp_path, [2])) == [2]
    with pytest.raises(KeyError, match=r"no objects \[5\]"):
        load_models(tmp_path, [2, 5])
    with pytest.raises(ValueError, match="name 'box' appears twice"):
        ObjectRegistry([_cylinder_model(1, "box"), _cylinder_model(2, "box")])


def _edit_info(folder: Path, edit) -> None:
    info = json.loads((folder / "models_info.json").read_text())
    edit(info)
    (folder / "models_info.json").write_text(json.dumps(info))


def _scale_ply_to_metres(folder: Path) -> None:
    model = load_models(folder)[1]
    model.vertices = model.vertices / 1000.0
    write_models(folder / "m", [model])
    (folder / model_file_name(1)).write_bytes((folder / "m" / model_file_name(1)).read_bytes())


MALFORMED = {
    "missing models_info": (
        lambda d: (d / "models_info.json").unlink(), FileNotFoundError, r"models_info\.json not found",
    ),
    "missing ply": (lambda d: (d / model_file_name(2)).unlink(), FileNotFoundError, r"obj_000002\.ply.*object 2"),
    "short symmetry": (
        lambda d: _edit_info(d, lambda i: i["1"]["symmetries_discrete"][0].pop()),
        ValueError, r"models_info\.json: object 1: 'symmetries_discrete\[0\]' has 15 values, expected 16",
    ),
    "non-rigid symmetry": (
        lambda d: _edit_info(d, lambda i: i["1"]["symmetries_discrete"][0].__setitem__(0, 2.0)),
        ValueError, r"object 1: 'symmetries_discrete\[0\]' is not a rigid transform",
    ),
    "bad axis": (
        lambda d: _edit_info(d, lambda i: i["1"]["symmetries_continuous"][0].__setitem__("axis", [0, 1])),
        ValueError, r"symmetries_continuous\[0\]: 'axis' has 2 values, expected 3",
    ),
    "nan diameter": (
        lambda d: _edit_info(d, lambda i: i["2"].__setitem__("diameter", float("nan"))),
        ValueError, r"object 2: 'diameter' has non-finite values",
    ),
    "missing size": (
        lambda d: _edit_info(d, lambda i: i["2"].pop("size_y")), ValueError, r"object 2: missing 'size_y'",
    ),
    "garbage ply": (
        lambda d: (d / model_file_name(1)).write_bytes(b"\x00garbage" * 100),
        ValueError, r"obj_000001\.ply: not a PLY file",
    ),
    "truncated ply": (
        lambda d: (d / model_file_name(1)).write_bytes((d / model_file_name(1)).read_bytes()[:400]),
        ValueError, r"obj_000001\.ply: cannot parse PLY",
    ),
    "ply in metres": (_scale_ply_to_metres, ValueError, r"obj_000001\.ply: vertices span .* millimetres"),
    "per-face uvs": (
        lambda d: (d / model_file_name(1)).write_bytes(
            (d / model_file_name(1)).read_bytes().replace(
                b"end_header", b"property list uchar float texcoord\nend_header", 1
            )
        ),
        ValueError, r"obj_000001\.ply: per-face texture coordinates",
    ),
    "unknown name id": (
        lambda d: (d / "models_names.json").write_text('{"9": "ghost"}'), ValueError, r"models_names\.json: object 9",
    ),
    "bad json": (
        lambda d: (d / "models_info.json").write_text("{1: "), ValueError, r"models_info\.json: not valid JSON",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_folders_name_file_and_field(tmp_path: Path, case: str) -> None:
    write_models(tmp_path, [_cylinder_model(1, "box"), _cylinder_model(2, "crate")])
    corrupt, error, message = MALFORMED[case]
    corrupt(tmp_path)
    with pytest.raises(error, match=message):
        load_models(tmp_path)


def test_missing_texture_is_named(tmp_path: Path) -> None:
    write_models(tmp_path, [_textured_model(4)])
    (tmp_path / "obj_000004.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"obj_000004\.ply: TextureFile obj_000004\.png not found"):
        load_models(tmp_path)

"""Renderer against analytic geometry: depth of a box and a sphere, silhouettes, NOCS, occlusion, texture."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation

from ros2_sixdpose.cli import main
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import MAX_CACHED_FRAMEBUFFERS, Lighting, Renderer

BOX, SPHERE, TEXTURED, RED, INWARD = 1, 2, 3, 4, 5
BOX_SIZE = np.array([0.10, 0.08, 0.06])
RADIUS = 0.05
W, H = 320, 240
# Off-centre principal point and fx != fy so that a convention error cannot cancel out.
K = np.array([[400.0, 0.0, 150.3], [0.0, 380.0, 125.7], [0.0, 0.0, 1.0]])
FLAT = Lighting(ambient=1.0, diffuse=0.0, specular=0.0)
QUADRANTS = {
    "top_left": (255, 0, 0),
    "top_right": (0, 255, 0),
    "bottom_left": (0, 0, 255),
    "bottom_right": (255, 255, 0),
}


def _pose(rotvec: tuple[float, float, float], t: tuple[float, float, float]) -> np.ndarray:
    """T_cam_obj (4, 4) from a rotation vector (rad) and a translation (m)."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


def _project(points: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) of model points (N, 3) m under pose T, by OpenCV."""
    rvec = cv2.Rodrigues(T[:3, :3])[0]
    return cv2.projectPoints(points.astype(np.float64), rvec, T[:3, 3], K, None)[0].reshape(-1, 2)


def _textured_slab() -> ObjectModel:
    """A 0.1 x 0.1 x 0.02 m slab whose -z face shows a 64 x 64 texture of four coloured quadrants, upright."""
    mesh = trimesh.creation.box((0.1, 0.1, 0.02))
    image = np.zeros((64, 64, 3), np.uint8)
    image[:32, :32], image[:32, 32:] = QUADRANTS["top_left"], QUADRANTS["top_right"]
    image[32:, :32], image[32:, 32:] = QUADRANTS["bottom_left"], QUADRANTS["bottom_right"]
    # Seen face-on, model +x is image right and model -y image up; uv has v up (v = 1 is the image's top row).
    uv = np.stack([mesh.vertices[:, 0] > 0, mesh.vertices[:, 1] < 0], axis=1).astype(np.float64)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(image))
    return ObjectModel.from_trimesh(mesh, TEXTURED, "slab")


def _red_box() -> ObjectModel:
    """A 5 cm cube with red vertex colours."""
    mesh = trimesh.creation.box((0.05, 0.05, 0.05))
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.tile([255, 0, 0, 255], (8, 1)))
    return ObjectModel.from_trimesh(mesh, RED, "red_box")


@pytest.fixture(scope="module")
def models() -> dict[int, ObjectModel]:
    """Box, icosphere, textured slab, red cube and an icosphere with inward normals, keyed by id."""
    sphere = ObjectModel.from_trimesh(trimesh.creation.icosphere(subdivisions=4, radius=RADIUS), SPHERE, "sphere")
    return {
        BOX: ObjectModel.from_trimesh(trimesh.creation.box(BOX_SIZE), BOX, "box"),
        SPHERE: sphere,
        TEXTURED: _textured_slab(),
        RED: _red_box(),
        # Normals pointing inwards, as in badly exported meshes: must be lit the same.
        INWARD: dataclasses.replace(sphere, obj_id=INWARD, name="inward_sphere", normals=-sphere.normals),
    }


@pytest.fixture(scope="module", autouse=True)
def _mesa_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep Mesa's shader cache out of the home folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESA_SHADER_CACHE_DIR", str(tmp_path_factory.mktemp("mesa_cache")))
        yield


@pytest.fixture(scope="module")
def renderer(models: dict[int, ObjectModel]) -> Renderer:
    """One renderer of all test models, shared by the module."""
    with Renderer(models) as r:
        yield r


def _pixel_rays() -> np.ndarray:
    """Rays (H, W, 3) through every pixel centre, z = 1."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    return np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T


def test_box_face_on_depth_equals_front_face_distance(renderer: Renderer) -> None:
    T = _pose((0, 0, 0), (0.01, -0.02, 0.5))
    result = renderer.render(K, W, H, [(BOX, T)])
    rays = _pixel_rays()
    # Hit point of each pixel's ray with the front face plane z = 0.5 - 0.03, in the object frame.
    z_face = 0.5 - BOX_SIZE[2] / 2
    xy = rays[..., :2] * z_face - T[:2, 3]
    half = BOX_SIZE[:2] / 2
    inside = np.all(np.abs(xy) < half - 2.0 * z_face / K[0, 0], axis=-1)  # 2 px from the edges
    outside = np.any(np.abs(xy) > half + 2.0 * z_face / K[0, 0], axis=-1)
    assert inside.sum() > 4000
    np.testing.assert_allclose(result.depth[inside], z_face, atol=1e-5)
    assert np.all(result.depth[outside] == 0.0)
    assert np.all(result.instance[inside] == 0) and np.all(result.instance[outside] == -1)


def test_sphere_depth_matches_ray_sphere_intersection(renderer: Renderer) -> None:
    centre = np.array([-0.03, 0.02, 0.6])
    result = renderer.render(K, W, H, [(SPHERE, _pose((0.3, -0.2, 0.1), centre))])
    d = _pixel_rays()
    dd, dc = np.sum(d * d, axis=-1), d @ centre
    ray_to_centre = np.sqrt(np.maximum(centre @ centre - dc**2 / dd, 0.0))  # distance of each ray from the centre
    # The ray t * d (z = t) meets |p - c| = r at the smaller root of t^2 |d|^2 - 2 t d.c + |c|^2 - r^2 = 0.
    z_true = (dc - np.sqrt(np.maximum(dc**2 - dd * (centre @ centre - RADIUS**2), 0.0))) / dd
    # Away from the rim (incidence < 53 deg), where the icosphere's flat facets stay within 0.1 mm of the sphere.
    core = ray_to_centre < 0.8 * RADIUS
    assert core.sum() > 1500
    err = np.abs(result.depth[core] - z_true[core])
    assert err.max() < 1e-3
    assert np.median(err) < 1e-4
    assert np.all(result.depth[ray_to_centre > 1.05 * RADIUS] == 0.0)


def test_silhouette_is_projected_box_hull(renderer: Renderer) -> None:
    T = _pose((0.4, -0.7, 0.25), (0.02, 0.01, 0.45))
    mask = renderer.render(K, W, H, [(BOX, T)], outputs=("instance",)).instance == 0
    corners = trimesh.creation.box(BOX_SIZE).vertices
    hull = cv2.convexHull(_project(corners, T).astype(np.float32))
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    signed = np.array([cv2.pointPolygonTest(hull, (float(x), float(y)), True) for x, y in zip(u.ravel(), v.ravel())])
    signed = signed.reshape(H, W)
    # GL covers a pixel iff its centre is inside: exact up to float rounding, so 0.05 px catches a half-pixel shift.
    assert np.all(mask[signed > 0.05]) and not np.any(mask[signed < -0.05])
    # Every hull corner lies on the mask boundary: within 1 px of the square [u +- 0.5] x [v +- 0.5] of a mask pixel.
    ys, xs = np.nonzero(mask)
    for corner in hull.reshape(-1, 2):
        gap = np.hypot(np.maximum(np.abs(xs - corner[0]) - 0.5, 0), np.maximum(np.abs(ys - corner[1]) - 0.5, 0))
        assert gap.min() <= 1.0


def test_nocs_back_projects_to_own_pixel_and_depth(renderer: Renderer, models: dict[int, ObjectModel]) -> None:
    objects = [(BOX, _pose((0.5, 0.2, -0.4), (-0.06, 0.0, 0.5))), (SPHERE, _pose((-0.2, 0.9, 0.3), (0.07, 0.02, 0.55)))]
    result = renderer.render(K, W, H, objects)
    for index, (obj_id, T) in enumerate(objects):
        vs, us = np.nonzero(result.instance == index)
        assert len(us) > 2000
        nocs = result.nocs[vs, us]
        assert nocs.min() >= 0.0 and nocs.max() <= 1.0
        points = models[obj_id].nocs_to_points(nocs.astype(np.float64))
        pixels = _project(points, T)
        assert np.max(np.hypot(pixels[:, 0] - us, pixels[:, 1] - vs)) < 0.01
        z = points @ T[2, :3] + T[2, 3]
        assert np.max(np.abs(z - result.depth[vs, us])) < 1e-5
    background = result.instance == -1
    assert np.all(result.nocs[background] == 0.0)


def test_nearer_object_wins_in_instance_and_depth(renderer: Renderer) -> None:
    near, far = _pose((0, 0, 0), (0.0, 0.0, 0.4)), _pose((0, 0, 0), (0.02, 0.01, 0.6))
    for objects, near_index in [([(BOX, near), (SPHERE, far)], 0), ([(SPHERE, far), (BOX, near)], 1)]:
        result = renderer.render(K, W, H, objects)
        sphere_alone = renderer.render(K, W, H, [(SPHERE, far)], outputs=("depth",)).depth > 0
        box_alone = renderer.render(K, W, H, [(BOX, near)], outputs=("depth",)).depth > 0
        overlap = sphere_alone & box_alone
        assert overlap.sum() > 1000
        assert np.all(result.instance[overlap] == near_index)
        np.testing.assert_allclose(result.depth[overlap], 0.4 - BOX_SIZE[2] / 2, atol=1e-5)
        sphere_only = sphere_alone & ~box_alone
        assert np.all(result.instance[sphere_only] == 1 - near_index)


def test_texture_quadrants_appear_upright(renderer: Renderer) -> None:
    T = _pose((0, 0, 0), (0.0, 0.0, 0.4))
    rgb = renderer.render(K, W, H, [(TEXTURED, T)], lighting=FLAT, outputs=("rgb",)).rgb
    # Centres of the four quadrants of the -z face (at z = 0.39), quarter-way in from the edges.
    for name, (x, y) in {
        "top_left": (-0.025, -0.025),
        "top_right": (0.025, -0.025),
        "bottom_left": (-0.025, 0.025),
        "bottom_right": (0.025, 0.025),
    }.items():
        u, v = np.round(_project(np.array([[x, y, -0.01]]), T)[0]).astype(int)
        np.testing.assert_allclose(rgb[v, u], QUADRANTS[name], atol=1, err_msg=name)


def test_albedo_vertex_colour_default_grey_and_lambert(renderer: Renderer) -> None:
    T = _pose((0.3, 0.2, 0.1), (0.0, 0.0, 0.4))
    red = renderer.render(K, W, H, [(RED, T)], lighting=FLAT, outputs=("rgb", "instance"))
    assert np.all(red.rgb[red.instance == 0] == [255, 0, 0])
    assert np.all(red.rgb[red.instance == -1] == 0)
    grey = renderer.render(K, W, H, [(BOX, T)], lighting=FLAT, outputs=("rgb", "instance"))
    assert np.all(np.abs(grey.rgb[grey.instance == 0].astype(int) - round(0.7 * 255)) <= 1)
    # Headlight, diffuse only: colour = 0.7 * cos(angle between the normal and the viewing ray).
    centre = np.array([0.0, 0.0, 0.5])
    headlight = Lighting(ambient=0.0, diffuse=1.0, specular=0.0, direction=(0.0, 0.0, 1.0))
    for obj_id in (SPHERE, INWARD):
        result = renderer.render(K, W, H, [(obj_id, _pose((0, 0, 0), centre))], lighting=headlight)
        vs, us = np.nonzero(result.instance == 0)
        points = _pixel_rays()[vs, us] * result.depth[vs, us, None]
        normals = (points - centre) / RADIUS
        expected = 255 * 0.7 * np.clip(-normals[:, 2], 0, 1)
        err = np.abs(result.rgb[vs, us, 0] - expected)
        assert np.median(err) <= 1.0 and np.percentile(err, 99) <= 3.0


def test_specular_highlight_where_reflection_meets_the_eye(renderer: Renderer) -> None:
    # Headlight on a sphere centred on the optical axis: the mirror point is the sphere's front pole,
    # which projects to the principal point.
    shiny = Lighting(ambient=0.0, diffuse=0.0, specular=1.0, shininess=50.0, direction=(0.0, 0.0, 1.0))
    rgb = renderer.render(K, W, H, [(SPHERE, _pose((0, 0, 0), (0.0, 0.0, 0.5)))], lighting=shiny).rgb
    v, u = np.unravel_index(np.argmax(rgb[..., 0]), (H, W))
    assert np.hypot(u - K[0, 2], v - K[1, 2]) <= 1.0
    assert rgb[v, u, 0] >= 250


def test_crop_with_shifted_K_equals_slice_of_full_render(renderer: Renderer) -> None:
    objects = [(BOX, _pose((0.5, 0.2, -0.4), (-0.02, 0.0, 0.5))), (SPHERE, _pose((0, 0, 0), (0.05, 0.02, 0.55)))]
    full = renderer.render(K, W, H, objects)
    x0, y0, w, h = 120, 90, 64, 48
    K_crop = K.copy()
    K_crop[0, 2] -= x0
    K_crop[1, 2] -= y0
    crop = renderer.render(K_crop, w, h, objects)
    np.testing.assert_array_equal(crop.instance, full.instance[y0 : y0 + h, x0 : x0 + w])
    np.testing.assert_allclose(crop.depth, full.depth[y0 : y0 + h, x0 : x0 + w], atol=1e-6)
    np.testing.assert_allclose(crop.nocs, full.nocs[y0 : y0 + h, x0 : x0 + w], atol=1e-5)


def test_only_requested_outputs_are_returned(renderer: Renderer) -> None:
    objects = [(SPHERE, _pose((0, 0, 0), (0.0, 0.0, 0.5)))]
    full = renderer.render(K, W, H, objects)
    depth_only = renderer.render(K, W, H, objects, outputs=("depth",))
    assert depth_only.rgb is None and depth_only.instance is None and depth_only.nocs is None
    np.testing.assert_array_equal(depth_only.depth, full.depth)
    np.testing.assert_array_equal(renderer.render(K, W, H, objects, outputs="nocs").nocs, full.nocs)
    assert full.rgb.dtype == np.uint8 and full.rgb.shape == (H, W, 3)
    assert full.depth.dtype == np.float32 and full.depth.shape == (H, W)
    assert full.instance.dtype == np.int32 and full.nocs.shape == (H, W, 3)


def test_many_sizes_keep_framebuffer_cache_bounded(renderer: Renderer) -> None:
    objects = [(SPHERE, _pose((0, 0, 0), (0.0, 0.0, 0.5)))]
    for size in range(MAX_CACHED_FRAMEBUFFERS + 4):
        Ks = K.copy()
        Ks[:2, 2] = [(20 + size - 1) / 2, 10.0]
        depth = renderer.render(Ks, 20 + size, 21, objects, outputs=("depth",)).depth
        assert depth.shape == (21, 20 + size)
        assert depth[10, (20 + size) // 2] == pytest.approx(0.5 - RADIUS, abs=1e-3)
    assert len(renderer._targets) <= MAX_CACHED_FRAMEBUFFERS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objects": [(99, np.eye(4))]}, "unknown obj_id 99"),
        ({"K": np.full((3, 3), np.nan)}, "K must be a finite"),
        ({"K": np.eye(2)}, "K must be a finite"),
        ({"K": np.diag([-400.0, 380.0, 1.0])}, "fx, fy > 0"),
        ({"objects": [(BOX, np.full((4, 4), np.inf))]}, r"objects\[0\]: T_cam_obj must be a finite"),
        ({"objects": [(BOX, np.diag([2.0, 1.0, 1.0, 1.0]))]}, "rigid"),
        ({"objects": [(BOX, np.eye(3))]}, "finite \\(4, 4\\)"),
        ({"width": 0}, "image size"),
        ({"height": 10.5}, "image size"),
        ({"outputs": ("depth", "normals")}, "unknown outputs"),
        ({"near": 1.0, "far": 0.5}, "near < far"),
    ],
)
def test_bad_inputs_raise_value_error(renderer: Renderer, kwargs: dict, message: str) -> None:
    call = {"K": K, "width": W, "height": H, "objects": [(BOX, _pose((0, 0, 0), (0, 0, 0.5)))]} | kwargs
    with pytest.raises(ValueError, match=message):
        renderer.render(**call)


def test_bad_lighting_raises() -> None:
    with pytest.raises(ValueError, match="direction"):
        Lighting(direction=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="ambient"):
        Lighting(ambient=-0.1)
    with pytest.raises(ValueError, match="color"):
        Lighting(color=(1.0, np.nan, 1.0))


def test_remove_model_and_closed_renderer(models: dict[int, ObjectModel]) -> None:
    r = Renderer({SPHERE: models[SPHERE]})
    T = _pose((0, 0, 0), (0.0, 0.0, 0.5))
    K_small = np.array([[40.0, 0.0, 15.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]])
    assert r.render(K_small, 32, 24, [(SPHERE, T)], outputs=("depth",)).depth[12, 16] == pytest.approx(0.45, abs=1e-3)
    r.add_model(models[BOX])
    assert r.object_ids == (SPHERE, BOX)
    r.remove_model(SPHERE)
    with pytest.raises(ValueError, match="unknown obj_id 2"):
        r.render(K_small, 32, 24, [(SPHERE, T)])
    r.close()
    r.close()
    with pytest.raises(RuntimeError, match="closed"):
        r.render(K_small, 32, 24, [(BOX, T)])


def test_bad_model_raises_naming_model_and_field(models: dict[int, ObjectModel]) -> None:
    broken = dataclasses.replace(models[BOX], faces=models[BOX].faces + 100)
    with pytest.raises(ValueError, match=r"model 1 \('box'\): faces"):
        Renderer({BOX: broken})


def test_bench_render_writes_figures(tmp_path: Path) -> None:
    out = tmp_path / "render.json"
    assert main(["bench", "render", "--frames", "3", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["n_objects"] == 5 and figures["width"] == 640 and figures["height"] == 480
    assert 0 < figures["median_ms"] <= figures["p90_ms"]
    assert figures["gl_renderer"]
    # Every bench JSON records how busy the machine was: the 1, 5 and 15 min load averages.
    assert len(figures["load_average"]) == 3 and all(v >= 0 for v in figures["load_average"])

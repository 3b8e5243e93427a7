"""Tests of the synthetic data engine: ground truth checked against re-rendering, determinism, sequences, errors."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from ros2_sixdpose.cli import synth as synth_cli
from ros2_sixdpose.cli.common import parse_overrides
from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.geometry import invert_pose, rotation_angle
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data.bop import BopSplit, read_depth, read_mask, read_rgb
from ros2_sixdpose.data.camera_paths import CameraConfig, SequenceConfig, orbit_trajectory, random_views
from ros2_sixdpose.data.nocs_maps import NOCS_LEVELS, read_nocs, write_nocs
from ros2_sixdpose.data.objectset import build_object_set
from ros2_sixdpose.data.scene_physics import PhysicsConfig, SupportSpec, body_shape, settle
from ros2_sixdpose.data.sequence_annotation import SEQUENCE_FILE, read_sequence_annotation
from ros2_sixdpose.data.sequence_script import EventsConfig
from ros2_sixdpose.data.synth import DISTRACTOR_ID_BASE, SCENE_TIMES_FILE, SceneConfig, SynthConfig, generate_split
from ros2_sixdpose.data.synth_preview import BOX_COLOR, draw_annotations
from ros2_sixdpose.data.textures import fractal_noise, random_texture

WIDTH, HEIGHT = 320, 240
N_SCENES, N_IMAGES = 2, 2


def _config(**scene) -> SynthConfig:
    """A small, fast configuration: 320x240, small textures, 3-5 objects and 2-3 distractors per scene."""
    return SynthConfig(
        camera=CameraConfig(width=WIDTH, height=HEIGHT, fx=300.0, fy=300.0),
        scene=SceneConfig(**{"objects_per_scene": (3, 5), "distractors_per_scene": (2, 3), "texture_size": 128,
                             **scene}),
    )


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("object_set") / "models"
    build_object_set(path)
    return path


@pytest.fixture(scope="module")
def split(tmp_path_factory, models_dir) -> BopSplit:
    root = tmp_path_factory.mktemp("synth")
    generate_split(root, "train", N_SCENES, N_IMAGES, seed=3, config=_config(), models_dir=models_dir, progress=False)
    return BopSplit(root, "train")


@pytest.fixture(scope="module")
def models(split):
    return load_models(split.models_dir)


@pytest.fixture(scope="module")
def rerendered(split, models):
    """Per (scene, image): the GT poses rendered again (instance map and depth), objects only."""
    out = {}
    with Renderer(models) as renderer:
        for scene_id in split.scene_ids():
            scene = split.read_scene(scene_id)
            for im_id, instances in scene.gt.items():
                result = renderer.render(scene.camera[im_id].K, WIDTH, HEIGHT,
                                         [(inst.obj_id, inst.T_cam_obj) for inst in instances],
                                         outputs=("instance", "depth"), near=0.05, far=8.0)
                alone = [renderer.render(scene.camera[im_id].K, WIDTH, HEIGHT, [(inst.obj_id, inst.T_cam_obj)],
                                         outputs=("instance",), near=0.05, far=8.0).instance == 0
                         for inst in instances]
                out[scene_id, im_id] = (result, alone)
    return out


def _instances(split):
    """(scene_id, im_id, gt_index, GtInstance, GtInfo, CameraParams) of every annotated instance."""
    for scene_id in split.scene_ids():
        scene = split.read_scene(scene_id)
        for im_id, instances in scene.gt.items():
            for gt_index, (inst, info) in enumerate(zip(instances, scene.gt_info[im_id])):
                yield scene_id, im_id, gt_index, inst, info, scene.camera[im_id]


def test_split_layout_and_counts(split, models):
    assert split.scene_ids() == list(range(N_SCENES))
    instances = list(_instances(split))
    assert len(instances) >= N_SCENES * N_IMAGES * 2  # 3-5 objects per scene, most of them in view
    for scene_id in split.scene_ids():
        assert split.image_ids(scene_id) == list(range(N_IMAGES))
        for im_id in range(N_IMAGES):
            assert read_rgb(split.rgb_path(scene_id, im_id)).shape == (HEIGHT, WIDTH, 3)
            assert split.rgb_path(scene_id, im_id).suffix == ".jpg"
    assert {inst.obj_id for *_, inst, _, _ in instances} <= set(models)  # distractors never annotated
    assert all(inst.obj_id < DISTRACTOR_ID_BASE for *_, inst, _, _ in instances)
    assert (split.models_dir / "models_info.json").is_file()


def test_every_pose_projects_the_model_inside_its_bbox_obj(split, models):
    for scene_id, im_id, _, inst, info, cam in _instances(split):
        uv = PinholeCamera(cam.K, WIDTH, HEIGHT).project(
            models[inst.obj_id].vertices @ inst.T_cam_obj[:3, :3].T + inst.T_cam_obj[:3, 3])
        inside = (uv[:, 0] >= -0.5) & (uv[:, 0] < WIDTH - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < HEIGHT - 0.5)
        assert inside.any(), (scene_id, im_id, inst.obj_id)
        x, y, w, h = info.bbox_obj
        # A vertex projects into the pixel whose centre is within 0.5 px; 1 px of slack for rasterisation rules.
        assert np.all(uv[inside, 0] >= x - 1.5) and np.all(uv[inside, 0] <= x + w + 0.5)
        assert np.all(uv[inside, 1] >= y - 1.5) and np.all(uv[inside, 1] <= y + h + 0.5)


def test_gt_info_counts_match_masks(split):
    for scene_id, im_id, gt_index, _, info, _ in _instances(split):
        visib = read_mask(split.mask_visib_path(scene_id, im_id, gt_index))
        full = read_mask(split.mask_path(scene_id, im_id, gt_index))
        assert info.px_count_visib == visib.sum()
        assert not np.any(visib & ~full)
        assert info.px_count_all >= full.sum() > 0
        assert info.visib_fract == pytest.approx(info.px_count_visib / info.px_count_all)
        assert info.px_count_valid == full.sum()  # rendered depth covers every silhouette pixel
        if info.px_count_visib:
            x, y, w, h = info.bbox_visib
            ys, xs = np.nonzero(visib)
            assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (x, y, w, h)
            bx, by, bw, bh = info.bbox_obj
            assert bx <= x and by <= y and x + w <= bx + bw and y + h <= by + bh


def test_masks_match_rerendered_visibility(split, rerendered):
    depth_tolerance = 0.5e-3  # m: depth PNG quantisation is 0.05 mm; the rest is float32 rounding
    for scene_id, im_id, gt_index, _, _, cam in _instances(split):
        result, alone = rerendered[scene_id, im_id]
        depth = read_depth(split.depth_path(scene_id, im_id), cam.depth_scale)
        # Visible = this object is in front among the objects and nothing else (distractor, tray) is nearer.
        expected = (result.instance == gt_index) & (np.abs(result.depth - depth) < depth_tolerance)
        visib = read_mask(split.mask_visib_path(scene_id, im_id, gt_index))
        if expected.sum() == 0:
            assert visib.sum() == 0
            continue
        assert (visib & expected).sum() / (visib | expected).sum() > 0.99, (scene_id, im_id, gt_index)
        full = read_mask(split.mask_path(scene_id, im_id, gt_index))
        assert (full & alone[gt_index]).sum() / (full | alone[gt_index]).sum() > 0.99


def test_depth_at_object_pixels_equals_rerendered_depth(split, rerendered):
    for scene_id, im_id, gt_index, _, _, cam in _instances(split):
        result, _ = rerendered[scene_id, im_id]
        visib = read_mask(split.mask_visib_path(scene_id, im_id, gt_index))
        depth = read_depth(split.depth_path(scene_id, im_id), cam.depth_scale)
        step = cam.depth_scale / 1000.0
        assert np.abs(depth[visib] - result.depth[visib]).max(initial=0.0) <= step / 2 + 1e-6


def test_depth_includes_the_floor_and_room(split):
    for scene_id in split.scene_ids():
        cam = split.read_scene(scene_id).camera[0]
        depth = read_depth(split.depth_path(scene_id, 0), cam.depth_scale)
        assert (depth > 0).mean() > 0.99  # every pixel sees floor, support, walls or an object
        assert depth.max() < 6.0


def test_nocs_pixels_map_back_to_their_own_pixel(split, models):
    checked = 0
    for scene_id, im_id, gt_index, inst, _, cam in _instances(split):
        nocs, valid = read_nocs(split.scene_dir(scene_id) / "nocs" / f"{im_id:06d}.png")
        visib = read_mask(split.mask_visib_path(scene_id, im_id, gt_index))
        assert np.all(valid[visib])
        v, u = np.nonzero(visib)
        if len(u) == 0:
            continue
        points = models[inst.obj_id].nocs_to_points(nocs[v, u])
        uv = PinholeCamera(cam.K, WIDTH, HEIGHT).project(points @ inst.T_cam_obj[:3, :3].T + inst.T_cam_obj[:3, 3])
        error = np.linalg.norm(uv - np.column_stack([u, v]), axis=1)
        assert error.max() <= 1.0, (scene_id, im_id, gt_index, error.max())
        checked += len(u)
    assert checked > 500


def test_nocs_is_zero_off_the_annotated_objects(split):
    for scene_id in split.scene_ids():
        for im_id in range(N_IMAGES):
            _, valid = read_nocs(split.scene_dir(scene_id) / "nocs" / f"{im_id:06d}.png")
            n = len(split.read_scene(scene_id).gt[im_id])
            union = np.zeros_like(valid)
            for gt_index in range(n):
                union |= read_mask(split.mask_visib_path(scene_id, im_id, gt_index))
            assert np.array_equal(valid, union)


def test_scene_camera_has_world_extrinsics(split):
    for scene_id in split.scene_ids():
        scene = split.read_scene(scene_id)
        for cam in scene.camera.values():
            assert cam.T_cam_world is not None
            camera_height = invert_pose(cam.T_cam_world)[2, 3]
            assert camera_height > 0.0  # above the floor (z = 0)
            assert np.allclose(cam.K, scene.camera[0].K)  # intrinsics are fixed within a scene


def _file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_worker_processes_write_the_same_files_as_one_process(tmp_path, models_dir):
    config = _config(texture_size=64)
    one = generate_split(tmp_path / "one", "s", 3, 2, seed=21, config=config, models_dir=models_dir, progress=False)
    two = generate_split(tmp_path / "two", "s", 3, 2, seed=21, config=config, models_dir=models_dir, progress=False,
                         workers=2)
    assert (one.scenes, one.images, one.instances) == (two.scenes, two.images, two.instances) == (3, 6, one.instances)
    a, b = _file_hashes(tmp_path / "one" / "s"), _file_hashes(tmp_path / "two" / "s")
    assert len(a) >= 3 * 8 and a == b
    assert two.seconds["render"] > 0  # the workers' timings reach the caller
    with pytest.raises(ValueError, match="workers"):
        generate_split(tmp_path / "bad", "s", 1, 1, seed=0, config=config, models_dir=models_dir, workers=0)


def test_same_seed_same_bytes_and_scenes_independent_of_count(tmp_path, models_dir):
    config = _config(texture_size=64)
    generate_split(tmp_path / "a", "s", 2, 1, seed=7, config=config, models_dir=models_dir, progress=False)
    generate_split(tmp_path / "b", "s", 1, 1, seed=7, config=config, models_dir=models_dir, progress=False)
    generate_split(tmp_path / "c", "s", 1, 1, seed=8, config=config, models_dir=models_dir, progress=False)
    a, b = _file_hashes(tmp_path / "a" / "s" / "000000"), _file_hashes(tmp_path / "b" / "s" / "000000")
    assert len(a) >= 8 and a == b
    rgb_b = read_rgb(tmp_path / "b" / "s" / "000000" / "rgb" / "000000.jpg").astype(int)
    rgb_c = read_rgb(tmp_path / "c" / "s" / "000000" / "rgb" / "000000.jpg").astype(int)
    assert np.abs(rgb_b - rgb_c).mean() > 10


def test_sequence_is_smooth_at_30_hz(tmp_path, models_dir):
    config = _config(texture_size=64)
    n = 6
    generate_split(tmp_path, "seq", 1, n, seed=2, config=config, models_dir=models_dir, sequence=True,
                   progress=False)
    split = BopSplit(tmp_path, "seq")
    times = json.loads((split.scene_dir(0) / SCENE_TIMES_FILE).read_text())
    assert sorted(int(k) for k in times) == list(range(n))
    assert np.allclose(np.diff([times[str(i)] for i in range(n)]), 1.0 / 30.0, atol=1e-12)
    cameras = split.read_scene(0).camera
    poses = np.stack([invert_pose(cameras[i].T_cam_world) for i in range(n)])
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.all(steps < 0.03) and np.all(steps > 1e-4)  # moves, by less than 3 cm a frame
    assert np.degrees(rotation_angle(poses[:-1, :3, :3], poses[1:, :3, :3])).max() < 3.0


def test_sequence_events_are_annotated_and_consistent_with_the_ground_truth(tmp_path, models_dir):
    """A camera stop, a moved object, a full occlusion and a light change, each where scene_sequence.json says."""
    events = EventsConfig(lead_s=0.3, still_s=(0.3, 0.3), moved_objects=(1, 1), move_duration_s=(0.6, 0.6),
                          occlusion_frames=(2, 2), light_ramp_s=(0.2, 0.2))
    n = 70
    generate_split(tmp_path, "seq", 1, n, seed=4, config=dataclasses.replace(_config(texture_size=64), events=events),
                   models_dir=models_dir, sequence=True, progress=False)
    split = BopSplit(tmp_path, "seq")
    scene = split.read_scene(0)
    annotation = read_sequence_annotation(split.scene_dir(0) / SEQUENCE_FILE)
    kinds = {e.kind: e for e in annotation.events}
    assert {"still", "occlusion", "light"} <= kinds.keys() and kinds.keys() & {"push", "carry"}, annotation.events
    assert all(e.start >= 9 for e in annotation.events)  # after the 0.3 s lead-in
    cameras = np.stack([invert_pose(scene.camera[i].T_cam_world) for i in range(n)])
    for f, frame in enumerate(annotation.frames):
        # Persistent ids and visible fractions line up with scene_gt / scene_gt_info.
        assert np.allclose(frame.visib, [i.visib_fract for i in scene.gt_info[f]])
        if frame.camera_still:
            np.testing.assert_array_equal(cameras[f], cameras[f - 1])
        for pid in frame.occluded:  # wholly hidden: no visible pixel
            assert frame.visib[frame.instances.index(pid)] == 0.0 and frame.occluder
    still = kinds["still"]
    assert all(annotation.frames[f].camera_still for f in range(still.start, still.end))
    occlusion = kinds["occlusion"]
    assert any(frame.occluded for frame in annotation.frames[occlusion.start:occlusion.end])
    assert not any(frame.occluder for k, frame in enumerate(annotation.frames)
                   if not occlusion.start <= k < occlusion.end)
    move = kinds.get("push") or kinds["carry"]

    def world(f: int) -> np.ndarray:
        k = annotation.frames[f].instances.index(move.instance)
        return cameras[f] @ scene.gt[f][k].T_cam_obj
    moving = [f for f, frame in enumerate(annotation.frames) if frame.moving]
    assert moving and move.start <= min(moving) and max(moving) < move.end
    before, after = world(move.start - 1), world(n - 1)
    shift = np.linalg.norm(after[:2, 3] - before[:2, 3])
    assert 0.05 - 1e-6 <= shift <= 0.15 + 1e-6  # events.move_distance
    # Put down as it stood: same height, turned about the vertical only.
    assert abs(after[2, 3] - before[2, 3]) < 1e-6 and abs(after[2, 2] - before[2, 2]) < 1e-6
    light = kinds["light"]
    assert all(annotation.frames[f].light_change for f in range(light.start, light.end))


def test_events_config_rejects_bad_values():
    with pytest.raises(ValueError, match="occluder_distance"):
        EventsConfig(occluder_distance=(0.01, 0.2))  # inside the renders' near plane
    with pytest.raises(ValueError, match="occlusion_frames"):
        EventsConfig(occlusion_frames=(0, 2))
    with pytest.raises(ValueError, match="moved_objects"):
        EventsConfig(moved_objects=(2, 1))


def test_a_sequence_too_short_for_events_is_the_plain_orbit(tmp_path, models_dir):
    config = _config(texture_size=64)
    quiet = dataclasses.replace(config, events=EventsConfig(stills=0, moved_objects=(0, 0), occlusions=0,
                                                            light_changes=0))
    for name, cfg in (("a", config), ("b", quiet)):
        generate_split(tmp_path / name, "s", 1, 4, seed=5, config=cfg, models_dir=models_dir, sequence=True,
                       progress=False)
    a, b = _file_hashes(tmp_path / "a" / "s" / "000000"), _file_hashes(tmp_path / "b" / "s" / "000000")
    assert a == b and read_sequence_annotation(tmp_path / "a" / "s" / "000000" / SEQUENCE_FILE).events == ()


def test_orbit_trajectory_stays_in_the_configured_ranges():
    rng = np.random.default_rng(0)
    camera = CameraConfig(distance=(0.4, 0.8), elevation_deg=(20.0, 60.0))
    center = np.array([0.1, -0.2, 0.0])
    times, poses = orbit_trajectory(rng, camera, SequenceConfig(), center, 0.1, 300)
    assert np.allclose(np.diff(times), 1.0 / 30.0)
    offsets = poses[:, :3, 3] - center
    distance = np.linalg.norm(offsets, axis=1)
    assert distance.min() > 0.4 - 0.08 and distance.max() < 0.8 + 0.08  # target jitter + shake
    elevation = np.degrees(np.arcsin(offsets[:, 2] / distance))
    assert elevation.min() > 15.0 and elevation.max() < 65.0


def test_random_views_look_at_the_objects():
    rng = np.random.default_rng(1)
    camera = CameraConfig(distance=(0.3, 1.0), elevation_deg=(15.0, 80.0), target_jitter=0.0)
    center = np.array([0.0, 0.0, 0.7])
    poses = random_views(rng, camera, center, 0.1, 50)
    to_center = center - poses[:, :3, 3]
    distance = np.linalg.norm(to_center, axis=1)
    assert np.all((distance >= 0.3 - 1e-9) & (distance <= 1.0 + 1e-9))
    cos_angle = np.einsum("ni,ni->n", poses[:, :3, 2], to_center / distance[:, None])
    assert np.all(cos_angle > 1.0 - 1e-9)  # optical axis (z) through the target
    # Roll within 10 degrees: the image's x axis stays near horizontal.
    assert np.all(np.abs(poses[:, 2, 0]) <= np.sin(np.radians(10.0)) + 1e-9)


def test_dropped_box_rests_flat_on_floor_and_table():
    half = np.array([0.04, 0.03, 0.02])
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
    shape = body_shape(corners)
    assert shape.volume == pytest.approx(np.prod(2 * half), rel=1e-6)
    for support in (SupportSpec("floor", 0.0, (1.0, 1.0)), SupportSpec("table", 0.6, (0.4, 0.4), 0.03)):
        settled = settle([shape], support, np.random.default_rng(4), PhysicsConfig(spawn_radius=(0.0, 0.0)))
        assert settled.at_rest and settled.on_support.tolist() == [True]
        T = settled.T_world_obj[0]
        lowest = (corners @ T[:3, :3].T + T[:3, 3])[:, 2].min()
        assert lowest == pytest.approx(support.top_z, abs=2e-3)  # resting on the surface, not in or above it
        # Resting on a face: one box axis is vertical.
        assert np.abs(T[:3, :3]).max(axis=0)[np.argmax(np.abs(T[2, :3]))] > 0.999


def test_body_off_the_table_is_reported():
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * 0.02
    table = SupportSpec("table", 0.5, (0.05, 0.05), 0.03)
    settled = settle([body_shape(corners)] * 6, table, np.random.default_rng(0), PhysicsConfig(spawn_radius=(0.2, 0.2)))
    assert not settled.on_support.all()


def test_nocs_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    nocs = rng.random((20, 30, 3)).astype(np.float32)
    nocs[0, 0] = 0.0  # the bounding box's corner is a valid NOCS value
    valid = rng.random((20, 30)) < 0.7
    valid[0, 0] = True
    write_nocs(tmp_path / "n.png", nocs, valid)
    back, back_valid = read_nocs(tmp_path / "n.png")
    assert np.array_equal(back_valid, valid)
    assert np.abs(back[valid] - nocs[valid]).max() <= 0.5 / NOCS_LEVELS + 1e-7
    assert np.all(back[~valid] == 0.0)
    with pytest.raises(ValueError, match="png"):
        write_nocs(tmp_path / "n.jpg", nocs, valid)


def test_textures_tile_seamlessly_and_are_deterministic():
    noise = fractal_noise(np.random.default_rng(3), 256, octaves=4, base_cells=4)
    wrap_step = np.abs(noise[:, -1] - noise[:, 0]).mean()
    inner_step = np.abs(np.diff(noise, axis=1)).mean()
    assert wrap_step < 2.0 * inner_step
    a = random_texture(np.random.default_rng(9), 64)
    assert np.array_equal(a, random_texture(np.random.default_rng(9), 64))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8 and a.std() > 1.0


def test_preview_draws_boxes(split, models):
    scene = split.read_scene(0)
    rgb = read_rgb(split.rgb_path(0, 0))
    info = dataclasses.replace(scene.gt_info[0][0], bbox_visib=(-1, -1, -1, -1))
    drawn = draw_annotations(rgb, scene.camera[0].K, scene.gt[0][:1], [info], models)
    x, y, w, h = info.bbox_obj
    right, bottom = x + w - 1, y + h - 1
    outline = np.concatenate([drawn[y, x:right], drawn[bottom, x:right], drawn[y:bottom, x], drawn[y:bottom, right]])
    assert np.all(outline == BOX_COLOR, axis=1).mean() > 0.8  # axes and label may cross the outline
    assert not np.all(rgb[y, x:x + w] == BOX_COLOR, axis=1).any()


def test_unknown_object_ids_give_a_clear_error(tmp_path, models_dir, caplog):
    with pytest.raises(ValueError, match=r"unknown object ids \[99\]"):
        generate_split(tmp_path, "s", 1, 1, seed=0, config=_config(), models_dir=models_dir, object_ids=[1, 99],
                       progress=False)
    args = argparse.Namespace(
        out=tmp_path, split="s", scenes=1, images_per_scene=1, seed=0, objects=["duck", "spoon"],
        models=models_dir, sequence=False, preview=False, config=None, overrides=[], overwrite=False,
        no_progress=True,
    )
    assert synth_cli.run(args) == 1
    assert "unknown objects ['spoon']" in caplog.text and "1 (duck)" in caplog.text


def test_unwritable_output_gives_a_clear_error(tmp_path, models_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot write the output folder"):
        generate_split(blocker / "out", "s", 1, 1, seed=0, config=_config(), models_dir=models_dir, progress=False)


def test_existing_split_is_not_overwritten_silently(tmp_path, models_dir):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_split(tmp_path, "s", 1, 1, seed=0, config=_config(), models_dir=models_dir, progress=False)


def test_cli_overrides_reach_the_config():
    assert parse_overrides(["camera.width=320", "scene.supports=[floor]"]) == {
        "camera.width": 320, "scene.supports": ["floor"]}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["camera.width"])

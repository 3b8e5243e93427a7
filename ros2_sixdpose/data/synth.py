"""Synthetic BOP data: physics-settled scenes, domain-randomised views, exact ground truth.

For each scene (seeded by `np.random.default_rng([seed, scene_id])`, so a scene depends on neither the
number of scenes nor the ones before it):
1. pick a support (floor, tray or table), 1-6 object instances and 0-4 distractors, drop them with
   pybullet and keep what stays on the support (`data.scene_physics`);
2. dress the room: procedural floor and wall textures, distractor colours or textures (`data.scene_assets`,
   `data.textures`); intrinsics jittered per scene (`data.camera_paths`);
3. per image: a camera on a hemisphere (or, with `sequence`, a smooth 30 Hz orbit with the events of
   `data.sequence_script`: the camera stops, objects pushed or carried, an occluder passing, light changes), a world
   light (`data.randomize`), one render of everything (colour, depth, instance, NOCS), cast shadows on the
   support (`data.shadows`), the sensor model, and the ground truth: pose, full-silhouette mask from a
   render of the object alone (cropped to its projection), visible mask from the scene's instance map,
   boxes and pixel counts as BOP's calc_gt_info defines them, the NOCS map of the visible surfaces.

The floor and walls are textured meshes drawn by the same renderer (not a 2-D composite), so they occlude,
shade and appear in the depth image exactly like everything else; a homography composite would save about
1 ms of rasterisation per frame on llvmpipe and would need its own depth and lighting code.

Output (BOP layout, `<out>/<split>/<scene_id:06d>/`): rgb/, depth/ (uint16 PNG, `depth_scale` mm per unit),
mask/, mask_visib/ (`<im_id:06d>_<gt_index:06d>.png`), nocs/ (see `data.nocs_maps`), scene_gt.json,
scene_gt_info.json, scene_camera.json (with cam_R_w2c / cam_t_w2c), scene_times.json ({im_id: seconds}),
with `sequence` scene_sequence.json (`data.sequence_annotation`), and `<out>/models` (a copy of the models folder used).
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pybullet_data
from tqdm import tqdm

from ros2_sixdpose.core.geometry import invert_pose
from ros2_sixdpose.core.objects import MODELS_INFO_FILE, ObjectModel, ObjectRegistry, read_models_info
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data import bop
from ros2_sixdpose.data.camera_paths import (
    CameraConfig,
    SequenceConfig,
    orbit_trajectory,
    random_views,
    sample_intrinsics,
)
from ros2_sixdpose.data.nocs_maps import write_nocs
from ros2_sixdpose.data.randomize import (
    LightingConfig,
    SensorConfig,
    SensorResponse,
    WorldLight,
    antialias_edges,
    apply_sensor,
    camera_lighting,
    sample_light,
    sample_sensor,
)
from ros2_sixdpose.data.scene_assets import (
    MeshSource,
    distractor_model,
    distractor_sources,
    floor_model,
    load_source_mesh,
    primitive_mesh,
    table_model,
    tray_model,
    walls_model,
)
from ros2_sixdpose.data.scene_physics import (
    SUPPORT_KINDS,
    BodyShape,
    PhysicsConfig,
    SupportSpec,
    body_shape,
    sample_support,
    settle,
)
from ros2_sixdpose.data.sequence_annotation import (
    SEQUENCE_FILE,
    FrameAnnotation,
    SequenceAnnotation,
    SequenceEvent,
    write_sequence_annotation,
)
from ros2_sixdpose.data.sequence_script import Body, EventsConfig, SequenceScript, plan_sequence
from ros2_sixdpose.data.shadows import shadow_factor
from ros2_sixdpose.data.textures import random_colors, random_texture

logger = logging.getLogger(__name__)

__all__ = ["SynthConfig", "SceneConfig", "OutputConfig", "SynthStats", "generate_split", "SCENE_TIMES_FILE", "NOCS_DIR"]

SCENE_TIMES_FILE = "scene_times.json"
NOCS_DIR = "nocs"
DISTRACTOR_ID_BASE = 1000  # renderer ids of distractors: DISTRACTOR_ID_BASE + slot; never annotated
FLOOR_ID, WALLS_ID, SUPPORT_ID, OCCLUDER_ID = 2000, 2001, 2002, 2003
NEAR, FAR = 0.05, 8.0  # m, clipping planes of the scene renders
# BOP's calc_gt_info renders silhouettes on a canvas three times the image to count truncated pixels;
# the silhouette render here is clipped to that same canvas.
CANVAS_MARGIN = 1.0


@dataclass
class SceneConfig:
    """What a scene holds; ranges (low, high) are inclusive and drawn per scene."""

    objects_per_scene: tuple[int, int] = (1, 6)
    max_instances_per_object: int = 2
    distractors_per_scene: tuple[int, int] = (0, 4)
    distractor_scale: tuple[float, float] = (0.7, 1.5)
    distractor_texture_probability: float = 0.5
    primitive_probability: float = 0.35  # share of distractors that are boxes, cylinders, capsules or spheres
    supports: tuple[str, ...] = SUPPORT_KINDS
    support_weights: tuple[float, ...] = (0.45, 0.25, 0.3)
    room_radius: tuple[float, float] = (1.5, 3.0)  # m, distance of the walls from the objects
    wall_height: float = 3.0  # m
    texture_size: int = 1024  # px, floor and walls; a power of two
    texture_tile: tuple[float, float] = (0.3, 2.0)  # m of floor or wall per texture repeat

    def __post_init__(self) -> None:
        lo, hi = self.objects_per_scene
        if not 0 <= lo <= hi:
            raise ValueError(f"scene.objects_per_scene must be 0 <= low <= high, got {self.objects_per_scene}")
        lo, hi = self.distractors_per_scene
        if not 0 <= lo <= hi:
            raise ValueError(f"scene.distractors_per_scene must be 0 <= low <= high, got {self.distractors_per_scene}")
        if self.max_instances_per_object < 1:
            raise ValueError(f"scene.max_instances_per_object must be >= 1, got {self.max_instances_per_object}")
        unknown = sorted(set(self.supports) - set(SUPPORT_KINDS))
        if unknown or not self.supports:
            raise ValueError(f"scene.supports must be a non-empty subset of {SUPPORT_KINDS}, got {self.supports}")
        weights = self.support_weights
        if len(weights) != len(self.supports) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"scene.support_weights must give one weight >= 0 per support {self.supports} (not all 0), "
                f"got {self.support_weights}"
            )
        if self.texture_size < 8 or self.texture_size & (self.texture_size - 1):
            raise ValueError(f"scene.texture_size must be a power of two >= 8, got {self.texture_size}")


@dataclass
class OutputConfig:
    """File formats of the written split."""

    rgb_format: str = "jpg"  # "jpg" (quality below) or "png"
    jpeg_quality: int = 95
    depth_scale: float = 0.1  # mm per depth PNG unit: 0.05 mm steps, up to 6.5 m

    def __post_init__(self) -> None:
        if self.rgb_format not in ("jpg", "png"):
            raise ValueError(f"output.rgb_format must be 'jpg' or 'png', got {self.rgb_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"output.jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if not self.depth_scale > 0:
            raise ValueError(f"output.depth_scale must be positive, got {self.depth_scale}")


@dataclass
class SynthConfig:
    """Configuration of `sixdpose synth` (config/synth.yaml)."""

    camera: CameraConfig = field(default_factory=CameraConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)
    sensor: SensorConfig = field(default_factory=SensorConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


@dataclass
class SynthStats:
    """What a run produced and where its time went (seconds per stage, summed over the run)."""

    scenes: int = 0
    images: int = 0
    instances: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall time of the `with` block to `seconds[stage]`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start


@dataclass
class _Placed:
    """A model drawn in every image of a scene at a fixed world pose; only objects of the set are annotated."""

    render_id: int  # renderer model id
    T_world_obj: np.ndarray  # (4, 4) m
    annotated: bool  # an object of the set (True) or a distractor (False)
    shape: BodyShape | None = None  # collision shape of objects and distractors; None for the room and support


def generate_split(
    out_dir: str | Path,
    split: str,
    n_scenes: int,
    images_per_scene: int,
    seed: int,
    config: SynthConfig,
    models_dir: str | Path,
    object_ids: Sequence[int] | None = None,
    sequence: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    workers: int = 1,
) -> SynthStats:
    """Generate `n_scenes` scenes of `images_per_scene` images into the BOP split `<out_dir>/<split>`.

    `workers` > 1 builds scenes in that many spawned processes, each with its own renderer and physics client (a
    calling script needs the `if __name__ == "__main__":` guard); a scene depends only on its seed, so the files
    are the same for any number of workers.

    Raises ValueError for bad counts, an unknown object id or a bad split name, FileExistsError when the
    split folder already holds files (unless `overwrite`), and OSError naming the folder when it cannot be
    written.
    """
    if n_scenes < 1 or images_per_scene < 1:
        raise ValueError(f"need at least 1 scene and 1 image per scene, got {n_scenes} and {images_per_scene}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not split or split in (".", "..") or "/" in split or "\\" in split:
        raise ValueError(f"split must be a plain folder name (e.g. 'train_pbr'), got {split!r}")
    models = _select_models(Path(models_dir), object_ids)
    split_dir = _prepare_output(Path(out_dir), split, overwrite)
    _provide_models(Path(models_dir), Path(out_dir) / "models", list(models))
    stats = SynthStats()
    bop_split = bop.BopSplit(Path(out_dir), split)
    with tqdm(total=n_scenes * images_per_scene, unit="img", desc=f"synth {split}", disable=not progress) as bar:
        if workers == 1:
            synthesizer = _SceneSynthesizer(models, config, bop_split, stats)
            try:
                for scene_id in range(n_scenes):
                    synthesizer.make_scene(scene_id, np.random.default_rng([seed, scene_id]), images_per_scene,
                                           sequence, bar)
            finally:
                synthesizer.close()
        else:
            _generate_in_processes(models, config, bop_split, seed, n_scenes, images_per_scene, sequence,
                                   min(workers, n_scenes), stats, bar)
    logger.info("wrote %d images (%d instances) of %d scenes to %s", stats.images, stats.instances, stats.scenes,
                split_dir)
    return stats


def _generate_in_processes(models: dict[int, ObjectModel], config: SynthConfig, split: bop.BopSplit, seed: int,
                          n_scenes: int, images_per_scene: int, sequence: bool, workers: int, stats: SynthStats,
                          bar: tqdm) -> None:
    """Build the scenes in `workers` spawned processes (one synthesizer each), adding their counts to `stats`."""
    # Spawned, not forked: a forked child would share the parent's GL context and pybullet state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(models, config, split)) as pool:
        jobs = [pool.submit(_worker_scene, scene_id, seed, images_per_scene, sequence) for scene_id in range(n_scenes)]
        for job in as_completed(jobs):
            done = job.result()
            stats.scenes += done.scenes
            stats.images += done.images
            stats.instances += done.instances
            for stage, seconds in done.seconds.items():
                stats.seconds[stage] += seconds
            bar.update(done.images)


_WORKER: _SceneSynthesizer | None = None  # the synthesizer of a worker process of `_generate_in_processes`


def _start_worker(models: dict[int, ObjectModel], config: SynthConfig, split: bop.BopSplit) -> None:
    """Create this worker process's synthesizer (renderer, physics shapes, distractor pool)."""
    global _WORKER
    _WORKER = _SceneSynthesizer(models, config, split, SynthStats())


def _worker_scene(scene_id: int, seed: int, images_per_scene: int, sequence: bool) -> SynthStats:
    """Build and write one scene in a worker process; its counts and timings."""
    assert _WORKER is not None, "_start_worker did not run"
    _WORKER.stats = SynthStats()
    with tqdm(disable=True) as silent:
        _WORKER.make_scene(scene_id, np.random.default_rng([seed, scene_id]), images_per_scene, sequence, silent)
    _WORKER.flush()  # every file of the scene is on disk before the parent counts it
    stats = _WORKER.stats
    stats.seconds = dict(stats.seconds)
    return stats


def _select_models(models_dir: Path, object_ids: Sequence[int] | None) -> dict[int, ObjectModel]:
    """The models to place, checked: unknown ids raise ValueError listing the known ones."""
    if not models_dir.is_dir():
        raise FileNotFoundError(f"{models_dir}: models folder not found (build it with `sixdpose objects build`)")
    known = sorted(read_models_info(models_dir / MODELS_INFO_FILE))
    if object_ids is not None:
        object_ids = [int(i) for i in object_ids]
        unknown = sorted(set(object_ids) - set(known))
        if unknown:
            raise ValueError(f"unknown object ids {unknown}; {models_dir} has {known}")
        if not object_ids:
            raise ValueError("the object list is empty")
    registry = ObjectRegistry.from_dir(models_dir, sorted(set(object_ids)) if object_ids else None)
    return registry.models


def _prepare_output(out_dir: Path, split: str, overwrite: bool) -> Path:
    """Create `<out_dir>/<split>` (emptied with `overwrite`), raising a clear error if it cannot be written."""
    split_dir = out_dir / split
    if split_dir.exists() and any(split_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{split_dir} already holds files; choose another --out/--split or pass --overwrite")
        shutil.rmtree(split_dir)
    try:
        split_dir.mkdir(parents=True, exist_ok=True)
        probe = split_dir / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"cannot write the output folder {split_dir}: {exc.strerror or exc}") from exc
    return split_dir


def _provide_models(models_dir: Path, target: Path, obj_ids: list[int]) -> None:
    """Copy the models folder to `<out>/models` if absent; if present it must hold every object used."""
    if target.exists():
        present = read_models_info(target / MODELS_INFO_FILE)
        missing = sorted(set(obj_ids) - set(present))
        if missing:
            raise ValueError(f"{target} exists but lacks objects {missing}; remove it or use another --out")
        return
    if models_dir.resolve() != target.resolve():
        shutil.copytree(models_dir, target, ignore=shutil.ignore_patterns(".*"))


class _SceneSynthesizer:
    """Holds the renderer, the object models, their collision shapes and the distractor pool across scenes."""

    def __init__(self, models: dict[int, ObjectModel], config: SynthConfig, split: bop.BopSplit,
                 stats: SynthStats) -> None:
        self.models = models
        self.config = config
        self.split = split
        self.stats = stats
        self.data_dir = pybullet_data.getDataPath()
        self.renderer = Renderer(models)
        self.shapes: dict[int, BodyShape] = {obj_id: body_shape(m.vertices) for obj_id, m in models.items()}
        self.distractor_pool: list[MeshSource] = distractor_sources(self.data_dir)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-writer")
        self._pending: Future | None = None

    def close(self) -> None:
        """Finish writing and release the renderer and the writer thread."""
        try:
            self.flush()
        finally:
            self._writer.shutdown(wait=True)
            self.renderer.close()

    def make_scene(self, scene_id: int, rng: np.random.Generator, n_images: int, sequence: bool, bar: tqdm) -> None:
        """Build, simulate, render and write one scene of `n_images` images."""
        cfg = self.config
        with self.stats.timed("dressing"):
            kind = str(rng.choice(cfg.scene.supports, p=_normalised(cfg.scene.support_weights)))
            support = sample_support(rng, kind, cfg.physics)
            instance_ids = _sample_instances(rng, sorted(self.models), cfg.scene)
            distractors = self._sample_distractors(rng)
        with self.stats.timed("physics"):
            shapes = [self.shapes[i] for i in instance_ids] + [shape for _, shape in distractors]
            settled = settle(shapes, support, rng, cfg.physics, self.data_dir)
        with self.stats.timed("dressing"):
            placed = self._dress(rng, support, instance_ids, distractors, settled.T_world_obj, settled.on_support)
        K = sample_intrinsics(rng, cfg.camera)
        center, radius = _cluster(placed)
        script = None
        if sequence:
            # One camera in one room: the camera response stays fixed while the camera moves; what changes is
            # planned from a child generator, so a sequence too short for any event is the plain orbit.
            events_rng = rng.spawn(1)[0]
            bodies = [Body(p.T_world_obj, p.shape, p.annotated) for p in placed if p.shape is not None]
            view = (cfg.camera.width / K[0, 0], cfg.camera.height / K[1, 1])
            script = plan_sequence(events_rng, cfg.events, cfg.sequence.rate_hz, n_images, bodies, support, view,
                                   lambda: sample_light(events_rng, cfg.lighting), OCCLUDER_ID)
            if script.occluder is not None:
                self.renderer.add_model(script.occluder)
            times, poses = orbit_trajectory(rng, cfg.camera, cfg.sequence, center, radius, n_images,
                                            script.camera_still, events_rng)
            lights = script.lights(sample_light(rng, cfg.lighting))
            sensors = [sample_sensor(rng, cfg.sensor)] * n_images
        else:
            times = np.arange(n_images) / cfg.sequence.rate_hz
            poses = random_views(rng, cfg.camera, center, radius, n_images)
            lights = [sample_light(rng, cfg.lighting) for _ in range(n_images)]
            sensors = [sample_sensor(rng, cfg.sensor) for _ in range(n_images)]

        scene_gt: dict[int, list[bop.GtInstance]] = {}
        scene_info: dict[int, list[bop.GtInfo]] = {}
        scene_camera: dict[int, bop.CameraParams] = {}
        frames: list[FrameAnnotation] = []
        for im_id, (T_world_cam, light, sensor) in enumerate(zip(poses, lights, sensors)):
            world = [p.T_world_obj for p in placed]
            occluder = []
            if script is not None:
                world = [script.body_poses[i][im_id] if i in script.body_poses else T for i, T in enumerate(world)]
                if script.occluder_in_view(im_id):
                    occluder = [(OCCLUDER_ID, script.occluder_poses[im_id])]
            gt, info, ids = self._image(scene_id, im_id, rng, K, T_world_cam, light, sensor, placed, world, occluder)
            scene_gt[im_id], scene_info[im_id] = gt, info
            if script is not None:
                frames.append(_frame_annotation(script, im_id, ids, info))
            scene_camera[im_id] = bop.CameraParams(K=K, depth_scale=cfg.output.depth_scale,
                                                   T_cam_world=invert_pose(T_world_cam))
            self.stats.images += 1
            self.stats.instances += len(gt)
            bar.update(1)
        with self.stats.timed("scene_files"):
            bop.write_scene_gt(self.split.scene_gt_path(scene_id), scene_gt)
            bop.write_scene_gt_info(self.split.scene_gt_info_path(scene_id), scene_info)
            bop.write_scene_camera(self.split.scene_camera_path(scene_id), scene_camera)
            times_path = self.split.scene_dir(scene_id) / SCENE_TIMES_FILE
            times_path.write_text(json.dumps({str(i): float(t) for i, t in enumerate(times)}, indent=1) + "\n")
            if script is not None:
                events = tuple(SequenceEvent(e.kind, e.start, e.end, e.body) for e in script.events)
                write_sequence_annotation(self.split.scene_dir(scene_id) / SEQUENCE_FILE,
                                          SequenceAnnotation(cfg.sequence.rate_hz, events, tuple(frames)))
        self.stats.scenes += 1

    def _sample_distractors(self, rng: np.random.Generator) -> list[tuple[ObjectModel, BodyShape]]:
        """Distractor models for this scene (mesh, size, colour or texture) with their collision shapes."""
        lo, hi = self.config.scene.distractors_per_scene
        count = int(rng.integers(lo, hi + 1))
        picks = rng.choice(len(self.distractor_pool), size=count, replace=False)
        out = []
        for slot, index in enumerate(picks):
            mesh = None
            if rng.random() >= self.config.scene.primitive_probability:
                source = self.distractor_pool[int(index)]
                try:
                    mesh = load_source_mesh(self.data_dir, source.path, source.scale)
                except ValueError as exc:  # random_urdfs/168 has NaN vertices
                    logger.debug("distractor replaced by a primitive: %s", exc)
            if mesh is None:
                mesh = primitive_mesh(rng)
            scale = float(rng.uniform(*self.config.scene.distractor_scale))
            model = distractor_model(mesh, DISTRACTOR_ID_BASE + slot, rng, scale,
                                     texture_probability=self.config.scene.distractor_texture_probability)
            out.append((model, body_shape(model.vertices)))
        return out

    def _dress(self, rng: np.random.Generator, support: SupportSpec, instance_ids: list[int],
               distractors: list[tuple[ObjectModel, BodyShape]], T_world_obj: np.ndarray,
               on_support: np.ndarray) -> list[_Placed]:
        """Upload this scene's room, support and distractors; return every body to draw, objects first."""
        scene = self.config.scene
        size = scene.texture_size
        room_radius = float(rng.uniform(*scene.room_radius))
        floor_texture = random_texture(rng, size, tileable=True)
        wall_texture = random_texture(rng, size // 2, tileable=True)
        self.renderer.add_model(floor_model(FLOOR_ID, floor_texture, room_radius * 1.05,
                                            rng.uniform(*scene.texture_tile)))
        self.renderer.add_model(walls_model(WALLS_ID, wall_texture, room_radius, scene.wall_height,
                                            rng.uniform(*scene.texture_tile)))
        placed = []
        if support.kind == "tray":
            self.renderer.add_model(tray_model(SUPPORT_ID, rng, self.data_dir))
            placed.append(_Placed(SUPPORT_ID, np.eye(4), False))
        elif support.kind == "table":
            texture = random_texture(rng, size // 2, tileable=True)
            self.renderer.add_model(table_model(SUPPORT_ID, support, texture, rng.uniform(0.3, 1.0)))
            placed.append(_Placed(SUPPORT_ID, np.eye(4), False))
        for model, _ in distractors:
            self.renderer.add_model(model)
        bodies = ([(obj_id, True, self.shapes[obj_id]) for obj_id in instance_ids]
                  + [(m.obj_id, False, shape) for m, shape in distractors])
        objects = [_Placed(obj_id, T, annotated, shape)
                   for (obj_id, annotated, shape), T, keep in zip(bodies, T_world_obj, on_support) if keep]
        dropped = len(bodies) - len(objects)
        if dropped:
            logger.debug("%d bodies fell off the %s and are left out", dropped, support.kind)
        return objects + placed + [_Placed(FLOOR_ID, np.eye(4), False), _Placed(WALLS_ID, np.eye(4), False)]

    def _image(self, scene_id: int, im_id: int, rng: np.random.Generator, K: np.ndarray, T_world_cam: np.ndarray,
               light: WorldLight, sensor: SensorResponse, placed: list[_Placed], world: list[np.ndarray],
               extra: list[tuple[int, np.ndarray]]) -> tuple[list[bop.GtInstance], list[bop.GtInfo], list[int]]:
        """Render, post-process, annotate and write one image with the bodies of `placed` at `world` (T_world_obj
        each) and the `extra` models (render id, T_cam_obj) never annotated; returns its ground truth and the
        index into `placed` of each ground-truth instance."""
        cfg = self.config
        width, height = cfg.camera.width, cfg.camera.height
        T_cam_world = invert_pose(T_world_cam)
        draws = [(p.render_id, T_cam_world @ T) for p, T in zip(placed, world)] + extra
        with self.stats.timed("render"):
            result = self.renderer.render(K, width, height, draws, lighting=camera_lighting(light, T_world_cam),
                                          near=NEAR, far=FAR)
        with self.stats.timed("compose"):
            rgb = result.rgb
            if cfg.lighting.shadows:
                surfaces = [i for i, p in enumerate(placed) if p.render_id in (FLOOR_ID, SUPPORT_ID)]
                receivers = np.isin(result.instance, surfaces)
                casters = [(p.render_id, T) for p, T in zip(placed, world) if p.render_id < FLOOR_ID]
                factor = shadow_factor(self.renderer, casters, light, T_world_cam, K, result.depth, receivers,
                                       cfg.lighting.shadow_map_size)
                rgb = np.clip(rgb * factor[..., None], 0, 255).astype(np.uint8)
            empty = result.instance < 0
            if empty.any():
                rgb[empty] = np.round(random_colors(rng, 1)[0] * 255).astype(np.uint8)
            rgb = apply_sensor(antialias_edges(rgb, result.instance), rng, sensor)
            depth = np.where(result.depth * (1000.0 / cfg.output.depth_scale) <= bop.UINT16_MAX, result.depth, 0.0)

        gt, info, masks, ids = [], [], [], []
        with self.stats.timed("annotate"):
            nocs_valid = np.zeros((height, width), bool)
            for index, p in enumerate(placed):
                if not p.annotated:
                    continue
                T_cam_obj = draws[index][1]
                visib = result.instance == index
                silhouette, px_count_all = self._silhouette(p.render_id, T_cam_obj, K, width, height)
                # Rasterising a crop can differ from the full frame by an edge pixel; the visible part wins.
                silhouette |= visib
                if not silhouette.any():
                    continue  # entirely outside the image
                px_count_all = max(px_count_all, int(silhouette.sum()))
                px_count_visib = int(visib.sum())
                gt.append(bop.GtInstance(obj_id=p.render_id, T_cam_obj=T_cam_obj))
                info.append(bop.GtInfo(
                    bbox_obj=_bbox(silhouette),
                    bbox_visib=_bbox(visib),
                    px_count_all=px_count_all,
                    px_count_valid=int(np.count_nonzero(depth[silhouette] > 0)),
                    px_count_visib=px_count_visib,
                    visib_fract=px_count_visib / px_count_all,
                ))
                masks.append((silhouette, visib))
                ids.append(index)
                nocs_valid |= visib

        self._submit_write(scene_id, im_id, rgb, depth, masks, result.nocs, nocs_valid)
        return gt, info, ids

    def _submit_write(self, scene_id: int, im_id: int, rgb: np.ndarray, depth: np.ndarray,
                      masks: list[tuple[np.ndarray, np.ndarray]], nocs: np.ndarray, nocs_valid: np.ndarray) -> None:
        """Write one image's files on the writer thread, after the previous image's files are written.

        OpenCV encodes with the GIL released, so encoding overlaps the next image's rendering; keeping one
        image in flight bounds memory and re-raises a write error at the next image.
        """
        output = self.config.output
        split = self.split

        def write() -> None:
            with self.stats.timed("write"):
                bop.write_rgb(split.rgb_path(scene_id, im_id, "." + output.rgb_format), rgb,
                              jpeg_quality=output.jpeg_quality)
                bop.write_depth(split.depth_path(scene_id, im_id), depth, output.depth_scale)
                for gt_index, (silhouette, visib) in enumerate(masks):
                    bop.write_mask(split.mask_path(scene_id, im_id, gt_index), silhouette)
                    bop.write_mask(split.mask_visib_path(scene_id, im_id, gt_index), visib)
                write_nocs(split.scene_dir(scene_id) / NOCS_DIR / f"{im_id:06d}.png", nocs, nocs_valid)

        self.flush()
        self._pending = self._writer.submit(write)

    def flush(self) -> None:
        """Wait for the image being written, re-raising its error."""
        if self._pending is not None:
            with self.stats.timed("wait_for_write"):
                pending, self._pending = self._pending, None
                pending.result()

    def _silhouette(self, obj_id: int, T_cam_obj: np.ndarray, K: np.ndarray, width: int,
                    height: int) -> tuple[np.ndarray, int]:
        """Full silhouette of one object rendered alone: (mask (H, W) bool inside the image, pixel count on
        BOP's canvas of three times the image, which counts the truncated part too).

        Only the region of the projected convex hull is rendered (a crop's K is K shifted by the crop's
        origin), which costs well under a millisecond instead of a full frame per object.
        """
        hull = self.shapes[obj_id].hull
        points = hull @ T_cam_obj[:3, :3].T + T_cam_obj[:3, 3]
        margin_x, margin_y = CANVAS_MARGIN * width, CANVAS_MARGIN * height
        if np.all(points[:, 2] > NEAR):
            uv = points[:, :2] / points[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
            x0 = int(np.clip(np.floor(uv[:, 0].min()) - 1, -margin_x, width + margin_x))
            y0 = int(np.clip(np.floor(uv[:, 1].min()) - 1, -margin_y, height + margin_y))
            x1 = int(np.clip(np.ceil(uv[:, 0].max()) + 2, -margin_x, width + margin_x))
            y1 = int(np.clip(np.ceil(uv[:, 1].max()) + 2, -margin_y, height + margin_y))
        else:  # partly behind the camera: the whole canvas
            x0, y0, x1, y1 = int(-margin_x), int(-margin_y), int(width + margin_x), int(height + margin_y)
        mask = np.zeros((height, width), bool)
        if x1 <= x0 or y1 <= y0:
            return mask, 0
        K_crop = K.copy()
        K_crop[0, 2] -= x0
        K_crop[1, 2] -= y0
        crop = self.renderer.render(K_crop, x1 - x0, y1 - y0, [(obj_id, T_cam_obj)], outputs=("instance",),
                                    near=NEAR, far=FAR).instance == 0
        count = int(crop.sum())
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if ix1 > ix0 and iy1 > iy0:
            mask[iy0:iy1, ix0:ix1] = crop[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
        return mask, count


def _frame_annotation(script: SequenceScript, frame: int, ids: list[int], info: list[bop.GtInfo]) -> FrameAnnotation:
    """Frame `frame`'s line of scene_sequence.json; `ids` are its instances' indices into the placed bodies, which
    are the persistent ids (objects of the set come first)."""
    occluder = script.occluder_in_view(frame)
    return FrameAnnotation(
        instances=tuple(ids), visib=tuple(i.visib_fract for i in info),
        camera_still=bool(script.camera_still[frame]),
        moving=tuple(i for i in script.moving(frame) if i in ids),
        occluded=tuple(i for i, gi in zip(ids, info) if occluder and gi.px_count_visib == 0),
        occluder=occluder, light_change=script.light_changing(frame),
    )


def _sample_instances(rng: np.random.Generator, obj_ids: list[int], scene: SceneConfig) -> list[int]:
    """Object ids of the scene's instances: a random count, each object at most `max_instances_per_object` times."""
    lo, hi = scene.objects_per_scene
    count = min(int(rng.integers(lo, hi + 1)), len(obj_ids) * scene.max_instances_per_object)
    remaining = {obj_id: scene.max_instances_per_object for obj_id in obj_ids}
    chosen = []
    for _ in range(count):
        available = [obj_id for obj_id in obj_ids if remaining[obj_id] > 0]
        obj_id = int(rng.choice(available))
        remaining[obj_id] -= 1
        chosen.append(obj_id)
    return chosen


def _cluster(placed: list[_Placed]) -> tuple[np.ndarray, float]:
    """Centre (3,) m and radius (m) of the objects (or, without any, of the distractors / the origin)."""
    bodies = [p for p in placed if p.annotated] or [p for p in placed if p.render_id < FLOOR_ID]
    if not bodies:
        return np.zeros(3), 0.1
    positions = np.stack([p.T_world_obj[:3, 3] for p in bodies])
    center = positions.mean(axis=0)
    return center, max(float(np.linalg.norm(positions - center, axis=1).max()), 0.05)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """BOP box (x, y, width, height) of a mask's pixels, or (-1, -1, -1, -1) when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return (-1, -1, -1, -1)
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def _normalised(weights: Sequence[float]) -> np.ndarray:
    """Weights as probabilities."""
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()

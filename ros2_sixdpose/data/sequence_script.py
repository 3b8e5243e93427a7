"""What happens in a `--sequence` scene besides the camera's orbit: the camera stops, objects are pushed or carried,
an occluder passes in front of the camera, the light changes; and the per-frame annotation the sequence metrics need.

Everything moves kinematically (poses are functions of time, nothing is simulated), so the ground truth is exact:
- a pushed object slides on the support along a straight line, turning about the vertical through its centre of
  mass; a carried one is lifted (a half sine of `lift_height`), moved and put down in its resting orientation up to
  that turn, so it rests where it lands as it rested where it stood. Both follow a minimum-jerk profile (a hand's
  reach). Only an object standing on the support with nothing leaning on it is moved, and only along a path that
  keeps inside the support and comes no closer to any other body than it already was or than their bounding
  spheres allow;
- the occluder is a board (a box not in the object set) swept through the view `occluder_distance` in front of
  the camera, like a hand or a passer-by: it covers the whole image for `occlusion_frames` frames, entering and
  leaving at the same speed on each side;
- a light change blends the scene's light into a freshly drawn one (direction, intensity, colour) over a ramp of
  `light_ramp_s` (0: a step);
- a stop holds the camera still (no orbit, no shake: a tripod or a robot arm), nothing else moving, so the
  trackers' jitter can be measured; the orbit's speed also changes every `speed_segment_s` (`camera_paths`).

Events take disjoint slots after a lead-in of `lead_s` (trackers start on undisturbed frames), in random order;
an event that does not fit is left out. The draws come from a child generator of the scene's (`Generator.spawn`),
so a sequence too short for any event is the plain orbit it was before events existed.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import trimesh

from ros2_sixdpose.core.geometry import make_pose
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.randomize import WorldLight, blend_lights
from ros2_sixdpose.data.scene_assets import distractor_model, shaded_mesh
from ros2_sixdpose.data.scene_physics import BodyShape, SupportSpec

__all__ = ["EventsConfig", "Event", "Body", "SequenceScript", "plan_sequence", "EVENT_KINDS"]

EVENT_KINDS = ("still", "push", "carry", "occlusion", "light")
# A body stands on the support when its lowest hull point is within this of the support's top (m).
RESTING_TOLERANCE = 0.003
PATH_SAMPLES = 16  # points along a move's path checked for clearance
PATH_TRIES = 16  # random directions tried per moved body
CLEARANCE_SLACK = 0.001  # m
OCCLUDER_THICKNESS = 0.005  # m
OCCLUDER_WIDTH = 2.0  # x the view's width at its distance: covers all of it while within half a view of the centre
OCCLUDER_HEIGHT = 1.5  # x the view's height


@dataclass
class EventsConfig:
    """What happens during a `--sequence` scene (config/synth.yaml `events`); ranges (low, high) drawn per event."""

    lead_s: float = 1.0  # no event starts earlier
    stills: int = 1  # camera stops per sequence
    still_s: tuple[float, float] = (0.8, 1.2)
    moved_objects: tuple[int, int] = (1, 2)  # objects of the set pushed or carried, per sequence
    carry_probability: float = 0.5  # lifted and put down; pushed (slid on the support) otherwise
    move_distance: tuple[float, float] = (0.05, 0.15)  # m
    move_duration_s: tuple[float, float] = (1.0, 2.0)
    lift_height: tuple[float, float] = (0.04, 0.1)  # m
    move_yaw_deg: float = 45.0  # largest |turn| about the vertical during a move
    occlusions: int = 1  # passes of the occluder per sequence
    occlusion_frames: tuple[int, int] = (3, 8)  # frames the occluder covers the whole image
    occluder_distance: tuple[float, float] = (0.12, 0.2)  # m in front of the camera
    light_changes: int = 1
    light_ramp_s: tuple[float, float] = (0.0, 1.5)  # 0: a step

    def __post_init__(self) -> None:
        lo, hi = self.moved_objects
        if self.lead_s < 0 or self.stills < 0 or self.occlusions < 0 or self.light_changes < 0 or not 0 <= lo <= hi:
            raise ValueError("events: lead_s, stills, occlusions, light_changes must be >= 0 and moved_objects "
                             f"0 <= low <= high, got {self.lead_s}, {self.stills}, {self.occlusions}, "
                             f"{self.light_changes}, {self.moved_objects}")
        if not 1 <= self.occlusion_frames[0] <= self.occlusion_frames[1]:
            raise ValueError(f"events.occlusion_frames must be 1 <= low <= high, got {self.occlusion_frames}")
        lo, hi = self.occluder_distance
        if not 0.06 <= lo <= hi:  # the scene renders clip at 0.05 m
            raise ValueError(f"events.occluder_distance must be 0.06 <= low <= high (m), got {self.occluder_distance}")
        if not 0 <= self.carry_probability <= 1:
            raise ValueError(f"events.carry_probability must be in [0, 1], got {self.carry_probability}")


@dataclass(frozen=True)
class Event:
    """One event: frames [start, end); `body` is the moved body's index (push, carry), -1 otherwise."""

    kind: str
    start: int
    end: int
    body: int = -1


@dataclass(frozen=True)
class Body:
    """A body of the scene as the planner sees it: world pose (4, 4) m, collision shape, whether it may be moved."""

    T_world_obj: np.ndarray
    shape: BodyShape
    movable: bool  # an object of the set (distractors are obstacles only)


@dataclass
class SequenceScript:
    """Per-frame world of one sequence of n frames.

    camera_still: (n,) bool, the camera's pose equals the previous frame's (frame 0: False);
    body_poses: moved body index -> (n, 4, 4) T_world_obj per frame (bodies not listed stay put);
    occluder_poses: (n, 4, 4) T_cam_occluder, NaN in frames where it is out of view; occluder: its model;
    light_changes: (start, end, new light) of each light change, in order.
    """

    events: list[Event]
    camera_still: np.ndarray
    body_poses: dict[int, np.ndarray]
    occluder_poses: np.ndarray
    occluder: ObjectModel | None
    light_changes: list[tuple[int, int, WorldLight]] = field(default_factory=list)

    def lights(self, initial: WorldLight) -> list[WorldLight]:
        """The world light of each frame, starting from `initial` and ramping into each change's light."""
        n = len(self.camera_still)
        lights = [initial] * n
        for start, end, after in sorted(self.light_changes, key=lambda change: change[0]):
            before = lights[start]
            lights[start:] = [blend_lights(before, after, min(1.0, (k + 1) / (end - start))) for k in range(n - start)]
        return lights

    def light_changing(self, frame: int) -> bool:
        """Whether the light of `frame` differs from the previous frame's."""
        return any(start <= frame < end for start, end, _ in self.light_changes)

    def moving(self, frame: int) -> list[int]:
        """Indices of the bodies whose pose in `frame` differs from the previous frame's."""
        if frame == 0:
            return []
        return [b for b, poses in self.body_poses.items() if not np.array_equal(poses[frame], poses[frame - 1])]

    def occluder_in_view(self, frame: int) -> bool:
        """Whether the occluder is drawn in `frame`."""
        return not np.isnan(self.occluder_poses[frame, 0, 0])


def plan_sequence(
    rng: np.random.Generator,
    config: EventsConfig,
    rate_hz: float,
    n: int,
    bodies: Sequence[Body],
    support: SupportSpec,
    view: tuple[float, float],
    draw_light: Callable[[], WorldLight],
    occluder_id: int,
) -> SequenceScript:
    """The events of an n-frame sequence at `rate_hz` and the per-frame poses they make.

    view: the image's (width, height) at 1 m in front of the camera (m), for the occluder's size;
    draw_light: a new random light (for light changes).
    """
    kinds = (["still"] * config.stills + ["move"] * int(rng.integers(config.moved_objects[0],
                                                                       config.moved_objects[1] + 1))
             + ["occlusion"] * config.occlusions + ["light"] * config.light_changes)
    durations = []
    sweeps = []  # (distance m, frames covered) of each occlusion
    board_width = OCCLUDER_WIDTH * view[0] * config.occluder_distance[1]
    for kind in kinds:
        if kind == "still":
            durations.append(_frames(rng.uniform(*config.still_s), rate_hz))
        elif kind == "move":
            durations.append(_frames(rng.uniform(*config.move_duration_s), rate_hz))
        elif kind == "occlusion":
            sweeps.append((float(rng.uniform(*config.occluder_distance)),
                           int(rng.integers(config.occlusion_frames[0], config.occlusion_frames[1] + 1))))
            durations.append(len(_sweep(board_width, view[0], *sweeps[-1])))
        else:
            durations.append(max(1, _frames(rng.uniform(*config.light_ramp_s), rate_hz)))
    slots = _schedule(rng, durations, _frames(config.lead_s, rate_hz), n)

    script = SequenceScript([], np.zeros(n, bool), {}, np.full((n, 4, 4), np.nan), None)
    moved: list[int] = []
    for kind, slot in zip(kinds, slots):
        if slot is None:
            continue
        start, end = slot
        if kind == "still":
            script.camera_still[start:end] = True
            script.events.append(Event("still", start, end))
        elif kind == "move":
            planned = _plan_move(rng, config, bodies, support, moved, start, end, n)
            if planned is not None:
                body, carried, poses = planned
                moved.append(body)
                script.body_poses[body] = poses
                script.events.append(Event("carry" if carried else "push", start, end, body))
        elif kind == "occlusion":
            if script.occluder is None:
                script.occluder = _occluder_model(rng, occluder_id, board_width, view[1] * config.occluder_distance[1])
            distance, full = sweeps.pop(0)
            xs = _sweep(board_width, view[0], distance, full) * rng.choice([-1.0, 1.0])  # either direction
            script.occluder_poses[start:end] = [make_pose(np.eye(3), [x, 0.0, distance]) for x in xs]
            script.events.append(Event("occlusion", start, end))
        else:
            script.light_changes.append((start, end, draw_light()))
            script.events.append(Event("light", start, end))
    script.events.sort(key=lambda e: e.start)
    return script


def _frames(seconds: float, rate_hz: float) -> int:
    """Whole frames in `seconds` at `rate_hz`."""
    return int(round(seconds * rate_hz))


def _schedule(rng: np.random.Generator, durations: Sequence[int], lead: int, n: int) -> list[tuple[int, int] | None]:
    """Disjoint slots [start, end) for events of `durations` frames after `lead`, in random order; None for an
    event that does not fit (the last ones in that order are left out first)."""
    order = rng.permutation(len(durations))
    free = n - lead
    kept = []
    for index in order:
        if durations[index] <= free:
            kept.append(int(index))
            free -= durations[index]
    # The free frames are spread over the gaps before, between and after the kept events.
    gaps = rng.multinomial(free, np.ones(len(kept) + 1) / (len(kept) + 1)) if kept else []
    slots: list[tuple[int, int] | None] = [None] * len(durations)
    start = lead
    for index, gap in zip(kept, gaps):
        start += int(gap)
        slots[index] = (start, start + durations[index])
        start += durations[index]
    return slots


def _min_jerk(u: np.ndarray) -> np.ndarray:
    """The minimum-jerk profile s(u) on [0, 1] (s(0) = 0, s(1) = 1, zero velocity and acceleration at both ends)."""
    return u ** 3 * (10.0 - 15.0 * u + 6.0 * u ** 2)


def _plan_move(
    rng: np.random.Generator, config: EventsConfig, bodies: Sequence[Body], support: SupportSpec,
    moved: Sequence[int], start: int, end: int, n: int,
) -> tuple[int, bool, np.ndarray] | None:
    """A body to move in frames [start, end), whether it is carried, and its poses (n, 4, 4); None if none can."""
    coms = np.stack([b.T_world_obj[:3, :3] @ b.shape.com + b.T_world_obj[:3, 3] for b in bodies])
    lowest = np.array([(b.shape.hull @ b.T_world_obj[:3, :3].T)[:, 2].min() + b.T_world_obj[2, 3] for b in bodies])
    standing = lowest < support.top_z + RESTING_TOLERANCE
    radii = np.array([b.shape.radius for b in bodies])
    candidates = [i for i, b in enumerate(bodies) if b.movable and standing[i] and i not in moved]
    for i in rng.permutation(candidates):
        near = np.linalg.norm(coms[:, :2] - coms[i, :2], axis=1) < radii + radii[i]
        near[i] = False
        if np.any(near & ~standing):
            continue  # something may lean on it
        carried = bool(rng.random() < config.carry_probability)
        for _ in range(PATH_TRIES):
            angle = rng.uniform(0.0, 2.0 * np.pi)
            shift = rng.uniform(*config.move_distance) * np.array([np.cos(angle), np.sin(angle)])
            if _path_clear(i, shift, coms, radii, support):
                yaw = np.radians(rng.uniform(-config.move_yaw_deg, config.move_yaw_deg))
                lift = rng.uniform(*config.lift_height) if carried else 0.0
                return int(i), carried, _move_poses(bodies[i].T_world_obj, coms[i], shift, yaw, lift, start, end, n)
    return None


def _path_clear(i: int, shift: np.ndarray, coms: np.ndarray, radii: np.ndarray, support: SupportSpec) -> bool:
    """Whether body i's centre moved along `shift` (2,) m stays inside the support and clear of every other body."""
    path = coms[i, :2] + np.linspace(0.0, 1.0, PATH_SAMPLES)[:, None] * shift
    if np.any(np.abs(path) > np.asarray(support.half_size) - radii[i]):
        return False
    others = np.arange(len(coms)) != i
    start = np.linalg.norm(coms[others, :2] - coms[i, :2], axis=1)
    allowed = np.minimum(start, radii[others] + radii[i]) - CLEARANCE_SLACK
    distances = np.linalg.norm(path[:, None, :] - coms[others, :2][None], axis=2)
    return bool(np.all(distances >= allowed[None]))


def _move_poses(T0: np.ndarray, com: np.ndarray, shift: np.ndarray, yaw: float, lift: float, start: int, end: int,
                n: int) -> np.ndarray:
    """(n, 4, 4) world poses: T0 until `start`, the move over [start, end), the final pose after."""
    poses = np.repeat(T0[None], n, axis=0)
    for frame in range(start, n):
        u = min(1.0, (frame - start + 1) / (end - start))
        s = float(_min_jerk(np.array(u)))
        c, si = np.cos(yaw * s), np.sin(yaw * s)
        R = np.array([[c, -si, 0.0], [si, c, 0.0], [0.0, 0.0, 1.0]])
        offset = np.array([shift[0] * s, shift[1] * s, lift * np.sin(np.pi * u)])
        # Turn about the vertical through the centre of mass, then translate.
        poses[frame] = make_pose(R, com - R @ com + offset) @ T0
    return poses


def _occluder_model(rng: np.random.Generator, obj_id: int, width: float, view_height: float) -> ObjectModel:
    """A board `width` m wide, OCCLUDER_HEIGHT x `view_height` m tall, with a random colour or texture."""
    box = trimesh.creation.box(extents=(width, OCCLUDER_HEIGHT * view_height, OCCLUDER_THICKNESS))
    return distractor_model(shaded_mesh(box.vertices, box.faces), obj_id, rng, 1.0)


def _sweep(board_width: float, view_width: float, distance: float, full: int) -> np.ndarray:
    """(K,) x (m, camera frame) of a board `board_width` m wide swept across the view `distance` m away, one frame
    apart, from just outside one side to just outside the other at the speed that covers the whole view (whose
    width is `view_width` m at 1 m) for `full` frames."""
    view = view_width * distance
    step = (board_width - view) / full
    x0 = (board_width + view) / 2  # the board's edge at the view's edge
    return x0 - step * np.arange(1, int(np.ceil(2 * x0 / step)))

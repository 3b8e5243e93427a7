"""Physically plausible resting poses: pybullet drops rigid bodies onto a floor, into a tray or onto a table.

Each scene gets its own pybullet client in DIRECT mode (no GUI, no shared state), so scenes are independent
and a scene's result is a pure function of its inputs: pybullet is deterministic for the same sequence of
calls, and `deterministicOverlappingPairs` removes the one order dependence of its broad phase.

Collision shapes are the convex hull of each mesh (pybullet builds a hull from a vertex list). That is the
right shape for where an object comes to rest on a flat support for every object of the set except a
mug lying on its side, whose handle side may rest a few millimetres off; concave resting contacts (a torus
leaning into another's hole) are lost, which a convex decomposition (V-HACD) would keep at 10-100x the
set-up cost. Distractors use the same hulls.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet as p
import pybullet_data
import trimesh

from ros2_sixdpose.core.geometry import make_pose, matrix_from_quat_xyzw

logger = logging.getLogger(__name__)

__all__ = ["BodyShape", "PhysicsConfig", "SettledScene", "SupportSpec", "body_shape", "settle", "sample_support"]

SUPPORT_KINDS = ("floor", "tray", "table")
GRAVITY = 9.81  # m/s^2
# pybullet's traybox.urdf: its bottom plate's top face (m) and the half width of its rim (m); a body resting
# against the slanted walls is still in the tray.
TRAY_URDF = "tray/traybox.urdf"
TRAY_TOP_Z = 0.015
TRAY_HALF_SIZE = 0.3
# A body counts as fallen off its support when it ends this far (m) below the support's top.
FALL_MARGIN = 0.02


@dataclass
class PhysicsConfig:
    """Settings of the drop simulation; ranges are (low, high) drawn per body or per scene."""

    time_step: float = 1.0 / 240.0  # s
    max_steps: int = 1440  # 6 s of simulated time at most
    check_every: int = 24  # steps between rest checks
    rest_linear_speed: float = 0.01  # m/s; every body slower than this (and the angular bound) is at rest
    rest_angular_speed: float = 0.1  # rad/s
    spawn_radius: tuple[float, float] = (0.06, 0.2)  # m, radius of the disc bodies are dropped over, per scene
    friction: tuple[float, float] = (0.4, 1.0)
    restitution: tuple[float, float] = (0.0, 0.3)
    density: tuple[float, float] = (300.0, 1200.0)  # kg/m^3 (the hull's volume gives the mass)
    rolling_friction: float = 0.0005  # stops spheres and tori from rolling for ever
    table_size: tuple[float, float] = (0.6, 1.4)  # m, side of the table top, per scene
    table_height: tuple[float, float] = (0.45, 0.8)  # m

    def __post_init__(self) -> None:
        if not (self.time_step > 0 and 0 < self.check_every <= self.max_steps):
            raise ValueError(
                f"physics needs time_step > 0 and 0 < check_every <= max_steps, got time_step={self.time_step}, "
                f"check_every={self.check_every}, max_steps={self.max_steps}"
            )


@dataclass(frozen=True)
class SupportSpec:
    """What the bodies are dropped onto: the floor (z = 0), pybullet's tray on the floor, or a table.

    top_z: height (m, world z) of the surface the bodies rest on; half_size: (x, y) half extents (m) of that
    surface around the world origin (the floor's is unbounded in physics; its value bounds where bodies
    may end up); thickness: table top thickness (m), 0 otherwise.
    """

    kind: str
    top_z: float
    half_size: tuple[float, float]
    thickness: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SUPPORT_KINDS:
            raise ValueError(f"SupportSpec.kind must be one of {SUPPORT_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class BodyShape:
    """Collision geometry of one mesh: its convex hull in the model frame.

    hull: (N, 3) float64 hull vertices, metres, model frame; volume: m^3; com: (3,) centre of mass of the
    solid hull, model frame, m; radius: largest distance (m) from `com` to a hull vertex.
    """

    hull: np.ndarray
    volume: float
    com: np.ndarray
    radius: float


@dataclass(frozen=True)
class SettledScene:
    """Result of a drop: final poses and which bodies stayed on the support.

    T_world_obj: (B, 4, 4) float64, metres, model frame -> world (z up, support under the origin);
    on_support: (B,) bool, False for bodies that fell off or rolled out of the support's area;
    steps: simulation steps taken; at_rest: whether every body came to rest within `max_steps`.
    """

    T_world_obj: np.ndarray
    on_support: np.ndarray
    steps: int
    at_rest: bool


def body_shape(vertices: np.ndarray) -> BodyShape:
    """Collision geometry (convex hull, volume, centre of mass) of mesh vertices (N, 3) metres."""
    hull = trimesh.convex.convex_hull(np.asarray(vertices, dtype=np.float64))
    com = np.asarray(hull.center_mass, dtype=np.float64)
    points = np.asarray(hull.vertices, dtype=np.float64)
    return BodyShape(
        hull=points,
        volume=float(hull.volume),
        com=com,
        radius=float(np.linalg.norm(points - com, axis=1).max()),
    )


def sample_support(rng: np.random.Generator, kind: str, config: PhysicsConfig) -> SupportSpec:
    """A support of `kind` with random table dimensions (m) where it has any."""
    if kind == "floor":
        return SupportSpec("floor", 0.0, (1.0, 1.0))
    if kind == "tray":
        return SupportSpec("tray", TRAY_TOP_Z, (TRAY_HALF_SIZE, TRAY_HALF_SIZE))
    if kind == "table":
        side_x, side_y = rng.uniform(*config.table_size, size=2)
        return SupportSpec("table", float(rng.uniform(*config.table_height)), (side_x / 2, side_y / 2),
                           thickness=float(rng.uniform(0.025, 0.05)))
    raise ValueError(f"unknown support kind {kind!r}; choose from {SUPPORT_KINDS}")


def settle(
    shapes: Sequence[BodyShape],
    support: SupportSpec,
    rng: np.random.Generator,
    config: PhysicsConfig,
    data_dir: str | Path | None = None,
) -> SettledScene:
    """Drop `shapes` in random orientations over the support and simulate until they rest.

    Bodies start over a disc of random radius (`config.spawn_radius`) centred on the support, stacked in
    height only where their bounding spheres overlap, so they fall a short way, collide and pile up.
    """
    data_dir = Path(data_dir or pybullet_data.getDataPath())
    client = p.connect(p.DIRECT)
    try:
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=client)
        p.setGravity(0.0, 0.0, -GRAVITY, physicsClientId=client)
        p.setTimeStep(config.time_step, physicsClientId=client)
        _add_support(client, support, data_dir)
        bodies = _drop_bodies(client, shapes, support, rng, config)
        steps, at_rest = _simulate(client, bodies, config)
        poses = []
        for shape, body in zip(shapes, bodies):
            position, quat_xyzw = p.getBasePositionAndOrientation(body, physicsClientId=client)
            # pybullet reports the pose of the body's inertial frame, placed at the hull's centre of mass.
            T_world_com = make_pose(matrix_from_quat_xyzw(quat_xyzw), position)
            poses.append(T_world_com @ make_pose(np.eye(3), -shape.com))
    finally:
        p.disconnect(physicsClientId=client)
    T_world_obj = np.stack(poses) if poses else np.zeros((0, 4, 4))
    on_support = _on_support(T_world_obj, shapes, support)
    logger.debug("settled %d bodies on %s in %d steps (at rest: %s, %d fell off)",
                 len(shapes), support.kind, steps, at_rest, int((~on_support).sum()))
    return SettledScene(T_world_obj=T_world_obj, on_support=on_support, steps=steps, at_rest=at_rest)


def _add_support(client: int, support: SupportSpec, data_dir: Path) -> None:
    """Create the static floor plane and, for a tray or table, its collision geometry."""
    plane = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=client)
    p.createMultiBody(0.0, plane, physicsClientId=client)
    if support.kind == "tray":
        p.loadURDF(str(data_dir / TRAY_URDF), useFixedBase=True, physicsClientId=client)
    elif support.kind == "table":
        half = [support.half_size[0], support.half_size[1], support.thickness / 2]
        top = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=client)
        p.createMultiBody(0.0, top, basePosition=[0.0, 0.0, support.top_z - support.thickness / 2],
                          physicsClientId=client)


def _drop_bodies(client: int, shapes: Sequence[BodyShape], support: SupportSpec, rng: np.random.Generator,
                 config: PhysicsConfig) -> list[int]:
    """Create one dynamic body per shape at its random start pose; returns pybullet body ids."""
    area = 0.8 * min(support.half_size)
    spawn_radius = min(float(rng.uniform(*config.spawn_radius)), area)
    placed: list[tuple[np.ndarray, float, float]] = []  # (xy, radius, top z) of bodies placed so far
    bodies = []
    for shape in shapes:
        angle, r = rng.uniform(0.0, 2.0 * np.pi), spawn_radius * np.sqrt(rng.uniform())
        xy = np.array([r * np.cos(angle), r * np.sin(angle)])
        base = support.top_z + 0.005
        for other_xy, other_radius, other_top in placed:
            if np.linalg.norm(xy - other_xy) < shape.radius + other_radius:
                base = max(base, other_top + 0.005)
        z = base + shape.radius
        placed.append((xy, shape.radius, z + shape.radius))
        quat = rng.normal(size=4)
        quat /= np.linalg.norm(quat)
        collision = p.createCollisionShape(p.GEOM_MESH, vertices=(shape.hull - shape.com).tolist(),
                                           physicsClientId=client)
        body = p.createMultiBody(
            baseMass=float(rng.uniform(*config.density) * shape.volume),
            baseCollisionShapeIndex=collision,
            basePosition=[float(xy[0]), float(xy[1]), float(z)],
            baseOrientation=quat.tolist(),
            physicsClientId=client,
        )
        p.changeDynamics(
            body, -1,
            lateralFriction=float(rng.uniform(*config.friction)),
            restitution=float(rng.uniform(*config.restitution)),
            rollingFriction=config.rolling_friction,
            spinningFriction=config.rolling_friction,
            physicsClientId=client,
        )
        bodies.append(body)
    return bodies


def _simulate(client: int, bodies: Sequence[int], config: PhysicsConfig) -> tuple[int, bool]:
    """Step until every body is slower than the rest thresholds or `max_steps` is reached."""
    steps = 0
    while steps < config.max_steps:
        for _ in range(config.check_every):
            p.stepSimulation(physicsClientId=client)
        steps += config.check_every
        velocities = [p.getBaseVelocity(body, physicsClientId=client) for body in bodies]
        if all(np.linalg.norm(v) < config.rest_linear_speed and np.linalg.norm(w) < config.rest_angular_speed
               for v, w in velocities):
            return steps, True
    return steps, False


def _on_support(T_world_obj: np.ndarray, shapes: Sequence[BodyShape], support: SupportSpec) -> np.ndarray:
    """(B,) bool: the body's centre of mass is above the support's top and within its area."""
    if len(shapes) == 0:
        return np.zeros(0, dtype=bool)
    com_world = np.einsum("bij,bj->bi", T_world_obj[:, :3, :3], np.stack([s.com for s in shapes]))
    com_world += T_world_obj[:, :3, 3]
    inside = np.all(np.abs(com_world[:, :2]) <= np.asarray(support.half_size), axis=1)
    above = com_world[:, 2] > support.top_z - FALL_MARGIN
    return inside & above

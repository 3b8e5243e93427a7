"""Where the synthetic camera is: jittered intrinsics, random views on a hemisphere, smooth 30 Hz trajectories.

Poses are `T_world_cam` (4, 4) float64 in metres, world z up, camera in the OpenCV optical convention
(`core.geometry.look_at`): the camera looks at a target near the objects with the world's up towards the
top of the image, then rolls a little about its optical axis.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.core.geometry import look_at, make_pose

__all__ = ["CameraConfig", "SequenceConfig", "sample_intrinsics", "random_views", "orbit_trajectory"]

# Smooth hand-held shake: sum of this many sinusoids per axis with frequencies in this range (Hz).
_SHAKE_COMPONENTS = 3
_SHAKE_FREQUENCY_HZ = (0.2, 1.5)
SPEED_BLEND_S = 0.5  # s of path time over which the orbit speed changes from one segment's to the next


@dataclass
class CameraConfig:
    """Intrinsics (RealSense D435 colour camera at 640x480 by default) and the ranges views are drawn from."""

    width: int = 640
    height: int = 480
    fx: float = 615.0  # px
    fy: float = 615.0  # px
    cx: float | None = None  # px; None: image centre, (width - 1) / 2
    cy: float | None = None
    focal_jitter: float = 0.02  # relative, uniform +-, drawn per scene
    principal_jitter: float = 4.0  # px, uniform +-, drawn per scene
    distance: tuple[float, float] = (0.3, 1.0)  # m, camera to target
    elevation_deg: tuple[float, float] = (15.0, 80.0)  # optical axis below the horizon
    roll_deg: float = 10.0  # largest |roll| about the optical axis
    target_jitter: float = 0.7  # the target is drawn this fraction of the object cluster's radius off its centre

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera width and height must be positive, got {self.width}x{self.height}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"camera fx and fy must be positive, got fx={self.fx}, fy={self.fy}")
        lo, hi = self.distance
        if not 0 < lo <= hi:
            raise ValueError(f"camera.distance must be 0 < low <= high (m), got {self.distance}")
        lo, hi = self.elevation_deg
        if not 0 < lo <= hi < 90:
            raise ValueError(f"camera.elevation_deg must be 0 < low <= high < 90, got {self.elevation_deg}")


@dataclass
class SequenceConfig:
    """Camera motion of `--sequence` scenes: an orbit segment with swinging elevation and distance, shaken a little."""

    rate_hz: float = 30.0
    orbit_speed_deg: tuple[float, float] = (5.0, 20.0)  # deg/s about the target, either direction
    elevation_swing_deg: tuple[float, float] = (0.0, 10.0)  # amplitude
    distance_swing: tuple[float, float] = (0.0, 0.15)  # amplitude, fraction of the distance
    swing_period_s: tuple[float, float] = (4.0, 12.0)
    shake_m: float = 0.002  # amplitude (m) of the smooth hand-held shake of the eye and of the target
    # The orbit speed is drawn afresh (same direction, same range) after each segment of this many seconds.
    speed_segment_s: tuple[float, float] = (1.0, 3.0)
    stop_ramp_s: float = 0.3  # the camera slows to a stop and speeds up again over this long

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f"sequence.rate_hz must be positive, got {self.rate_hz}")
        if not 0 < self.speed_segment_s[0] <= self.speed_segment_s[1] or self.stop_ramp_s < 0:
            raise ValueError(f"sequence.speed_segment_s must be 0 < low <= high and stop_ramp_s >= 0, got "
                             f"{self.speed_segment_s} and {self.stop_ramp_s}")


def sample_intrinsics(rng: np.random.Generator, config: CameraConfig) -> np.ndarray:
    """K (3, 3) float64 in pixels: the configured intrinsics with per-scene focal and principal-point jitter."""
    cx = (config.width - 1) / 2.0 if config.cx is None else config.cx
    cy = (config.height - 1) / 2.0 if config.cy is None else config.cy
    scale = 1.0 + rng.uniform(-config.focal_jitter, config.focal_jitter)
    aspect = 1.0 + rng.uniform(-config.focal_jitter, config.focal_jitter) * 0.1
    dx, dy = rng.uniform(-config.principal_jitter, config.principal_jitter, 2)
    return np.array([[config.fx * scale, 0.0, cx + dx], [0.0, config.fy * scale * aspect, cy + dy], [0.0, 0.0, 1.0]])


def random_views(rng: np.random.Generator, config: CameraConfig, center: np.ndarray, radius: float,
                 n: int) -> np.ndarray:
    """n independent camera poses (n, 4, 4) around objects at `center` (3,) m spread over `radius` m."""
    poses = []
    for _ in range(n):
        target = np.asarray(center, dtype=np.float64) + _disc_offset(rng, config.target_jitter * radius)
        poses.append(
            _orbit_pose(
                target,
                distance=rng.uniform(*config.distance),
                azimuth=rng.uniform(0.0, 2.0 * np.pi),
                elevation=np.radians(rng.uniform(*config.elevation_deg)),
                roll=np.radians(rng.uniform(-config.roll_deg, config.roll_deg)),
            )
        )
    return np.stack(poses) if poses else np.zeros((0, 4, 4))


def orbit_trajectory(rng: np.random.Generator, config: CameraConfig, sequence: SequenceConfig,
                     center: np.ndarray, radius: float, n: int, still: np.ndarray | None = None,
                     speed_rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A smooth camera path: (times (n,) s at `sequence.rate_hz`, poses (n, 4, 4) T_world_cam).

    The camera orbits the target while elevation and distance swing slowly (sinusoids of a few seconds' period,
    kept inside the configured ranges) and eye and target shake by a few millimetres (sum of slow sinusoids),
    so consecutive frames differ as a hand-held camera's do. With `speed_rng`, the orbit speed is redrawn from
    it after each `speed_segment_s` (changing over half a second); where `still` (n,) bool is True the camera
    stands exactly where it stood the frame before (every motion, shake included, is a function of a path time
    that stops there), slowing down and speeding up over `stop_ramp_s` around. Without either, the speed is
    constant and path time is time.
    """
    times = np.arange(n) / sequence.rate_hz
    elev_lo, elev_hi = np.radians(config.elevation_deg)
    dist_lo, dist_hi = config.distance
    target = np.asarray(center, dtype=np.float64) + _disc_offset(rng, 0.5 * config.target_jitter * radius)
    azimuth0 = rng.uniform(0.0, 2.0 * np.pi)
    speed = np.radians(rng.uniform(*sequence.orbit_speed_deg))
    direction = rng.choice([-1.0, 1.0])
    speed *= direction
    path_time = times if still is None else _path_time(np.asarray(still, bool), sequence)
    elevation0 = rng.uniform(elev_lo, elev_hi)
    distance0 = rng.uniform(dist_lo, dist_hi)
    roll0 = np.radians(rng.uniform(-config.roll_deg, config.roll_deg)) / 2
    swing = 2.0 * np.pi / rng.uniform(*sequence.swing_period_s, size=3)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=3)
    elevation_swing = np.radians(rng.uniform(*sequence.elevation_swing_deg))
    elevation = elevation0 + elevation_swing * np.sin(swing[0] * path_time + phase[0])
    distance = distance0 * (1.0 + rng.uniform(*sequence.distance_swing) * np.sin(swing[1] * path_time + phase[1]))
    roll = roll0 + np.radians(config.roll_deg) / 4 * np.sin(swing[2] * path_time + phase[2])
    eye_shake = _smooth_shake(rng, path_time, sequence.shake_m)
    target_shake = _smooth_shake(rng, path_time, sequence.shake_m)
    if speed_rng is None:
        azimuth = azimuth0 + speed * path_time
    else:
        azimuth = azimuth0 + _orbit_angle(speed_rng, sequence, speed, direction, path_time)
    poses = [
        _orbit_pose(target + target_shake[i], float(np.clip(distance[i], dist_lo, dist_hi)), float(azimuth[i]),
                    float(np.clip(elevation[i], elev_lo, elev_hi)), float(roll[i]), eye_offset=eye_shake[i])
        for i in range(n)
    ]
    return times, (np.stack(poses) if poses else np.zeros((0, 4, 4)))


def _path_time(still: np.ndarray, sequence: SequenceConfig) -> np.ndarray:
    """(n,) s: time that stands still in `still` frames and runs at full pace `stop_ramp_s` away from them.

    A frame's step is scaled by a smoothstep of its distance (in frames) to the nearest still frame, so the
    camera's pose in a still frame equals the previous frame's exactly.
    """
    n = len(still)
    ramp = max(1.0, sequence.stop_ramp_s * sequence.rate_hz)
    index = np.arange(n)
    stops = np.flatnonzero(still)
    if stops.size == 0:
        return index / sequence.rate_hz
    gap = np.min(np.abs(index[:, None] - stops[None, :]), axis=1) / ramp
    u = np.clip(gap, 0.0, 1.0)
    step = u * u * (3.0 - 2.0 * u)
    return np.concatenate([[0.0], np.cumsum(step[1:])]) / sequence.rate_hz


def _orbit_angle(rng: np.random.Generator, sequence: SequenceConfig, speed0: float, direction: float,
                 path_time: np.ndarray) -> np.ndarray:
    """(n,) rad orbited by path time `path_time` (n,) s: `speed0` for the first segment, then a speed drawn from
    the configured range per segment, blended over SPEED_BLEND_S at each change."""
    end = float(path_time[-1]) if len(path_time) else 0.0
    knots_t, knots_v = [0.0], [speed0]
    t = 0.0
    while t <= end:
        t += rng.uniform(*sequence.speed_segment_s)
        knots_t += [t, t + SPEED_BLEND_S]
        knots_v += [knots_v[-1], np.radians(rng.uniform(*sequence.orbit_speed_deg)) * direction]
    # Integrate the piecewise-linear speed on a fine grid of path time (exact for a constant speed).
    grid = np.linspace(0.0, max(end, 1e-9), max(2, 20 * len(path_time)))
    velocity = np.interp(grid, knots_t, knots_v)
    angle = np.concatenate([[0.0], np.cumsum((velocity[1:] + velocity[:-1]) / 2 * np.diff(grid))])
    return np.interp(path_time, grid, angle)


def _orbit_pose(target: np.ndarray, distance: float, azimuth: float, elevation: float, roll: float,
                eye_offset: np.ndarray | None = None) -> np.ndarray:
    """T_world_cam (4, 4) of a camera `distance` m from `target` at azimuth / elevation (rad), rolled by `roll`."""
    direction = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    eye = target + distance * direction
    if eye_offset is not None:
        eye = eye + eye_offset
    T_world_cam = look_at(eye, target, up=(0.0, 0.0, 1.0))
    c, s = np.cos(roll), np.sin(roll)
    return T_world_cam @ make_pose(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), np.zeros(3))


def _disc_offset(rng: np.random.Generator, radius: float) -> np.ndarray:
    """A uniform random point (3,) of the horizontal disc of `radius` m (z = 0)."""
    angle, r = rng.uniform(0.0, 2.0 * np.pi), radius * np.sqrt(rng.uniform())
    return np.array([r * np.cos(angle), r * np.sin(angle), 0.0])


def _smooth_shake(rng: np.random.Generator, times: np.ndarray, amplitude: float) -> np.ndarray:
    """(n, 3) m: per axis a sum of slow sinusoids with random frequency and phase, peak about `amplitude`."""
    freq = rng.uniform(*_SHAKE_FREQUENCY_HZ, size=(_SHAKE_COMPONENTS, 3))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(_SHAKE_COMPONENTS, 3))
    waves = np.sin(2.0 * np.pi * freq[None] * times[:, None, None] + phase[None])
    return amplitude / _SHAKE_COMPONENTS * waves.sum(axis=1)

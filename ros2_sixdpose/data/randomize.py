"""Randomised light and sensor: a world-fixed light and a camera response, per image (per scene for sequences).

The light is directional and fixed in the world, so the shading the renderer computes (in the camera frame)
and the shadows (`data.shadows`) agree for every view. The sensor model turns the renderer's linear colour
into what a cheap RGB camera delivers: exposure and white-balance error, a tone curve, lens blur and noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ros2_sixdpose.core.render import Lighting

__all__ = [
    "LightingConfig", "SensorConfig", "SensorResponse", "WorldLight", "sample_light", "blend_lights", "camera_lighting",
    "antialias_edges", "sample_sensor", "apply_sensor",
]


@dataclass
class LightingConfig:
    """Ranges (low, high) the light is drawn from."""

    elevation_deg: tuple[float, float] = (25.0, 90.0)  # the light's direction above the horizon
    ambient: tuple[float, float] = (0.15, 0.55)
    diffuse: tuple[float, float] = (0.45, 1.0)
    specular: tuple[float, float] = (0.0, 0.45)
    shininess: tuple[float, float] = (4.0, 64.0)
    tint: float = 0.15  # largest relative deviation of each channel of the light's colour from white
    shadows: bool = True
    shadow_blur_px: tuple[float, float] = (0.8, 4.0)  # Gaussian sigma of the penumbra, drawn per light
    shadow_map_size: int = 512  # px

    def __post_init__(self) -> None:
        if self.shadow_map_size < 16:
            raise ValueError(f"lighting.shadow_map_size must be >= 16 px, got {self.shadow_map_size}")


@dataclass
class SensorConfig:
    """Ranges (low, high) of the camera model, drawn per image."""

    exposure: tuple[float, float] = (0.75, 1.3)  # gain on the rendered colour
    white_balance: float = 0.06  # largest relative gain error per channel
    gamma: tuple[float, float] = (0.85, 1.15)  # exponent of the tone curve on [0, 1]
    blur_sigma_px: tuple[float, float] = (0.3, 1.0)  # lens / demosaicing blur; also softens aliased edges
    noise_std: tuple[float, float] = (1.0, 5.0)  # Gaussian noise, 8-bit levels


@dataclass(frozen=True)
class WorldLight:
    """A directional light fixed in the world.

    direction: (3,) unit vector, world frame, the direction the light travels (downwards); the rest are the
    renderer's Phong parameters and the penumbra blur of its shadows (px).
    """

    direction: np.ndarray
    ambient: float
    diffuse: float
    specular: float
    shininess: float
    color: tuple[float, float, float]
    shadow_blur_px: float


def sample_light(rng: np.random.Generator, config: LightingConfig) -> WorldLight:
    """A random world light: direction from above (azimuth uniform, elevation in range), intensity and tint."""
    azimuth = rng.uniform(0.0, 2.0 * np.pi)
    elevation = np.radians(rng.uniform(*config.elevation_deg))
    towards_light = np.array(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
    )
    color = 1.0 + rng.uniform(-config.tint, config.tint, 3)
    return WorldLight(
        direction=-towards_light,
        ambient=float(rng.uniform(*config.ambient)),
        diffuse=float(rng.uniform(*config.diffuse)),
        specular=float(rng.uniform(*config.specular)),
        shininess=float(rng.uniform(*config.shininess)),
        color=tuple(float(c) for c in color / color.max()),
        shadow_blur_px=float(rng.uniform(*config.shadow_blur_px)),
    )


def blend_lights(a: WorldLight, b: WorldLight, weight: float) -> WorldLight:
    """The light `weight` in [0, 1] of the way from `a` to `b`: parameters and colour interpolated linearly, the
    direction along the great circle's chord (normalised), so a ramp turns, dims and tints it smoothly."""
    direction = (1.0 - weight) * a.direction + weight * b.direction
    norm = np.linalg.norm(direction)
    # Opposite directions have no unique path between them: the light turns through the zenith's side instead.
    direction = direction / norm if norm > 1e-6 else np.array([0.0, 0.0, -1.0])

    def mix(x: float, y: float) -> float:
        return float((1.0 - weight) * x + weight * y)
    return WorldLight(
        direction=direction, ambient=mix(a.ambient, b.ambient), diffuse=mix(a.diffuse, b.diffuse),
        specular=mix(a.specular, b.specular), shininess=mix(a.shininess, b.shininess),
        color=tuple(mix(x, y) for x, y in zip(a.color, b.color)), shadow_blur_px=mix(a.shadow_blur_px, b.shadow_blur_px),
    )


def camera_lighting(light: WorldLight, T_world_cam: np.ndarray) -> Lighting:
    """The renderer's `Lighting` (direction in the camera frame) for a world light seen from T_world_cam (4, 4)."""
    direction_cam = T_world_cam[:3, :3].T @ light.direction
    return Lighting(
        ambient=light.ambient,
        diffuse=light.diffuse,
        specular=light.specular,
        shininess=light.shininess,
        direction=tuple(float(v) for v in direction_cam),
        color=light.color,
    )


def antialias_edges(rgb: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Soften silhouette edges of rgb (H, W, 3) uint8 where the instance map (H, W) changes: (H, W, 3) uint8.

    The rasteriser has no multisampling, so object outlines are stair-stepped where a camera would blend
    object and background; a 3x3 mean on the two pixels either side of each outline approximates that
    blend at a fraction of the cost of supersampling.
    """
    edges = np.zeros(instance.shape, np.uint8)
    edges[:, 1:] |= (instance[:, 1:] != instance[:, :-1]).view(np.uint8)
    edges[1:, :] |= (instance[1:, :] != instance[:-1, :]).view(np.uint8)
    edges = cv2.dilate(edges, np.ones((2, 2), np.uint8)).astype(bool)
    out = rgb.copy()
    out[edges] = cv2.blur(rgb, (3, 3))[edges]
    return out


@dataclass(frozen=True)
class SensorResponse:
    """One draw of the camera model: per-channel gains (exposure x white balance), tone-curve exponent, blur
    sigma (px) and noise sigma (8-bit levels). Fixed for a sequence, drawn per image otherwise."""

    gains: tuple[float, float, float]
    gamma: float
    blur_sigma_px: float
    noise_std: float


def sample_sensor(rng: np.random.Generator, config: SensorConfig) -> SensorResponse:
    """A random camera response within the configured ranges."""
    gains = rng.uniform(*config.exposure) * (1.0 + rng.uniform(-config.white_balance, config.white_balance, 3))
    return SensorResponse(
        gains=tuple(float(g) for g in gains),
        gamma=float(rng.uniform(*config.gamma)),
        blur_sigma_px=float(rng.uniform(*config.blur_sigma_px)),
        noise_std=float(rng.uniform(*config.noise_std)),
    )


def apply_sensor(rgb: np.ndarray, rng: np.random.Generator, response: SensorResponse) -> np.ndarray:
    """Camera model on a rendered image (H, W, 3) uint8 -> (H, W, 3) uint8: gain, tone curve, blur, fresh noise.

    Gains and the tone curve are one per-channel lookup table; blur is Gaussian; noise is zero-mean
    Gaussian per pixel and channel, drawn anew for every image from `rng`.
    """
    levels = np.arange(256, dtype=np.float64) / 255.0
    lut = np.stack([np.clip(levels * g, 0.0, 1.0) ** response.gamma for g in response.gains], axis=-1)
    out = cv2.LUT(rgb, np.round(lut * 255.0).astype(np.uint8)[:, None, :])
    if response.blur_sigma_px > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), response.blur_sigma_px)
    # OpenCV's generator (seeded from `rng`, so still deterministic) is about 5x faster than NumPy's here.
    cv2.setRNGSeed(int(rng.integers(2**31)))
    noise = np.empty(out.shape, np.int16)
    cv2.randn(noise, 0.0, response.noise_std)
    return cv2.add(out, noise, dtype=cv2.CV_8U)

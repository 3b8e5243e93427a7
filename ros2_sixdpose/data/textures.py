"""Procedural textures for domain randomisation: noise, stripes, checkers, tiles, wood, blobs and gradients.

Everything is drawn from a NumPy generator and built with NumPy / OpenCV, so a texture is a pure function of
the generator state. Textures made with `tileable=True` repeat without a seam (every pattern has an integer
number of periods across the image and noise is upsampled from a wrapped grid), which lets a floor or wall
mesh repeat one texture over metres.
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["random_colors", "fractal_noise", "random_texture", "TEXTURE_KINDS"]

# Fraction of saturated, mid-bright colours vs. greys / pastels / dark shades in `random_colors`: real scenes
# hold many desaturated surfaces, and a detector must not learn that "saturated" means "object".
_GREY_FRACTION = 0.3


def random_colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random colours (n, 3) float32 RGB in [0, 1], spread over hue, saturation and value (incl. greys)."""
    hue = rng.uniform(0.0, 180.0, n)
    # Squared uniform saturation: mostly muted colours, some vivid ones, as in rooms and on tables.
    saturation = np.where(rng.random(n) < _GREY_FRACTION, rng.uniform(0.0, 0.15, n), rng.uniform(0.3, 1.0, n) ** 2)
    value = rng.uniform(0.12, 1.0, n)
    hsv = np.stack([hue, saturation * 255.0, value * 255.0], axis=-1).astype(np.float32)[None]
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0].astype(np.float32) / 255.0


def fractal_noise(rng: np.random.Generator, size: int, octaves: int = 5, persistence: float = 0.55,
                  base_cells: int = 4, tileable: bool = True) -> np.ndarray:
    """Multi-octave value noise (size, size) float32 in [0, 1]; `size` and `base_cells` powers of two.

    Octave k adds a random grid of base_cells * 2^k cells weighted by persistence^k. The octaves are summed
    up a pyramid (upsample the sum 2x, add the next grid) so only the last step works at full size.
    """
    cells = min(base_cells, size)
    total = rng.random((cells, cells), dtype=np.float32)
    amplitude = 1.0
    for _ in range(octaves - 1):
        if cells * 2 > size:
            break
        cells *= 2
        amplitude *= persistence
        total = _upsample(total, cells, tileable)
        total += amplitude * rng.random((cells, cells), dtype=np.float32)
    out = _upsample(total, size, tileable)
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) * (1.0 / max(hi - lo, 1e-6))


def random_texture(rng: np.random.Generator, size: int, tileable: bool = True,
                   kind: str | None = None) -> np.ndarray:
    """A random texture (size, size, 3) uint8 RGB of a random (or the given) kind from `TEXTURE_KINDS`."""
    if kind is None:
        kind = str(rng.choice(list(TEXTURE_KINDS)))
    if kind not in TEXTURE_KINDS:
        raise ValueError(f"unknown texture kind {kind!r}; choose from {sorted(TEXTURE_KINDS)}")
    field = TEXTURE_KINDS[kind](rng, size, tileable)
    image = _colorize(field, random_colors(rng, int(rng.integers(2, 5))))
    # Fine grain and a low-frequency shading variation, as real surfaces have, on every kind.
    grain = rng.random((size, size), dtype=np.float32) - 0.5
    shade = fractal_noise(rng, size, octaves=2, base_cells=2, tileable=tileable) - 0.5
    gain = 1.0 + np.float32(rng.uniform(0.0, 0.25)) * grain + np.float32(rng.uniform(0.0, 0.4)) * shade
    return cv2.multiply(image, cv2.merge([gain, gain, gain]), dtype=cv2.CV_8U)


def _noise_field(rng: np.random.Generator, size: int, tileable: bool) -> np.ndarray:
    """Smooth or rough fractal noise."""
    return fractal_noise(rng, size, octaves=int(rng.integers(3, 7)), persistence=rng.uniform(0.35, 0.7),
                         base_cells=int(2 ** rng.integers(1, 4)), tileable=tileable)


def _stripes_field(rng: np.random.Generator, size: int, tileable: bool) -> np.ndarray:
    """Parallel stripes, sharp or soft, along a direction with integer periods across the tile."""
    phase = _wave_phase(rng, size, int(rng.integers(2, 40)))
    wave = 0.5 + 0.5 * np.sin(phase)
    sharpness = rng.uniform(1.0, 12.0)
    return 1.0 / (1.0 + np.exp(-sharpness * (wave - 0.5) * 2.0))


def _checkers_field(rng: np.random.Generator, size: int, tileable: bool) -> np.ndarray:
    """A checkerboard (product of two square waves), possibly rotated by an integer-period direction."""
    n = int(rng.integers(2, 24))
    a = np.sin(_wave_phase(rng, size, n))
    b = np.sin(_wave_phase(rng, size, n, perpendicular_to=True))
    return (a * b > 0).astype(np.float32)


def _tiles_field(rng: np.random.Generator, size: int, tileable: bool) -> np.ndarray:
    """Square tiles with grout lines and per-tile brightness."""
    n = int(rng.integers(2, 16))
    period = size // n
    y, x = np.mgrid[:size, :size]
    tile_value = rng.uniform(0.4, 1.0, (n + 1, n + 1)).astype(np.float32)
    field = tile_value[np.minimum(y // period, n), np.minimum(x // period, n)]
    grout = max(1, int(period * rng.uniform(0.03, 0.1)))
    field[(y % period < grout) | (x % period < grout)] = 0.0
    return field


def _wood_field(rng: np.random.Generator, size: int, tileable: bool) -> np.ndarray:
    """Stripes warped by noise (wood grain, marble)."""
    warp = _noise_field(rng, size, tileable)
    phase = _wave_phase(rng, size, int(rng.integers(3, 30))) + rng.uniform(3.0, 25.0) * warp
    return 0.5 + 0.5 * np.sin(phase)


def _blobs_field(rng: np.random.Generator, size: int, tileable: bool) -> np.ndarray:
    """Thresholded noise: patches of a few flat colours (camouflage, stains)."""
    noise = _noise_field(rng, size, tileable)
    levels = int(rng.integers(2, 5))
    return np.floor(noise * levels * 0.999) / max(levels - 1, 1)


def _gradient_field(rng: np.random.Generator, size: int, tileable: bool) -> np.ndarray:
    """A linear or radial gradient (only with tileable=False; a tileable request gets soft noise)."""
    if tileable:
        return fractal_noise(rng, size, octaves=2, base_cells=2)
    y, x = np.mgrid[:size, :size].astype(np.float32) / size
    if rng.random() < 0.5:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        field = np.cos(angle) * x + np.sin(angle) * y
    else:
        cx, cy = rng.uniform(0.0, 1.0, 2)
        field = np.hypot(x - cx, y - cy)
    return (field - field.min()) / max(float(np.ptp(field)), 1e-6)


TEXTURE_KINDS: dict[str, Callable[[np.random.Generator, int, bool], np.ndarray]] = {
    "noise": _noise_field,
    "stripes": _stripes_field,
    "checkers": _checkers_field,
    "tiles": _tiles_field,
    "wood": _wood_field,
    "blobs": _blobs_field,
    "gradient": _gradient_field,
}


def _wave_phase(rng: np.random.Generator, size: int, periods: int, perpendicular_to: bool = False) -> np.ndarray:
    """Phase (size, size) float32 of a plane wave with an integer number of periods along each image axis.

    The direction is (a, b) with small integers a, b, so the wave repeats exactly across the tile; a random
    direction is drawn once per call (`perpendicular_to` rotates it by 90 degrees for checkers).
    """
    a, b = (1, 0) if rng.random() < 0.6 else tuple(int(v) for v in rng.integers(-2, 3, 2))
    if a == 0 and b == 0:
        a = 1
    if perpendicular_to:
        a, b = -b, a
    y, x = np.mgrid[:size, :size].astype(np.float32) / size
    return (2.0 * np.pi * periods * (a * x + b * y) + rng.uniform(0.0, 2.0 * np.pi)).astype(np.float32)


def _colorize(field: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map a scalar field (H, W) in [0, 1] through a palette (P, 3) in [0, 1]: (H, W, 3) uint8 RGB.

    Colours between palette entries are interpolated linearly; the field is quantised to 256 steps and
    looked up in a table (cv2.LUT), which is exact at 8-bit output and far cheaper than per-pixel maths.
    """
    positions = np.linspace(0.0, 1.0, len(palette))
    levels = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(levels, positions, palette[:, c]) for c in range(3)], axis=-1)
    index = np.clip(field * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(cv2.merge([index, index, index]), np.round(table * 255.0).astype(np.uint8)[:, None, :])


def _upsample(grid: np.ndarray, size: int, tileable: bool) -> np.ndarray:
    """Bicubic upsampling of a (c, c) grid to (size, size); periodic when `tileable` (wrap-padded grid)."""
    cells = grid.shape[0]
    if cells == size:
        return grid
    if not tileable:
        return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    pad = 2
    scale = size // cells
    padded = np.pad(grid, pad, mode="wrap")
    big = cv2.resize(padded, (padded.shape[1] * scale, padded.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
    return big[pad * scale: pad * scale + size, pad * scale: pad * scale + size]

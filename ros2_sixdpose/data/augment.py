"""Online training augmentation: background swap, occluding patches, colour jitter, blur and sensor noise.

Pure functions on batched tensors: images `(B, 3, H, W)` float32 in [0, 1], masks `(B, 1, H, W)` (bool, or
float in {0, 1}) on any device. Every random draw comes from the caller's `torch.Generator`, so a seeded
generator reproduces a batch exactly. Each op draws per-sample parameters; a sample the op skips (with
probability 1 - p) gets the op's identity parameters, and a strength of 0 makes the op the identity.

Written on plain torch: there is no CPU build of torchvision here, and kornia's augmentation modules draw
from torch's global RNG rather than a passed generator (and its Gaussian blur divides by sigma, so sigma 0
is not the identity); each op is a few tensor lines.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "AugmentConfig",
    "Augmented",
    "BackgroundConfig",
    "BlurConfig",
    "ColorJitterConfig",
    "NoiseConfig",
    "OcclusionConfig",
    "augment",
    "color_jitter",
    "gaussian_blur",
    "occlude",
    "procedural_textures",
    "sensor_noise",
    "swap_background",
]

# ITU-R BT.601 luma weights, the grey level that contrast and saturation blend towards.
_LUMA = (0.299, 0.587, 0.114)


def _check_probability(name: str, value: float) -> None:
    """Raise ValueError unless 0 <= value <= 1."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


def _check_range(name: str, value: float, high: float = math.inf) -> None:
    """Raise ValueError unless 0 <= value <= high."""
    if not 0.0 <= value <= high:
        raise ValueError(f"{name} must be in [0, {high}], got {value}")


@dataclass(frozen=True)
class ColorJitterConfig:
    """Colour jitter: brightness, contrast and saturation factors drawn in [1 - s, 1 + s]; hue in [-hue, hue] turns."""

    p: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.03

    def __post_init__(self) -> None:
        _check_probability("color.p", self.p)
        for name in ("brightness", "contrast", "saturation"):
            _check_range(f"color.{name}", getattr(self, name), 1.0)
        _check_range("color.hue", self.hue, 0.5)


@dataclass(frozen=True)
class BlurConfig:
    """Gaussian blur (defocus) with sigma drawn in [0, sigma_max] pixels."""

    p: float = 0.3
    sigma_max: float = 1.2

    def __post_init__(self) -> None:
        _check_probability("blur.p", self.p)
        _check_range("blur.sigma_max", self.sigma_max, 10.0)


@dataclass(frozen=True)
class NoiseConfig:
    """Additive Gaussian sensor noise, standard deviation drawn in [0, std_max] (intensity units, image in [0, 1])."""

    p: float = 0.5
    std_max: float = 0.03

    def __post_init__(self) -> None:
        _check_probability("noise.p", self.p)
        _check_range("noise.std_max", self.std_max, 1.0)


@dataclass(frozen=True)
class OcclusionConfig:
    """Up to `max_patches` textured rectangles per image, each side drawn in [0, max_size] x the image side."""

    p: float = 0.3
    max_patches: int = 2
    max_size: float = 0.4

    def __post_init__(self) -> None:
        _check_probability("occlusion.p", self.p)
        if isinstance(self.max_patches, bool) or not isinstance(self.max_patches, int) or self.max_patches < 0:
            raise ValueError(f"occlusion.max_patches must be an integer >= 0, got {self.max_patches!r}")
        _check_range("occlusion.max_size", self.max_size, 1.0)


@dataclass(frozen=True)
class BackgroundConfig:
    """Background swap: pixels outside the mask replaced by a procedural texture or another image."""

    p: float = 0.5
    procedural_fraction: float = 0.5  # share of swaps using a texture rather than another image

    def __post_init__(self) -> None:
        _check_probability("background.p", self.p)
        _check_probability("background.procedural_fraction", self.procedural_fraction)


@dataclass(frozen=True)
class AugmentConfig:
    """Online augmentation of one training run; `enabled: false` turns every op off (the no-augmentation arm)."""

    enabled: bool = True
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    occlusion: OcclusionConfig = field(default_factory=OcclusionConfig)
    color: ColorJitterConfig = field(default_factory=ColorJitterConfig)
    blur: BlurConfig = field(default_factory=BlurConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)


@dataclass(frozen=True)
class Augmented:
    """An augmented batch.

    Attributes:
        rgb: (B, 3, H, W) float32 in [0, 1].
        mask: (B, 1, H, W), same dtype as the input mask: the input mask minus the occluded pixels.
        occluded: (B, 1, H, W) bool, pixels covered by occluding patches; targets defined on the object
            (NOCS validity, visible mask) must drop them.
    """

    rgb: torch.Tensor
    mask: torch.Tensor
    occluded: torch.Tensor


def _check_batch(rgb: torch.Tensor, mask: torch.Tensor | None = None, name: str = "rgb") -> None:
    """Raise ValueError unless rgb is a float (B, 3, H, W) tensor and mask (if given) is (B, 1, H, W) on its device."""
    if not isinstance(rgb, torch.Tensor) or rgb.ndim != 4 or rgb.shape[1] != 3 or not rgb.is_floating_point():
        desc = f"{tuple(rgb.shape)} {rgb.dtype}" if isinstance(rgb, torch.Tensor) else type(rgb).__name__
        raise ValueError(f"{name} must be a float tensor (B, 3, H, W), got {desc}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (rgb.shape[0], 1, *rgb.shape[2:]):
            desc = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a tensor of shape {(rgb.shape[0], 1, *rgb.shape[2:])}, got {desc}")
        if mask.device != rgb.device:
            raise ValueError(f"mask is on {mask.device}, rgb on {rgb.device}")


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform samples in [low, high) of `shape`, float32, on the generator's device."""
    return low + (high - low) * torch.rand(shape, generator=generator, device=generator.device)


def _chosen(batch: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """(batch,) bool: which samples an op with probability p applies to."""
    return torch.rand(batch, generator=generator, device=generator.device) < p


def _grey(rgb: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) of images (B, 3, H, W)."""
    weights = torch.tensor(_LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * weights).sum(dim=1, keepdim=True)


def _hue_rotations(turns: torch.Tensor) -> torch.Tensor:
    """Rotations (B, 3, 3) of RGB space about the grey axis by `turns` (B,) full turns.

    A rotation about (1, 1, 1) shifts hue while keeping the mean intensity, the usual linear stand-in for an
    HSV hue shift; unlike the HSV round trip it is smooth in the shift and exactly the identity at 0.
    """
    angle = 2.0 * math.pi * turns
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    like = {"dtype": turns.dtype, "device": turns.device}
    # Rodrigues' formula for the unit axis a = (1, 1, 1) / sqrt(3): cross = [a]_x, outer = a a^T.
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], **like) / math.sqrt(3.0)
    outer = torch.full((3, 3), 1.0 / 3.0, **like)
    return cos * torch.eye(3, **like) + sin * cross + (1.0 - cos) * outer


def color_jitter(rgb: torch.Tensor, config: ColorJitterConfig, generator: torch.Generator) -> torch.Tensor:
    """Jitter brightness, contrast, saturation and hue of images (B, 3, H, W) in [0, 1], per sample."""
    _check_batch(rgb)
    batch = rgb.shape[0]
    chosen = _chosen(batch, config.p, generator)

    def factors(strength: float) -> torch.Tensor:
        values = _uniform((batch,), 1.0 - strength, 1.0 + strength, generator)
        return torch.where(chosen, values, torch.ones_like(values)).to(rgb.device, rgb.dtype).view(batch, 1, 1, 1)

    brightness = factors(config.brightness)
    contrast = factors(config.contrast)
    saturation = factors(config.saturation)
    hue = _uniform((batch,), -config.hue, config.hue, generator)
    hue = torch.where(chosen, hue, torch.zeros_like(hue))
    out = (rgb * brightness).clamp(0.0, 1.0)
    # torch.lerp returns `end` exactly for weight 1, so factor 1 leaves the image bit-identical.
    mean = _grey(out).mean(dim=(2, 3), keepdim=True)
    out = torch.lerp(mean.expand_as(out), out, contrast).clamp(0.0, 1.0)
    out = torch.lerp(_grey(out).expand_as(out), out, saturation).clamp(0.0, 1.0)
    rotation = _hue_rotations(hue.to(rgb.device, rgb.dtype))
    return torch.einsum("bij,bjhw->bihw", rotation, out).clamp(0.0, 1.0)


def gaussian_blur(rgb: torch.Tensor, config: BlurConfig, generator: torch.Generator) -> torch.Tensor:
    """Blur images (B, 3, H, W) with a per-sample separable Gaussian, sigma in [0, sigma_max] pixels, reflect-padded."""
    _check_batch(rgb)
    batch, channels, height, width = rgb.shape
    sigma = _uniform((batch,), 0.0, config.sigma_max, generator)
    sigma = torch.where(_chosen(batch, config.p, generator), sigma, torch.zeros_like(sigma)).to(rgb.device, rgb.dtype)
    radius = min(math.ceil(3.0 * config.sigma_max), (min(height, width) - 1) // 2)
    if radius == 0:
        return rgb.clone()
    offsets = torch.arange(-radius, radius + 1, dtype=rgb.dtype, device=rgb.device)
    # sigma 0 gives a unit impulse (exp(-inf) = 0 off-centre), i.e. the identity.
    kernel = torch.exp(-0.5 * (offsets / sigma[:, None]) ** 2)
    kernel = torch.nan_to_num(kernel, nan=1.0)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(channels, dim=0)  # (B * 3, k), one kernel per image channel
    x = F.pad(rgb.reshape(1, batch * channels, height, width), (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=batch * channels)
    x = F.conv2d(x, kernel[:, None, :, None], groups=batch * channels)
    return x.reshape(batch, channels, height, width)


def sensor_noise(rgb: torch.Tensor, config: NoiseConfig, generator: torch.Generator) -> torch.Tensor:
    """Add per-pixel Gaussian noise to images (B, 3, H, W), std drawn per sample in [0, std_max], clamped to [0, 1]."""
    _check_batch(rgb)
    batch = rgb.shape[0]
    std = _uniform((batch,), 0.0, config.std_max, generator)
    std = torch.where(_chosen(batch, config.p, generator), std, torch.zeros_like(std))
    noise = torch.randn(rgb.shape, generator=generator, device=generator.device) * std.view(batch, 1, 1, 1)
    return (rgb + noise.to(rgb.device, rgb.dtype)).clamp(0.0, 1.0)


def _value_noise(count: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth random fields (count, 1, height, width) in [0, 1]: two octaves of value noise, cell size drawn per call."""
    cells = int(torch.randint(2, 9, (1,), generator=generator, device=generator.device))
    coarse = torch.rand((count, 1, cells, cells), generator=generator, device=generator.device)
    fine = torch.rand((count, 1, 4 * cells, 4 * cells), generator=generator, device=generator.device)
    noise = sum(
        weight * F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        for weight, grid in ((1.0, coarse), (0.4, fine))
    )
    low = noise.amin(dim=(2, 3), keepdim=True)
    high = noise.amax(dim=(2, 3), keepdim=True)
    return (noise - low) / (high - low).clamp_min(1e-6)


def procedural_textures(
    count: int, height: int, width: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Random smooth colour textures (count, 3, height, width) float32 in [0, 1]: value noise between two random colours."""
    if count < 0 or height < 1 or width < 1:
        raise ValueError(f"procedural_textures needs count >= 0 and a positive size, got {count}, {height}x{width}")
    noise = _value_noise(count, height, width, generator)
    colours = torch.rand((2, count, 3, 1, 1), generator=generator, device=generator.device)
    return torch.lerp(colours[0], colours[1], noise).to(device)


def swap_background(
    rgb: torch.Tensor,
    mask: torch.Tensor,
    config: BackgroundConfig,
    generator: torch.Generator,
    backgrounds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Replace the pixels outside `mask` (B, 1, H, W) of images (B, 3, H, W) by new backgrounds; object pixels stay bit-identical.

    A new background is a procedural texture (share `procedural_fraction`) or another image: one of
    `backgrounds` (N, 3, H', W') float in [0, 1], resized, when given, else another image of the batch.
    """
    _check_batch(rgb, mask)
    batch, _, height, width = rgb.shape
    chosen = _chosen(batch, config.p, generator)
    if not chosen.any():
        return rgb.clone()
    procedural = _chosen(batch, config.procedural_fraction, generator)
    textures = procedural_textures(batch, height, width, generator, rgb.device).to(rgb.dtype)
    if backgrounds is not None:
        _check_batch(backgrounds, name="backgrounds")
        picks = torch.randint(0, backgrounds.shape[0], (batch,), generator=generator, device=generator.device)
        others = F.interpolate(backgrounds[picks.to(backgrounds.device)], size=(height, width), mode="bilinear",
                               align_corners=False).to(rgb.device, rgb.dtype)
    elif batch > 1:
        shift = torch.randint(1, batch, (batch,), generator=generator, device=generator.device)
        others = rgb[((torch.arange(batch) + shift.cpu()) % batch).to(rgb.device)]
    else:
        others, procedural = textures, torch.ones_like(procedural)
    new = torch.where(procedural.to(rgb.device).view(batch, 1, 1, 1), textures, others)
    replace = chosen.to(rgb.device).view(batch, 1, 1, 1) & ~(mask > 0.5)
    return torch.where(replace, new, rgb)


def occlude(rgb: torch.Tensor, mask: torch.Tensor, config: OcclusionConfig, generator: torch.Generator) -> Augmented:
    """Paint textured rectangles over images (B, 3, H, W) and remove them from the object `mask` (B, 1, H, W).

    Each chosen image gets 1..max_patches patches at uniform positions with sides drawn in
    [0, max_size] x the image side, each a smooth texture in its own two colours.
    """
    _check_batch(rgb, mask)
    batch, _, height, width = rgb.shape
    patches = config.max_patches
    occluded = torch.zeros((batch, 1, height, width), dtype=torch.bool, device=rgb.device)
    if patches == 0:
        return Augmented(rgb=rgb.clone(), mask=mask.clone(), occluded=occluded)
    chosen = _chosen(batch, config.p, generator)
    if not chosen.any():
        return Augmented(rgb=rgb.clone(), mask=mask.clone(), occluded=occluded)
    count = torch.randint(1, patches + 1, (batch,), generator=generator, device=generator.device)
    active = chosen[:, None] & (torch.arange(patches, device=generator.device)[None, :] < count[:, None])
    centre = _uniform((batch, patches, 2), 0.0, 1.0, generator)
    side = _uniform((batch, patches, 2), 0.0, config.max_size, generator)
    size = torch.tensor([width, height], dtype=torch.float32, device=generator.device)
    low = torch.round((centre - side / 2) * size).to(rgb.device)
    high = torch.round((centre + side / 2) * size).to(rgb.device)
    active = active.to(rgb.device)
    u = torch.arange(width, device=rgb.device, dtype=torch.float32)
    v = torch.arange(height, device=rgb.device, dtype=torch.float32)
    inside_u = (u >= low[..., 0:1]) & (u < high[..., 0:1])  # (B, P, W)
    inside_v = (v >= low[..., 1:2]) & (v < high[..., 1:2])  # (B, P, H)
    covers = inside_v[..., :, None] & inside_u[..., None, :] & active[..., None, None]  # (B, P, H, W)
    noise = _value_noise(batch, height, width, generator).to(rgb.device, rgb.dtype)
    colours = torch.rand((2, batch, patches, 3, 1, 1), generator=generator, device=generator.device)
    colours = colours.to(rgb.device, rgb.dtype)
    out = rgb
    for index in range(patches):
        patch = covers[:, index, None]
        out = torch.where(patch, torch.lerp(colours[0, :, index], colours[1, :, index], noise), out)
        occluded |= patch
    return Augmented(rgb=out, mask=_drop(mask, occluded), occluded=occluded)


def _drop(mask: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """`mask` (B, 1, H, W), bool or float, with `pixels` (B, 1, H, W) bool set to 0, same dtype."""
    return mask & ~pixels if mask.dtype == torch.bool else mask * (~pixels).to(mask.dtype)


def augment(
    rgb: torch.Tensor,
    mask: torch.Tensor,
    config: AugmentConfig,
    generator: torch.Generator,
    backgrounds: torch.Tensor | None = None,
) -> Augmented:
    """Augment a training batch: background swap, occluding patches, colour jitter, blur, then sensor noise.

    Args:
        rgb: (B, 3, H, W) float in [0, 1].
        mask: (B, 1, H, W) bool or float in {0, 1}: the object pixels (kept through the background swap).
        config: which ops run and how strongly; `enabled=False` returns the inputs unchanged.
        generator: source of every random draw (CPU or the batch's device).
        backgrounds: optional (N, 3, H', W') images to swap in; otherwise other images of the batch.

    Returns:
        `Augmented` with the new images, the mask minus occluded pixels, and the occluded pixels.
    """
    _check_batch(rgb, mask)
    if not config.enabled:
        return Augmented(rgb=rgb, mask=mask, occluded=torch.zeros_like(mask, dtype=torch.bool))
    swapped = swap_background(rgb, mask, config.background, generator, backgrounds)
    occluded = occlude(swapped, mask, config.occlusion, generator)
    out = color_jitter(occluded.rgb, config.color, generator)
    out = gaussian_blur(out, config.blur, generator)
    out = sensor_noise(out, config.noise, generator)
    return Augmented(rgb=out, mask=occluded.mask, occluded=occluded.occluded)

"""Tests of the online augmentation ops: identities at strength 0, determinism, occlusion bookkeeping, background swap."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from ros2_sixdpose.data.augment import (
    AugmentConfig,
    BackgroundConfig,
    BlurConfig,
    ColorJitterConfig,
    NoiseConfig,
    OcclusionConfig,
    augment,
    color_jitter,
    gaussian_blur,
    occlude,
    procedural_textures,
    sensor_noise,
    swap_background,
)


def _batch(seed: int = 0, batch: int = 4, height: int = 48, width: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images (B, 3, H, W) in [0, 1] and an elliptic object mask (B, 1, H, W) bool."""
    gen = torch.Generator().manual_seed(seed)
    rgb = torch.rand((batch, 3, height, width), generator=gen)
    v, u = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ellipse = ((u - width / 2) / (width / 4)) ** 2 + ((v - height / 2) / (height / 3)) ** 2 < 1.0
    return rgb, ellipse.expand(batch, 1, height, width).clone()


def _gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


ALL_ON = AugmentConfig(
    background=BackgroundConfig(p=1.0),
    occlusion=OcclusionConfig(p=1.0),
    color=ColorJitterConfig(p=1.0),
    blur=BlurConfig(p=1.0),
    noise=NoiseConfig(p=1.0),
)


def test_zero_strength_ops_are_identity():
    rgb, mask = _batch()
    zero_color = ColorJitterConfig(p=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    torch.testing.assert_close(color_jitter(rgb, zero_color, _gen()), rgb, rtol=0, atol=0)
    torch.testing.assert_close(gaussian_blur(rgb, BlurConfig(p=1.0, sigma_max=0.0), _gen()), rgb, rtol=0, atol=0)
    torch.testing.assert_close(sensor_noise(rgb, NoiseConfig(p=1.0, std_max=0.0), _gen()), rgb, rtol=0, atol=0)
    occ = occlude(rgb, mask, OcclusionConfig(p=1.0, max_size=0.0), _gen())
    torch.testing.assert_close(occ.rgb, rgb, rtol=0, atol=0)
    assert not occ.occluded.any() and torch.equal(occ.mask, mask)
    torch.testing.assert_close(swap_background(rgb, mask, BackgroundConfig(p=0.0), _gen()), rgb, rtol=0, atol=0)


def test_probability_zero_and_disabled_are_identity():
    rgb, mask = _batch()
    never = AugmentConfig(
        background=BackgroundConfig(p=0.0), occlusion=OcclusionConfig(p=0.0), color=ColorJitterConfig(p=0.0),
        blur=BlurConfig(p=0.0), noise=NoiseConfig(p=0.0),
    )
    out = augment(rgb, mask, never, _gen())
    torch.testing.assert_close(out.rgb, rgb, rtol=0, atol=0)
    off = augment(rgb, mask, dataclasses.replace(ALL_ON, enabled=False), _gen())
    assert off.rgb is rgb and off.mask is mask and not off.occluded.any()


def test_ops_change_the_image_at_full_strength():
    rgb, mask = _batch()
    out = augment(rgb, mask, ALL_ON, _gen())
    assert out.rgb.shape == rgb.shape and out.rgb.dtype == torch.float32
    assert 0.0 <= float(out.rgb.min()) and float(out.rgb.max()) <= 1.0
    assert (out.rgb - rgb).abs().mean() > 0.05


def test_fixed_generator_reproduces_output():
    rgb, mask = _batch()
    a = augment(rgb, mask, ALL_ON, _gen(7))
    b = augment(rgb, mask, ALL_ON, _gen(7))
    c = augment(rgb, mask, ALL_ON, _gen(8))
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.occluded, b.occluded)
    assert not torch.equal(a.rgb, c.rgb)


def test_brightness_scales_intensities():
    rgb = torch.full((1, 3, 4, 4), 0.4)
    out = color_jitter(rgb, ColorJitterConfig(p=1.0, brightness=0.5, contrast=0.0, saturation=0.0, hue=0.0), _gen(3))
    factor = out[0, 0, 0, 0] / 0.4
    assert 0.5 <= float(factor) <= 1.5
    torch.testing.assert_close(out, torch.full_like(rgb, 0.4) * factor)


def test_hue_rotation_keeps_grey_and_mean():
    grey = torch.full((2, 3, 5, 5), 0.3)
    config = ColorJitterConfig(p=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.5)
    torch.testing.assert_close(color_jitter(grey, config, _gen()), grey)
    # A colour well inside the gamut, so that no channel clamps: rotation keeps the channel mean and the
    # distance from grey, and moves the colour.
    colour = torch.tensor([0.5, 0.3, 0.4]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    shifted = color_jitter(colour, config, _gen(5))
    torch.testing.assert_close(shifted.mean(dim=1), colour.mean(dim=1), atol=1e-6, rtol=0)
    chroma = (colour - colour.mean(dim=1, keepdim=True)).norm(dim=1)
    torch.testing.assert_close((shifted - shifted.mean(dim=1, keepdim=True)).norm(dim=1), chroma, atol=1e-6, rtol=0)
    assert (shifted - colour).abs().max() > 0.01


def test_blur_preserves_constant_image_and_smooths_an_impulse():
    flat = torch.full((1, 3, 20, 20), 0.5)
    torch.testing.assert_close(gaussian_blur(flat, BlurConfig(p=1.0, sigma_max=2.0), _gen()), flat)
    impulse = torch.zeros((1, 3, 21, 21))
    impulse[..., 10, 10] = 1.0
    blurred = gaussian_blur(impulse, BlurConfig(p=1.0, sigma_max=2.0), _gen())
    torch.testing.assert_close(blurred.sum(dim=(2, 3)), torch.ones(1, 3))
    assert float(blurred[0, 0, 10, 10]) < 1.0


def test_occluded_pixels_are_reported_and_removed_from_mask():
    rgb, mask = _batch(batch=8)
    out = occlude(rgb, mask, OcclusionConfig(p=1.0, max_patches=3, max_size=0.6), _gen(2))
    assert out.occluded.dtype == torch.bool and out.occluded.any(dim=(1, 2, 3)).sum() >= 6
    changed = (out.rgb != rgb).any(dim=1, keepdim=True)
    assert torch.equal(changed & ~out.occluded, torch.zeros_like(changed))  # nothing painted outside the report
    assert torch.equal(out.mask, mask & ~out.occluded)
    float_mask = occlude(rgb, mask.float(), OcclusionConfig(p=1.0, max_patches=3, max_size=0.6), _gen(2)).mask
    assert torch.equal(float_mask, out.mask.float())


def test_augment_reports_occlusion_in_mask():
    rgb, mask = _batch(batch=6)
    config = dataclasses.replace(ALL_ON, occlusion=OcclusionConfig(p=1.0, max_patches=2, max_size=0.8))
    out = augment(rgb, mask, config, _gen(4))
    assert out.occluded.any()
    assert torch.equal(out.mask, mask & ~out.occluded)


@pytest.mark.parametrize("procedural", [0.0, 1.0])
def test_background_swap_keeps_object_pixels_exactly(procedural):
    rgb, mask = _batch()
    out = swap_background(rgb, mask, BackgroundConfig(p=1.0, procedural_fraction=procedural), _gen())
    object_pixels = mask.expand_as(rgb)
    assert torch.equal(out[object_pixels], rgb[object_pixels])
    assert (out[~object_pixels] != rgb[~object_pixels]).float().mean() > 0.99


def test_background_swap_from_given_images():
    rgb, mask = _batch(batch=2)
    backgrounds = torch.full((1, 3, 10, 10), 0.25)
    out = swap_background(rgb, mask, BackgroundConfig(p=1.0, procedural_fraction=0.0), _gen(), backgrounds)
    torch.testing.assert_close(out[~mask.expand_as(rgb)], torch.full((int((~mask).sum()) * 3,), 0.25))


def test_procedural_textures_range_and_variety():
    textures = procedural_textures(4, 32, 40, _gen())
    assert textures.shape == (4, 3, 32, 40)
    assert float(textures.min()) >= 0.0 and float(textures.max()) <= 1.0
    assert float(textures.std(dim=(2, 3)).mean()) > 0.02


def test_bad_inputs_and_configs_raise():
    rgb, mask = _batch()
    with pytest.raises(ValueError, match="rgb must be a float tensor"):
        augment(rgb[:, :2], mask, ALL_ON, _gen())
    with pytest.raises(ValueError, match="mask must be a tensor of shape"):
        augment(rgb, mask[..., :10], ALL_ON, _gen())
    with pytest.raises(ValueError, match="color.p"):
        ColorJitterConfig(p=1.5)
    with pytest.raises(ValueError, match="color.contrast"):
        ColorJitterConfig(contrast=2.0)
    with pytest.raises(ValueError, match="occlusion.max_patches"):
        OcclusionConfig(max_patches=-1)

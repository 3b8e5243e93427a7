"""Structural similarity (SSIM, Wang et al. 2004) of image tensors, differentiable, as 3DGS's D-SSIM loss uses it."""
from __future__ import annotations

import torch
import torch.nn.functional as F

WINDOW = 11  # px, Gaussian window of the paper
SIGMA = 1.5  # px
C1 = 0.01**2  # (K1 L)^2 with L = 1
C2 = 0.03**2


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of images a, b (B, C, H, W) in [0, 1]: 11 px Gaussian window (sigma 1.5), zero padding."""
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    channels = a.shape[1]
    x = torch.arange(WINDOW, dtype=a.dtype, device=a.device) - WINDOW // 2
    g = torch.exp(-0.5 * (x / SIGMA) ** 2)
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(channels, 1, WINDOW, WINDOW)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, padding=WINDOW // 2, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + C1) * (2 * cov + C2)
    den = (mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2)
    return (num / den).mean()

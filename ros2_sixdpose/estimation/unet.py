"""One configurable U-Net: the Pix2Pix generator, and with time conditioning the BBDM denoiser.

Residual blocks with GroupNorm and SiLU at each resolution, stride-2 convolutions down, nearest-neighbour
upsampling and a convolution up, skip connections concatenated (Ronneberger et al., MICCAI 2015; the
residual, time-conditioned form of Ho et al., NeurIPS 2020, without attention to keep a 64x64 forward
pass near 10 ms on two CPU cores).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class UNetConfig:
    """Shape of the U-Net: one width per resolution level, the deepest last."""

    in_channels: int = 3
    out_channels: int = 4
    widths: tuple[int, ...] = (32, 64, 96)
    blocks_per_level: int = 1
    time_conditioned: bool = False
    groups: int = 8  # GroupNorm groups; every width must be a multiple
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.out_channels < 1 or self.blocks_per_level < 1:
            raise ValueError(
                "in_channels, out_channels and blocks_per_level must be >= 1, got "
                f"{self.in_channels}, {self.out_channels}, {self.blocks_per_level}"
            )
        widths = tuple(int(w) for w in self.widths)
        if not widths or any(w < 1 or w % self.groups for w in widths):
            raise ValueError(f"widths must be non-empty multiples of groups={self.groups}, got {self.widths}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "widths", widths)

    @property
    def downsampling(self) -> int:
        """Factor by which the deepest level is smaller; input sides must be multiples of it."""
        return 2 ** (len(self.widths) - 1)

    def to_dict(self) -> dict:
        """Plain values for a weights file (tuples as lists)."""
        out = asdict(self)
        out["widths"] = list(self.widths)
        return out


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embeddings (B, dim) of timesteps t (B,) (Vaswani et al. 2017, as in Ho et al. 2020)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None, :]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    return F.pad(embedding, (0, dim % 2))


class ResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm + SiLU, an optional time bias between them, and a residual path."""

    def __init__(self, channels_in: int, channels_out: int, groups: int, time_dim: int | None, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(math.gcd(groups, channels_in), channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.time = nn.Linear(time_dim, channels_out) if time_dim else None
        self.norm2 = nn.GroupNorm(groups, channels_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor | None) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W); t_emb (B, time_dim) when time-conditioned."""
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time is not None:
            h = h + self.time(t_emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class UNet(nn.Module):
    """Image-to-image U-Net, (B, in_channels, H, W) -> (B, out_channels, H, W), optionally time-conditioned."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        widths, groups, dropout = config.widths, config.groups, config.dropout
        time_dim = 4 * widths[0] if config.time_conditioned else None
        if time_dim:
            self.time_mlp = nn.Sequential(nn.Linear(widths[0], time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = nn.Conv2d(config.in_channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        channels = widths[0]
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(config.blocks_per_level):
                blocks.append(ResBlock(channels, width, groups, time_dim, dropout))
                channels = width
            self.down_blocks.append(blocks)
            if level < len(widths) - 1:
                self.downsamples.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.middle = ResBlock(channels, channels, groups, time_dim, dropout)
        self.up_blocks = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            blocks = nn.ModuleList()
            for index in range(config.blocks_per_level):
                # The first block of a level takes the concatenated skip of the same level.
                blocks.append(ResBlock(channels + (width if index == 0 else 0), width, groups, time_dim, dropout))
                channels = width
            self.up_blocks.append(blocks)
            if level > 0:
                self.upsamples.append(nn.Conv2d(width, widths[level - 1], 3, padding=1))
                channels = widths[level - 1]
        self.head = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, config.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Map x (B, in_channels, H, W) to (B, out_channels, H, W); t (B,) timesteps when time-conditioned.

        H and W must be multiples of `config.downsampling`.
        """
        config = self.config
        if x.ndim != 4 or x.shape[1] != config.in_channels:
            raise ValueError(f"expected input (B, {config.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % config.downsampling or x.shape[3] % config.downsampling:
            raise ValueError(f"input sides must be multiples of {config.downsampling}, got {tuple(x.shape[2:])}")
        t_emb = None
        if config.time_conditioned:
            if t is None or t.shape != (x.shape[0],):
                raise ValueError(f"a time-conditioned U-Net needs t of shape ({x.shape[0]},), got {None if t is None else tuple(t.shape)}")
            t_emb = self.time_mlp(timestep_embedding(t, config.widths[0]))
        h = self.stem(x)
        skips = []
        for level, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, t_emb)
            skips.append(h)
            if level < len(self.downsamples):
                h = self.downsamples[level](h)
        h = self.middle(h, t_emb)
        for index, blocks in enumerate(self.up_blocks):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, t_emb)
            if index < len(self.upsamples):
                h = self.upsamples[index](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.head(h)

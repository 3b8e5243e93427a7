"""RNNPose's learned parts, CPU-sized: encoder, correlation volume, ConvGRU, 3D and 2D descriptors.

As in RNNPose (after RAFT): one encoder gives features of the rendered reference and the observed crop at 1/4
resolution; an all-pairs correlation volume between them (pooled into a pyramid) is looked up around the current
correspondence of every reference cell; a convolutional GRU turns the looked-up costs, the current flow and the
reference's context into a flow update and a confidence. 3D descriptors belong to the model's surface points: a
point-wise MLP (PointNet without pooling) on Fourier features of the point's normalised model coordinates, with a
learned per-object code, evaluated at every reference pixel from the rendered model coordinates; KPConv (the paper's)
needs neighbourhood search and kernel-point convolutions no pinned library offers on CPU, and rendering per-point
descriptors into the view would cost a second pass, while the renderer already gives each pixel's model point.
2D descriptors come from the observed crop's features; each correspondence's weight is the similarity of the
3D descriptor at the reference pixel and the 2D descriptor at its match, times the GRU's confidence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class NetworkConfig:
    """Sizes of the network (the weights file stores them)."""

    feature_dim: int = 64  # correlation features
    hidden_dim: int = 64  # ConvGRU state
    context_dim: int = 32  # reference context fed to every update
    descriptor_dim: int = 32  # 3D / 2D descriptors
    corr_levels: int = 2  # correlation pyramid levels (1/4 and 1/8 of the crop)
    corr_radius: int = 3  # look-up window (2r+1)^2 per level
    fourier_bands: int = 6  # frequencies of the 3D descriptor MLP's input encoding
    max_objects: int = 32  # object ids below this get a learned code


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(8, channels)


class Encoder(nn.Module):
    """Shared encoder: (B, 3, S, S) RGB in [0, 1] -> (B, 64, S/4, S/4) features."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 32, 5, 2, 2), _norm(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 2, 1), _norm(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, 1, 1), _norm(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, 1, 1),
        )

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.layers(rgb * 2.0 - 1.0)


def correlation_pyramid(f_ref: torch.Tensor, f_obs: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """All-pairs correlation of f_ref, f_obs (B, C, h, w): per level (B*h*w, 1, h / 2^l, w / 2^l)."""
    B, C, h, w = f_ref.shape
    corr = torch.einsum("bchw,bcuv->bhwuv", f_ref, f_obs) / math.sqrt(C)
    pyramid = [corr.reshape(B * h * w, 1, h, w)]
    for _ in range(levels - 1):
        pyramid.append(F.avg_pool2d(pyramid[-1], 2))
    return pyramid


def lookup(pyramid: list[torch.Tensor], coords: torch.Tensor, radius: int) -> torch.Tensor:
    """Costs around coords (B, 2, h, w) (x, y in 1/4-resolution cells): (B, levels * (2r+1)^2, h, w)."""
    B, _, h, w = coords.shape
    d = torch.arange(-radius, radius + 1, dtype=coords.dtype, device=coords.device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    delta = torch.stack([dx, dy], -1)[None]  # (1, 2r+1, 2r+1, 2)
    centre = coords.permute(0, 2, 3, 1).reshape(B * h * w, 1, 1, 2)
    out = []
    for level, corr in enumerate(pyramid):
        H, W = corr.shape[-2:]
        grid = centre / 2**level + delta
        grid = torch.stack([2 * grid[..., 0] / max(W - 1, 1) - 1, 2 * grid[..., 1] / max(H - 1, 1) - 1], -1)
        sampled = F.grid_sample(corr, grid, align_corners=True, padding_mode="zeros")
        out.append(sampled.reshape(B, h, w, -1))
    return torch.cat(out, -1).permute(0, 3, 1, 2)


class ConvGRU(nn.Module):
    """Convolutional GRU cell (3x3)."""

    def __init__(self, hidden: int, inputs: int) -> None:
        super().__init__()
        self.z = nn.Conv2d(hidden + inputs, hidden, 3, padding=1)
        self.r = nn.Conv2d(hidden + inputs, hidden, 3, padding=1)
        self.q = nn.Conv2d(hidden + inputs, hidden, 3, padding=1)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hx = torch.cat([h, x], 1)
        z, r = torch.sigmoid(self.z(hx)), torch.sigmoid(self.r(hx))
        q = torch.tanh(self.q(torch.cat([r * h, x], 1)))
        return (1 - z) * h + z * q


class UpdateBlock(nn.Module):
    """Motion encoder + ConvGRU + heads: (hidden, context, costs, flow) -> (hidden, flow update, confidence logit)."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        costs = config.corr_levels * (2 * config.corr_radius + 1) ** 2
        self.cost_conv = nn.Conv2d(costs, 64, 1)
        self.flow_conv = nn.Conv2d(2, 32, 3, padding=1)
        self.motion = nn.Conv2d(96, 64 - 2, 3, padding=1)
        self.gru = ConvGRU(config.hidden_dim, 64 + config.context_dim)
        self.flow_head = nn.Sequential(nn.Conv2d(config.hidden_dim, 64, 3, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(64, 2, 3, padding=1))
        self.confidence_head = nn.Sequential(nn.Conv2d(config.hidden_dim, 32, 3, padding=1), nn.ReLU(inplace=True),
                                             nn.Conv2d(32, 1, 3, padding=1))
        # An untrained network then proposes no motion, so the LM step keeps the pose instead of throwing it off
        # (with random flows it did, and the losses of the first steps were about divergence, not matching).
        nn.init.zeros_(self.flow_head[-1].weight)
        nn.init.zeros_(self.flow_head[-1].bias)

    def forward(self, h: torch.Tensor, context: torch.Tensor, costs: torch.Tensor,
                flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        motion = F.relu(self.motion(torch.cat([F.relu(self.cost_conv(costs)), F.relu(self.flow_conv(flow))], 1)))
        h = self.gru(h, torch.cat([motion, flow, context], 1))
        return h, self.flow_head(h), self.confidence_head(h)


class PointDescriptors(nn.Module):
    """3D descriptors: point-wise MLP on (Fourier features of NOCS coordinates, object code) -> unit vectors."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.bands = config.fourier_bands
        self.codes = nn.Embedding(config.max_objects, 16)
        inputs = 3 + 6 * config.fourier_bands + 16
        self.mlp = nn.Sequential(nn.Conv2d(inputs, 64, 1), nn.ReLU(inplace=True), nn.Conv2d(64, 64, 1),
                                 nn.ReLU(inplace=True), nn.Conv2d(64, config.descriptor_dim, 1))

    def forward(self, nocs: torch.Tensor, obj_ids: torch.Tensor) -> torch.Tensor:
        """nocs (B, 3, H, W) in [0, 1], obj_ids (B,) -> (B, D, H, W) unit descriptors."""
        freqs = (2.0 ** torch.arange(self.bands, dtype=nocs.dtype, device=nocs.device)) * math.pi
        angles = (nocs[:, :, None] * freqs[None, None, :, None, None]).flatten(1, 2)
        B, _, H, W = nocs.shape
        code = self.codes(obj_ids)[:, :, None, None].expand(B, -1, H, W)
        return F.normalize(self.mlp(torch.cat([nocs, angles.sin(), angles.cos(), code], 1)), dim=1)


class RNNPoseNet(nn.Module):
    """Every learned module of the refiner (see the module docstring)."""

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetworkConfig()
        c = self.config
        self.encoder = Encoder()
        self.feature_head = nn.Conv2d(64, c.feature_dim, 1)
        self.descriptor_head = nn.Conv2d(64, c.descriptor_dim, 1)
        self.context_head = nn.Conv2d(64 + 1, c.hidden_dim + c.context_dim, 3, padding=1)
        self.update = UpdateBlock(c)
        self.points = PointDescriptors(c)
        # Weight = confidence_weight(GRU logit) * sigmoid(sharpness * (cosine similarity - offset)).
        self.similarity_sharpness = nn.Parameter(torch.tensor(5.0))
        self.similarity_offset = nn.Parameter(torch.tensor(0.3))

    def encode_observed(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Observed crop (B, 3, S, S) -> correlation features (B, C, S/4, S/4), unit 2D descriptors (B, D, S/4, S/4)."""
        trunk = self.encoder(rgb)
        return self.feature_head(trunk), F.normalize(self.descriptor_head(trunk), dim=1)

    def encode_reference(self, rgb: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reference (B, 3, S, S), mask (B, 1, S, S) -> features (B, C, h, w), initial hidden state, context."""
        trunk = self.encoder(rgb)
        small_mask = F.avg_pool2d(mask, 4)
        hidden, context = self.context_head(torch.cat([trunk, small_mask], 1)).split(
            [self.config.hidden_dim, self.config.context_dim], 1)
        return self.feature_head(trunk), torch.tanh(hidden), F.relu(context)

    def confidence_weight(self, logit: torch.Tensor) -> torch.Tensor:
        """The GRU's confidence in [0.0025, 0.9975]: its logit is bounded (6 tanh(x / 6)) because unbounded logits ran
        to -60 early in training, where the sigmoid's gradient vanishes and the weights never came back."""
        return torch.sigmoid(6.0 * torch.tanh(logit / 6.0))

    def similarity_weight(self, cosine: torch.Tensor) -> torch.Tensor:
        """Descriptor agreement in [0, 1] from cosine similarity (any shape)."""
        return torch.sigmoid(self.similarity_sharpness * (cosine - self.similarity_offset))

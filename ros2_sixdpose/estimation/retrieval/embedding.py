"""The learned score: a small CNN mapping a normalised crop to a unit vector, close for crops of nearby rotation.

GS-Pose (Cai et al. 2024) retrieves the reference view whose rotation-aware embedding is most similar to
the query's; here the encoder sees the masked colour crop and its mask (4 channels), the colour first
normalised inside the mask (zero mean, unit deviation per channel) so that the light's brightness and tint
matter less than shading patterns and texture. Trained by `sixdpose train retrieval` (`retrieval.train`).
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ros2_sixdpose.estimation.retrieval.bank import TemplateBank
from ros2_sixdpose.estimation.retrieval.crops import NormalisedCrops
from ros2_sixdpose.estimation.retrieval.silhouette import SilhouetteScorer

logger = logging.getLogger(__name__)

WEIGHTS_FORMAT = "sixdpose-retrieval-encoder-1"
# Templates embedded per forward pass when a bank is encoded.
_BATCH = 256


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of the encoder."""

    # Channels of the stride-2 conv stages: ~4 M multiply-adds per 64 px crop, so the 36 turned crops of
    # a query take a few ms on one thread (two convs per stage, 52 M, made a training step 2.4 s).
    widths: tuple[int, ...] = (16, 32, 64, 128)
    dim: int = 128  # embedding size
    crop_size: int = 64

    def __post_init__(self) -> None:
        if not self.widths or self.dim < 1 or self.crop_size % 2 ** len(self.widths):
            raise ValueError(f"crop_size must be divisible by 2^len(widths) and dim >= 1, got {self}")


class RotationEncoder(nn.Module):
    """(B, 4, S, S) masked RGB in [0, 1] + mask -> (B, dim) unit embeddings."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = 4
        for width in config.widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        side = config.crop_size // 2 ** len(config.widths)
        self.head = nn.Linear(channels * side * side, config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, dim), unit length, of crops x (B, 4, S, S)."""
        rgb, mask = x[:, :3], x[:, 3:4]
        pixels = mask.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
        mean = (rgb * mask).sum(dim=(2, 3), keepdim=True) / pixels
        std = (((rgb - mean) * mask) ** 2).sum(dim=(2, 3), keepdim=True).div(pixels).sqrt()
        rgb = (rgb - mean) / (std + 0.05) * mask
        features = self.features(torch.cat([rgb, mask * 2 - 1], dim=1))
        return F.normalize(self.head(features.flatten(1)), dim=1)


def crops_to_tensor(rgb: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    """Crops rgb (N, S, S, 3) uint8 and mask (N, S, S) bool -> encoder input (N, 4, S, S) float32."""
    x = np.concatenate([rgb.astype(np.float32) / 255.0, mask[..., None].astype(np.float32)], axis=-1)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def encoder_state(encoder: RotationEncoder) -> dict:
    """The weights file's content (written by the training loop): format, config and state dict."""
    return {"format": WEIGHTS_FORMAT, "config": asdict(encoder.config), "state_dict": encoder.state_dict()}


def load_encoder(path: Path) -> RotationEncoder:
    """An encoder in eval mode from a weights file of `sixdpose train retrieval`."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: retrieval encoder weights not found (train them with `sixdpose train retrieval`)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path}: not a {WEIGHTS_FORMAT} weights file")
    config = state["config"]
    encoder = RotationEncoder(EncoderConfig(**{**config, "widths": tuple(config["widths"])}))
    encoder.load_state_dict(state["state_dict"])
    return encoder.eval()


@torch.no_grad()
def embed(encoder: RotationEncoder, rgb: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    """Embeddings (N, dim) of crops rgb (N, S, S, 3) uint8 and mask (N, S, S) bool, in batches."""
    device = next(encoder.parameters()).device
    return torch.cat([
        encoder(crops_to_tensor(rgb[i:i + _BATCH], mask[i:i + _BATCH]).to(device)).cpu()
        for i in range(0, len(rgb), _BATCH)
    ])


class EmbeddingScorer:
    """Cosine similarity of a query's turned crops to each template's embedding, mapped to [0, 1].

    `silhouette_weight` w blends in the mask IoU: score = (1 - w) (1 + cos) / 2 + w IoU.
    """

    name = "learned"

    def __init__(
        self, encoder: RotationEncoder, banks: Mapping[int, TemplateBank], silhouette_weight: float = 0.0,
        bank_embeddings: Mapping[int, torch.Tensor] | None = None,
    ) -> None:
        if not 0.0 <= silhouette_weight <= 1.0:
            raise ValueError(f"silhouette_weight must be in [0, 1], got {silhouette_weight}")
        self.encoder = encoder.eval()
        self.silhouette_weight = silhouette_weight
        self._silhouette = SilhouetteScorer(banks) if silhouette_weight > 0 else None
        if bank_embeddings is None:
            bank_embeddings = {obj_id: embed(encoder, bank.rgb, bank.mask) for obj_id, bank in banks.items()}
        self._bank_embeddings = dict(bank_embeddings)

    @classmethod
    def from_weights(
        cls, path: Path, banks: Mapping[int, TemplateBank], threads: int = 1, silhouette_weight: float = 0.0,
        cache_dir: Path | None = None,
    ) -> "EmbeddingScorer":
        """Load the encoder from `path` (with `threads` torch threads when > 0) and embed every bank.

        With `cache_dir` the bank embeddings are read from / written to a file keyed by the weights and the
        banks: embedding 8 x 642 templates took ~7 s on this machine, reading them back ~0.1 s.
        """
        if threads:
            torch.set_num_threads(threads)
        encoder = load_encoder(path)
        if cache_dir is None:
            return cls(encoder, banks, silhouette_weight)
        digest = hashlib.sha1(Path(path).read_bytes())
        for obj_id in sorted(banks):
            digest.update(str(obj_id).encode())
            digest.update(banks[obj_id].rgb.tobytes())
            digest.update(banks[obj_id].mask.tobytes())
        cache = Path(cache_dir) / f"embeddings_{digest.hexdigest()[:16]}.npz"
        if cache.is_file():
            with np.load(cache) as data:
                return cls(encoder, banks, silhouette_weight, {int(k): torch.from_numpy(data[k]) for k in data.files})
        scorer = cls(encoder, banks, silhouette_weight)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, **{str(k): v.numpy() for k, v in scorer._bank_embeddings.items()})
        tmp.replace(cache)
        logger.info("cached the template embeddings in %s", cache)
        return scorer

    def scores(self, obj_id: int, crops: NormalisedCrops) -> np.ndarray:
        """(A, V) scores in [0, 1] of the A turned query crops against the V templates of `obj_id`."""
        query = embed(self.encoder, crops.rgb, crops.mask)
        similarity = ((query @ self._bank_embeddings[obj_id].T).numpy() + 1.0) / 2.0
        if self._silhouette is None:
            return similarity
        w = self.silhouette_weight
        return (1.0 - w) * similarity + w * self._silhouette.scores(obj_id, crops)

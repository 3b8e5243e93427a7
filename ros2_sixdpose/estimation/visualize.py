"""Figures of NOCS crops: RGB, true map and mask, and each model's predicted map and mask, one column per crop."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ros2_sixdpose.estimation.nocs_net import NocsPrediction


def _image(tensor: torch.Tensor) -> np.ndarray:
    """(C, S, S) in [0, 1] -> (S, S, 3) float for imshow (a single channel is shown grey)."""
    array = tensor.detach().float().clamp(0.0, 1.0).permute(1, 2, 0).numpy()
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def save_examples(
    path: Path,
    rgb: torch.Tensor,
    nocs: torch.Tensor,
    mask: torch.Tensor,
    predictions: Mapping[str, NocsPrediction],
    title: str,
) -> None:
    """Write a PNG grid: rows RGB, true NOCS, true mask, then per model its NOCS (inside its mask) and mask.

    rgb (B, 3, S, S), nocs (B, 3, S, S), mask (B, 1, S, S) in [0, 1]; each prediction holds B crops.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[tuple[str, torch.Tensor]] = [("RGB", rgb), ("true NOCS", nocs * mask), ("true mask", mask)]
    for name, prediction in predictions.items():
        predicted = (prediction.mask > 0.5).float()
        label = name.replace(", ", "\n")  # long variant names go on several lines beside the row
        rows += [(f"{label}\nNOCS", prediction.nocs * predicted), (f"{label}\nmask", prediction.mask)]
    count = rgb.shape[0]
    fig, axes = plt.subplots(len(rows), count, figsize=(1.3 * count + 1.6, 1.3 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(count):
            ax = axes[r, c]
            ax.imshow(_image(images[c]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)

"""A PNG of MRC-Net validation crops: the real crop and renders of the classified, final and true poses."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.estimation.mrcnet.predictor import MrcPrediction, render_crops


def save_examples(path: Path, rgb: np.ndarray, K_crops: np.ndarray, obj_ids: list[int], T_gt: np.ndarray,
                  prediction: MrcPrediction, renderer: Renderer) -> None:
    """One row per crop rgb (B, S, S, 3) uint8: crop, stage-1 render, final render, ground-truth render (overlaid 50 %)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = rgb.shape[1]
    columns = {"crop": None, "classified": prediction.T_stage1, "final": prediction.T_final, "ground truth": T_gt}
    fig, axes = plt.subplots(len(rgb), len(columns), figsize=(2 * len(columns), 2 * len(rgb)), squeeze=False)
    for col, (title, poses) in enumerate(columns.items()):
        images = rgb if poses is None else render_crops(renderer, obj_ids, poses, K_crops, size)
        for row, image in enumerate(images):
            shown = image if poses is None else np.where(image.any(axis=2, keepdims=True),
                                                         (image // 2 + rgb[row] // 2), rgb[row] // 3)
            axes[row, col].imshow(shown)
            axes[row, col].set_axis_off()
            if row == 0:
                axes[row, col].set_title(title, fontsize=9)
    fig.suptitle(path.stem, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)

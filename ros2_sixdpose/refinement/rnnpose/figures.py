"""Figures of RNNPose's inner state: observed crop, references, flow and weight maps, one row per instance."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ros2_sixdpose.refinement.rnnpose.loop import LoopResult


def flow_to_rgb(flow: np.ndarray, mask: np.ndarray, max_px: float | None = None) -> np.ndarray:
    """Flow (2, S, S) px as colour (S, S, 3) uint8: hue = direction, brightness = length; black off `mask` (S, S)."""
    magnitude, angle = cv2.cartToPolar(flow[0].astype(np.float32), flow[1].astype(np.float32), angleInDegrees=True)
    top = max_px or max(float(magnitude[mask].max()) if mask.any() else 1.0, 1.0)
    hsv = np.stack([angle / 2, np.full_like(angle, 255), np.clip(magnitude / top, 0, 1) * 255], -1).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * mask[..., None].astype(np.uint8)


def _image(t: torch.Tensor) -> np.ndarray:
    """(3, S, S) in [0, 1] -> (S, S, 3) float."""
    return t.detach().cpu().permute(1, 2, 0).numpy().clip(0, 1)


def flow_weight_figure(rows: list[tuple[LoopResult, int, str]], path: Path, title: str) -> None:
    """Write a PNG, one row per (refinement, batch index, label): observed crop, first reference, flow of the first
    render's last update, the last update's weights, the last reference's outline over the crop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 5, figsize=(11, 2.3 * len(rows)), squeeze=False)
    heads = ("observed crop", "reference at start", "flow, 1st render", "weights, last update", "last reference over crop")
    for row, (result, b, label) in enumerate(rows):
        first = max(i for i, s in enumerate(result.steps) if s.render == 0)
        last = result.steps[-1]
        ref0, ref_last = result.references[0], result.references[-1]
        obs = _image(result.observed[b])
        mask0 = ref0.mask_lm[b].cpu().numpy()
        weight = last.weight[b].detach().cpu().numpy()
        overlay = obs.copy()
        edge = cv2.Canny(ref_last.mask[b, 0].cpu().numpy().astype(np.uint8) * 255, 50, 150) > 0
        overlay[edge] = (0.0, 1.0, 0.0)
        panels = (obs, _image(ref0.rgb[b]), flow_to_rgb(result.steps[first].flow[b].detach().cpu().numpy(), mask0),
                  weight, overlay)
        for k, (ax, panel) in enumerate(zip(axes[row], panels)):
            ax.imshow(panel, cmap="viridis" if k == 3 else None, vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(heads[k], fontsize=8)
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

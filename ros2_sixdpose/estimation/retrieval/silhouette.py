"""The training-free score: intersection over union of normalised mask crops with every template's."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ros2_sixdpose.estimation.retrieval.bank import TemplateBank
from ros2_sixdpose.estimation.retrieval.crops import NormalisedCrops


class SilhouetteScorer:
    """Mask IoU of a query's turned crops against each object's bank.

    Masks are packed into 64-bit words and intersections counted by popcount (`np.bitwise_count`):
    36 x 642 IoUs of 64 px masks take ~7 ms, where NumPy's float32 matrix product took 100-140 ms on this
    loaded 2-core machine (its BLAS threads contend).
    """

    name = "silhouette"

    def __init__(self, banks: Mapping[int, TemplateBank]) -> None:
        self._bits = {obj_id: pack_masks(bank.mask) for obj_id, bank in banks.items()}
        self._areas = {obj_id: bank.mask.reshape(len(bank), -1).sum(axis=1) for obj_id, bank in banks.items()}

    def scores(self, obj_id: int, crops: NormalisedCrops) -> np.ndarray:
        """IoU (A, V) in [0, 1] of the A turned query masks with the V templates of `obj_id`."""
        query = pack_masks(crops.mask)
        intersection = np.bitwise_count(query[:, None, :] & self._bits[obj_id][None]).sum(axis=-1, dtype=np.int64)
        union = crops.mask.reshape(len(query), -1).sum(axis=1)[:, None] + self._areas[obj_id][None, :] - intersection
        return intersection / np.maximum(union, 1)


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """Masks (N, H, W) bool as bits (N, ceil(H W / 64)) uint64."""
    flat = masks.reshape(len(masks), -1)
    pad = -flat.shape[1] % 64
    bits = np.packbits(np.pad(flat, ((0, 0), (0, pad))), axis=1)
    return bits.view(np.uint64)

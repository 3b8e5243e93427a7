"""Which object instance is which: estimates of one frame numbered per object, the naming TF and topics use."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ros2_sixdpose.estimation.base import PoseEstimate


@dataclass(frozen=True)
class InstancePose:
    """One published object instance: the content of an ObjectPose message, in numpy.

    T_cam_obj: (4, 4) float64 object -> camera optical frame, metres.
    instance: index among this frame's instances of the same object, by falling score (0 = best).
    """

    object_id: int
    name: str
    instance: int
    score: float
    method: str
    T_cam_obj: np.ndarray

    @property
    def frame_name(self) -> str:
        """Stem of the TF child frame: `duck` for the best instance, `duck_1`, `duck_2` for the others."""
        return self.name if self.instance == 0 else f"{self.name}_{self.instance}"


def number_instances(
    estimates: Sequence[PoseEstimate], names: Mapping[int, str], min_score: float = 0.0
) -> list[InstancePose]:
    """The found estimates scoring at least `min_score` whose object has a name, numbered per object by falling score.

    The order is by object id, then instance, so the same objects give the same message layout every frame.
    """
    kept = [e for e in estimates if e.found and e.score >= min_score and e.object_id in names]
    kept.sort(key=lambda e: (e.object_id, -e.score))
    out: list[InstancePose] = []
    for estimate in kept:
        instance = sum(1 for p in out if p.object_id == estimate.object_id)
        out.append(InstancePose(estimate.object_id, names[estimate.object_id], instance, estimate.score,
                                estimate.method, estimate.T_cam_obj))
    return out

"""Which object instance is which: estimates of one frame numbered per object, the naming TF and topics use."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from ros2_sixdpose.core.messages import InstancePose
from ros2_sixdpose.estimation.base import PoseEstimate


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

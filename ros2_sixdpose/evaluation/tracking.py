"""Scoring a tracker on a synthesised sequence, with no ROS: speed and accuracy frame by frame.

The tracker starts from the ground-truth poses of the chosen instances in the first frame (the initialiser
answers only then, so a lost track stays lost: RBOT's protocol "without reset") and runs over every frame.
Per frame and instance: ADD(-S) against the ground truth (a frame whose track is lost scores as a miss),
RBOT success (rotation error < 5 deg, the closest symmetric equivalent, and translation error < 5 cm;
Tjaden et al., "A Region-based Gauss-Newton Approach to Real-Time Monocular Multiple Object Tracking",
TPAMI 2019), and the time of `Tracker.update` for the whole frame.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.geometry import rotation_angle
from ros2_sixdpose.core.metrics import add_s
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.bop import BopSplit, read_rgb
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.tracking.tracker import Tracker

RBOT_DEGREES, RBOT_METRES = 5.0, 0.05


@dataclass
class SequenceScore:
    """Per-frame figures of one tracked sequence: seconds (F,), and per instance (I, F) ADD(-S) m (inf: lost),
    RBOT success bool, and the track ids the tracker gave."""

    seconds: list[float] = field(default_factory=list)
    add: list[list[float]] = field(default_factory=list)
    rbot: list[list[bool]] = field(default_factory=list)
    diameters: list[float] = field(default_factory=list)
    track_ids: list[list[int]] = field(default_factory=list)

    def add_recall(self) -> float:
        """Share of (frame, instance) pairs with ADD(-S) < 0.1 x diameter."""
        errors = np.array(self.add)
        return float(np.mean(errors < 0.1 * np.array(self.diameters)[:, None]))

    def rbot_success(self) -> float:
        """Share of (frame, instance) pairs within 5 deg and 5 cm."""
        return float(np.mean(self.rbot))


def symmetric_rotation_error(model: ObjectModel, R_est: np.ndarray, R_gt: np.ndarray) -> float:
    """Degrees between R_est (3, 3) and the closest symmetric equivalent of R_gt (3, 3)."""
    symmetries = model.symmetry_transforms()[:, :3, :3]
    return float(np.degrees(np.min(rotation_angle(R_est[None], R_gt[None] @ symmetries))))


def track_scene(
    split: BopSplit, scene_id: int, tracker: Tracker, models: dict[int, ObjectModel], instances: Sequence[int],
    frames: int | None = None, progress: Callable[[int], None] | None = None,
) -> SequenceScore:
    """Track the ground-truth instances `instances` (indices into the scene's first image) of one scene."""
    scene = split.read_scene(scene_id)
    image_ids = split.image_ids(scene_id)[:frames]
    first = scene.gt[image_ids[0]]
    chosen = [first[i] for i in instances]
    score = SequenceScore(diameters=[models[g.obj_id].diameter for g in chosen])
    score.add, score.rbot, score.track_ids = [[] for _ in chosen], [[] for _ in chosen], [[] for _ in chosen]
    tracker.reset()
    for frame, im_id in enumerate(image_ids):
        rgb = read_rgb(split.rgb_path(scene_id, im_id))
        camera = PinholeCamera(scene.camera[im_id].K, rgb.shape[1], rgb.shape[0])
        gt = [scene.gt[im_id][i] for i in instances]

        def initialise() -> list[PoseEstimate]:
            if frame > 0:
                return []
            return [PoseEstimate(g.obj_id, g.T_cam_obj, 1.0, "ground_truth") for g in gt]
        start = time.perf_counter()
        step = tracker.update(rgb, camera, initialise)
        if frame > 0:
            score.seconds.append(time.perf_counter() - start)
        for k, g in enumerate(gt):
            # The instance's track: the tracked pose of its object closest to the ground truth.
            candidates = [p for p in step.poses if p.object_id == g.obj_id]
            pose = min(candidates, key=lambda p: np.linalg.norm(p.T_cam_obj[:3, 3] - g.T_cam_obj[:3, 3]),
                       default=None)
            model = models[g.obj_id]
            if pose is None:
                score.add[k].append(float("inf"))
                score.rbot[k].append(False)
                score.track_ids[k].append(-1)
                continue
            T = pose.T_cam_obj
            score.add[k].append(add_s(T, g.T_cam_obj, model.vertices, model.is_symmetric))
            score.rbot[k].append(
                symmetric_rotation_error(model, T[:3, :3], g.T_cam_obj[:3, :3]) < RBOT_DEGREES
                and float(np.linalg.norm(T[:3, 3] - g.T_cam_obj[:3, 3])) < RBOT_METRES)
            score.track_ids[k].append(pose.track_id)
        if progress is not None:
            progress(1)
    return score

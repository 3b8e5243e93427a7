"""Scoring a tracker on a synthesised sequence, with no ROS: speed and accuracy frame by frame.

The tracker starts from the ground-truth poses of the chosen instances in the first frame (the initialiser
answers only then, so a lost track stays lost: RBOT's protocol "without reset") and runs over every frame; with
`reset`, an instance that fails RBOT's criterion (rotation error < 5 deg, translation error < 5 cm; Tjaden et al.,
TPAMI 2019) in a frame where it counts is put back on that frame's ground truth before the next frame (RBOT's
protocol "with reset"). The per-frame errors, the sequence's annotation (scene_sequence.json) and the time of
`Tracker.update` per frame give the figures of `evaluation.sequence_metrics`.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.bop import BopSplit, read_rgb
from ros2_sixdpose.data.sequence_annotation import SEQUENCE_FILE, read_sequence_annotation
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.evaluation.sequence_metrics import (
    InstanceSeries,
    SequenceMetrics,
    build_series,
    pose_errors,
    rbot_correct,
    summarise,
)
from ros2_sixdpose.tracking.tracker import Tracker

MIN_VISIB = 0.1  # instances less visible than this do not count (as BOP), nor are they reset


@dataclass
class SequenceScore:
    """One tracked sequence: seconds per frame (F - 1, the first frame's start left out), each chosen instance's
    series, and per instance the track id that output its closest pose in each frame (-1: none)."""

    seconds: list[float] = field(default_factory=list)
    series: list[InstanceSeries] = field(default_factory=list)
    track_ids: list[list[int]] = field(default_factory=list)
    resets: int = 0

    def metrics(self) -> SequenceMetrics:
        """The sequence figures of the chosen instances."""
        return summarise(self.series)

    def add_recall(self) -> float:
        """Share of counted (frame, instance) pairs with ADD(-S) < 0.1 x diameter."""
        return self.metrics().add_s_recall

    def rbot_success(self) -> float:
        """Share of counted (frame, instance) pairs within 5 deg and 5 cm."""
        return self.metrics().rbot_success


def track_scene(
    split: BopSplit, scene_id: int, tracker: Tracker, models: dict[int, ObjectModel], instances: Sequence[int],
    frames: int | None = None, progress: Callable[[int], None] | None = None, reset: bool = False,
) -> SequenceScore:
    """Track the ground-truth instances `instances` (indices into the scene's first image) of one scene."""
    scene = split.read_scene(scene_id)
    annotation = read_sequence_annotation(split.scene_dir(scene_id) / SEQUENCE_FILE)
    image_ids = split.image_ids(scene_id)[:frames]
    annotation = dataclasses.replace(annotation, frames=annotation.frames[:len(image_ids)])
    chosen = [annotation.frames[0].instances[i] for i in instances]
    score = SequenceScore(track_ids=[[] for _ in chosen])
    gt_all, estimates = [], []
    track_of: dict[int, int] = {}  # persistent id -> track id, from the first frame
    tracker.reset()
    for frame, im_id in enumerate(image_ids):
        rgb = read_rgb(split.rgb_path(scene_id, im_id))
        camera = PinholeCamera(scene.camera[im_id].K, rgb.shape[1], rgb.shape[0])
        here = annotation.frames[frame]
        gt = {pid: (g, visib) for pid, g, visib in zip(here.instances, scene.gt[im_id], here.visib) if pid in chosen}

        def initialise() -> list[PoseEstimate]:
            if frame > 0:
                return []
            return [PoseEstimate(gt[pid][0].obj_id, gt[pid][0].T_cam_obj, 1.0, "ground_truth") for pid in chosen]
        start = time.perf_counter()
        step = tracker.update(rgb, camera, initialise)
        if frame > 0:
            score.seconds.append(time.perf_counter() - start)
        gt_all.append([(g.obj_id, g.T_cam_obj) for g in scene.gt[im_id]])
        estimates.append([(p.object_id, p.T_cam_obj) for p in step.poses])
        for k, pid in enumerate(chosen):
            if pid not in gt:
                score.track_ids[k].append(-1)
                continue
            g, visib = gt[pid]
            # The instance's track: the tracked pose of its object closest to the ground truth.
            candidates = [p for p in step.poses if p.object_id == g.obj_id]
            pose = min(candidates, key=lambda p: np.linalg.norm(p.T_cam_obj[:3, 3] - g.T_cam_obj[:3, 3]),
                       default=None)
            score.track_ids[k].append(-1 if pose is None else pose.track_id)
            if frame == 0 and pose is not None:
                track_of[pid] = pose.track_id
            if reset and frame > 0 and pid in track_of and visib >= MIN_VISIB and pid not in here.occluded:
                own = next((p for p in step.poses if p.track_id == track_of[pid]), None)
                errors = pose_errors(own.T_cam_obj, g.T_cam_obj, models[g.obj_id]) if own is not None else None
                if errors is None or not rbot_correct(np.array(errors[1]), np.array(errors[2])):
                    tracker.restart(track_of[pid], g.obj_id, g.T_cam_obj, rgb, camera)
                    score.resets += 1
        if progress is not None:
            progress(1)
    score.series = build_series(gt_all, estimates, annotation, models, MIN_VISIB, chosen)
    return score

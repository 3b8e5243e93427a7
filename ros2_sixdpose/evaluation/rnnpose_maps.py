"""RNNPose's flow and weight maps on occluded instances of a split (the refinement study's figure).

Takes the first `count` instances with visib_fract in [low, high) of a split, starts RNNPose from their ground truth
disturbed as in `perturbed_init` (15 degrees, 1 / 1 / 5 cm) and draws what it saw (`figures.flow_weight_figure`): on
an occluded instance the weights should fade where the occluder hides the object.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.metrics import add_s
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.perturb import perturb_pose
from ros2_sixdpose.data.bop import BopSplit, read_rgb
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.refinement.rnnpose.figures import flow_weight_figure
from ros2_sixdpose.refinement.rnnpose.refiner import RNNPoseRefiner


def occluded_maps_figure(refiner: RNNPoseRefiner, split: BopSplit, models: Mapping[int, ObjectModel], path: Path,
                         visib: tuple[float, float] = (0.5, 0.7), count: int = 4, seed: int = 0) -> None:
    """Write the PNG at `path` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    rows = []
    for scene_id in split.scene_ids():
        scene = split.read_scene(scene_id)
        for im_id, instances in sorted(scene.gt.items()):
            chosen = [(gt, info) for gt, info in zip(instances, scene.gt_info[im_id])
                      if visib[0] <= info.visib_fract < visib[1] and gt.obj_id in models]
            if not chosen:
                continue
            rgb = read_rgb(split.rgb_path(scene_id, im_id))
            camera = PinholeCamera(scene.camera[im_id].K, rgb.shape[1], rgb.shape[0])
            for gt, info in chosen:
                model = models[gt.obj_id]
                T0 = perturb_pose(gt.T_cam_obj, model.bbox_min + model.bbox_size / 2, rng, 15.0)
                out = refiner.refine_one(rgb, camera, PoseEstimate(gt.obj_id, T0, 1.0, "perturbed"))
                if refiner.last_result is None or out.reason:
                    continue
                errors = [add_s(T, gt.T_cam_obj, model.vertices, model.is_symmetric) / model.diameter
                          for T in (T0, out.T_cam_obj)]
                label = (f"{model.name}, visib {info.visib_fract:.2f}\nADD(-S) {errors[0]:.2f} -> {errors[1]:.2f} d\n"
                         f"score {out.score:.2f}")
                rows.append((refiner.last_result, 0, label))
                if len(rows) == count:
                    flow_weight_figure(rows, path, "RNNPose on occluded instances (visib_fract "
                                       f"{visib[0]:g}-{visib[1]:g}), ground truth + 15 deg / 1, 1, 5 cm")
                    return
    if rows:
        flow_weight_figure(rows, path, "RNNPose on occluded instances")

"""NOCS maps of symmetric objects: one canonical map per appearance, and errors that ignore the symmetry.

A symmetric object looks the same in pose T and in T S for every symmetry S, but its NOCS maps in the two
poses differ, so an image alone cannot say which map is right. Training on the map of the annotated pose
would ask the network to predict an average of the candidates; instead every training map is redrawn in
the canonical member of the pose's symmetry class, the pose T S whose rotation is closest to the camera
frame (largest trace of R S_R), as in Pitteri et al., "On Object Symmetries and 6D Pose Estimation from
Images", 3DV 2019. The choice depends only on the class, so equal appearances get equal maps.
"""
from __future__ import annotations

import numpy as np

from ros2_sixdpose.core.geometry import checked_array, invert_pose, rotation_angle
from ros2_sixdpose.core.objects import ObjectModel

# Sampling of continuous symmetries, a fraction of the diameter (as BOP): 0.01 gives ~315 turns per axis.
SYMMETRY_STEP = 0.01


def canonical_symmetry(R_cam_obj: np.ndarray, symmetries: np.ndarray) -> np.ndarray:
    """The symmetry S (4, 4) among `symmetries` (K, 4, 4) (identity included) that brings R_cam_obj (3, 3) closest to identity."""
    R = checked_array(R_cam_obj, "3,3", "R_cam_obj")
    symmetries = checked_array(symmetries, "K,4,4", "symmetries")
    # trace(R S_R) = 1 + 2 cos(angle of R S_R): the largest trace is the smallest rotation.
    traces = np.einsum("ij,kji->k", R, symmetries[:, :3, :3])
    return symmetries[int(np.argmax(traces))]


def nocs_in_symmetric_pose(nocs: np.ndarray, model: ObjectModel, S: np.ndarray) -> np.ndarray:
    """NOCS (*, 3) seen in pose T, redrawn for pose T S (the same surface point is S^-1 p in the new model frame)."""
    points = model.nocs_to_points(checked_array(nocs, "*,3", "nocs"))
    S_inv = invert_pose(S)
    return np.clip(model.points_to_nocs(points @ S_inv[:3, :3].T + S_inv[:3, 3]), 0.0, 1.0)


def canonical_nocs(nocs: np.ndarray, model: ObjectModel, T_cam_obj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(NOCS (*, 3) of the canonical pose, canonical T_cam_obj (4, 4)) for a map drawn in pose T_cam_obj.

    Asymmetric objects are returned unchanged.
    """
    T_cam_obj = checked_array(T_cam_obj, "4,4", "T_cam_obj")
    if not model.is_symmetric:
        return np.asarray(nocs), T_cam_obj
    S = canonical_symmetry(T_cam_obj[:3, :3], model.symmetry_transforms(SYMMETRY_STEP))
    return nocs_in_symmetric_pose(nocs, model, S), T_cam_obj @ S


def symmetric_nocs_error(pred: np.ndarray, true: np.ndarray, model: ObjectModel) -> float:
    """Mean absolute NOCS error of predicted vs true values (N, 3), the smallest over the object's symmetries.

    In NOCS units (fractions of the bounding box per axis); nan for N = 0.
    """
    pred = checked_array(pred, "N,3", "pred")
    true = checked_array(true, "N,3", "true")
    if len(true) == 0:
        return float("nan")
    if not model.is_symmetric:
        return float(np.abs(pred - true).mean())
    return min(
        float(np.abs(pred - nocs_in_symmetric_pose(true, model, S)).mean())
        for S in model.symmetry_transforms(SYMMETRY_STEP)
    )


def symmetric_rotation_error(R_est: np.ndarray, R_gt: np.ndarray, symmetries: np.ndarray) -> float:
    """Smallest angle (rad) between R_est (3, 3) and R_gt S over the symmetries (S, 4, 4) (identity included)."""
    return float(rotation_angle(R_est, R_gt @ checked_array(symmetries, "S,4,4", "symmetries")[:, :3, :3]).min())

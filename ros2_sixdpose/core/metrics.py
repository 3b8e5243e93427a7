"""Pose error functions and recall scores for 6D object pose estimation (metres, pixels, float64).

Each error is a pure function named as in the literature and in the BOP toolkit, taking the estimated and
ground-truth rotation (3, 3) and translation (3,) in metres:

- ADD and ADD-S (`adi`): Hinterstoisser et al., "Model Based Training, Detection and Pose Estimation of
  Texture-Less 3D Objects in Heavily Cluttered Scenes", ACCV 2012.
- VSD: Hodan et al., "On Evaluation of 6D Object Pose Estimation", ECCVW 2016, in the form of Hodan,
  Michel et al., "BOP: Benchmark for 6D Object Pose Estimation", ECCV 2018 (step cost, visibility from
  the test depth with missing depth counted as visible, as in BOP 2019+).
- MSSD, MSPD and the average recall AR: Hodan et al., "BOP Challenge 2020 on 6D Object Localization",
  ECCVW 2020 (thresholds of the BOP Challenge 2019 onwards, below).

Symmetries `syms` are (S, 4, 4) model-frame transforms in metres, identity included, as given by
`ObjectModel.symmetry_transforms()`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import ConvexHull, QhullError, cKDTree

from ros2_sixdpose.core.geometry import checked_array, rotation_angle

# Correctness threshold of ADD / ADD-S as a fraction of the object diameter (Hinterstoisser et al. 2012).
ADD_THRESHOLD = 0.1
# BOP 2019+: MSSD thresholds and VSD misalignment tolerances tau, fractions of the diameter, and VSD error
# thresholds (unitless): 0.05, 0.10, ..., 0.50.
BOP_FRACTIONS = np.arange(1, 11) * 0.05
MSSD_THRESHOLDS = BOP_FRACTIONS
VSD_TAUS = BOP_FRACTIONS
VSD_THRESHOLDS = BOP_FRACTIONS
# BOP 2019+: MSPD thresholds 5, 10, ..., 50 px for a 640 px wide image, scaled with the image width.
MSPD_THRESHOLDS_PX = np.arange(1, 11) * 5.0
MSPD_REFERENCE_WIDTH = 640.0
# BOP 2019+: VSD visibility tolerance delta, 15 mm (all BOP data sets but ITODD).
VSD_DELTA = 0.015
# Symmetries x points handled per array in `mssd` / `mspd`: small enough to stay in the CPU cache.
_CHUNK_ELEMENTS = 32_768
# Below this many symmetries x points, `mssd` / `mspd` evaluate every pair instead of pruning.
_SMALL_PROBLEM = 1_000_000


def add(R_est: ArrayLike, t_est: ArrayLike, R_gt: ArrayLike, t_gt: ArrayLike, pts: ArrayLike) -> float:
    """ADD (m): mean distance between model points `pts` (N, 3) m moved by the estimated and the true pose.

    Hinterstoisser et al., ACCV 2012; for objects without indistinguishable views.
    """
    R_est, t_est, R_gt, t_gt = _checked_pose_pair(R_est, t_est, R_gt, t_gt)
    pts = _checked_points(pts)
    return float(np.linalg.norm(pts @ (R_est - R_gt).T + (t_est - t_gt), axis=1).mean())


def adi(R_est: ArrayLike, t_est: ArrayLike, R_gt: ArrayLike, t_gt: ArrayLike, pts: ArrayLike) -> float:
    """ADD-S (m): mean distance from each true-pose model point to the nearest estimated-pose model point.

    Hinterstoisser et al., ACCV 2012 (ADI); for objects with indistinguishable views. `pts` (N, 3) m.
    """
    R_est, t_est, R_gt, t_gt = _checked_pose_pair(R_est, t_est, R_gt, t_gt)
    pts = _checked_points(pts)
    distances, _ = cKDTree(pts @ R_est.T + t_est).query(pts @ R_gt.T + t_gt, k=1)
    return float(distances.mean())


def add_s(T_est: np.ndarray, T_gt: np.ndarray, pts: ArrayLike, symmetric: bool) -> float:
    """ADD(-S) (m) between poses T (4, 4): ADD-S (`adi`) for a symmetric object, else ADD; `pts` (N, 3) m."""
    distance = adi if symmetric else add
    return distance(T_est[:3, :3], T_est[:3, 3], T_gt[:3, :3], T_gt[:3, 3], pts)


def mssd(
    R_est: ArrayLike, t_est: ArrayLike, R_gt: ArrayLike, t_gt: ArrayLike, pts: ArrayLike, syms: ArrayLike
) -> float:
    """MSSD (m): over the symmetries (S, 4, 4), the smallest maximum 3D distance between model points (N, 3) m.

    Hodan et al., BOP Challenge 2020 (ECCVW 2020): min_S max_x |T_est x - T_gt S x|.
    """
    R_est, t_est, R_gt, t_gt = _checked_pose_pair(R_est, t_est, R_gt, t_gt)
    pts = _checked_points(pts)
    syms = checked_array(syms, "S,4,4", "syms")
    # Distances are rotation invariant: compare in the ground-truth object frame, where the symmetric
    # copies of the model do not depend on the pose.
    est_in_gt = pts @ (R_gt.T @ R_est).T + R_gt.T @ (t_est - t_gt)

    def squared_distances(sym: np.ndarray, index: np.ndarray | slice) -> np.ndarray:
        sym_pts = _transform_many(sym[:, :3, :3], sym[:, :3, 3], pts[index])
        return _squared_norm(est_in_gt[index, None, :] - sym_pts)

    return _min_over_symmetries_of_max(squared_distances, syms, pts)


def mspd(
    R_est: ArrayLike, t_est: ArrayLike, R_gt: ArrayLike, t_gt: ArrayLike, K: ArrayLike, pts: ArrayLike, syms: ArrayLike
) -> float:
    """MSPD (px): over the symmetries (S, 4, 4), the smallest maximum image distance between projected model points.

    Hodan et al., BOP Challenge 2020 (ECCVW 2020): min_S max_x |proj(T_est x) - proj(T_gt S x)| with the
    pinhole K (3, 3) (no distortion, as in BOP); `pts` (N, 3) m.
    """
    R_est, t_est, R_gt, t_gt = _checked_pose_pair(R_est, t_est, R_gt, t_gt)
    K = checked_array(K, "3,3", "K")
    pts = _checked_points(pts)
    syms = checked_array(syms, "S,4,4", "syms")
    uv_est = _project(pts @ R_est.T + t_est, K)

    def squared_distances(sym: np.ndarray, index: np.ndarray | slice) -> np.ndarray:
        R_sym = R_gt @ sym[:, :3, :3]  # (s, 3, 3)
        t_sym = sym[:, :3, 3] @ R_gt.T + t_gt  # (s, 3)
        uv_gt = _project(_transform_many(R_sym, t_sym, pts[index]), K)
        return _squared_norm(uv_est[index, None, :] - uv_gt)

    return _min_over_symmetries_of_max(squared_distances, syms, pts)


def vsd(
    depth_est: ArrayLike,
    depth_gt: ArrayLike,
    depth_test: ArrayLike,
    K: ArrayLike,
    delta: float,
    taus: Sequence[float] | np.ndarray,
    normalized_by_diameter: bool,
    diameter: float | None,
    cost_type: str = "step",
) -> np.ndarray:
    """VSD per tau (len(taus),) in [0, 1] from depth maps (H, W) metres (0 = no depth) and intrinsics K (3, 3).

    Visible Surface Discrepancy, Hodan et al., ECCVW 2016 / ECCV 2018. `depth_est` and `depth_gt` are the
    object alone rendered in the estimated and the true pose, `depth_test` the test image's depth. The
    visible surfaces are found by the BOP 2019+ test (tolerance `delta` m; pixels without test depth count
    as visible); pixels visible in both poses cost 1 where their distances from the camera differ by at
    least tau ('step') or min(diff / tau, 1) ('tlinear'); pixels visible in one pose only cost 1. With
    `normalized_by_diameter`, taus are fractions of `diameter` (m), otherwise metres.
    """
    K = checked_array(K, "3,3", "K")
    depth_test = checked_array(depth_test, "H,W", "depth_test")
    depth_est = checked_array(depth_est, "H,W", "depth_est")
    depth_gt = checked_array(depth_gt, "H,W", "depth_gt")
    if not depth_est.shape == depth_gt.shape == depth_test.shape:
        raise ValueError(
            f"depth maps must share one shape, got est {depth_est.shape}, gt {depth_gt.shape}, test {depth_test.shape}"
        )
    if cost_type not in ("step", "tlinear"):
        raise ValueError(f"cost_type must be 'step' or 'tlinear', got {cost_type!r}")
    if normalized_by_diameter and (diameter is None or not diameter > 0):
        raise ValueError(f"normalized_by_diameter needs a positive diameter, got {diameter!r}")
    taus = np.asarray(taus, dtype=np.float64)
    # BOP compares distances from the camera centre, not z depths.
    dist_test, dist_est, dist_gt = (depth_to_distance(d, K) for d in (depth_test, depth_est, depth_gt))
    visib_gt = _visible(dist_gt, dist_test, delta)
    # A pixel where the object is visible in the true pose is taken as visible in the estimate too, so an
    # estimate is not rewarded for hiding behind the occluder (Hodan et al. 2016, eq. 14).
    visib_est = _visible(dist_est, dist_test, delta) | (visib_gt & (dist_est > 0))
    inter = visib_gt & visib_est
    union_count = np.count_nonzero(visib_gt | visib_est)
    if union_count == 0:
        return np.ones(len(taus))
    only_one_count = union_count - np.count_nonzero(inter)
    dists = np.abs(dist_gt[inter] - dist_est[inter])
    if normalized_by_diameter:
        dists = dists / diameter
    if cost_type == "step":
        costs = dists[None, :] >= taus[:, None]
    else:
        costs = np.minimum(dists[None, :] / taus[:, None], 1.0)
    return (costs.sum(axis=1) + only_one_count) / union_count


def re(R_est: ArrayLike, R_gt: ArrayLike) -> float:
    """Rotation error (degrees): geodesic angle between R_est and R_gt (3, 3)."""
    return float(np.degrees(rotation_angle(checked_array(R_est, "3,3", "R_est"), checked_array(R_gt, "3,3", "R_gt"))))


def te(t_est: ArrayLike, t_gt: ArrayLike) -> float:
    """Translation error (m): Euclidean distance between t_est and t_gt (3,) m."""
    return float(np.linalg.norm(checked_array(t_est, "3", "t_est") - checked_array(t_gt, "3", "t_gt")))


def depth_to_distance(depth: ArrayLike, K: ArrayLike) -> np.ndarray:
    """Distance from the camera centre (H, W) m of each pixel's 3D point, from z depth (H, W) m (0 stays 0)."""
    depth = checked_array(depth, "H,W", "depth")
    K = checked_array(K, "3,3", "K")
    u = (np.arange(depth.shape[1]) - K[0, 2]) / K[0, 0]
    v = (np.arange(depth.shape[0]) - K[1, 2]) / K[1, 1]
    return depth * np.sqrt(u[None, :] ** 2 + v[:, None] ** 2 + 1.0)


def mspd_thresholds(image_width: int) -> np.ndarray:
    """MSPD correctness thresholds (10,) px for an image `image_width` px wide (BOP: 5..50 px x width / 640)."""
    return MSPD_THRESHOLDS_PX * (image_width / MSPD_REFERENCE_WIDTH)


def recall(errors: ArrayLike, threshold: float) -> float:
    """Fraction of errors (N,) strictly below `threshold`; a missing estimate is an error of inf."""
    errors = checked_array(errors, "N", "errors")
    if errors.size == 0:
        raise ValueError("recall of an empty set of errors is undefined")
    return float(np.mean(errors < threshold))


def average_recall(errors: ArrayLike, thresholds: ArrayLike) -> float:
    """Mean recall over `thresholds` (T,) of errors (N,), or of errors (N, V) over all V variants x T thresholds.

    AR_MSSD and AR_MSPD take (N,) errors (normalise them first where the thresholds are relative: MSSD by
    the diameter, MSPD by width / 640); AR_VSD takes (N, len(VSD_TAUS)) errors, one column per tau, since
    BOP averages over taus and thresholds alike. A missing estimate is an error of inf.
    """
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim == 1:
        errors = errors[:, None]
    if errors.ndim != 2 or errors.shape[0] == 0:
        raise ValueError(f"errors must have shape (N,) or (N, V) with N > 0, got {errors.shape}")
    thresholds = checked_array(thresholds, "T", "thresholds")
    return float(np.mean(errors[:, :, None] < thresholds))


def average_recall_bop(ar_vsd: float, ar_mssd: float, ar_mspd: float) -> float:
    """BOP 2019+ score AR: the mean of AR_VSD, AR_MSSD and AR_MSPD."""
    return float(np.mean([ar_vsd, ar_mssd, ar_mspd]))


def _visible(dist_model: np.ndarray, dist_test: np.ndarray, delta: float) -> np.ndarray:
    """BOP 2019 visibility (H, W) bool: model surface present and not behind the test surface by more than delta."""
    return (dist_model > 0) & ((dist_model - dist_test <= delta) | (dist_test == 0))


def _project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points (*, N, 3) m to pixels (*, N, 2)."""
    uvw = points @ K.T
    return uvw[..., :2] / uvw[..., 2:]


def _min_over_symmetries_of_max(
    squared_distances: Callable[[np.ndarray, np.ndarray | slice], np.ndarray], syms: np.ndarray, pts: np.ndarray
) -> float:
    """min over symmetries of the max over points of a distance, exactly; `squared_distances(syms, index)` gives
    the squared distances (n, s) of the indexed points under symmetries syms (s, 4, 4).

    Small problems are evaluated at once. For large ones (a continuous symmetry gives ~300-600 transforms) the
    max over the convex-hull vertices bounds each symmetry's value from below (for MSSD it is the value: the
    distance between two affine images of x is convex in x); symmetries are then evaluated at all points in
    order of their bound until the bound reaches the best value found.
    """
    if len(syms) * len(pts) <= _SMALL_PROBLEM:
        return float(np.sqrt(_max_per_symmetry(squared_distances, syms, slice(None), len(pts)).min()))
    probe = _hull_vertices(pts)
    bounds = _max_per_symmetry(squared_distances, syms, probe, len(probe))
    best = np.inf
    for s in np.argsort(bounds):
        if bounds[s] >= best:
            break
        best = min(best, float(squared_distances(syms[s : s + 1], slice(None)).max()))
    return float(np.sqrt(best))


def _max_per_symmetry(
    squared_distances: Callable[[np.ndarray, np.ndarray | slice], np.ndarray],
    syms: np.ndarray,
    index: np.ndarray | slice,
    n_points: int,
) -> np.ndarray:
    """Max over the indexed points (n_points of them) of the squared distances, per symmetry: (S,)."""
    chunk = max(1, _CHUNK_ELEMENTS // n_points)
    starts = range(0, len(syms), chunk)
    return np.concatenate([squared_distances(syms[i : i + chunk], index).max(axis=0) for i in starts])


def _transform_many(R: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (n, 3) moved by s rigid transforms R (s, 3, 3), t (s, 3): (n, s, 3)."""
    # One (n, 3) x (3, 3s) product: NumPy's batched matmul is far slower on many 3x3 blocks.
    rotated = (points @ R.transpose(2, 0, 1).reshape(3, 3 * len(R))).reshape(len(points), len(R), 3)
    return rotated + t


def _squared_norm(vectors: np.ndarray) -> np.ndarray:
    """Squared Euclidean norms over the last axis (*, D) -> (*)."""
    return np.einsum("...k,...k->...", vectors, vectors)


def _hull_vertices(pts: np.ndarray) -> np.ndarray:
    """Indices of the convex-hull vertices of points (N, 3); all indices when the points span no volume."""
    try:
        return ConvexHull(pts).vertices
    except QhullError:
        return np.arange(len(pts))


def _checked_points(pts: ArrayLike) -> np.ndarray:
    """Model points as float64 (N, 3), N > 0."""
    pts = checked_array(pts, "N,3", "pts")
    if len(pts) == 0:
        raise ValueError("pts must hold at least one point, got shape (0, 3)")
    return pts


def _checked_pose_pair(
    R_est: ArrayLike, t_est: ArrayLike, R_gt: ArrayLike, t_gt: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shape-checked float64 (R_est (3, 3), t_est (3,), R_gt (3, 3), t_gt (3,)); (3, 1) translations are flattened."""
    return (
        checked_array(R_est, "3,3", "R_est"),
        checked_array(np.reshape(t_est, -1), "3", "t_est"),
        checked_array(R_gt, "3,3", "R_gt"),
        checked_array(np.reshape(t_gt, -1), "3", "t_gt"),
    )

"""Sequence metrics of a tracker, as pure functions of per-frame errors and the sequence's annotation.

One `InstanceSeries` per object instance of a sequence of F frames holds its per-frame errors (inf where the
tracker gave no pose for it, whether the frame went unanswered or the answer lacked the instance) and flags.
From them (`summarise`):

- ADD(-S) recall over all frames: the share of (frame, instance) pairs with ADD(-S) < 0.1 x diameter, over every
  frame sent in which the instance counts (`scored`: in the image and at least `min_visib` visible, as BOP);
  a frame not answered is a failure;
- RBOT success: the share of those pairs with rotation error < 5 deg (to the closest symmetric equivalent) and
  translation error < 5 cm (Tjaden et al., "A Region-based Gauss-Newton Approach to Real-Time Monocular Multiple
  Object Tracking", TPAMI 2019);
- drift per 100 frames: the least-squares slope of the translation (mm) and rotation (deg) errors against the
  frame index over the frames with a pose, x 100, averaged over the instances (a tracker that slides away
  steadily has a positive drift; re-initialisations pull it back towards 0);
- re-acquisition time: per full occlusion (a run of frames in which the instance is wholly hidden), seconds
  from the first frame after it to the first frame with a correct pose (ADD(-S) < 0.1 d); None when the
  sequence ends first;
- jitter: per run of frames in which camera and instance stand still, the RMS deviation of the estimated
  translation from its mean (mm) and of the estimated rotation from its mean rotation (deg, the chordal mean),
  averaged over the runs;
- frames answered / received: counted by the caller.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ros2_sixdpose.core.geometry import rotation_angle
from ros2_sixdpose.core.metrics import add_s
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.data.sequence_annotation import SequenceAnnotation
from ros2_sixdpose.estimation.symmetry import symmetric_rotation_error

__all__ = ["RBOT_DEGREES", "RBOT_METRES", "InstanceSeries", "SequenceMetrics", "pose_errors", "rbot_correct",
           "recall", "drift_per_100_frames", "reacquisition_times", "jitter", "summarise", "build_series"]

RBOT_DEGREES, RBOT_METRES = 5.0, 0.05
ADD_THRESHOLD = 0.1  # x diameter
MIN_JITTER_FRAMES = 3  # a still run with fewer estimated poses gives no jitter
MIN_DRIFT_FRAMES = 10  # an instance with fewer estimated poses gives no drift


@dataclass
class InstanceSeries:
    """One instance over the F frames of a sequence.

    times: (F,) s; T_est: (F, 4, 4) estimated T_cam_obj, NaN where none; add: (F,) ADD(-S) m, inf where none;
    rot_deg / trans_m: (F,) rotation (deg, closest symmetric equivalent) and translation (m) errors, inf where
    none; scored: (F,) bool, counts in the recalls; occluded: (F,) bool, wholly hidden (a full occlusion);
    still: (F,) bool, camera and instance stand as in the previous frame.
    """

    obj_id: int
    diameter: float
    times: np.ndarray
    T_est: np.ndarray
    add: np.ndarray
    rot_deg: np.ndarray
    trans_m: np.ndarray
    scored: np.ndarray
    occluded: np.ndarray
    still: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        """(F,) bool: ADD(-S) < 0.1 x diameter."""
        return self.add < ADD_THRESHOLD * self.diameter


@dataclass
class SequenceMetrics:
    """The sequence figures (see the module docstring); None where there was nothing to measure."""

    instances: int
    instance_frames: int  # (frame, instance) pairs scored
    add_s_recall: float | None
    rbot_success: float | None
    drift_mm_per_100: float | None
    drift_deg_per_100: float | None
    occlusions: int  # full occlusions followed by at least one frame
    reacquired: int  # of those, how many were followed by a correct pose before the sequence ended
    reacquisition_s_median: float | None
    reacquisition_s_max: float | None  # over the re-acquired ones
    jitter_mm: float | None
    jitter_deg: float | None
    still_runs: int

    def to_dict(self) -> dict[str, float | int | None]:
        """The figures as a flat dict (for JSON)."""
        return asdict(self)


def pose_errors(T_est: np.ndarray, T_gt: np.ndarray, model: ObjectModel) -> tuple[float, float, float]:
    """(ADD(-S) m, rotation error deg to the closest symmetric equivalent, translation error m) of one pose (4, 4)."""
    rot = np.degrees(symmetric_rotation_error(T_est[:3, :3], T_gt[:3, :3], model.symmetry_transforms()))
    return (add_s(T_est, T_gt, model.vertices, model.is_symmetric), float(rot),
            float(np.linalg.norm(T_est[:3, 3] - T_gt[:3, 3])))


def rbot_correct(rot_deg: np.ndarray, trans_m: np.ndarray) -> np.ndarray:
    """(F,) bool: RBOT's success criterion, rotation error < 5 deg and translation error < 5 cm."""
    return (np.asarray(rot_deg) < RBOT_DEGREES) & (np.asarray(trans_m) < RBOT_METRES)


def recall(correct: np.ndarray, scored: np.ndarray) -> float | None:
    """Share of the `scored` entries that are `correct` (both bool arrays of one shape); None when none is scored."""
    scored = np.asarray(scored, bool)
    return float(np.asarray(correct, bool)[scored].mean()) if scored.any() else None


def drift_per_100_frames(errors: np.ndarray, valid: np.ndarray) -> float | None:
    """100 x the least-squares slope of `errors` (F,) against the frame index over the `valid` (F,) frames; None
    with fewer than MIN_DRIFT_FRAMES of them."""
    frames = np.flatnonzero(valid)
    if len(frames) < MIN_DRIFT_FRAMES:
        return None
    slope = np.polyfit(frames.astype(np.float64), np.asarray(errors, np.float64)[frames], 1)[0]
    return float(100.0 * slope)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each maximal run of True in `flags` (F,)."""
    padded = np.concatenate([[False], np.asarray(flags, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def reacquisition_times(times: np.ndarray, occluded: np.ndarray, correct: np.ndarray) -> list[float | None]:
    """Per full occlusion (run of `occluded` frames not at the sequence's end): seconds from the first frame after
    it to the first frame from there with a `correct` pose; None when there is none. All arrays (F,)."""
    correct = np.asarray(correct, bool)
    out: list[float | None] = []
    for _, end in _runs(occluded):
        if end >= len(times):
            continue
        hits = np.flatnonzero(correct[end:])
        out.append(float(times[end + hits[0]] - times[end]) if hits.size else None)
    return out


def jitter(T_est: np.ndarray, still: np.ndarray) -> list[tuple[float, float, int]]:
    """Per run of still frames, (RMS translation deviation mm, RMS rotation deviation deg, poses used).

    A run of frames flagged still also includes the frame before it (the first flagged frame stands as that one
    did). Frames without a pose (NaN) are left out; a run with fewer than MIN_JITTER_FRAMES poses gives nothing.
    """
    out = []
    for start, end in _runs(still):
        poses = T_est[max(start - 1, 0):end]
        poses = poses[~np.isnan(poses[:, 0, 0])]
        if len(poses) < MIN_JITTER_FRAMES:
            continue
        t = poses[:, :3, 3]
        t_rms = float(np.sqrt(np.mean(np.sum((t - t.mean(axis=0)) ** 2, axis=1))))
        # Chordal L2 mean: the rotation closest (Frobenius) to the arithmetic mean of the matrices.
        u, _, vt = np.linalg.svd(poses[:, :3, :3].mean(axis=0))
        mean = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
        angles = rotation_angle(poses[:, :3, :3], mean[None])
        out.append((1e3 * t_rms, float(np.degrees(np.sqrt(np.mean(angles ** 2)))), len(poses)))
    return out


def _mean(values: Sequence[float]) -> float | None:
    """Mean, or None for no values."""
    return float(np.mean(values)) if len(values) else None


def summarise(series: Sequence[InstanceSeries]) -> SequenceMetrics:
    """The sequence figures of every instance of one or more sequences (see the module docstring)."""
    scored = [s.scored for s in series]
    flat_scored = np.concatenate(scored) if series else np.zeros(0, bool)
    add_ok = np.concatenate([s.correct for s in series]) if series else np.zeros(0, bool)
    rbot_ok = np.concatenate([rbot_correct(s.rot_deg, s.trans_m) for s in series]) if series else np.zeros(0, bool)
    drift_mm, drift_deg, reacquisition, jitters = [], [], [], []
    for s in series:
        posed = s.scored & np.isfinite(s.trans_m)
        for errors, out in ((1e3 * s.trans_m, drift_mm), (s.rot_deg, drift_deg)):
            value = drift_per_100_frames(np.where(posed, errors, 0.0), posed)
            if value is not None:
                out.append(value)
        reacquisition += reacquisition_times(s.times, s.occluded, s.correct)
        jitters += jitter(s.T_est, s.still)
    found = [t for t in reacquisition if t is not None]
    return SequenceMetrics(
        instances=len(series), instance_frames=int(flat_scored.sum()),
        add_s_recall=recall(add_ok, flat_scored), rbot_success=recall(rbot_ok, flat_scored),
        drift_mm_per_100=_mean(drift_mm), drift_deg_per_100=_mean(drift_deg),
        occlusions=len(reacquisition), reacquired=len(found),
        reacquisition_s_median=float(np.median(found)) if found else None,
        reacquisition_s_max=max(found) if found else None,
        jitter_mm=_mean([j[0] for j in jitters]), jitter_deg=_mean([j[1] for j in jitters]), still_runs=len(jitters),
    )


def build_series(
    gt: Sequence[Sequence[tuple[int, np.ndarray]]],
    estimates: Sequence[Sequence[tuple[int, np.ndarray]]],
    annotation: SequenceAnnotation,
    models: Mapping[int, ObjectModel],
    min_visib: float,
    instances: Collection[int] | None = None,
) -> list[InstanceSeries]:
    """Per instance (persistent id of the annotation; all, or those in `instances`), its series over the frames.

    gt[f]: (object id, T_cam_obj (4, 4)) of each scene_gt entry of frame f, in the annotation's order;
    estimates[f]: the tracker's (object id, T_cam_obj) in frame f, none where it did not answer. In each frame,
    the estimates of an object are matched one to one to its ground-truth instances by the least summed
    translation distance (Hungarian). An instance counts (`scored`) in the frames where it is in the image, at
    least `min_visib` visible and not wholly hidden.
    """
    if not len(gt) == len(estimates) == len(annotation.frames):
        raise ValueError(f"need one ground-truth list, estimate list and annotation per frame, got {len(gt)}, "
                         f"{len(estimates)} and {len(annotation.frames)}")
    n = len(gt)
    times = np.arange(n) / annotation.rate_hz
    ids = sorted({i for f in annotation.frames for i in f.instances} if instances is None else instances)
    series: dict[int, InstanceSeries] = {}

    def blank(obj_id: int) -> InstanceSeries:
        inf = np.full(n, np.inf)
        return InstanceSeries(obj_id, models[obj_id].diameter, times, np.full((n, 4, 4), np.nan), inf.copy(),
                              inf.copy(), inf.copy(), np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool))
    for f, (frame_gt, frame_est, frame) in enumerate(zip(gt, estimates, annotation.frames)):
        present = {pid: k for k, pid in enumerate(frame.instances) if pid in ids}
        for pid, k in present.items():
            obj_id = frame_gt[k][0]
            s = series.setdefault(pid, blank(obj_id))
            s.scored[f] = frame.visib[k] >= min_visib and pid not in frame.occluded
            s.occluded[f] = pid in frame.occluded
            s.still[f] = f > 0 and annotation.still(f, pid) and pid in annotation.frames[f - 1].instances
        for obj_id in {frame_gt[k][0] for k in present.values()}:
            pids = [pid for pid, k in present.items() if frame_gt[k][0] == obj_id]
            poses = [T for o, T in frame_est if o == obj_id]
            if not poses:
                continue
            cost = np.array([[np.linalg.norm(T[:3, 3] - frame_gt[present[pid]][1][:3, 3]) for T in poses]
                             for pid in pids])
            for row, col in zip(*linear_sum_assignment(cost)):
                s, T_gt = series[pids[row]], frame_gt[present[pids[row]]][1]
                s.T_est[f] = poses[col]
                s.add[f], s.rot_deg[f], s.trans_m[f] = pose_errors(poses[col], T_gt, models[obj_id])
    return [series[pid] for pid in ids if pid in series]

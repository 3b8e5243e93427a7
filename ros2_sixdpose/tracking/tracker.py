"""The tracker: per object instance a small state machine over a per-frame refiner (initialise, track, lost).

Each frame, every tracked instance is refined from its previous pose (or one predicted by a constant-velocity
model); a score below `lost_score` for `lost_frames` frames in a row, or too little of the outline inside the
image, makes it lost. When none is tracked yet, every `reinit_period` frames while one is lost, and every
`redetect_period` frames, the caller's initialiser (detector + estimator + refiner) runs on the frame (the
node estimates only the detections no track explains, `Tracker.unexplained`): an estimate near a tracked
instance of the same object is that instance (ignored), one that no tracked instance explains re-initialises the
nearest lost instance of its object (which keeps its id) or starts a new one. A symmetric object's output
is the equivalent pose (`ObjectModel.symmetry_transforms`) closest to its previous output, so it never
flips between poses that look the same.

`update` runs the initialiser on the frame itself (it waits for it); `step` lets it run apart (the node's child
process) and takes its estimates on a later frame, carrying the tracks they start to the present through the
frames kept meanwhile.
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.geometry import invert_pose, transform_points
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.tracking.base import FrameRefiner

logger = logging.getLogger(__name__)

Initialiser = Callable[[], Sequence[PoseEstimate]]


class TrackState(enum.Enum):
    """Where an instance's track stands."""

    TRACKED = "tracked"
    LOST = "lost"


@dataclass
class TrackerConfig:
    """Settings of the tracker's state machine (config/tracker.yaml)."""

    # A frame whose refiner score is below this counts towards losing the track. Chosen on the seed-7301
    # sequences (region tracker, 40 frames from the ground truth and from 30 deg / 5 cm off): 0.6 flags 0.6 % of
    # frames within ADD(-S) 0.1 d and 59 % of those beyond (0.4: 0 % and 38 %; 0.7: 6 % and 65 %).
    lost_score: float = 0.6
    lost_frames: int = 2  # consecutive low-score frames that lose a track
    min_visible: float = 0.25  # share of the outline inside the image below which the track is lost at once
    min_init_score: float = 0.0  # estimates below this score do not start or re-initialise a track
    redetect_period: int = 30  # frames between initialiser runs that look for new instances; 0: only when needed
    # While other instances are tracked, a lost one is looked for every this many frames, not every frame: an
    # initialisation (detector + estimator + refiner) costs ~0.3-1.5 s on the CPU, tracking a few ms.
    reinit_period: int = 10
    constant_velocity: bool = False  # predict each pose from the last two before refining
    match_distance: float = 0.5  # x diameter: an estimate this close to a tracked instance is that instance
    # A detection whose box overlaps a tracked instance's projected box (same object) by this IoU is explained by
    # it and needs no estimate: a periodic re-detection costs the detector alone while nothing new appears.
    explained_iou: float = 0.3
    forget_frames: int = 300  # a lost instance not re-found within this many frames is dropped (its id retired)
    # A lost instance is tried again from its last well-scored pose and appearance in each of the next
    # resume_frames frames, and tracked again where the refiner scores it at least resume_score: an object hidden
    # for a moment (a hand passing) comes back in the first frame it is visible, without an initialisation
    # (0.3-1.5 s on the CPU). 0 frames: never.
    resume_frames: int = 30
    resume_score: float = 0.8
    confirm_frames: int = 5  # a track lost within this many frames of its (re)start is dropped at once
    # `step` only: frames kept while an initialiser runs apart (evenly thinned as they come), through which the
    # tracks it starts are carried to the present: an initialisation takes 0.5-3.5 s here, and a pose that old is
    # outside the region tracker's reach from the current frame when the camera moves. The catch-up is spread over
    # the next frames, `catch_up_per_frame` kept frames each, so that no frame waits for all of it.
    # Measured on the seed-7501 sequence at its recorded pace (initialisations of 3.5-4.2 s at load 12): with 8 kept
    # frames (0.5 s apart) the first torus track was lost in the catch-up, with 24 it was carried.
    catch_up_frames: int = 24
    catch_up_per_frame: int = 3

    def __post_init__(self) -> None:
        if not 0 <= self.resume_score <= 1 or self.resume_frames < 0:
            raise ValueError(f"need resume_score in [0, 1] and resume_frames >= 0, got {self.resume_score}, "
                             f"{self.resume_frames}")
        if not 0 <= self.lost_score <= 1 or not 0 <= self.min_visible <= 1 or self.lost_frames < 1:
            raise ValueError(f"need lost_score, min_visible in [0, 1] and lost_frames >= 1, got {self.lost_score}, "
                             f"{self.min_visible}, {self.lost_frames}")
        if (self.redetect_period < 0 or self.reinit_period < 1 or self.match_distance <= 0 or self.forget_frames < 1
                or not 0 < self.explained_iou <= 1 or self.catch_up_frames < 0 or self.catch_up_per_frame < 1):
            raise ValueError("need redetect_period >= 0, reinit_period >= 1, match_distance > 0, forget_frames >= 1, "
                             "0 < explained_iou <= 1, catch_up_frames >= 0 and catch_up_per_frame >= 1")


@dataclass
class Track:
    """One object instance over frames: its stable id, state, last pose (4, 4) m and score."""

    track_id: int
    object_id: int
    instance: int  # among the instances of its object, in order of first sight; stable like track_id
    T_cam_obj: np.ndarray
    score: float
    state: TrackState = TrackState.TRACKED
    refiner_state: Any = None
    previous: np.ndarray | None = None  # the pose one frame earlier, for the constant-velocity prediction
    low_frames: int = 0
    lost_since: int = 0
    age: int = 0  # frames tracked since the last (re)initialisation
    good_pose: np.ndarray | None = None  # the last pose scored at least lost_score, and the refiner's state there
    good_state: Any = None
    # `step` only: frames (rgb, camera) this track still has to be carried through to reach the present; while any
    # are left, the track is neither output nor tracked on the current frame (it is queued here instead)
    behind: list[tuple[np.ndarray, PinholeCamera]] = field(default_factory=list)


@dataclass(frozen=True)
class TrackedPose:
    """One instance's output for a frame; method "estimate" when (re)initialised in it, "track" when tracked."""

    track_id: int
    object_id: int
    instance: int
    T_cam_obj: np.ndarray
    score: float
    state: TrackState
    method: str


@dataclass(frozen=True)
class Initialisation:
    """An initialiser's estimates and the frame (rgb (H, W, 3) uint8, camera) they were made on."""

    estimates: Sequence[PoseEstimate]
    rgb: np.ndarray
    camera: PinholeCamera


@dataclass(frozen=True)
class Explained:
    """Selects the detections no tracked instance explains: one overlapping the projected box (x0, y0, x1, y1) px
    of a tracked instance of its object by `min_iou` is that instance. Picklable, so it can go to another process
    with the frame."""

    boxes: tuple[tuple[int, np.ndarray], ...]  # (object id, box) per tracked instance
    min_iou: float

    def __call__(self, detections: Sequence[Detection]) -> list[Detection]:
        return [d for d in detections
                if not any(obj == d.object_id and box_iou(box, d.box) >= self.min_iou for obj, box in self.boxes)]


@dataclass
class TrackerStep:
    """What one frame did: the poses of the tracked instances and whether an initialiser's estimates were used."""

    poses: list[TrackedPose]
    initialised: bool
    tracks: list[Track] = field(default_factory=list)


class Tracker:
    """Tracks every instance of the objects in `models` with `refiner` (see the module docstring)."""

    def __init__(self, refiner: FrameRefiner, models: Mapping[int, ObjectModel],
                 config: TrackerConfig | None = None) -> None:
        self.refiner = refiner
        self.models = models
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self.frame_index = 0
        self._next_id = 1
        self._last_initialised = 0
        self._instances: dict[int, int] = {}  # object id -> instances seen so far
        self._symmetries = {k: m.symmetry_transforms() for k, m in models.items()}
        self._history: list[tuple[np.ndarray, PinholeCamera]] | None = None  # frames since an initialiser started

    def reset(self) -> None:
        """Forget every track (ids start again at 1)."""
        self.tracks, self.frame_index, self._next_id, self._instances = [], 0, 1, {}
        self._last_initialised, self._history = 0, None

    def update(self, rgb: np.ndarray, camera: PinholeCamera, initialise: Initialiser) -> TrackerStep:
        """Track every instance into `rgb` (H, W, 3) uint8; run `initialise` when a track is needed."""
        self._track_all(rgb, camera)
        need = self.wants_initialisation()
        started: set[int] = set()
        if need:
            self.initialisation_started()
            started = self._initialise(initialise(), rgb, camera)
        return self._finish(need, started)

    def step(self, rgb: np.ndarray, camera: PinholeCamera,
             initialised: Initialisation | None = None) -> TrackerStep:
        """Track every instance into `rgb` (H, W, 3) uint8, then apply `initialised`, the estimates an initialiser
        made on an earlier frame (run apart, e.g. in another process, while this one kept tracking).

        Those estimates start or re-initialise tracks as `update`'s do, with the colour statistics of the frame
        they were made on; each such track is then carried from the estimated pose through the frames kept since
        the initialiser started (`catch_up_frames`, thinned) and the frames that come meanwhile,
        `catch_up_per_frame` of them per call, and is output (method "estimate") once it has reached the present:
        every output pose is of this frame. The caller starts an initialiser when `wants_initialisation()` (and
        says so with `initialisation_started()`).
        """
        self._track_all(rgb, camera)
        started: set[int] = set()
        if initialised is not None:
            started = self._initialise(initialised.estimates, initialised.rgb, initialised.camera)
            for track in self.tracks:
                if track.track_id in started:
                    track.behind = list(self._history or [])
            self._history = None
        elif self._history is not None:
            self._keep(rgb, camera)
        return self._finish(initialised is not None, self._catch_up(rgb, camera, started))

    def _catch_up(self, rgb: np.ndarray, camera: PinholeCamera, started: set[int]) -> set[int]:
        """Carry the tracks that are behind (and those just `started`) through up to `catch_up_per_frame` of their
        frames, this one queued last; the ids of those that reached the present (output as "estimate")."""
        arrived: set[int] = set()
        for track in self.tracks:
            if not track.behind and track.track_id not in started:
                continue
            track.behind.append((rgb, camera))
            for _ in range(self.config.catch_up_per_frame):
                if not track.behind or track.state is not TrackState.TRACKED:
                    break
                self._track(track, *track.behind.pop(0))
            if track.state is not TrackState.TRACKED:
                track.behind = []
            elif not track.behind:
                track.age = 0  # counted from this frame, like a track started on it
                arrived.add(track.track_id)
        return arrived

    def _keep(self, rgb: np.ndarray, camera: PinholeCamera) -> None:
        """Remember a frame for the catch-up, at most `catch_up_frames`: when full, every other one is dropped
        (the newest kept), so the frames stay spread over the whole wait."""
        self._history.append((rgb, camera))
        if len(self._history) > self.config.catch_up_frames:
            self._history = self._history[::-2][::-1]

    def wants_initialisation(self) -> bool:
        """True when an initialiser should run: no track, a lost one (every `reinit_period` frames) or a periodic
        re-detection is due."""
        cfg = self.config
        since = self.frame_index - self._last_initialised
        if any(t.behind for t in self.tracks):
            return False  # not before the tracks it started are current: a new one would estimate them again
        return (not any(t.state is TrackState.TRACKED for t in self.tracks)
                or (any(t.state is TrackState.LOST for t in self.tracks) and since >= cfg.reinit_period)
                or (cfg.redetect_period > 0 and since >= cfg.redetect_period))

    def initialisation_started(self) -> None:
        """Note that an initialiser runs from this frame on (the periods count from here; for `step`, the frames
        after it are kept for the catch-up)."""
        self._last_initialised = self.frame_index
        self._history = []

    def _track_all(self, rgb: np.ndarray, camera: PinholeCamera) -> None:
        """Refine every tracked instance into the frame; try recently lost ones from their last good pose."""
        cfg = self.config
        for track in self.tracks:
            if track.behind:
                continue
            if track.state is TrackState.TRACKED:
                self._track(track, rgb, camera)
            elif track.good_pose is not None and self.frame_index - track.lost_since <= cfg.resume_frames:
                self._resume(track, rgb, camera)

    def _finish(self, initialised: bool, started: set[int]) -> TrackerStep:
        """Drop unconfirmed and forgotten tracks, count the frame, and say what it did."""
        cfg = self.config
        # A track lost within confirm_frames of its start was a wrong estimate or a false detection: dropped, not
        # looked for again (each look costs an initialisation).
        self.tracks = [t for t in self.tracks if t.state is TrackState.TRACKED
                       or (t.age >= cfg.confirm_frames and self.frame_index - t.lost_since < cfg.forget_frames)]
        self.frame_index += 1
        poses = [TrackedPose(t.track_id, t.object_id, t.instance, t.T_cam_obj, t.score, t.state,
                             "estimate" if t.track_id in started else "track")
                 for t in self.tracks if t.state is TrackState.TRACKED and not t.behind]
        return TrackerStep(poses, initialised, list(self.tracks))

    def explained(self, camera: PinholeCamera) -> Explained:
        """The tracked instances' projected boxes now, as a (picklable) selector of the detections they do not
        explain (see `TrackerConfig.explained_iou`)."""
        boxes = tuple((t.object_id, self._projected_box(t, camera)) for t in self.tracks
                      if t.state is TrackState.TRACKED and not t.behind)
        return Explained(boxes, self.config.explained_iou)

    def unexplained(self, detections: Sequence[Detection], camera: PinholeCamera) -> list[Detection]:
        """The detections no tracked instance explains (see `TrackerConfig.explained_iou`): the ones to estimate."""
        return self.explained(camera)(detections)

    def _projected_box(self, track: Track, camera: PinholeCamera) -> np.ndarray:
        """(x0, y0, x1, y1) px around the track's model vertices projected at its pose."""
        vertices = np.asarray(self.models[track.object_id].vertices, dtype=np.float64)
        uv = camera.project(transform_points(track.T_cam_obj, vertices[:: max(1, len(vertices) // 500)]))
        return np.concatenate([uv.min(axis=0), uv.max(axis=0)])

    def _track(self, track: Track, rgb: np.ndarray, camera: PinholeCamera) -> None:
        """Refine one tracked instance into the new frame and update its state."""
        cfg = self.config
        start = track.T_cam_obj
        if cfg.constant_velocity and track.previous is not None:
            start = (track.T_cam_obj @ invert_pose(track.previous)) @ track.T_cam_obj
        others = [(t.object_id, t.T_cam_obj) for t in self.tracks
                  if t is not track and t.state is TrackState.TRACKED and not t.behind]
        refined = self.refiner.track(track.refiner_state, rgb, camera, start, others)
        track.previous = track.T_cam_obj
        track.T_cam_obj = self._closest_equivalent(track.object_id, refined.T_cam_obj, track.T_cam_obj)
        track.score = refined.score
        track.age += 1
        track.low_frames = track.low_frames + 1 if refined.score < cfg.lost_score else 0
        if track.low_frames == 0 and cfg.resume_frames > 0:
            track.good_pose, track.good_state = track.T_cam_obj, self.refiner.copy_state(track.refiner_state)
        if refined.visible < cfg.min_visible or track.low_frames >= cfg.lost_frames:
            track.state, track.lost_since = TrackState.LOST, self.frame_index
            logger.debug("track %d (object %d) lost: score %.2f, visible %.2f", track.track_id, track.object_id,
                         refined.score, refined.visible)

    def _resume(self, track: Track, rgb: np.ndarray, camera: PinholeCamera) -> None:
        """Try a lost track from its last good pose and appearance; tracked again if it scores resume_score."""
        cfg = self.config
        trial = self.refiner.copy_state(track.good_state)
        others = [(t.object_id, t.T_cam_obj) for t in self.tracks if t.state is TrackState.TRACKED]
        refined = self.refiner.track(trial, rgb, camera, track.good_pose, others)
        if refined.visible >= cfg.min_visible and refined.score >= cfg.resume_score:
            track.T_cam_obj = self._closest_equivalent(track.object_id, refined.T_cam_obj, track.good_pose)
            track.refiner_state, track.previous, track.score = trial, None, refined.score
            track.state, track.low_frames = TrackState.TRACKED, 0
            logger.debug("track %d (object %d) resumed: score %.2f", track.track_id, track.object_id, refined.score)

    def _initialise(self, estimates: Sequence[PoseEstimate], rgb: np.ndarray, camera: PinholeCamera) -> set[int]:
        """Start or re-initialise tracks from the initialiser's estimates; the ids of the tracks (re)started."""
        started: set[int] = set()
        for estimate in sorted(estimates, key=lambda e: -e.score):
            usable = estimate.found and estimate.score >= self.config.min_init_score
            if not usable or estimate.object_id not in self.models:
                continue
            radius = self.config.match_distance * self.models[estimate.object_id].diameter
            same = [t for t in self.tracks if t.object_id == estimate.object_id]
            t_new = estimate.T_cam_obj[:3, 3]

            def distance(track: Track) -> float:
                return float(np.linalg.norm(track.T_cam_obj[:3, 3] - t_new))
            if any(t.state is TrackState.TRACKED and distance(t) < radius for t in same):
                continue  # an instance already tracked (or just started from a better estimate)
            lost = [t for t in same if t.state is TrackState.LOST]
            track = min(lost, key=distance) if lost else None
            if track is None:
                instance = self._instances.get(estimate.object_id, 0)
                track = Track(self._next_id, estimate.object_id, instance, estimate.T_cam_obj, estimate.score)
                self._next_id += 1
                self._instances[estimate.object_id] = instance + 1
                self.tracks.append(track)
            T = estimate.T_cam_obj if track.state is TrackState.TRACKED else self._closest_equivalent(
                estimate.object_id, estimate.T_cam_obj, track.T_cam_obj)
            self._start(track, T, estimate.score, rgb, camera)
            started.add(track.track_id)
        return started

    def _start(self, track: Track, T_cam_obj: np.ndarray, score: float, rgb: np.ndarray,
               camera: PinholeCamera) -> None:
        """(Re)start `track` at T_cam_obj (4, 4) in this frame."""
        track.T_cam_obj, track.previous, track.score = T_cam_obj, None, score
        track.state, track.low_frames, track.age = TrackState.TRACKED, 0, 0
        track.refiner_state = self.refiner.start(track.object_id, rgb, camera, T_cam_obj)

    def restart(self, track_id: int, object_id: int, T_cam_obj: np.ndarray, rgb: np.ndarray,
                camera: PinholeCamera) -> None:
        """Put track `track_id` at T_cam_obj (4, 4) in the frame `rgb` just tracked, re-adding it if it was dropped:
        RBOT's "reset to the ground truth on failure", for benchmarks."""
        track = next((t for t in self.tracks if t.track_id == track_id), None)
        if track is None:
            instance = self._instances.get(object_id, 0)
            self._instances[object_id] = instance + 1
            track = Track(track_id, object_id, instance, T_cam_obj, 1.0)
            self.tracks.append(track)
        self._start(track, T_cam_obj, 1.0, rgb, camera)

    def _closest_equivalent(self, object_id: int, T: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """T's symmetric equivalent closest to `reference` for this object."""
        return closest_equivalent(T, reference, self._symmetries[object_id])


def closest_equivalent(T: np.ndarray, reference: np.ndarray, symmetries: np.ndarray) -> np.ndarray:
    """Of T's (4, 4) equivalents T S over `symmetries` (K, 4, 4), the one whose rotation is closest to `reference`."""
    if len(symmetries) == 1:
        return T
    candidates = T @ symmetries
    # trace(R_ref^T R_k) grows as the angle between them shrinks.
    traces = np.einsum("ij,kij->k", reference[:3, :3], candidates[:, :3, :3])
    return candidates[int(np.argmax(traces))]


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0

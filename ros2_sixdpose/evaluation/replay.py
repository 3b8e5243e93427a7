"""Scoring a replay, with no ROS: what the nodes answered to a played bag, how fast, and how well.

A replay (`sixdpose replay`) leaves three things: the input bag (camera frames and ground truth), the
player's log of when each image was published (`published.json`), and the output bag the recorder wrote
(every output topic; each message's bag time is when the recorder received it). From them:

- frames sent: images the player published; frames received: images the nodes took in, as their
  /diagnostics count them (the fewest over the nodes, since each must see the frame); frames answered:
  sent images for which an ObjectPoseArray of the same header stamp came back;
- end-to-end latency: output receive time - input publish time, per answered frame (both wall-clock
  times of the replay process, which publishes and records);
- pose accuracy: the answered poses against the bag's ground truth, matched by header stamp, scored by
  `ros2_sixdpose.evaluation.scoring.Evaluator` (the frames sent are the test images; a frame without an answer
  scores as misses). VSD is computed when the bag has depth;
- sequence metrics, when the bag's folder holds the sequence's scene_sequence.json (`sixdpose synth --sequence`
  then `sixdpose bag`): ADD(-S) recall and RBOT success over every frame sent, drift, re-acquisition after full
  occlusions and jitter while still (`ros2_sixdpose.evaluation.sequence_metrics`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader

from ros2_sixdpose.core.messages import instance_poses_from_msg, stamp_ns
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import Renderer
from ros2_sixdpose.data.bags import BagFrame, BagTopics, read_bag
from ros2_sixdpose.data.bop import GtInstance, PoseResult
from ros2_sixdpose.data.msg_types import typestore
from ros2_sixdpose.data.sequence_annotation import SEQUENCE_FILE, SequenceAnnotation, read_sequence_annotation
from ros2_sixdpose.evaluation.scoring import EvalConfig, EvalImage, EvalReport, Evaluator
from ros2_sixdpose.evaluation.sequence_metrics import InstanceSeries, SequenceMetrics, build_series, summarise
from ros2_sixdpose.topics import DIAGNOSTICS_TOPIC, FRAME_COUNT_KEYS, POSES_TOPIC

PUBLISHED_FILE = "published.json"
# Depth tolerance of a visible surface point (BOP's calc_gt_info uses 15 mm).
VISIB_DELTA_M = 0.015


@dataclass(frozen=True)
class PublishedFrame:
    """An image the player published."""

    stamp_ns: int  # its header stamp
    published_ns: int  # wall-clock time of publishing, ns since the epoch


@dataclass(frozen=True)
class EstimatedPose:
    """One pose of a received ObjectPoseArray."""

    obj_id: int
    score: float
    T_cam_obj: np.ndarray  # (4, 4) float64, metres, object -> camera


@dataclass(frozen=True)
class Answer:
    """One ObjectPoseArray the recorder received."""

    stamp_ns: int  # header stamp: the stamp of the image it answers
    received_ns: int  # wall-clock receive time, ns since the epoch
    poses: tuple[EstimatedPose, ...]


@dataclass(frozen=True)
class NodeCounts:
    """Frame counters of one node, from its latest DiagnosticStatus."""

    received: int
    answered: int
    rejected: int


@dataclass(frozen=True)
class Latency:
    """End-to-end latency over the answered frames, milliseconds."""

    median_ms: float
    p90_ms: float
    max_ms: float
    n_frames: int


@dataclass
class ReplayMetrics:
    """Everything metrics.json of a replay holds."""

    frames_sent: int
    frames_received: int | None  # None when the nodes' diagnostics do not say
    frames_answered: int
    latency: Latency | None  # None when no frame was answered
    poses: EvalReport | None  # None without ground truth
    nodes: dict[str, NodeCounts] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sequence: SequenceMetrics | None = None  # None without the sequence's annotation

    def to_dict(self) -> dict[str, Any]:
        """metrics.json: frame counts, latency, then the evaluator's keys (as `sixdpose eval` writes them)."""
        pose_keys = self.poses.to_dict() if self.poses is not None else {
            "n_instances": 0, "add_s_recall": None, "ar_mssd": None, "ar_mspd": None, "ar_vsd": None, "ar": None,
            "per_object": {},
        }
        notes = list(self.notes) + list(pose_keys.pop("notes", []))
        return {
            "frames_sent": self.frames_sent,
            "frames_received": self.frames_received,
            "frames_answered": self.frames_answered,
            "latency_ms_median": None if self.latency is None else self.latency.median_ms,
            "latency_ms_p90": None if self.latency is None else self.latency.p90_ms,
            "latency_ms_max": None if self.latency is None else self.latency.max_ms,
            **pose_keys,
            "nodes": {name: asdict(counts) for name, counts in sorted(self.nodes.items())},
            "sequence": None if self.sequence is None else self.sequence.to_dict(),
            "notes": notes,
        }

    def write_json(self, path: str | Path) -> None:
        """Write `to_dict()` as JSON, creating the folder."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


# ---------------------------------------------------------------- the player's log


def write_published(path: str | Path, frames: Sequence[PublishedFrame]) -> None:
    """Write the player's log: a JSON list of {"stamp_ns", "published_ns"}."""
    Path(path).write_text(json.dumps([asdict(f) for f in frames], indent=1) + "\n")


def read_published(path: str | Path) -> list[PublishedFrame]:
    """Read the player's log written by `write_published`; ValueError naming the file and entry if malformed."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: player's log not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(content, list):
        raise ValueError(f"{path}: expected a list of frames, got {type(content).__name__}")
    frames = []
    for index, entry in enumerate(content):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), int) for k in ("stamp_ns", "published_ns")):
            raise ValueError(f"{path}: entry {index}: expected integers 'stamp_ns' and 'published_ns', got {entry!r}")
        frames.append(PublishedFrame(entry["stamp_ns"], entry["published_ns"]))
    return frames


# ---------------------------------------------------------------- the output bag


def answer_from_msg(msg: Any, received_ns: int) -> Answer:
    """An `Answer` of a deserialised ros2_sixdpose/ObjectPoseArray received at `received_ns`."""
    poses = tuple(EstimatedPose(p.object_id, p.score, p.T_cam_obj) for p in instance_poses_from_msg(msg))
    return Answer(stamp_ns(msg.header.stamp), received_ns, poses)


def counts_from_diagnostics(msg: Any) -> dict[str, NodeCounts]:
    """Frame counters per node of a deserialised DiagnosticArray (statuses named '<node>: ...' with frame keys)."""
    counts = {}
    for status in msg.status:
        values = {kv.key: kv.value for kv in status.values}
        if all(key in values for key in FRAME_COUNT_KEYS.values()) and ":" in status.name:
            node = status.name.split(":", 1)[0]
            counts[node] = NodeCounts(**{field_: int(values[key]) for field_, key in FRAME_COUNT_KEYS.items()})
    return counts


def read_output(path: str | Path) -> tuple[list[Answer], dict[str, NodeCounts]]:
    """The ObjectPoseArrays of an output bag (bag time = receive time) and each node's latest frame counters."""
    store = typestore()
    answers: list[Answer] = []
    nodes: dict[str, NodeCounts] = {}
    with Reader(Path(path)) as reader:
        wanted = [c for c in reader.connections if c.topic in (POSES_TOPIC, DIAGNOSTICS_TOPIC)]
        for connection, received_ns, raw in reader.messages(connections=wanted):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            if connection.topic == POSES_TOPIC:
                answers.append(answer_from_msg(msg, received_ns))
            else:
                nodes.update(counts_from_diagnostics(msg))
    return answers, nodes


# ---------------------------------------------------------------- figures


def first_answers(published: Sequence[PublishedFrame], answers: Iterable[Answer]) -> dict[int, Answer]:
    """The first answer to each published image, by header stamp; answers to other stamps are left out."""
    sent = {frame.stamp_ns for frame in published}
    first: dict[int, Answer] = {}
    for answer in sorted(answers, key=lambda a: a.received_ns):
        if answer.stamp_ns in sent:
            first.setdefault(answer.stamp_ns, answer)
    return first


def latency(published: Sequence[PublishedFrame], answers: Mapping[int, Answer]) -> Latency | None:
    """End-to-end latency of the answered images: first answer's receive time - publish time, ms."""
    published_at = {frame.stamp_ns: frame.published_ns for frame in published}
    ms = [(answer.received_ns - published_at[stamp]) / 1e6 for stamp, answer in answers.items()]
    if not ms:
        return None
    return Latency(float(np.median(ms)), float(np.percentile(ms, 90)), float(np.max(ms)), len(ms))


def frames_received(nodes: Mapping[str, NodeCounts]) -> int | None:
    """Frames every node took in: the fewest `received` over the nodes; None when no node reported."""
    return min((counts.received for counts in nodes.values()), default=None)


def visible_fractions(renderer: Renderer, frame: BagFrame, delta: float = VISIB_DELTA_M) -> list[float]:
    """Visible fraction of each ground-truth instance of `frame`, from its depth image, as BOP's calc_gt_info.

    A silhouette pixel (of the object rendered alone) is visible where the measured depth is missing or
    not more than `delta` metres in front of the rendered surface. The silhouette is rendered on a canvas
    three times the image's size, so the part outside the frame counts as not visible.
    """
    if frame.depth is None or frame.gt is None:
        raise ValueError(f"frame at stamp {frame.stamp_ns} ns: visibility needs depth and ground truth")
    width, height = frame.camera.width, frame.camera.height
    K = frame.K.copy()
    K[0, 2] += width
    K[1, 2] += height
    fractions = []
    for pose in frame.gt:
        rendered = renderer.render(K, 3 * width, 3 * height, [(pose.obj_id, pose.T_cam_obj)], outputs=("depth",)).depth
        total = int(np.count_nonzero(rendered > 0))
        inside = rendered[height:2 * height, width:2 * width]
        visible = (inside > 0) & ((inside - frame.depth <= delta) | (frame.depth <= 0))
        fractions.append(np.count_nonzero(visible) / total if total else 0.0)
    return fractions


def score_poses(
    frames: Sequence[BagFrame],
    answers: Mapping[int, Answer],
    models: Mapping[int, ObjectModel],
    config: EvalConfig,
) -> EvalReport:
    """Score the answered poses against the ground truth of `frames` (image i of scene 0 is frames[i]).

    Every frame must carry ground truth; VSD and a visibility threshold need every frame's depth.
    """
    needs_depth = "vsd" in config.metrics or config.min_visib > 0
    if needs_depth and any(frame.depth is None for frame in frames):
        raise ValueError("VSD and min_visib > 0 need depth in every frame")
    renderer = Renderer(models) if needs_depth else None
    try:
        images, results = [], []
        for im_id, frame in enumerate(frames):
            if frame.gt is None:
                raise ValueError(f"frame at stamp {frame.stamp_ns} ns has no ground truth")
            gt = [GtInstance(pose.obj_id, pose.T_cam_obj) for pose in frame.gt]
            visib = visible_fractions(renderer, frame) if config.min_visib > 0 else None
            images.append(EvalImage(0, im_id, frame.K, frame.camera.width, frame.camera.height, gt, visib,
                                    frame.depth if "vsd" in config.metrics else None))
            answer = answers.get(frame.stamp_ns)
            if answer is not None:
                results += [PoseResult(0, im_id, p.obj_id, p.score, p.T_cam_obj) for p in answer.poses]
        with Evaluator(models, config, renderer) as evaluator:
            return evaluator.evaluate(images, results)
    finally:
        if renderer is not None:
            renderer.close()


def score_replay(
    input_bag: str | Path,
    output_bag: str | Path,
    published: Sequence[PublishedFrame],
    models: Mapping[int, ObjectModel],
    config: EvalConfig | None = None,
    topics: BagTopics = BagTopics(),
) -> ReplayMetrics:
    """Frame counts, latency and pose scores of one replay (see the module's docstring).

    VSD is left out (noted) when the input bag has no depth; without ground truth there are no pose scores.
    """
    config = EvalConfig() if config is None else config
    answers, nodes = read_output(output_bag)
    first = first_answers(published, answers)
    notes = []
    if not nodes:
        notes.append("frames_received unknown: no node reported frame counts on /diagnostics")
    stray = len({a.stamp_ns for a in answers} - {f.stamp_ns for f in published})
    if stray:
        notes.append(f"{stray} answers carry stamps of no published image; left out")
    sent = {frame.stamp_ns for frame in published}
    frames = [frame for frame in read_bag(input_bag, topics) if frame.stamp_ns in sent]
    report = None
    if any(frame.gt is None for frame in frames) or not frames:
        notes.append(f"no pose scores: the bag has no ground truth ({topics.ground_truth}) for every frame sent")
    else:
        if any(frame.depth is None for frame in frames) and ("vsd" in config.metrics or config.min_visib > 0):
            notes.append(f"VSD and visibility not computed: the bag has no depth ({topics.depth}) for every frame")
            config = dataclasses.replace(config, metrics=tuple(m for m in config.metrics if m != "vsd") or ("add",),
                                         min_visib=0.0)
        if config.min_visib > 0:
            notes.append(f"instances less than {config.min_visib:.2f} visible (from the depth images) are left out")
        try:
            report = score_poses(frames, first, models, config)
        except ValueError as exc:  # e.g. no instance at all passes the visibility threshold
            notes.append(f"no pose scores: {exc}")
    sequence = None
    annotation_path = Path(input_bag) / SEQUENCE_FILE
    if report is None or not annotation_path.is_file():
        notes.append(f"no sequence metrics: no ground truth or no {SEQUENCE_FILE} in the bag's folder")
    else:
        sequence = score_sequence(frames, first, annotation_path, models, config.min_visib, notes)
    return ReplayMetrics(
        frames_sent=len(published),
        frames_received=frames_received(nodes),
        frames_answered=len(first),
        latency=latency(published, first),
        poses=report,
        nodes=nodes,
        notes=notes,
        sequence=sequence,
    )


def score_sequence(frames: Sequence[BagFrame], answers: Mapping[int, Answer], annotation_path: Path,
                   models: Mapping[int, ObjectModel], min_visib: float, notes: list[str]) -> SequenceMetrics | None:
    """The sequence metrics of the answers to `frames` (every frame of the bag, in order), or None (noted) when
    the annotation does not describe these frames."""
    annotation = read_sequence_annotation(annotation_path)
    if len(annotation.frames) != len(frames) or any(
            len(a.instances) != len(f.gt or ()) for a, f in zip(annotation.frames, frames)):
        notes.append(f"no sequence metrics: {annotation_path} describes other frames than the ones sent")
        return None
    return summarise(sequence_series(frames, answers, annotation, models, min_visib))


def sequence_series(frames: Sequence[BagFrame], answers: Mapping[int, Answer], annotation: SequenceAnnotation,
                    models: Mapping[int, ObjectModel], min_visib: float) -> list[InstanceSeries]:
    """Each annotated instance's per-frame errors of the answers to `frames` (every frame of the bag, in order)."""
    gt = [[(g.obj_id, g.T_cam_obj) for g in frame.gt or ()] for frame in frames]
    estimates = [[(p.obj_id, p.T_cam_obj) for p in answers[frame.stamp_ns].poses] if frame.stamp_ns in answers
                 else [] for frame in frames]
    return build_series(gt, estimates, annotation, models, min_visib)


def _figure(value: float | None, digits: int = 3) -> str:
    """A figure with `digits` decimals, "-" for None or NaN."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_table(metrics: ReplayMetrics) -> str:
    """A plain-text table of a replay's figures (frames, latency, recalls overall and per object)."""
    received = "?" if metrics.frames_received is None else str(metrics.frames_received)
    lines = [f"frames sent {metrics.frames_sent}, received by the nodes {received}, answered {metrics.frames_answered}"]
    if metrics.latency is not None:
        lat = metrics.latency
        lines.append(f"end-to-end latency: median {lat.median_ms:.1f} ms, p90 {lat.p90_ms:.1f} ms, "
                     f"max {lat.max_ms:.1f} ms ({lat.n_frames} frames)")
    if metrics.poses is not None:
        report = metrics.poses
        lines.append(f"{'object':<16}{'instances':>10}{'ADD(-S)':>9}{'AR_MSSD':>9}{'AR_MSPD':>9}{'AR_VSD':>9}{'AR':>7}")
        rows = [(f"{obj_id} {report.object_names[obj_id]}", s) for obj_id, s in report.per_object.items()]
        for name, s in rows + [("all", report.overall)]:
            lines.append(f"{name:<16}{s.n_instances:>10}{_figure(s.add_s_recall):>9}{_figure(s.ar_mssd):>9}"
                         f"{_figure(s.ar_mspd):>9}{_figure(s.ar_vsd):>9}{_figure(s.ar):>7}")
    if metrics.sequence is not None:
        lines += format_sequence(metrics.sequence)
    lines += [f"note: {note}" for note in metrics.notes + (metrics.poses.notes if metrics.poses else [])]
    return "\n".join(lines)


def format_sequence(seq: SequenceMetrics) -> list[str]:
    """Lines of the sequence metrics: all frames at the pace they were sent, unanswered ones as failures."""
    return [
        f"sequence ({seq.instances} instances, {seq.instance_frames} instance-frames, every frame sent counts): "
        f"ADD(-S) {_figure(seq.add_s_recall)}, RBOT (5 deg, 5 cm) {_figure(seq.rbot_success)}",
        f"  drift per 100 frames {_figure(seq.drift_mm_per_100, 1)} mm, {_figure(seq.drift_deg_per_100, 2)} deg; "
        f"jitter while still {_figure(seq.jitter_mm, 2)} mm, {_figure(seq.jitter_deg, 2)} deg ({seq.still_runs} runs)",
        f"  full occlusions {seq.occlusions}, re-acquired {seq.reacquired}: median "
        f"{_figure(seq.reacquisition_s_median, 2)} s, max {_figure(seq.reacquisition_s_max, 2)} s",
    ]

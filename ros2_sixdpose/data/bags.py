"""rosbag2 sequences: write a BOP scene as camera topics plus ground truth, and read camera bags back as frames.

Written and read with `rosbags` (no ROS install needed); the bags follow the standard rosbag2 layout
(metadata.yaml, sqlite3 or MCAP storage, message definitions and RIHS01 type hashes stored), so ROS 2's
own rosbag2 plays them. Topics and encodings follow the RealSense driver's names and REP 118:

- `sensor_msgs/Image` rgb8 on `/camera/color/image_raw`,
- `sensor_msgs/CameraInfo` (plumb_bob, zero distortion) on `/camera/color/camera_info`,
- `sensor_msgs/Image` 32FC1 metres (NaN = no measurement) on `/camera/aligned_depth_to_color/image_raw`,
- `ros2_sixdpose/ObjectPoseArray` on `/sixdpose/ground_truth`,

all with the header stamp of the image (from scene_times.json) and frame id `camera_color_optical_frame`.
A synthesised sequence's scene_sequence.json (`data.sequence_annotation`) is copied into the bag's folder.
The image converters accept rosbags and rclpy messages alike (both have the same fields).
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.messages import (
    NS_PER_S, camera_from_info, camera_info_fields, depth_fields, depth_from_image, image_fields, instance_poses_from_msg,
    pose_parts, rgb_from_image, stamp_ns, stamp_parts,
)
from ros2_sixdpose.core.objects import model_names
from ros2_sixdpose.data.bop import BopSplit, read_depth, read_rgb
from ros2_sixdpose.data.msg_types import typestore
from ros2_sixdpose.data.sequence_annotation import SEQUENCE_FILE
from ros2_sixdpose.topics import CAMERA_INFO_TOPIC, DEPTH_TOPIC, GROUND_TRUTH_TOPIC, IMAGE_TOPIC

logger = logging.getLogger(__name__)

__all__ = [
    "BagError",
    "BagFrame",
    "BagTopics",
    "GtPose",
    "OPTICAL_FRAME",
    "WrittenBag",
    "read_bag",
    "read_scene_times",
    "write_bag",
]

OPTICAL_FRAME = "camera_color_optical_frame"
DEFAULT_RATE_HZ = 30.0  # frame rate assumed for a scene without scene_times.json
SCENE_TIMES_FILE = "scene_times.json"
STORAGE_PLUGINS = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
GROUND_TRUTH_METHOD = "ground_truth"
# Scene times start at 0 s, but a zero stamp means "the latest transform" to tf2: bags start at a fixed,
# ordinary epoch time instead (2020-09-13T12:26:40Z), the same for every scene so runs are reproducible.
STAMP_BASE_NS = 1_600_000_000 * NS_PER_S
# A frame still missing a message once stamps this far past it have been read is given out as it is.
MAX_DELAY_NS = NS_PER_S

MSG_IMAGE = "sensor_msgs/msg/Image"
MSG_CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
MSG_POSE_ARRAY = "ros2_sixdpose/msg/ObjectPoseArray"

class BagError(ValueError):
    """A bag cannot be used: unreadable, missing expected topics, or holding messages of unknown encodings."""


@dataclass(frozen=True)
class BagTopics:
    """Topic names of a camera bag (defaults: the RealSense driver's and the project's ground truth)."""

    rgb: str = IMAGE_TOPIC
    camera_info: str = CAMERA_INFO_TOPIC
    depth: str = DEPTH_TOPIC
    ground_truth: str = GROUND_TRUTH_TOPIC


@dataclass(frozen=True)
class GtPose:
    """One ground-truth object pose of a bag frame."""

    obj_id: int
    name: str
    instance: int  # index among the instances of the same object in the frame
    T_cam_obj: np.ndarray  # (4, 4) float64, metres, object -> camera


@dataclass(frozen=True)
class BagFrame:
    """One camera frame read from a bag.

    Attributes:
        rgb: (H, W, 3) uint8 RGB.
        camera: intrinsics and distortion of the image (from CameraInfo).
        stamp_ns: header stamp, nanoseconds.
        frame_id: the camera's optical frame.
        depth: (H, W) float32 metres, 0 where there is no measurement; None when the bag has none for it.
        gt: ground-truth poses; None when the bag has no ground truth for this frame.
    """

    rgb: np.ndarray
    camera: PinholeCamera
    stamp_ns: int
    frame_id: str
    depth: np.ndarray | None = None
    gt: tuple[GtPose, ...] | None = None

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsics in pixels."""
        return self.camera.K

    @property
    def stamp(self) -> float:
        """Header stamp in seconds."""
        return self.stamp_ns / NS_PER_S


@dataclass(frozen=True)
class WrittenBag:
    """What `write_bag` wrote."""

    path: Path
    frames: int
    duration_s: float
    topics: tuple[str, ...]


# ---------------------------------------------------------------- rosbags messages (fields from core.messages)


def _header(stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header with a stamp in nanoseconds."""
    types = typestore().types
    sec, nanosec = stamp_parts(stamp_ns)
    return types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                       frame_id=frame_id)


def _image_msg(fields: dict[str, Any], header: Any) -> Any:
    """sensor_msgs/Image of `core.messages.image_fields` output."""
    return typestore().types[MSG_IMAGE](header=header, **fields)


def _camera_info_msg(camera: PinholeCamera, header: Any) -> Any:
    """sensor_msgs/CameraInfo of an undistorted camera (no region of interest)."""
    types = typestore().types
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types[MSG_CAMERA_INFO](header=header, roi=roi, **camera_info_fields(camera))


def _pose_array_msg(gt: list[GtPose], header: Any) -> Any:
    """ros2_sixdpose/ObjectPoseArray of ground-truth poses (score 1, method "ground_truth")."""
    types = typestore().types
    poses = []
    for pose in gt:
        (x, y, z), (qx, qy, qz, qw) = pose_parts(pose.T_cam_obj)
        poses.append(types["ros2_sixdpose/msg/ObjectPose"](
            object_id=pose.obj_id, object_name=pose.name, instance=pose.instance, score=1.0,
            method=GROUND_TRUTH_METHOD,
            pose=types["geometry_msgs/msg/Pose"](
                position=types["geometry_msgs/msg/Point"](x=x, y=y, z=z),
                orientation=types["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
            ),
            covariance=np.zeros(36),
        ))
    return types[MSG_POSE_ARRAY](header=header, poses=poses)


def _gt_from_msg(msg: Any) -> tuple[GtPose, ...]:
    """Ground-truth poses of a ros2_sixdpose/ObjectPoseArray."""
    return tuple(GtPose(p.object_id, p.name, p.instance, p.T_cam_obj) for p in instance_poses_from_msg(msg))


# ---------------------------------------------------------------- writing


def read_scene_times(path: str | Path, im_ids: list[int]) -> dict[int, float]:
    """Per image id, the time in seconds from scene_times.json ({"im_id": seconds}); must cover `im_ids`, increasing."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected an object keyed by image id, got {type(content).__name__}")
    times = {}
    for im_id in im_ids:
        value = content.get(str(im_id))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{path}: image {im_id}: expected a time >= 0 in seconds, got {value!r}")
        times[im_id] = float(value)
    ordered = [times[i] for i in sorted(im_ids)]
    if any(b <= a for a, b in zip(ordered, ordered[1:])):
        raise ValueError(f"{path}: times must increase with the image id")
    return times


def scene_stamps(split: BopSplit, scene_id: int, im_ids: list[int]) -> dict[int, int]:
    """Header stamps (ns) of a scene's images: STAMP_BASE_NS + scene_times.json, else + image id / 30 Hz."""
    path = split.scene_dir(scene_id) / SCENE_TIMES_FILE
    if path.is_file():
        times = read_scene_times(path, im_ids)
    else:
        logger.info("%s not found: stamping images at %.0f Hz by image id", path, DEFAULT_RATE_HZ)
        times = {im_id: im_id / DEFAULT_RATE_HZ for im_id in im_ids}
    return {im_id: STAMP_BASE_NS + round(t * NS_PER_S) for im_id, t in times.items()}


def write_bag(
    split: BopSplit,
    scene_id: int,
    out: str | Path,
    storage: str = "sqlite3",
    models_dir: str | Path | None = None,
    topics: BagTopics = BagTopics(),
) -> WrittenBag:
    """Write one scene of a BOP split as a rosbag2 at `out` (a new folder): rgb, camera info, depth and ground truth.

    Depth is written when the scene has depth images. Object names come from `models_dir` (default: the
    data set's `models/`). Raises ValueError for an unknown scene or storage, FileExistsError when `out`
    exists, and OSError naming `out` when it cannot be created; a bag left half-written is removed.
    """
    if storage not in STORAGE_PLUGINS:
        raise ValueError(f"storage must be one of {sorted(STORAGE_PLUGINS)}, got {storage!r}")
    scenes = split.scene_ids()
    if scene_id not in scenes:
        raise ValueError(f"scene {scene_id} is not in {split.path} (scenes there: {scenes})")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; a rosbag2 is written to a new folder")
    annotations = split.read_scene(scene_id)
    im_ids = sorted(annotations.camera)
    stamps = scene_stamps(split, scene_id, im_ids)
    names = model_names(Path(models_dir) if models_dir is not None else split.models_dir)
    for im_id, instances in annotations.gt.items():
        unknown = sorted({inst.obj_id for inst in instances} - set(names))
        if unknown:
            raise ValueError(f"{split.scene_gt_path(scene_id)}: image {im_id}: object ids {unknown} "
                             f"are not in the models folder (ids there: {sorted(names)})")
    with_depth = (split.scene_dir(scene_id) / "depth").is_dir()

    store = typestore()
    writer = Writer(out, version=9, storage_plugin=STORAGE_PLUGINS[storage])
    try:
        writer.open()
    except (OSError, WriterError) as exc:
        raise OSError(f"{out}: cannot create the bag ({exc})") from exc
    try:
        # Given the typestore, rosbags stores each type's definition and its RIHS01 hash (the same as colcon's).
        def connect(topic: str, msgtype: str) -> Any:
            return writer.add_connection(topic, msgtype, typestore=store)

        image_conn = connect(topics.rgb, MSG_IMAGE)
        info_conn = connect(topics.camera_info, MSG_CAMERA_INFO)
        depth_conn = connect(topics.depth, MSG_IMAGE) if with_depth else None
        gt_conn = connect(topics.ground_truth, MSG_POSE_ARRAY)
        for im_id in im_ids:
            stamp = stamps[im_id]
            header = _header(stamp, OPTICAL_FRAME)
            cam = annotations.camera[im_id]
            rgb = read_rgb(split.rgb_path(scene_id, im_id))
            camera = PinholeCamera(cam.K, rgb.shape[1], rgb.shape[0])
            writer.write(info_conn, stamp, store.serialize_cdr(_camera_info_msg(camera, header), MSG_CAMERA_INFO))
            writer.write(image_conn, stamp, store.serialize_cdr(_image_msg(image_fields(rgb, "rgb8"), header), MSG_IMAGE))
            if depth_conn is not None:
                depth = read_depth(split.depth_path(scene_id, im_id), cam.depth_scale)
                writer.write(depth_conn, stamp, store.serialize_cdr(_image_msg(depth_fields(depth), header), MSG_IMAGE))
            counts: dict[int, int] = {}
            gt = []
            for inst in annotations.gt.get(im_id, []):
                gt.append(GtPose(inst.obj_id, names[inst.obj_id], counts.get(inst.obj_id, 0), inst.T_cam_obj))
                counts[inst.obj_id] = counts.get(inst.obj_id, 0) + 1
            writer.write(gt_conn, stamp, store.serialize_cdr(_pose_array_msg(gt, header), MSG_POSE_ARRAY))
        writer.close()
        # The sequence metrics' annotation travels with the bag (rosbag2 readers ignore files they do not list).
        annotation = split.scene_dir(scene_id) / SEQUENCE_FILE
        if annotation.is_file():
            shutil.copyfile(annotation, out / SEQUENCE_FILE)
    except BaseException:
        writer.abort()
        shutil.rmtree(out, ignore_errors=True)
        raise
    written = tuple(c.topic for c in (image_conn, info_conn, depth_conn, gt_conn) if c is not None)
    duration = (stamps[im_ids[-1]] - stamps[im_ids[0]]) / NS_PER_S if im_ids else 0.0
    logger.info("wrote %s: %d frames, %.2f s, topics %s", out, len(im_ids), duration, ", ".join(written))
    return WrittenBag(path=out, frames=len(im_ids), duration_s=duration, topics=written)


# ---------------------------------------------------------------- reading


class _FrameAssembler:
    """Groups the messages of one header stamp into a frame and gives frames out in stamp order.

    A frame is complete with its image, the camera info of the same stamp, and depth / ground truth when
    the bag has those topics. One still incomplete once stamps MAX_DELAY_NS later have arrived is given
    out with what it has (the latest camera info, no depth / ground truth); one with no image is dropped.
    """

    def __init__(self, has_depth: bool, has_gt: bool) -> None:
        self.needed = {"rgb", "camera"} | ({"depth"} if has_depth else set()) | ({"gt"} if has_gt else set())
        self.pending: dict[int, dict[str, Any]] = {}
        self.latest_camera: PinholeCamera | None = None
        self.newest_ns = 0
        self.incomplete = 0

    def add(self, kind: str, stamp_ns: int, value: Any) -> Iterator[BagFrame]:
        """Record one decoded message; yield the frames it completes or makes stale."""
        if kind == "camera":
            self.latest_camera = value
        self.pending.setdefault(stamp_ns, {})[kind] = value
        self.newest_ns = max(self.newest_ns, stamp_ns)
        yield from self._release(final=False)

    def finish(self) -> Iterator[BagFrame]:
        """Yield every frame still pending."""
        yield from self._release(final=True)
        if self.incomplete:
            logger.warning("%d frames lacked camera info, depth or ground truth of their own stamp", self.incomplete)

    def _release(self, final: bool) -> Iterator[BagFrame]:
        """Yield pending frames, oldest first, while the oldest is complete or stale."""
        while self.pending:
            stamp = min(self.pending)
            parts = self.pending[stamp]
            if not (final or self.needed <= parts.keys() or self.newest_ns - stamp > MAX_DELAY_NS):
                return
            del self.pending[stamp]
            camera = parts.get("camera", self.latest_camera)
            if "rgb" not in parts or camera is None:
                continue
            if not self.needed <= parts.keys():
                self.incomplete += 1
            rgb, frame_id = parts["rgb"]
            if rgb.shape[:2] != (camera.height, camera.width):
                raise BagError(f"image at stamp {stamp} ns is {rgb.shape[1]}x{rgb.shape[0]}, "
                               f"its camera info says {camera.width}x{camera.height}")
            depth = parts.get("depth")
            if depth is not None and depth.shape != rgb.shape[:2]:
                raise BagError(f"depth at stamp {stamp} ns is {depth.shape[1]}x{depth.shape[0]}, "
                               f"the image {rgb.shape[1]}x{rgb.shape[0]}")
            yield BagFrame(rgb=rgb, camera=camera, stamp_ns=stamp, frame_id=frame_id, depth=depth, gt=parts.get("gt"))


def read_bag(path: str | Path, topics: BagTopics = BagTopics()) -> Iterator[BagFrame]:
    """Open a rosbag2 and iterate over its camera frames in stamp order (see `BagFrame`).

    The image and camera-info topics are required; depth and ground truth are read when present.
    Raises, on the call: FileNotFoundError for a missing path, BagError for an unreadable bag or one
    without the expected topics (or with them of another type); while iterating: BagError for a corrupt
    message or an unsupported encoding, naming the topic.
    """
    path = Path(path)
    reader = _open(path)
    try:
        kinds = _select_topics(path, reader, topics)
    finally:
        reader.close()
    return _frames(path, kinds)


def _open(path: Path) -> Reader:
    """An open rosbags Reader of `path`, with errors that name it."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: bag not found")
    if not (path.is_dir() or path.suffix in (".db3", ".mcap")):
        raise BagError(f"{path}: not a rosbag2 (a folder with metadata.yaml, or a .db3 / .mcap file)")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises ReaderError, but sqlite / mcap / yaml errors leak from corrupt files
        raise BagError(f"{path}: not a readable rosbag2 ({type(exc).__name__}: {exc})") from exc
    return reader


def _select_topics(path: Path, reader: Reader, topics: BagTopics) -> dict[str, str]:
    """Topic per kind (rgb, camera, depth, gt) found in the bag, checked for presence and message type."""
    wanted = {
        "rgb": (topics.rgb, MSG_IMAGE, True),
        "camera": (topics.camera_info, MSG_CAMERA_INFO, True),
        "depth": (topics.depth, MSG_IMAGE, False),
        "gt": (topics.ground_truth, MSG_POSE_ARRAY, False),
    }
    present = {c.topic: c.msgtype for c in reader.connections}
    selected: dict[str, str] = {}
    for kind, (topic, msgtype, required) in wanted.items():
        if topic not in present:
            if required:
                listing = ", ".join(f"{t} ({m})" for t, m in sorted(present.items())) or "none"
                raise BagError(f"{path}: no {topic} ({msgtype}) topic; the bag has: {listing}")
            continue
        if present[topic] != msgtype:
            raise BagError(f"{path}: topic {topic} holds {present[topic]}, expected {msgtype}")
        selected[kind] = topic
    return selected


def _frames(path: Path, kinds: dict[str, str]) -> Iterator[BagFrame]:
    """Decode the messages of the topics in `kinds` and assemble them into frames."""
    kind_of_topic = {topic: kind for kind, topic in kinds.items()}
    assembler = _FrameAssembler(has_depth="depth" in kinds, has_gt="gt" in kinds)
    store = typestore()
    reader = _open(path)
    try:
        connections = [c for c in reader.connections if c.topic in kind_of_topic]
        for connection, _, raw in reader.messages(connections=connections):
            kind = kind_of_topic[connection.topic]
            try:
                msg = store.deserialize_cdr(raw, connection.msgtype)
                value = _decode(kind, msg)
            except BagError as exc:
                raise BagError(f"{path}: {connection.topic}: {exc}") from exc
            except Exception as exc:  # a truncated or garbled payload fails anywhere in the decoder
                raise BagError(f"{path}: {connection.topic}: cannot decode message "
                               f"({type(exc).__name__}: {exc})") from exc
            yield from assembler.add(kind, stamp_ns(msg.header.stamp), value)
        yield from assembler.finish()
    except ReaderError as exc:
        raise BagError(f"{path}: corrupt bag ({exc})") from exc
    finally:
        reader.close()


def _decode(kind: str, msg: Any) -> Any:
    """The value a frame keeps from one deserialised message of `kind`; BagError for an unusable message."""
    try:
        if kind == "rgb":
            return rgb_from_image(msg), str(msg.header.frame_id)
        if kind == "camera":
            return camera_from_info(msg)
        if kind == "depth":
            return depth_from_image(msg)
    except ValueError as exc:
        raise BagError(str(exc)) from exc
    return _gt_from_msg(msg)

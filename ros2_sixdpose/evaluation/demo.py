"""The demo's sequence and pictures (`sixdpose demo`): the object gallery, the synthesised test sequence (with its
events: a camera stop, a moved object, a full occlusion, a light change) and its bag, the nodes' overlay frames read
back from the recorded bag, the contact sheet and the video of every frame at the recorded pace."""
from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import Reader

from ros2_sixdpose.config import load_config
from ros2_sixdpose.core.geometry import invert_pose, look_at
from ros2_sixdpose.core.messages import InstancePose, rgb_from_image, stamp_ns
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import Lighting, Renderer
from ros2_sixdpose.data import bop
from ros2_sixdpose.data.bags import BagFrame, write_bag
from ros2_sixdpose.data.msg_types import typestore
from ros2_sixdpose.data.sequence_annotation import FrameAnnotation, SequenceAnnotation
from ros2_sixdpose.data.synth import SynthConfig, generate_split
from ros2_sixdpose.evaluation.sequence_metrics import InstanceSeries
from ros2_sixdpose.nodes.overlay import draw_poses
from ros2_sixdpose.paths import config_file
from ros2_sixdpose.topics import POSES_OVERLAY_TOPIC

logger = logging.getLogger(__name__)

TILE = 240  # px, one object view on the gallery
VIEWS = ((35.0, 20.0), (35.0, 140.0), (70.0, 260.0))  # (elevation, azimuth) deg of the gallery's cameras
SHEET_FRAMES = 8
SHEET_COLUMNS = 2
SHEET_SCALE = 0.5  # each image on the sheet at half size
# H.264 in MP4 with the colour subsampling every browser plays; OpenCV's FFmpeg has no H.264 encoder, the
# FFmpeg binary of imageio-ffmpeg has libx264. CRF 23 is x264's default quality.
VIDEO_OPTIONS = {"codec": "libx264", "pix_fmt_out": "yuv420p", "quality": None,
                 "output_params": ["-crf", "23", "-movflags", "+faststart"], "macro_block_size": 16}
STRIP_FRAMES = 6  # frames of the overview strip, spread over the sequence
STRIP_SCALE = 0.375  # each at 240x180 for a 640x480 sequence
# A table seen whole: two or three objects of the set (each initialisation of the tracker costs the detector, the
# estimator and the refiner per object: with four or five, 14 of 150 frames were answered at the recorded pace
# with the machine's load average at 8), the camera 0.5-0.8 m away; one camera stop, one object moved, one full
# occlusion and one light change.
DEMO_SCENE = {"camera.width": 640, "camera.height": 480, "camera.distance": [0.5, 0.8],
              "scene.objects_per_scene": [2, 3], "events.moved_objects": [1, 1], "events.move_duration_s": [1.0, 1.2],
              "events.still_s": [0.8, 0.8], "events.light_ramp_s": [0.0, 0.5], "events.lead_s": 0.7}


def object_gallery(models: dict[int, ObjectModel], renderer: Renderer) -> np.ndarray:
    """Each model seen from `VIEWS`, one row per object, labelled with name, id and diameter: (rows*TILE, 3*TILE, 3)."""
    K = np.array([[TILE * 1.6, 0.0, (TILE - 1) / 2], [0.0, TILE * 1.6, (TILE - 1) / 2], [0.0, 0.0, 1.0]])
    rows = []
    for obj_id, model in sorted(models.items()):
        # Distance at which the bounding sphere fills about 80 % of the tile.
        distance = model.diameter / 0.8 * K[0, 0] / TILE
        tiles = []
        for elevation, azimuth in np.radians(VIEWS):
            eye = distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                       np.sin(elevation)])
            T_cam_obj = invert_pose(look_at(eye, np.zeros(3)))
            rgb = renderer.render(K, TILE, TILE, [(obj_id, T_cam_obj)], Lighting(direction=(0.3, 0.5, 1.0)),
                                  outputs=("rgb",)).rgb
            tiles.append(np.where(rgb.any(axis=2, keepdims=True), rgb, 255).astype(np.uint8))
        row = np.hstack(tiles)
        label = f"{obj_id}: {model.name}  {model.diameter * 1000:.0f} mm"
        cv2.putText(row, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (20, 20, 20), 2, cv2.LINE_AA)
        rows.append(row)
    return np.vstack(rows)


def overlay_images(bag: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(header stamp ns, RGB (H, W, 3) uint8) of each /sixdpose/overlay image of a recorded bag, in receive order."""
    store = typestore()
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == POSES_OVERLAY_TOPIC]
        for connection, _, raw in reader.messages(connections=connections):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            yield stamp_ns(msg.header.stamp), rgb_from_image(msg)


def ground_truth_image(frame: BagFrame, models: dict[int, ObjectModel]) -> np.ndarray:
    """The frame's image with its ground-truth poses drawn as the nodes draw estimates (contours, axes, names)."""
    poses = [InstancePose(p.obj_id, p.name, p.instance, 1.0, "ground_truth", p.T_cam_obj) for p in frame.gt or ()]
    return draw_poses(frame.rgb, frame.camera, poses, models)


def _caption(image: np.ndarray, text: str) -> np.ndarray:
    """`image` with `text` in its lower-left corner."""
    out = image.copy()
    anchor = (8, out.shape[0] - 10)
    cv2.putText(out, text, anchor, cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(out, text, anchor, cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def contact_sheet(
    frames: Sequence[BagFrame], overlays: dict[int, np.ndarray], models: dict[int, ObjectModel]
) -> np.ndarray:
    """SHEET_FRAMES frames spread over the sequence, each as [nodes' overlay | ground truth], SHEET_COLUMNS per row."""
    picks = np.unique(np.round(np.linspace(0, len(frames) - 1, min(SHEET_FRAMES, len(frames)))).astype(int))
    start = frames[0].stamp_ns
    tiles = []
    for index in picks:
        frame = frames[index]
        when = f"frame {index}  t={(frame.stamp_ns - start) / 1e9:.2f} s"
        estimate = overlays.get(frame.stamp_ns)
        if estimate is None:
            estimate = _caption(frame.rgb // 3, "no answer")
        truth = _caption(ground_truth_image(frame, models), "ground truth")
        pair = np.hstack([_caption(estimate, f"nodes: {when}"), truth])
        tiles.append(cv2.resize(pair, None, fx=SHEET_SCALE, fy=SHEET_SCALE, interpolation=cv2.INTER_AREA))
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % SHEET_COLUMNS)
    rows = [np.hstack(tiles[i:i + SHEET_COLUMNS]) for i in range(0, len(tiles), SHEET_COLUMNS)]
    return np.vstack(rows)


def recorded_fps(stamps_ns: Sequence[int]) -> float:
    """Frame rate of a sequence from its stamps (ns, increasing): one over the median interval."""
    intervals = np.diff(np.asarray(stamps_ns, dtype=np.int64))
    if intervals.size == 0 or np.median(intervals) <= 0:
        raise ValueError(f"need two or more increasing stamps for a frame rate, got {list(stamps_ns)[:3]}")
    return 1e9 / float(np.median(intervals))


def write_video(path: Path, images: Sequence[np.ndarray], fps: float) -> Path:
    """Write RGB images (H, W, 3) uint8, H and W multiples of 16, as an H.264 MP4 at `fps`; the path written."""
    import imageio_ffmpeg  # its own FFmpeg binary; imported here as only the demo needs it

    height, width = images[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, **VIDEO_OPTIONS)
    writer.send(None)  # start FFmpeg
    try:
        for image in images:
            writer.send(np.ascontiguousarray(image))
    finally:
        writer.close()
    return path


def overview_strip(images: Sequence[np.ndarray]) -> np.ndarray:
    """STRIP_FRAMES of `images` spread over the sequence, side by side at STRIP_SCALE: the README's overview."""
    picks = np.unique(np.round(np.linspace(0, len(images) - 1, min(STRIP_FRAMES, len(images)))).astype(int))
    return np.hstack([cv2.resize(images[i], None, fx=STRIP_SCALE, fy=STRIP_SCALE, interpolation=cv2.INTER_AREA)
                      for i in picks])


def synthesise_bag(out: Path, models_dir: Path, seed: int, n_frames: int) -> Path:
    """The demo's 640x480 30 Hz test sequence (one scene) as OUT/data and its bag OUT/sequence_bag."""
    config = load_config(SynthConfig, config_file("synth.yaml"), DEMO_SCENE)
    generate_split(out / "data", "test", 1, n_frames, seed, config, models_dir, sequence=True, overwrite=True,
                   progress=False)
    bag = out / "sequence_bag"
    shutil.rmtree(bag, ignore_errors=True)
    write_bag(bop.BopSplit(out / "data", "test"), 0, bag, models_dir=models_dir)
    return bag


def write_overlays(frames: Sequence[BagFrame], overlays: dict[int, np.ndarray], folder: Path) -> list[np.ndarray]:
    """Write the answered frames' overlays as FOLDER/<frame index>.png (a fresh folder); the images in order."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    images = []
    for index, frame in enumerate(frames):
        if frame.stamp_ns in overlays:
            bop.write_rgb(folder / f"{index:06d}.png", overlays[frame.stamp_ns])
            images.append(overlays[frame.stamp_ns])
    return images


def video_frames(frames: Sequence[BagFrame], overlays: dict[int, np.ndarray],
                 annotation: Sequence[FrameAnnotation] | None = None) -> list[np.ndarray]:
    """Every frame of the sequence for the video at the recorded pace: the nodes' overlay where they answered, the
    frame dimmed and marked "no answer" where they did not; captioned with the frame's time and, with the
    sequence's annotation, what happens in it (full occlusion, camera still, object moving, light changing)."""
    start = frames[0].stamp_ns
    images = []
    for index, frame in enumerate(frames):
        image = overlays.get(frame.stamp_ns)
        text = f"t={(frame.stamp_ns - start) / 1e9:.2f} s"
        if image is None:
            image, text = frame.rgb // 3, text + "  no answer"
        if annotation is not None:
            events = annotation[index]
            text += "".join(label for flag, label in ((events.occluded, "  full occlusion"),
                                                      (events.camera_still, "  camera still"),
                                                      (events.moving, "  object moving"),
                                                      (events.light_change, "  light changing")) if flag)
        images.append(_caption(image, text))
    return images


EVENT_COLOURS = {"still": "tab:green", "push": "tab:orange", "carry": "tab:orange", "occlusion": "tab:grey",
                 "light": "gold"}


def sequence_timeline(path: Path, series: Sequence[InstanceSeries], annotation: SequenceAnnotation,
                      answered: Sequence[bool], names: dict[int, str]) -> Path:
    """A PNG of each instance's ADD(-S) error (in diameters, log scale) in the frames where it has a pose, with the
    0.1 d threshold, the sequence's events as shaded spans and the frames the nodes did not answer marked along the
    bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = np.arange(len(answered)) / annotation.rate_hz
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=100)
    for event in annotation.events:
        ax.axvspan(event.start / annotation.rate_hz, event.end / annotation.rate_hz, alpha=0.2,
                   color=EVENT_COLOURS.get(event.kind, "tab:blue"), lw=0)
        ax.text(event.start / annotation.rate_hz, 3.0, event.kind, fontsize=8, va="top")
    for s in series:
        # Only the frames with a pose for the instance: gaps where there is none (or it does not count).
        error = np.where(s.scored & np.isfinite(s.add), np.clip(s.add / s.diameter, 1e-3, 2.0), np.nan)
        ax.plot(times, error, ".-", lw=1.0, ms=3, label=names.get(s.obj_id, str(s.obj_id)))
    missed = times[~np.asarray(answered, bool)]
    ax.plot(missed, np.full(len(missed), 1.2e-3), "|", color="tab:red", ms=8, label="not answered")
    ax.axhline(0.1, color="black", lw=0.8, ls="--")
    ax.set(yscale="log", ylim=(1e-3, 3.0), xlim=(0, times[-1] if len(times) else 1), xlabel="time (s)",
           ylabel="ADD(-S) / diameter", title="tracked poses over the sequence (correct below the dashed line)")
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

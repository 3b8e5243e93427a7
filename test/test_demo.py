"""The demo's pictures: the contact sheet's layout and the video file (the replay itself is tested in test_replay)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ros2_sixdpose.evaluation.demo import (
    SHEET_COLUMNS, SHEET_FRAMES, STRIP_FRAMES, contact_sheet, overview_strip, recorded_fps, write_video,
)
from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.geometry import make_pose
from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.data.bags import BagFrame, GtPose

MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"
DUCK = 1
K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])


def _frames(count: int) -> list[BagFrame]:
    """`count` grey 640x480 frames 1/30 s apart, each with the duck 0.5 m ahead."""
    pose = GtPose(DUCK, "duck", 0, make_pose(np.eye(3), [0.0, 0.0, 0.5]))
    return [BagFrame(np.full((480, 640, 3), 90, np.uint8), PinholeCamera(K, 640, 480), round(i * 1e9 / 30), "cam",
                     None, (pose,)) for i in range(count)]


def test_contact_sheet_pairs_the_nodes_overlay_with_the_ground_truth():
    frames = _frames(20)
    answered = {f.stamp_ns: np.full((480, 640, 3), 200, np.uint8) for f in frames[:10]}
    sheet = contact_sheet(frames, answered, load_models(MODELS, [DUCK]))
    # SHEET_FRAMES pairs of half-size 640x480 images, SHEET_COLUMNS pairs per row.
    assert sheet.shape == (SHEET_FRAMES // SHEET_COLUMNS * 240, SHEET_COLUMNS * 2 * 320, 3)
    first_overlay, first_truth = sheet[:200, :320], sheet[:200, 320:640]
    assert np.median(first_overlay) == 200  # the overlay image as published
    assert np.median(first_truth) == 90 and (first_truth != 90).any()  # the frame, with the duck drawn on it
    last_overlay = sheet[-240:-40, -640:-320]
    assert np.median(last_overlay) == 30  # frame 19 got no answer: the frame, dimmed


def test_video_is_h264_at_the_recorded_pace_and_holds_every_frame(tmp_path):
    import imageio_ffmpeg

    images = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(12)]
    fps = recorded_fps([f.stamp_ns for f in _frames(12)])
    assert fps == pytest.approx(30.0, abs=1e-6)  # 1/30 s apart
    path = write_video(tmp_path / "video.mp4", images, fps)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["codec"].startswith("h264") and meta["fps"] == pytest.approx(30.0) and meta["size"] == (64, 48)
    frames = [np.frombuffer(frame, np.uint8).reshape(48, 64, 3) for frame in reader]
    assert len(frames) == 12
    assert abs(float(frames[7].mean()) - 70) < 3  # lossy codec: grey levels within 3
    with pytest.raises(ValueError, match="increasing stamps"):
        recorded_fps([5])


def test_overview_strip_spreads_six_frames_over_the_sequence():
    images = [np.full((480, 640, 3), i, np.uint8) for i in range(75)]
    strip = overview_strip(images)
    assert strip.shape == (180, STRIP_FRAMES * 240, 3)
    assert [int(strip[0, 240 * k, 0]) for k in range(STRIP_FRAMES)] == [0, 15, 30, 44, 59, 74]  # spread evenly

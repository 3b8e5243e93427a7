"""Tests of rosbag2 writing and reading: round trip of pixels, K, depth and poses; image encodings; bad input."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, Writer

from ros2_sixdpose.cli import bag as bag_cli
from ros2_sixdpose.core.messages import camera_from_info, depth_from_image, rgb_from_image
from ros2_sixdpose.data.bags import OPTICAL_FRAME, STAMP_BASE_NS, BagError, BagTopics, read_bag, write_bag
from ros2_sixdpose.data.bop import BopSplit, read_depth, read_rgb
from ros2_sixdpose.data.camera_paths import CameraConfig
from ros2_sixdpose.data.msg_types import typestore
from ros2_sixdpose.data.objectset import build_object_set
from ros2_sixdpose.data.synth import SceneConfig, SynthConfig, generate_split

N_IMAGES = 4


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> BopSplit:
    """A tiny synthetic 30 Hz sequence: 2 scenes x 4 images at 320x240."""
    root = tmp_path_factory.mktemp("bags")
    build_object_set(root / "object_set")
    config = SynthConfig(
        camera=CameraConfig(width=320, height=240, fx=300.0, fy=300.0),
        scene=SceneConfig(objects_per_scene=(2, 4), texture_size=128),
    )
    generate_split(root / "data", "test", 2, N_IMAGES, seed=5, config=config, models_dir=root / "object_set",
                   progress=False, sequence=True)
    return BopSplit(root / "data", "test")


def _image(encoding: str, pixels: np.ndarray, step: int | None = None, bigendian: bool = False):
    """A rosbags sensor_msgs/Image holding `pixels` (H, W[, C]) with optional row padding."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    if bigendian:
        rows = rows.astype(rows.dtype.newbyteorder(">"))
    raw = np.ascontiguousarray(rows).view(np.uint8).reshape(height, -1)
    step = step or raw.shape[1]
    data = np.zeros((height, step), np.uint8)
    data[:, : raw.shape[1]] = raw
    types = typestore().types
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="c")
    return types["sensor_msgs/msg/Image"](header=header, height=height, width=width, encoding=encoding,
                                          is_bigendian=int(bigendian), step=step, data=data.reshape(-1))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_round_trip_gives_same_pixels_k_depth_and_poses(split, tmp_path, storage):
    scene_id = 1
    written = write_bag(split, scene_id, tmp_path / "bag", storage=storage)
    assert written.frames == N_IMAGES
    annotations = split.read_scene(scene_id)
    times = json.loads((split.scene_dir(scene_id) / "scene_times.json").read_text())
    names = json.loads((split.models_dir / "models_names.json").read_text())
    frames = list(read_bag(written.path))
    assert [f.stamp_ns for f in frames] == [STAMP_BASE_NS + round(times[str(i)] * 1e9) for i in range(N_IMAGES)]
    np.testing.assert_allclose(np.diff([f.stamp_ns for f in frames]) / 1e9, 1 / 30, atol=1e-9)
    for im_id, frame in enumerate(frames):
        camera = annotations.camera[im_id]
        assert frame.frame_id == OPTICAL_FRAME
        assert np.array_equal(frame.rgb, read_rgb(split.rgb_path(scene_id, im_id)))
        np.testing.assert_array_equal(frame.K, camera.K)
        assert (frame.camera.width, frame.camera.height) == (320, 240) and not frame.camera.has_distortion
        assert np.array_equal(frame.depth, read_depth(split.depth_path(scene_id, im_id), camera.depth_scale))
        gt = annotations.gt[im_id]
        assert [p.obj_id for p in frame.gt] == [inst.obj_id for inst in gt] and len(gt) > 0
        assert [p.name for p in frame.gt] == [names[str(inst.obj_id)] for inst in gt]
        for gt_index, (pose, inst) in enumerate(zip(frame.gt, gt)):
            np.testing.assert_allclose(pose.T_cam_obj, inst.T_cam_obj, atol=1e-7)
            assert pose.instance == sum(i.obj_id == inst.obj_id for i in gt[:gt_index])


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_layout_stores_definitions_and_hashes(split, tmp_path, storage):
    path = write_bag(split, 0, tmp_path / "bag", storage=storage).path
    info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 9 and info["storage_identifier"] == storage
    assert (path / info["relative_file_paths"][0]).is_file()
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    defaults = BagTopics()
    assert set(topics) == {defaults.rgb, defaults.camera_info, defaults.depth, defaults.ground_truth}
    gt = topics[defaults.ground_truth]
    assert gt["message_count"] == N_IMAGES
    assert gt["topic_metadata"]["type"] == "ros2_sixdpose/msg/ObjectPoseArray"
    assert gt["topic_metadata"]["type_description_hash"] == typestore().hash_rihs01("ros2_sixdpose/msg/ObjectPoseArray")
    with Reader(path) as reader:
        definition = {c.topic: c.msgdef.data for c in reader.connections}[defaults.ground_truth]
    assert "ObjectPose[] poses" in definition and "geometry_msgs/Pose pose" in definition


def _run_cli(args: list[str]) -> int:
    """Parse and run `sixdpose bag ARGS`."""
    parser = argparse.ArgumentParser(prog="sixdpose")
    bag_cli.register(parser.add_subparsers())
    parsed = parser.parse_args(["bag", *args])
    return parsed.func(parsed)


def test_cli_writes_a_readable_bag(split, tmp_path, capsys):
    out = tmp_path / "cli_bag"
    args = ["--dataset", str(split.root), "--split", "test", "--scene", "0", "--out", str(out), "--storage", "mcap"]
    assert _run_cli(args) == 0
    assert f"{N_IMAGES} frames" in capsys.readouterr().out
    assert len(list(read_bag(out))) == N_IMAGES
    assert _run_cli(args[:5] + ["7", "--out", str(tmp_path / "other")]) == 1


def test_writer_rejects_bad_input(split, tmp_path):
    with pytest.raises(ValueError, match="scene 9 is not in"):
        write_bag(split, 9, tmp_path / "a")
    with pytest.raises(ValueError, match="storage"):
        write_bag(split, 0, tmp_path / "b", storage="rosbag1")
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        write_bag(split, 0, tmp_path / "exists")
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="cannot create the bag"):
        write_bag(split, 0, tmp_path / "file" / "bag")
    models = tmp_path / "models"
    models.mkdir()
    info = json.loads((split.models_dir / "models_info.json").read_text())
    used = {inst.obj_id for instances in split.read_scene(0).gt.values() for inst in instances}
    (models / "models_info.json").write_text(json.dumps({k: v for k, v in info.items() if int(k) not in used}))
    with pytest.raises(ValueError, match="not in the models folder"):
        write_bag(split, 0, tmp_path / "c", models_dir=models)
    assert not (tmp_path / "c").exists()


def test_reader_rejects_bags_without_camera_topics(tmp_path):
    store = typestore()
    with Writer(tmp_path / "other", version=9) as writer:
        conn = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        writer.write(conn, 1, store.serialize_cdr(store.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    with pytest.raises(BagError, match=r"no /camera/color/image_raw .* the bag has: /chatter \(std_msgs/msg/String\)"):
        read_bag(tmp_path / "other")
    with pytest.raises(BagError, match="holds std_msgs/msg/String, expected sensor_msgs/msg/Image"):
        read_bag(tmp_path / "other", BagTopics(rgb="/chatter"))


def test_reader_rejects_missing_and_corrupt_bags(split, tmp_path):
    with pytest.raises(FileNotFoundError):
        read_bag(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("not a bag")
    with pytest.raises(BagError, match="not a rosbag2"):
        read_bag(tmp_path / "notes.txt")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed")
    with pytest.raises(BagError, match="not a readable rosbag2"):
        read_bag(broken)
    path = write_bag(split, 0, tmp_path / "truncated").path
    db = path / "truncated.db3"
    db.write_bytes(db.read_bytes()[:4096])
    with pytest.raises(BagError):
        list(read_bag(path))


def _camera_info(header, width: int, height: int):
    """A rosbags sensor_msgs/CameraInfo with f = 100 px, principal point at the image centre, no distortion."""
    types = typestore().types
    return types["sensor_msgs/msg/CameraInfo"](
        header=header, height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([100.0, 0, (width - 1) / 2, 0, 100, (height - 1) / 2, 0, 0, 1]), r=np.eye(3).ravel(),
        p=np.zeros(12), binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def _write_camera_bag(path: Path, messages: list[tuple[str, object]]) -> None:
    """Write (topic, message) pairs as a bag, each at its header stamp."""
    store = typestore()
    with Writer(path, version=9) as writer:
        connections = {}
        for topic, msg in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=store)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            writer.write(connections[topic], stamp, store.serialize_cdr(msg, msg.__msgtype__))


def test_reader_rejects_unknown_encoding(tmp_path):
    image = _image("yuv422", np.zeros((2, 4, 2), np.uint8))
    topics = BagTopics()
    _write_camera_bag(tmp_path / "yuv", [(topics.rgb, image), (topics.camera_info, _camera_info(image.header, 4, 2))])
    frames = read_bag(tmp_path / "yuv")
    with pytest.raises(BagError, match="encoding 'yuv422' is not supported"):
        list(frames)


def test_camera_bag_with_one_early_camera_info_gives_every_frame(tmp_path):
    """A live camera's bag: bgr8 images at 30 Hz, one CameraInfo before them, no depth, no ground truth."""
    topics = BagTopics()
    images = []
    for index in range(45):
        image = _image("bgr8", np.full((2, 4, 3), index, np.uint8))
        image.header.stamp.sec, image.header.stamp.nanosec = 100 + index // 30, (index % 30) * 33_333_333
        images.append((topics.rgb, image))
    info = _camera_info(_image("mono8", np.zeros((2, 4), np.uint8)).header, 4, 2)
    info.header.stamp.sec = 99
    _write_camera_bag(tmp_path / "live", [(topics.camera_info, info)] + images)
    frames = list(read_bag(tmp_path / "live"))
    assert len(frames) == 45
    assert all(f.depth is None and f.gt is None for f in frames)
    assert [int(f.rgb[0, 0, 0]) for f in frames] == list(range(45))
    assert frames[1].stamp_ns - frames[0].stamp_ns == 33_333_333
    np.testing.assert_array_equal(frames[-1].K, np.asarray(info.k).reshape(3, 3))


def test_image_conversions_honour_encoding_step_and_byte_order():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    assert np.array_equal(rgb_from_image(_image("rgb8", rgb, step=20)), rgb)
    assert np.array_equal(rgb_from_image(_image("bgr8", rgb[..., ::-1].copy())), rgb)
    rgba = np.concatenate([rgb, np.full((3, 5, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(rgb_from_image(_image("bgra8", rgba[..., [2, 1, 0, 3]].copy())), rgb)
    grey = rgb[..., 0].copy()
    assert np.array_equal(rgb_from_image(_image("mono8", grey)), np.repeat(grey[..., None], 3, axis=2))
    depth = np.array([[0.5, 0.0], [np.nan, 2.25]], np.float32)
    expected = np.array([[0.5, 0.0], [0.0, 2.25]], np.float32)
    assert np.array_equal(depth_from_image(_image("32FC1", depth, bigendian=sys.byteorder == "little")), expected)
    millimetres = np.array([[500, 0], [0, 2250]], np.uint16)
    assert np.array_equal(depth_from_image(_image("16UC1", millimetres)), expected)
    short_rows = _image("rgb8", rgb)
    short_rows.step = 10
    with pytest.raises(ValueError, match="step 10 is less than"):
        rgb_from_image(short_rows)
    truncated = _image("rgb8", rgb)
    truncated.data = truncated.data[:40]
    with pytest.raises(ValueError, match="needs 45 bytes"):
        rgb_from_image(truncated)
    padded = _image("rgb8", rgb)  # data longer than step x height: width, height or step is not the sender's
    padded.data = np.concatenate([padded.data, np.zeros(3, np.uint8)])
    with pytest.raises(ValueError, match="needs 45 bytes, got 48"):
        rgb_from_image(padded)
    with pytest.raises(ValueError, match="not supported"):
        depth_from_image(_image("rgb8", rgb))


def test_camera_info_conversion_checks_k_and_distortion():
    info = _camera_info(_image("mono8", np.zeros((2, 4), np.uint8)).header, 4, 2)
    info.d = np.array([0.1, -0.05, 0.0, 0.0, 0.01])
    camera = camera_from_info(info)
    assert camera.has_distortion and (camera.width, camera.height) == (4, 2) and camera.K[0, 2] == 1.5
    info.distortion_model = "equidistant"
    with pytest.raises(ValueError, match="distortion_model 'equidistant'"):
        camera_from_info(info)
    info.distortion_model = "plumb_bob"
    info.k = np.zeros(9)
    with pytest.raises(ValueError, match="focal"):
        camera_from_info(info)

"""ROS messages <-> numpy, with no ROS: stamps, images, CameraInfo and poses, for the nodes, bags, replay and demo.

Decoders read any object with the message's fields (an rclpy message or a `rosbags` one); encoders return
the fields as plain values, which the caller gives to its own message class (rclpy's in the nodes,
the rosbags typestore's in bags). Poses are `T_cam_obj` (4, 4) float64 metres; quaternions (x, y, z, w)
exist only in the messages. Errors are ValueErrors that say what was wrong.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.geometry import make_pose, matrix_from_quat_xyzw, quat_xyzw_from_matrix

NS_PER_S = 1_000_000_000
# Image encoding -> (dtype, channels); colour encodings are converted to RGB on reading.
ENCODINGS = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "32FC1": (np.float32, 1),
    "16UC1": (np.uint16, 1),
}
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("32FC1", "16UC1")  # metres; millimetres (the RealSense driver's)
DISTORTION_MODELS = ("", "plumb_bob", "rational_polynomial")
# What each encoding writes: the pixel array's shape and dtype.
_WRITABLE = {"rgb8": ("H,W,3", np.uint8), "mono8": ("H,W", np.uint8), "32FC1": ("H,W", np.float32)}


# ---------------------------------------------------------------- stamps


def stamp_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time (a header's `stamp`)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def stamp_parts(ns: int) -> tuple[int, int]:
    """(sec, nanosec) of a builtin_interfaces/Time for a time in nanoseconds."""
    return ns // NS_PER_S, ns % NS_PER_S


# ---------------------------------------------------------------- images


def image_fields(pixels: np.ndarray, encoding: str) -> dict[str, Any]:
    """The fields of a sensor_msgs/Image but its header, tightly packed in the machine's byte order.

    `pixels`: (H, W, 3) uint8 for rgb8, (H, W) uint8 for mono8, (H, W) float32 for 32FC1. `data` is a
    flat uint8 array (rclpy takes it as `data.tobytes()`).
    """
    if encoding not in _WRITABLE:
        raise ValueError(f"cannot write {encoding!r} images (writable: {', '.join(_WRITABLE)})")
    shape, dtype = _WRITABLE[encoding]
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype != dtype or pixels.ndim != shape.count(",") + 1 or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"{encoding} needs ({shape}) {np.dtype(dtype)}, got {pixels.shape} {pixels.dtype}")
    height, width = pixels.shape[:2]
    data = pixels.reshape(-1).view(np.uint8)
    return {"height": height, "width": width, "encoding": encoding, "is_bigendian": int(sys.byteorder == "big"),
            "step": data.size // height if height else 0, "data": data}


def depth_fields(depth: np.ndarray) -> dict[str, Any]:
    """`image_fields` of (H, W) depth in metres as 32FC1; 0 (no measurement) becomes NaN as REP 118 asks."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    return image_fields(np.where(depth > 0, depth, np.float32(np.nan)), "32FC1")


def _pixels(msg: Any, allowed: tuple[str, ...]) -> np.ndarray:
    """Pixels (H, W, C) of a sensor_msgs/Image, native byte order, honouring `step` and `is_bigendian`."""
    if msg.encoding not in allowed:
        raise ValueError(f"image encoding {msg.encoding!r} is not supported here (supported: {', '.join(allowed)})")
    dtype, channels = ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * np.dtype(dtype).itemsize
    data = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
    if height == 0 or width == 0:
        raise ValueError(f"empty {msg.encoding} image ({width}x{height})")
    if step < row_bytes:
        raise ValueError(f"{msg.encoding} image of width {width}: step {step} is less than the {row_bytes} bytes "
                         "of a row")
    if data.size != step * height:  # longer data is as wrong as shorter: width, height or step is not the sender's
        raise ValueError(f"{msg.encoding} image of {height} rows with step {step} needs {step * height} bytes, "
                         f"got {data.size}")
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    order = ">" if msg.is_bigendian else "<"
    pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order))
    return pixels.reshape(height, width, channels).astype(dtype)


def rgb_from_image(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a sensor_msgs/Image in rgb8, bgr8, rgba8, bgra8 or mono8."""
    pixels = _pixels(msg, COLOUR_ENCODINGS)
    if msg.encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    rgb = pixels[..., :3]
    return np.ascontiguousarray(rgb[..., ::-1] if msg.encoding.startswith("bgr") else rgb)


def depth_from_image(msg: Any) -> np.ndarray:
    """(H, W) float32 metres of a 32FC1 (metres) or 16UC1 (millimetres) depth image; 0 where no measurement."""
    pixels = _pixels(msg, DEPTH_ENCODINGS)[..., 0]
    depth = pixels.astype(np.float32) / (1000.0 if msg.encoding == "16UC1" else 1.0)
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0.0))


# ---------------------------------------------------------------- cameras


def camera_info_fields(camera: PinholeCamera) -> dict[str, Any]:
    """The fields of a sensor_msgs/CameraInfo of an undistorted camera but its header and roi: K, identity R,
    P = [K | 0], plumb_bob with zero D, no binning."""
    if camera.has_distortion:
        raise ValueError("CameraInfo is written for undistorted (synthetic) cameras only, got non-zero distortion")
    P = np.concatenate([camera.K, np.zeros((3, 1))], axis=1)
    return {"height": camera.height, "width": camera.width, "distortion_model": "plumb_bob", "d": np.zeros(5),
            "k": camera.K.reshape(-1).copy(), "r": np.eye(3).reshape(-1), "p": P.reshape(-1),
            "binning_x": 0, "binning_y": 0}


def camera_from_info(msg: Any) -> PinholeCamera:
    """The camera of a sensor_msgs/CameraInfo: K, size and plumb_bob / rational_polynomial distortion.

    Raises ValueError for an unusable K (all zeros, NaN), another distortion model, or binning / ROI
    (which would change the image the intrinsics refer to).
    """
    if msg.distortion_model not in DISTORTION_MODELS:
        raise ValueError(f"CameraInfo distortion_model {msg.distortion_model!r} is not supported "
                         f"(supported: plumb_bob, rational_polynomial)")
    if int(msg.binning_x) > 1 or int(msg.binning_y) > 1 or int(msg.roi.width) > 0 or int(msg.roi.height) > 0:
        raise ValueError("CameraInfo with binning or a region of interest is not supported")
    dist = np.asarray(msg.d, dtype=np.float64)
    return PinholeCamera(np.asarray(msg.k, dtype=np.float64).reshape(3, 3), int(msg.width), int(msg.height),
                         dist if dist.size else np.zeros(5))


# ---------------------------------------------------------------- poses


def pose_parts(T: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    """(position x, y, z in metres, orientation x, y, z, w) of a (4, 4) transform, for a geometry_msgs/Pose."""
    x, y, z = (float(v) for v in T[:3, 3])
    qx, qy, qz, qw = (float(v) for v in quat_xyzw_from_matrix(T[:3, :3]))
    return (x, y, z), (qx, qy, qz, qw)


def matrix_from_pose(pose: Any) -> np.ndarray:
    """(4, 4) float64 transform of a geometry_msgs/Pose (its quaternion normalised)."""
    p, q = pose.position, pose.orientation
    return make_pose(matrix_from_quat_xyzw([q.x, q.y, q.z, q.w]), [p.x, p.y, p.z])


def matrix_from_transform(msg: Any) -> np.ndarray:
    """(4, 4) float64 parent <- child transform of a geometry_msgs/TransformStamped."""
    t, q = msg.transform.translation, msg.transform.rotation
    return make_pose(matrix_from_quat_xyzw([q.x, q.y, q.z, q.w]), [t.x, t.y, t.z])


@dataclass(frozen=True)
class InstancePose:
    """One object instance of a ros2_sixdpose/ObjectPoseArray, in numpy.

    T_cam_obj: (4, 4) float64 object -> camera optical frame, metres.
    instance: index among the frame's instances of the same object, by falling score (0 = best).
    """

    object_id: int
    name: str
    instance: int
    score: float
    method: str
    T_cam_obj: np.ndarray

    @property
    def frame_name(self) -> str:
        """Stem of the TF child frame: `duck` for the best instance, `duck_1`, `duck_2` for the others."""
        return self.name if self.instance == 0 else f"{self.name}_{self.instance}"


def instance_poses_from_msg(msg: Any) -> list[InstancePose]:
    """The instances of a ros2_sixdpose/ObjectPoseArray, poses as (4, 4) transforms."""
    return [InstancePose(int(p.object_id), str(p.object_name), int(p.instance), float(p.score), str(p.method),
                         matrix_from_pose(p.pose)) for p in msg.poses]

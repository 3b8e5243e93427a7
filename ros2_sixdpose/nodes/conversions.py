"""rclpy messages of the pipeline's values: images, detections, poses, transforms, and vision_msgs.

Pure functions on message objects: no node, no graph, so each is tested with hand-built messages. The
field values come from the ROS-free codec `ros2_sixdpose.core.messages` (which decodes rclpy messages as
it does bag messages); this module builds rclpy's message classes from them. Images go through cv_bridge
where it is installed, else through the codec; both give RGB (H, W, 3) uint8.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseStamped, TransformStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import (BoundingBox2D, BoundingBox3D, Detection2D, Detection2DArray, Detection3D,
                             Detection3DArray, ObjectHypothesis, ObjectHypothesisWithPose)

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core import messages
from ros2_sixdpose.core.geometry import make_pose
from ros2_sixdpose.core.messages import COLOUR_ENCODINGS, InstancePose, image_fields, pose_parts, stamp_parts
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.msg import Detection as DetectionMsg
from ros2_sixdpose.msg import DetectionArray, ObjectPose, ObjectPoseArray

try:
    from cv_bridge import CvBridge, CvBridgeError
except ImportError:  # not installable from PyPI; real ROS installs have it
    CvBridge = None

_BRIDGE = CvBridge() if CvBridge is not None else None


# ---------------------------------------------------------------- time and headers


def time_msg(ns: int) -> Time:
    """builtin_interfaces/Time of a time in nanoseconds."""
    sec, nanosec = stamp_parts(ns)
    return Time(sec=sec, nanosec=nanosec)


# ---------------------------------------------------------------- images and cameras


def rgb_from_image(msg: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a sensor_msgs/Image in rgb8, bgr8, rgba8, bgra8 or mono8.

    Raises ValueError naming the encoding or size for any other encoding, an empty image or a data
    buffer shorter than `step` x `height`.
    """
    if msg.encoding not in COLOUR_ENCODINGS:
        raise ValueError(f"image encoding {msg.encoding!r} is not supported (supported: {', '.join(COLOUR_ENCODINGS)})")
    if _BRIDGE is None:
        return messages.rgb_from_image(msg)
    if msg.width == 0 or msg.height == 0:
        raise ValueError(f"empty {msg.encoding} image ({msg.width}x{msg.height})")
    try:
        return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    except (CvBridgeError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot read {msg.encoding} image {msg.width}x{msg.height}: {exc}") from exc


def image_msg(pixels: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """sensor_msgs/Image of RGB (H, W, 3) uint8 (`rgb8`) or a mask (H, W) uint8 (`mono8`), tightly packed."""
    fields = image_fields(pixels, encoding)
    return Image(header=header, **{**fields, "data": fields["data"].tobytes()})


def check_image_fits_camera(rgb: np.ndarray, camera: PinholeCamera) -> None:
    """Raise ValueError when the image's size is not the size its CameraInfo describes."""
    if rgb.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but its camera_info says "
                         f"{camera.width}x{camera.height}")


# ---------------------------------------------------------------- detections


def _mask_window(box: np.ndarray) -> tuple[int, int, int, int]:
    """Integer window (x0, y0, x1, y1) of a float box rounded outwards: the extent of a Detection.mask."""
    return math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]), math.ceil(box[3])


def detection_array_msg(detections: Sequence[Detection], names: Mapping[int, str], header: Header) -> DetectionArray:
    """ros2_sixdpose/DetectionArray of `detections`, each mask cut to its box (mono8, 255 = object)."""
    out = DetectionArray(header=header)
    for detection in detections:
        x0, y0, x1, y1 = _mask_window(detection.box)
        mask = detection.mask[y0:y1, x0:x1].astype(np.uint8) * np.uint8(255)
        out.detections.append(DetectionMsg(
            object_id=int(detection.object_id), object_name=names.get(detection.object_id, ""),
            score=float(detection.score), x_min=float(detection.box[0]), y_min=float(detection.box[1]),
            x_max=float(detection.box[2]), y_max=float(detection.box[3]),
            mask=image_msg(mask, header, "mono8") if mask.size else Image(header=header),
        ))
    return out


def detections_from_msg(msg: DetectionArray, width: int, height: int) -> list[Detection]:
    """Detections of a DetectionArray for an image of `width` x `height`, masks full-size (H, W) bool.

    A detection sent without a mask gets its box as mask. Raises ValueError for a box outside the image
    or a mask whose size is not its box's.
    """
    detections = []
    for index, det in enumerate(msg.detections):
        box = np.array([det.x_min, det.y_min, det.x_max, det.y_max], dtype=np.float64)
        x0, y0, x1, y1 = _mask_window(box)
        if not (np.all(np.isfinite(box)) and 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height):
            raise ValueError(f"detection {index} (object {det.object_id}): box {box.tolist()} is not inside the "
                             f"{width}x{height} image")
        mask = np.zeros((height, width), dtype=bool)
        if det.mask.width == 0 and det.mask.height == 0:
            mask[y0:y1, x0:x1] = True
        else:
            if (det.mask.width, det.mask.height) != (x1 - x0, y1 - y0):
                raise ValueError(f"detection {index} (object {det.object_id}): mask is {det.mask.width}x"
                                 f"{det.mask.height}, its box needs {x1 - x0}x{y1 - y0}")
            mask[y0:y1, x0:x1] = rgb_from_image(det.mask)[..., 0] > 127
        detections.append(Detection(object_id=int(det.object_id), box=box, mask=mask, score=float(det.score)))
    return detections


# ---------------------------------------------------------------- poses and transforms


def pose_msg(T_cam_obj: np.ndarray) -> Pose:
    """geometry_msgs/Pose of a (4, 4) transform, metres; quaternion in ROS order (x, y, z, w)."""
    pose = Pose()
    (pose.position.x, pose.position.y, pose.position.z), q = pose_parts(T_cam_obj)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = q
    return pose


def pose_stamped_msg(T_cam_obj: np.ndarray, header: Header) -> PoseStamped:
    """geometry_msgs/PoseStamped of an object pose in the header's (camera optical) frame."""
    return PoseStamped(header=header, pose=pose_msg(T_cam_obj))


def transform_msg(T_parent_child: np.ndarray, header: Header, child_frame_id: str) -> TransformStamped:
    """geometry_msgs/TransformStamped from header.frame_id to `child_frame_id`."""
    pose = pose_msg(T_parent_child)
    out = TransformStamped(header=header, child_frame_id=child_frame_id)
    out.transform.translation.x, out.transform.translation.y, out.transform.translation.z = (
        pose.position.x, pose.position.y, pose.position.z)
    out.transform.rotation = pose.orientation
    return out


def object_pose_array_msg(poses: Sequence[InstancePose], header: Header) -> ObjectPoseArray:
    """ros2_sixdpose/ObjectPoseArray of published instances (covariance unknown: zeros)."""
    return ObjectPoseArray(header=header, poses=[
        ObjectPose(object_id=int(p.object_id), object_name=p.name, instance=int(p.instance), score=float(p.score),
                   method=p.method, pose=pose_msg(p.T_cam_obj))
        for p in poses
    ])


# ---------------------------------------------------------------- vision_msgs (Isaac ROS, grasping stacks)


def _hypothesis(name: str, score: float, T_cam_obj: np.ndarray | None = None) -> ObjectHypothesisWithPose:
    """vision_msgs/ObjectHypothesisWithPose: class_id = the object's name; the pose when known (covariance: zeros)."""
    out = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=name, score=float(score)))
    if T_cam_obj is not None:
        out.pose.pose = pose_msg(T_cam_obj)
    return out


def detection2d_array_msg(detections: Sequence[Detection], names: Mapping[int, str],
                          header: Header) -> Detection2DArray:
    """vision_msgs/Detection2DArray of `detections`: axis-aligned boxes, centre and size in pixels.

    The centre is ((x0 + x1) / 2, (y0 + y1) / 2) and the size (x1 - x0, y1 - y0), so centre -/+ size / 2 gives
    the box back; id and class_id are the object's name.
    """
    out = Detection2DArray(header=header)
    for detection in detections:
        x0, y0, x1, y1 = (float(v) for v in detection.box)
        name = names.get(detection.object_id, "")
        bbox = BoundingBox2D(size_x=x1 - x0, size_y=y1 - y0)
        bbox.center.position.x, bbox.center.position.y = (x0 + x1) / 2, (y0 + y1) / 2
        out.detections.append(Detection2D(header=header, results=[_hypothesis(name, detection.score)], bbox=bbox,
                                          id=name))
    return out


def detection3d_array_msg(poses: Sequence[InstancePose], models: Mapping[int, ObjectModel],
                          header: Header) -> Detection3DArray:
    """vision_msgs/Detection3DArray of published instances, in the order of their ObjectPoseArray.

    Each holds one hypothesis (class_id = object name, the score, the object's pose) and the model's bounding
    box (metres) at that pose; id is the instance's TF frame stem (`duck`, `duck_1`), the same on every frame.
    """
    out = Detection3DArray(header=header)
    for pose in poses:
        model = models[pose.object_id]
        # The box centre is the model frame's origin only for centred models (BOP's need not be).
        T_cam_box = pose.T_cam_obj @ make_pose(np.eye(3), model.bbox_min + model.bbox_size / 2)
        bbox = BoundingBox3D(center=pose_msg(T_cam_box))
        bbox.size.x, bbox.size.y, bbox.size.z = (float(v) for v in model.bbox_size)
        out.detections.append(Detection3D(header=header, results=[_hypothesis(pose.name, pose.score, pose.T_cam_obj)],
                                          bbox=bbox, id=pose.frame_name))
    return out

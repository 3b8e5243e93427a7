"""Topic names and diagnostic keys: the contract between the nodes, the bags and the replay's scoring.

Topics are absolute names (remap them, e.g. `-r /camera/color/image_raw:=/usb_cam/image_raw`):
    in:  IMAGE_TOPIC (sensor_msgs/Image), CAMERA_INFO_TOPIC (sensor_msgs/CameraInfo), and in bags DEPTH_TOPIC
         and GROUND_TRUTH_TOPIC
    out: DETECTIONS_TOPIC, POSES_TOPIC, /sixdpose/<object name>/pose, /tf, MARKERS_TOPIC, the overlay images,
         the vision_msgs arrays DETECTIONS_2D_TOPIC and DETECTIONS_3D_TOPIC, and DIAGNOSTICS_TOPIC, whose
         statuses are named '<node>: ...' and carry FRAME_COUNT_KEYS.
"""
from __future__ import annotations

# The RealSense driver's camera topics.
IMAGE_TOPIC = "/camera/color/image_raw"
CAMERA_INFO_TOPIC = "/camera/color/camera_info"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
GROUND_TRUTH_TOPIC = "/sixdpose/ground_truth"
DETECTIONS_TOPIC = "/sixdpose/detections"
DETECTIONS_OVERLAY_TOPIC = "/sixdpose/detections/overlay"
POSES_TOPIC = "/sixdpose/poses"
# The same results as vision_msgs/Detection2DArray (detector_node) and Detection3DArray (pose_estimator_node),
# the types Isaac ROS and many grasping stacks take.
DETECTIONS_2D_TOPIC = "/sixdpose/detections2d"
DETECTIONS_3D_TOPIC = "/sixdpose/detections3d"
POSES_OVERLAY_TOPIC = "/sixdpose/overlay"
MARKERS_TOPIC = "/sixdpose/markers"
DIAGNOSTICS_TOPIC = "/diagnostics"
TF_FRAME_PREFIX = "sixdpose"

# A node's frame counters in its DiagnosticStatus: counter name -> key.
FRAME_COUNT_KEYS = {"received": "frames received", "answered": "frames answered", "rejected": "frames rejected"}
DROPPED_KEY = "frames dropped"  # images newer ones replaced in the middleware before the node took them (gaps)
SKIPPED_KEY = "frames skipped"  # images the node took but replaced by newer ones before processing (busy node)
ARRIVED_KEY = "frames arrived"  # received + skipped + dropped: every image that reached the node


def object_pose_topic(object_name: str) -> str:
    """Topic of an object's geometry_msgs/PoseStamped, e.g. /sixdpose/duck/pose."""
    return f"/{TF_FRAME_PREFIX}/{object_name}/pose"

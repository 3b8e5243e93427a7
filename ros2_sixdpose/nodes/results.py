"""Publishing poses for manipulation: ObjectPoseArray, Detection3DArray, PoseStamped per object, TF, markers, overlay.

For each frame, every published instance gets a TF frame `sixdpose/<name>` (best instance of an object)
or `sixdpose/<name>_<i>` (the others), child of the camera's optical frame (the image's frame_id). The
best instance of each object also goes out as a PoseStamped on /sixdpose/<name>/pose, the topic a grasp
planner subscribes to. Markers show the object meshes (BOP PLYs, millimetres, hence scale 0.001).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import Marker, MarkerArray

from ros2_sixdpose.core.messages import InstancePose
from ros2_sixdpose.core.objects import ObjectRegistry, model_file_name
from ros2_sixdpose.msg import ObjectPoseArray
from ros2_sixdpose.nodes.camera_node import RESULT_QOS
from ros2_sixdpose.nodes.conversions import (detection3d_array_msg, image_msg, object_pose_array_msg, pose_msg,
                                             pose_stamped_msg, transform_msg)
from ros2_sixdpose.nodes.overlay import draw_poses, object_colour
from ros2_sixdpose.nodes.tf import make_broadcaster
from ros2_sixdpose.pipeline import Frame
from ros2_sixdpose.topics import (DETECTIONS_3D_TOPIC, MARKERS_TOPIC, POSES_OVERLAY_TOPIC, POSES_TOPIC, TF_FRAME_PREFIX,
                                  object_pose_topic)

MM_TO_M = 0.001
ROS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # a token of a ROS topic name, also safe in TF frame ids


def marker_array_msg(poses: Sequence[InstancePose], models_dir: Path, header: Header) -> MarkerArray:
    """MarkerArray: a DELETEALL (so objects no longer seen vanish), then one mesh marker per instance."""
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for pose in poses:
        marker = Marker(header=header, ns=pose.name, id=pose.instance, type=Marker.MESH_RESOURCE, action=Marker.ADD,
                        pose=pose_msg(pose.T_cam_obj),
                        mesh_resource=(models_dir / model_file_name(pose.object_id)).resolve().as_uri(),
                        mesh_use_embedded_materials=True)
        marker.scale.x = marker.scale.y = marker.scale.z = MM_TO_M
        marker.color.r, marker.color.g, marker.color.b = (c / 255.0 for c in object_colour(pose.object_id))
        marker.color.a = 1.0
        markers.append(marker)
    return MarkerArray(markers=markers)


class ResultPublisher:
    """The publishers of a pose node's results; `publish` sends one frame's instances on each of them."""

    def __init__(self, node: Node, registry: ObjectRegistry, models_dir: Path) -> None:
        for model in registry:
            if not ROS_NAME.fullmatch(model.name):
                raise ValueError(f"object {model.obj_id} is named {model.name!r}, which cannot be part of a topic or "
                                 f"TF frame name (letters, digits, '_'; see {models_dir}/models_names.json)")
        self.registry = registry
        self.models_dir = models_dir
        self.poses = node.create_publisher(ObjectPoseArray, POSES_TOPIC, RESULT_QOS)
        self.detections3d = node.create_publisher(Detection3DArray, DETECTIONS_3D_TOPIC, RESULT_QOS)
        self.pose_stamped = {model.name: node.create_publisher(PoseStamped, object_pose_topic(model.name), RESULT_QOS)
                             for model in registry}
        self.markers = node.create_publisher(MarkerArray, MARKERS_TOPIC, RESULT_QOS)
        self.overlay = node.create_publisher(Image, POSES_OVERLAY_TOPIC, RESULT_QOS)
        self.tf = make_broadcaster(node)

    def publish(self, header: Header, frame: Frame, poses: Sequence[InstancePose], tf: bool = True,
                markers: bool = True, overlay: bool = True) -> None:
        """Publish one frame's instances: both arrays always; PoseStamped and TF per instance; markers and overlay
        (drawn only while someone subscribes) when asked."""
        self.poses.publish(object_pose_array_msg(poses, header))
        self.detections3d.publish(detection3d_array_msg(poses, self.registry.models, header))
        for pose in poses:
            if pose.instance == 0:
                self.pose_stamped[pose.name].publish(pose_stamped_msg(pose.T_cam_obj, header))
        if tf and poses:
            self.tf.sendTransform([transform_msg(p.T_cam_obj, header, f"{TF_FRAME_PREFIX}/{p.frame_name}")
                                    for p in poses])
        if markers and self.markers.get_subscription_count() > 0:
            self.markers.publish(marker_array_msg(poses, self.models_dir, header))
        if overlay and self.overlay.get_subscription_count() > 0:
            image = draw_poses(frame.rgb, frame.camera, poses, self.registry.models)
            self.overlay.publish(image_msg(image, header))

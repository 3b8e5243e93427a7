"""The project's messages: built by colcon, read by rosbags from the same .msg files, sent over real DDS."""
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ros2_sixdpose.data.msg_types import typestore

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("ObjectPose", "ObjectPoseArray", "Detection", "DetectionArray")


@pytest.mark.parametrize("name", NAMES)
def test_rosbags_type_hash_equals_colcon(name):
    """rosbags' RIHS01 hash of each .msg equals the one rosidl generated, so bags and live topics agree."""
    generated = ROOT / "install/ros2_sixdpose/share/ros2_sixdpose/msg" / f"{name}.json"
    description = json.loads(generated.read_text())
    colcon_hash = description["type_hashes"][0]["hash_string"]
    assert typestore().hash_rihs01(f"ros2_sixdpose/msg/{name}") == colcon_hash


def test_object_pose_array_cdr_round_trip():
    """An ObjectPoseArray serialised and read back by rosbags keeps every field."""
    store = typestore()
    ObjectPoseArray = store.types["ros2_sixdpose/msg/ObjectPoseArray"]
    ObjectPose = store.types["ros2_sixdpose/msg/ObjectPose"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Pose = store.types["geometry_msgs/msg/Pose"]
    Point = store.types["geometry_msgs/msg/Point"]
    Quaternion = store.types["geometry_msgs/msg/Quaternion"]
    pose = ObjectPose(
        object_id=3, object_name="mug", instance=1, score=0.75, method="oracle",
        pose=Pose(position=Point(x=0.1, y=-0.2, z=0.9), orientation=Quaternion(x=0.0, y=0.0, z=np.sqrt(0.5), w=np.sqrt(0.5))),
        covariance=np.arange(36, dtype=np.float64),
    )
    msg = ObjectPoseArray(header=Header(stamp=Time(sec=12, nanosec=345), frame_id="camera_color_optical_frame"), poses=[pose])
    back = store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
    assert back.header.frame_id == "camera_color_optical_frame" and back.header.stamp.nanosec == 345
    assert back.poses[0].object_name == "mug" and back.poses[0].instance == 1
    assert back.poses[0].pose.position.z == pytest.approx(0.9)
    np.testing.assert_array_equal(back.poses[0].covariance, np.arange(36))


PUBLISHER = textwrap.dedent("""
    import time, rclpy
    from ros2_sixdpose.msg import ObjectPose, ObjectPoseArray
    rclpy.init()
    node = rclpy.create_node("test_publisher")
    pub = node.create_publisher(ObjectPoseArray, "/sixdpose/test_poses", 10)
    msg = ObjectPoseArray()
    msg.header.frame_id = "camera_color_optical_frame"
    pose = ObjectPose(object_id=5, object_name="duck", score=0.5, method="test")
    pose.pose.position.z = 0.42
    msg.poses = [pose]
    end = time.monotonic() + 20.0
    while time.monotonic() < end:
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.05)
    rclpy.shutdown()
""")


def test_object_pose_array_crosses_processes_over_dds():
    """A second process publishes an ObjectPoseArray; this one receives it over DDS on loopback."""
    import rclpy
    from ros2_sixdpose.msg import ObjectPoseArray

    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER])
    rclpy.init()
    try:
        node = rclpy.create_node("test_subscriber")
        received = []
        node.create_subscription(ObjectPoseArray, "/sixdpose/test_poses", received.append, 10)
        deadline = time.monotonic() + 15.0
        while not received and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert received, "no ObjectPoseArray arrived within 15 s"
        assert received[0].poses[0].object_name == "duck"
        assert received[0].poses[0].pose.position.z == pytest.approx(0.42)
    finally:
        publisher.kill()
        publisher.wait()
        rclpy.shutdown()

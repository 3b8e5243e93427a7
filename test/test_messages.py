"""The project's messages: built by colcon, read by rosbags from the same .msg files, sent over real DDS."""
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from ament_index_python.packages import get_package_share_directory
from rosbags.typesys import Stores, get_typestore

from ros2_sixdpose.data.msg_types import VISION_MSGS_STAND_IN, msg_types, typestore

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("ObjectPose", "ObjectPoseArray", "Detection", "DetectionArray")
# The vision_msgs the nodes publish and what they contain: the messages of the stand-in in ros/vision_msgs.
VISION_NAMES = ("Detection2DArray", "Detection2D", "BoundingBox2D", "Pose2D", "Point2D", "ObjectHypothesisWithPose",
                "ObjectHypothesis", "Detection3DArray", "Detection3D", "BoundingBox3D")
# RIHS01 hashes of the two arrays as rosbags computes them from ros-perception/vision_msgs 4.1.1's own .msg files
# (tag 4.1.1, commit e77fa2d9). A hash covers every nested field type, so these two pin all ten definitions.
UPSTREAM_RIHS01 = {
    "Detection2DArray": "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "Detection3DArray": "RIHS01_793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018",
}


@pytest.mark.parametrize("name", NAMES)
def test_rosbags_type_hash_equals_colcon(name):
    """rosbags' RIHS01 hash of each .msg equals the one rosidl generated, so bags and live topics agree."""
    generated = ROOT / "install/ros2_sixdpose/share/ros2_sixdpose/msg" / f"{name}.json"
    description = json.loads(generated.read_text())
    colcon_hash = description["type_hashes"][0]["hash_string"]
    assert typestore().hash_rihs01(f"ros2_sixdpose/msg/{name}") == colcon_hash


def _vision_store():
    """A Kilted typestore with the stand-in's vision_msgs definitions (upstream's text)."""
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(msg_types(VISION_MSGS_STAND_IN, "vision_msgs"))
    return store


def test_vision_msgs_stand_in_holds_upstreams_definitions_and_nothing_else():
    assert sorted(p.stem for p in VISION_MSGS_STAND_IN.glob("*.msg")) == sorted(VISION_NAMES)
    store = _vision_store()
    for name, upstream in UPSTREAM_RIHS01.items():
        assert store.hash_rihs01(f"vision_msgs/msg/{name}") == upstream


@pytest.mark.parametrize("name", VISION_NAMES)
def test_vision_msgs_in_use_have_upstreams_type_hash(name):
    """colcon's RIHS01 hash of the vision_msgs the nodes import (a real install's, else the stand-in built from
    ros/vision_msgs) equals rosbags' hash of upstream's definition: Isaac ROS and other consumers match."""
    generated = Path(get_package_share_directory("vision_msgs")) / "msg" / f"{name}.json"
    colcon_hash = json.loads(generated.read_text())["type_hashes"][0]["hash_string"]
    assert colcon_hash == _vision_store().hash_rihs01(f"vision_msgs/msg/{name}")


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

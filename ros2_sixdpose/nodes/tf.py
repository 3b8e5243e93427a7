"""Broadcasting transforms on /tf: tf2_ros where installed, else a TFMessage publisher that behaves the same.

The fallback publishes tf2_msgs/TFMessage (the real package, or the stand-in that the set-up builds from
ros/tf2_msgs with the identical definition and type hash) on /tf with tf2_ros's QoS for dynamic
transforms, so tf2 listeners on a real ROS install receive it.
"""
from __future__ import annotations

from collections.abc import Sequence

from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

try:
    from tf2_ros import TransformBroadcaster
except ImportError:  # not on PyPI; real ROS installs have it
    TransformBroadcaster = None

TF_TOPIC = "/tf"
# tf2_ros.DynamicBroadcasterQoS: reliable, volatile, keep last 100.
TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)


class TfPublisher:
    """Publishes TransformStamped lists on /tf, with tf2_ros.TransformBroadcaster's `sendTransform` call."""

    def __init__(self, node: Node) -> None:
        self._publisher = node.create_publisher(TFMessage, TF_TOPIC, TF_QOS)

    def sendTransform(self, transform: TransformStamped | Sequence[TransformStamped]) -> None:  # noqa: N802 (tf2_ros's name)
        """Publish one transform or several in one TFMessage."""
        transforms = [transform] if isinstance(transform, TransformStamped) else list(transform)
        self._publisher.publish(TFMessage(transforms=transforms))


def make_broadcaster(node: Node) -> TfPublisher:
    """tf2_ros.TransformBroadcaster when tf2_ros is installed, else a `TfPublisher`; both take sendTransform()."""
    return TransformBroadcaster(node) if TransformBroadcaster is not None else TfPublisher(node)

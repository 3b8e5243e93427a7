"""ROS 2 nodes: the only code of the package that imports rclpy.

This module itself imports no ROS code, so `sixdpose run`, the launch file and the tests can read the
one table of node executables, `NODES`, on any machine. setup.py's console_scripts name the same
executables (a test checks it), and config/nodes*.yaml choose which of them to start.

Topic names and diagnostic keys: `ros2_sixdpose.topics`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeSpec:
    """One node executable: its console script, where its class and main() live, its default ROS name."""

    executable: str
    module: str
    node_class: str
    default_name: str
    summary: str
    stages: tuple[str, ...] = ()  # namespaces of the stage parameters it declares, e.g. `detector` (detector.*)

    @property
    def entry_point(self) -> str:
        """The setup.py console_scripts entry, e.g. `detector_node = ros2_sixdpose.nodes.start:detector_node`
        (`ros2_sixdpose.nodes.start` imports `module` and calls its main())."""
        return f"{self.executable} = ros2_sixdpose.nodes.start:{self.executable}"


NODES: dict[str, NodeSpec] = {
    spec.executable: spec
    for spec in (
        NodeSpec(
            "detector_node", "ros2_sixdpose.nodes.detector_node", "DetectorNode", "sixdpose_detector",
            "image + camera_info -> DetectionArray (and a mask overlay image)", ("detector",),
        ),
        NodeSpec(
            "pose_estimator_node", "ros2_sixdpose.nodes.pose_estimator_node", "PoseEstimatorNode",
            "sixdpose_pose_estimator",
            "image + camera_info (+ detections, or its own detector) -> ObjectPoseArray, PoseStamped, TF, "
            "markers, overlay", ("detector", "estimator", "refiner"),
        ),
        NodeSpec(
            "tracker_node", "ros2_sixdpose.nodes.tracker_node", "TrackerNode", "sixdpose_tracker",
            "image + camera_info -> poses tracked frame to frame (detector + estimator in a child process when a "
            "track is needed): ObjectPoseArray, PoseStamped, TF, markers, overlay",
            ("detector", "estimator", "refiner", "tracking"),
        ),
    )
}

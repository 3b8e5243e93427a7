"""Start the ros2_sixdpose nodes of a deployment file on a camera's topics.

    ros2 launch ros2_sixdpose sixdpose.launch.py \
        image:=/camera/camera/color/image_raw camera_info:=/camera/camera/color/camera_info

Arguments:
    deployment   deployment file (default: the installed config/nodes.yaml: detector -> estimator -> tracker in
                 one tracker_node; config/nodes_estimator.yaml: no tracking; config/nodes_split.yaml: a separate
                 detector_node)
    image, camera_info   camera topics (default: the deployment file's)
    composed     true: every node in one process (`sixdpose run --single-process`); rclpy nodes cannot be
                 loaded into a C++ component container
    rviz         true: also start RViz 2 with the installed config/sixdpose.rviz (overlay, TF, meshes, poses)
    rviz_frame   RViz's fixed frame: the camera's optical frame (default camera_color_optical_frame)

The nodes, their parameters and the camera topics come from `ros2_sixdpose.nodes.deployment`, which
`sixdpose run` reads too, so both start the same thing.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from ros2_sixdpose.nodes.deployment import launch_node_arguments, load_deployment
from ros2_sixdpose.paths import CONFIG_DIR, PACKAGE

RVIZ_CONFIG = "sixdpose.rviz"  # in the installed config/ folder


def _actions(context):
    """The node actions (or the one composed process) of the chosen deployment file, and RViz if asked."""
    path = LaunchConfiguration("deployment").perform(context)
    image = LaunchConfiguration("image").perform(context) or None
    camera_info = LaunchConfiguration("camera_info").perform(context) or None
    deployment = load_deployment(path, image, camera_info)
    if _true(LaunchConfiguration("composed").perform(context)):
        command = ["sixdpose", "run", "--single-process", "--config", path,
                   "--image", deployment.image_topic, "--camera-info", deployment.camera_info_topic]
        actions = [ExecuteProcess(cmd=command, output="screen")]
    else:
        actions = [Node(**arguments) for arguments in launch_node_arguments(deployment)]
    if _true(LaunchConfiguration("rviz").perform(context)):
        config = str(Path(get_package_share_directory(PACKAGE)) / CONFIG_DIR / RVIZ_CONFIG)
        frame = LaunchConfiguration("rviz_frame").perform(context)
        actions.append(Node(package="rviz2", executable="rviz2", name="sixdpose_rviz", arguments=["-d", config, "-f", frame]))
    return actions


def _true(value: str) -> bool:
    """A launch argument's truth value."""
    return value.lower() in ("true", "1")


def generate_launch_description():
    """Launch arguments, then the nodes of the deployment file."""
    default = str(Path(get_package_share_directory(PACKAGE)) / CONFIG_DIR / "nodes.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("deployment", default_value=default, description="deployment file (config/nodes*.yaml)"),
        DeclareLaunchArgument("image", default_value="", description="camera image topic (default: the file's)"),
        DeclareLaunchArgument("camera_info", default_value="", description="camera_info topic (default: the file's)"),
        DeclareLaunchArgument("composed", default_value="false", description="all nodes in one process"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz with config/sixdpose.rviz"),
        DeclareLaunchArgument("rviz_frame", default_value="camera_color_optical_frame",
                              description="RViz's fixed frame: the camera's optical frame"),
        OpaqueFunction(function=_actions),
    ])

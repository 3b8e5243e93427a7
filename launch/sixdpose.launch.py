"""Start the ros2_sixdpose nodes of a deployment file on a camera's topics.

    ros2 launch ros2_sixdpose sixdpose.launch.py \
        image:=/camera/camera/color/image_raw camera_info:=/camera/camera/color/camera_info

Arguments:
    deployment   deployment file (default: the installed config/nodes.yaml; config/nodes_split.yaml runs a
                 separate detector_node)
    image, camera_info   camera topics (default: the deployment file's)
    composed     true: every node in one process (`sixdpose run --single-process`); rclpy nodes cannot be
                 loaded into a C++ component container

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


def _actions(context):
    """The node actions (or the one composed process) of the chosen deployment file."""
    path = LaunchConfiguration("deployment").perform(context)
    image = LaunchConfiguration("image").perform(context) or None
    camera_info = LaunchConfiguration("camera_info").perform(context) or None
    deployment = load_deployment(path, image, camera_info)
    if LaunchConfiguration("composed").perform(context).lower() in ("true", "1"):
        command = ["sixdpose", "run", "--single-process", "--config", path,
                   "--image", deployment.image_topic, "--camera-info", deployment.camera_info_topic]
        return [ExecuteProcess(cmd=command, output="screen")]
    return [Node(**arguments) for arguments in launch_node_arguments(deployment)]


def generate_launch_description():
    """Launch arguments, then the nodes of the deployment file."""
    default = str(Path(get_package_share_directory(PACKAGE)) / CONFIG_DIR / "nodes.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("deployment", default_value=default, description="deployment file (config/nodes*.yaml)"),
        DeclareLaunchArgument("image", default_value="", description="camera image topic (default: the file's)"),
        DeclareLaunchArgument("camera_info", default_value="", description="camera_info topic (default: the file's)"),
        DeclareLaunchArgument("composed", default_value="false", description="all nodes in one process"),
        OpaqueFunction(function=_actions),
    ])

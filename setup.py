"""Python side of ros2_sixdpose: the library and the `sixdpose` command (messages are built by colcon)."""
from setuptools import find_packages, setup

setup(
    name="ros2_sixdpose",
    version="0.1.0",
    description="6D pose estimation of known objects from RGB for ROS 2",
    license="Apache-2.0",
    packages=find_packages(include=["ros2_sixdpose", "ros2_sixdpose.*"]),
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "sixdpose = ros2_sixdpose.cli:main",
            "detector_node = ros2_sixdpose.nodes.start:detector_node",
            "pose_estimator_node = ros2_sixdpose.nodes.start:pose_estimator_node",
            "tracker_node = ros2_sixdpose.nodes.start:tracker_node",
        ],
    },
)

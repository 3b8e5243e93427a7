"""ros2_sixdpose: 6D pose of known objects from an RGB camera, for ROS 2 manipulation."""
# The generated message modules (ros2_sixdpose.msg) are installed by colcon into install/, apart from this
# source tree; extend_path lets both halves of the package be imported as one.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"

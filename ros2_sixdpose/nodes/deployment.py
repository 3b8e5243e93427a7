"""Which nodes to start, with which parameters and camera topics: config/nodes*.yaml, read with no ROS.

`sixdpose run` and launch/sixdpose.launch.py both start what `load_deployment` returns, so a deployment is
written once. File layout:

    camera:                      # the camera driver's topics (both commands can override them)
      image: /camera/color/image_raw
      camera_info: /camera/color/camera_info
    nodes:
      - executable: pose_estimator_node    # a key of ros2_sixdpose.nodes.NODES
        name: sixdpose_pose_estimator      # optional; the executable's default name otherwise
        parameters:                        # ROS parameters: node settings and stage overrides
          detections: internal
          detector.score_threshold: 0.6

Relative paths among the parameters resolve against the node's `root` (the package's folder by default),
not against this file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ros2_sixdpose.nodes import NODES, NodeSpec
from ros2_sixdpose.paths import PACKAGE
from ros2_sixdpose.topics import CAMERA_INFO_TOPIC, IMAGE_TOPIC



@dataclass(frozen=True)
class NodeLaunch:
    """One node to start: its executable, ROS name and parameters."""

    spec: NodeSpec
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """The nodes of one deployment and the camera topics they read."""

    nodes: tuple[NodeLaunch, ...]
    image_topic: str = IMAGE_TOPIC
    camera_info_topic: str = CAMERA_INFO_TOPIC

    def remappings(self) -> list[tuple[str, str]]:
        """(node's topic, camera's topic) for each camera topic that differs from the nodes' default."""
        pairs = [(IMAGE_TOPIC, self.image_topic), (CAMERA_INFO_TOPIC, self.camera_info_topic)]
        return [(source, target) for source, target in pairs if source != target]

    def ros_arguments(self, node: NodeLaunch, params_file: Path) -> list[str]:
        """Command-line ROS arguments of `node`: its name, its parameter file, the camera remappings."""
        args = ["--ros-args", "-r", f"__node:={node.name}", "--params-file", str(params_file)]
        for source, target in self.remappings():
            args += ["-r", f"{source}:={target}"]
        return args


def with_parameters(deployment: Deployment, parameters: dict[str, object]) -> Deployment:
    """`deployment` with `parameters` set on every node, a stage's (`detector.score_threshold`) only on the nodes
    that run that stage: a node refuses parameters it does not declare."""
    def fits(node: NodeLaunch, name: str) -> bool:
        return "." not in name or name.split(".", 1)[0] in node.spec.stages

    nodes = tuple(dataclasses.replace(node, parameters={**node.parameters,
                                                        **{k: v for k, v in parameters.items() if fits(node, k)}})
                  for node in deployment.nodes)
    return dataclasses.replace(deployment, nodes=nodes)


def launch_node_arguments(deployment: Deployment) -> list[dict[str, Any]]:
    """Keyword arguments of `launch_ros.actions.Node` for each node of `deployment` (used by the launch file)."""
    return [
        {"package": PACKAGE, "executable": node.spec.executable, "name": node.name,
         "parameters": [dict(node.parameters)], "remappings": deployment.remappings(), "output": "screen"}
        for node in deployment.nodes
    ]


def parameter_file_content(node: NodeLaunch) -> dict[str, Any]:
    """A ROS 2 parameter file's content holding `node`'s parameters (for any node name)."""
    return {"/**": {"ros__parameters": dict(node.parameters)}}


def _topic(path: Path, camera: dict[str, Any], key: str, default: str) -> str:
    """A camera topic of the file, checked to be an absolute topic name."""
    topic = camera.get(key, default)
    if not isinstance(topic, str) or not topic.startswith("/"):
        raise ValueError(f"{path}: camera.{key} must be an absolute topic name, got {topic!r}")
    return topic


def load_deployment(
    path: str | Path, image_topic: str | None = None, camera_info_topic: str | None = None
) -> Deployment:
    """Read a deployment file; `image_topic` / `camera_info_topic` override its camera topics.

    Raises FileNotFoundError for a missing file and ValueError naming the file and entry for an unknown
    executable, a duplicate node name, or a malformed entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: deployment file not found")
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict) or set(content) - {"camera", "nodes"}:
        raise ValueError(f"{path}: expected a mapping with keys 'camera' and 'nodes'")
    camera = content.get("camera") or {}
    if not isinstance(camera, dict) or set(camera) - {"image", "camera_info"}:
        raise ValueError(f"{path}: 'camera' must map 'image' and 'camera_info' to topics")
    entries = content.get("nodes")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: 'nodes' must be a non-empty list")
    nodes = []
    for index, entry in enumerate(entries):
        where = f"{path}: nodes[{index}]"
        if not isinstance(entry, dict) or set(entry) - {"executable", "name", "parameters"}:
            raise ValueError(f"{where}: expected a mapping with 'executable', optional 'name' and 'parameters'")
        spec = NODES.get(entry.get("executable"))
        if spec is None:
            raise ValueError(f"{where}: unknown executable {entry.get('executable')!r}; known: {sorted(NODES)}")
        parameters = entry.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError(f"{where}: 'parameters' must be a mapping of parameter names to values")
        nodes.append(NodeLaunch(spec, str(entry.get("name", spec.default_name)), parameters))
    names = [node.name for node in nodes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path}: node names {duplicates} are used more than once")
    return Deployment(
        nodes=tuple(nodes),
        image_topic=image_topic or _topic(path, camera, "image", IMAGE_TOPIC),
        camera_info_topic=camera_info_topic or _topic(path, camera, "camera_info", CAMERA_INFO_TOPIC),
    )

"""A replay end to end: start the deployment's nodes, play a bag to them over DDS, record, stop, score.

Writes OUT/output (the recorded rosbag2; bag time = receive time), OUT/published.json (when each image
was published), OUT/metrics.json (frames sent / received / answered, latency, pose recalls) and OUT/logs/
(each node's log and parameter file). Needs a ROS 2 environment for the player (`nodes/replay.py`).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ros2_sixdpose.core.objects import load_models
from ros2_sixdpose.data.bags import BagTopics, read_bag
from ros2_sixdpose.evaluation.replay import PUBLISHED_FILE, ReplayMetrics, score_replay, write_published
from ros2_sixdpose.evaluation.scoring import EvalConfig
from ros2_sixdpose.nodes.deployment import Deployment
from ros2_sixdpose.nodes.processes import NodeProcesses
from ros2_sixdpose.paths import config_file

if TYPE_CHECKING:
    from ros2_sixdpose.nodes.replay import ReplaySettings

logger = logging.getLogger(__name__)

OUTPUT_BAG = "output"
METRICS_FILE = "metrics.json"
LOGS = "logs"
FASTDDS_PROFILES = "FASTDDS_DEFAULT_PROFILES_FILE"


def use_large_image_transport() -> None:
    """Point Fast DDS at config/fastdds.xml (shared-memory segments that hold a whole image) unless told otherwise.

    Without it, best-effort images over 0.5 MB between processes are mostly lost (see the file). Set in
    this process's environment, so the nodes started from here and this process's participant both use it;
    an explicit FASTDDS_DEFAULT_PROFILES_FILE or another RMW is left alone.
    """
    profile = config_file("fastdds.xml")
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") == "rmw_fastrtps_cpp" and profile.is_file():
        if os.environ.setdefault(FASTDDS_PROFILES, str(profile)) == str(profile):
            logger.info("Fast DDS profile: %s", profile)


def _prepare_output(out: Path, overwrite: bool) -> None:
    """Create `out`; with `overwrite`, remove an earlier replay's results; FileExistsError otherwise."""
    earlier = [out / OUTPUT_BAG, out / PUBLISHED_FILE, out / METRICS_FILE]
    if any(path.exists() for path in earlier):
        if not overwrite:
            raise FileExistsError(f"{out} holds an earlier replay ({OUTPUT_BAG}/, {PUBLISHED_FILE}); "
                                  "pass --overwrite or choose another folder")
        shutil.rmtree(out / OUTPUT_BAG, ignore_errors=True)
        for path in earlier[1:]:
            path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def replay_and_score(
    bag: Path,
    deployment: Deployment,
    out: Path,
    settings: ReplaySettings,
    models_dir: Path,
    eval_config: EvalConfig,
    overwrite: bool = False,
) -> ReplayMetrics:
    """Replay `bag` through the nodes of `deployment`, write OUT/output, OUT/published.json and OUT/metrics.json.

    Raises FileNotFoundError / BagError for a missing bag or one without camera topics (before any node
    starts), FileExistsError for an earlier replay in `out`, NodeExited when a node dies, ReplayError
    when the nodes do not come up or stop answering.
    """
    from ros2_sixdpose.nodes.replay import replay  # needs rclpy, which the scoring does not

    topics = BagTopics()
    read_bag(bag, topics)  # checks the bag and its topics now, before anything starts
    _prepare_output(out, overwrite)
    use_large_image_transport()
    node_names = [node.name for node in deployment.nodes]
    with NodeProcesses(deployment, out / LOGS) as nodes:
        published = replay(bag, out / OUTPUT_BAG, deployment.image_topic, deployment.camera_info_topic, node_names,
                           settings, nodes.check, topics)
    write_published(out / PUBLISHED_FILE, published)
    metrics = score_replay(bag, out / OUTPUT_BAG, published, load_models(models_dir), eval_config, topics)
    metrics.write_json(out / METRICS_FILE)
    return metrics

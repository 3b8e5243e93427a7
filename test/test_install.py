"""Installed = working: a full colcon build of the package (messages, Python package, configs, weights,
object models, launch and RViz files) into a temporary install space, and the node started from that
install with the current folder elsewhere and no checkout on the Python path. It must find every file
through the package's share folder (ament index), as on a real ROS 2 install.

About a minute on the 2-core machine (the message generation dominates); marked `ros`.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FILES = ("package.xml", "CMakeLists.txt", "msg", "ros2_sixdpose", "launch", "config", "weights")
START_TIMEOUT_S = 120.0


@pytest.mark.ros
def test_colcon_install_starts_the_node_from_any_folder(tmp_path):
    source = tmp_path / "src" / "ros2_sixdpose"
    source.mkdir(parents=True)
    for name in PACKAGE_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "assets/models", source / "assets/models")  # `make setup` builds it in a checkout
    # The environment of a user's shell: no checkout on the Python path, no SIXDPOSE_ROOT.
    env = {key: value for key, value in os.environ.items() if key != "SIXDPOSE_ROOT"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and Path(p).resolve() != ROOT)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(filter(None, [sys.prefix, env.get("AMENT_PREFIX_PATH")]))
    build = subprocess.run(
        ["colcon", "--log-base", "log", "build", "--base-paths", "src", "--build-base", "build",
         "--install-base", "install", "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    prefix = tmp_path / "install/ros2_sixdpose"  # colcon installs each package under its own prefix
    share = prefix / "share/ros2_sixdpose"
    for installed in ("config/nodes.yaml", "config/sixdpose.rviz", "weights/detector.pt", "launch/sixdpose.launch.py",
                      "assets/models/models_info.json"):
        assert (share / installed).is_file(), installed

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shell = (f"source {tmp_path}/install/setup.bash && python -c 'import ros2_sixdpose.nodes, ros2_sixdpose.paths as p; "
             "print(ros2_sixdpose.nodes.__file__); print(p.package_root())' && "
             f"exec {prefix}/lib/ros2_sixdpose/pose_estimator_node")
    log = tmp_path / "node.log"
    with open(log, "w") as out:
        node = subprocess.Popen(["bash", "-c", shell], cwd=elsewhere, stdout=out, stderr=subprocess.STDOUT,
                                env={**env, "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0"})
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "ready:" not in log.read_text():
            assert node.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
        code = node.wait(30)
    lines = log.read_text().splitlines()
    assert lines[0].startswith(str(prefix)), lines[0]  # the installed package, not the checkout
    assert lines[1] == str(share)  # found through the ament index
    assert code == 0 and "Traceback" not in log.read_text(), log.read_text()

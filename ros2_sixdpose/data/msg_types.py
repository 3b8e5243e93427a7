"""The project's message definitions for `rosbags`, read from the same msg/*.msg files colcon builds."""
from __future__ import annotations

import functools
import os
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ros2_sixdpose.paths import CHECKOUT, MSG_DIR, PACKAGE


def msg_dir() -> Path:
    """Folder of the .msg files: the checkout's msg/, else the installed share/ros2_sixdpose/msg."""
    checkout = CHECKOUT / MSG_DIR
    if checkout.is_dir():
        return checkout
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        installed = Path(prefix) / "share" / PACKAGE / MSG_DIR
        if prefix and installed.is_dir():
            return installed
    raise FileNotFoundError(f"no msg/ folder of {PACKAGE} beside the sources or under AMENT_PREFIX_PATH")


@functools.cache
def typestore() -> Typestore:
    """A ROS 2 Kilted typestore that also knows ros2_sixdpose/msg/* (ObjectPose, DetectionArray, ...)."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store

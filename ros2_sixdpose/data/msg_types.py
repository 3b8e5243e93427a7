"""Message definitions for `rosbags`: the project's msg/*.msg files (those colcon builds) and vision_msgs'."""
from __future__ import annotations

import functools
import os
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from ros2_sixdpose.paths import CHECKOUT, MSG_DIR, PACKAGE

VISION_MSGS = "vision_msgs"
# The vision_msgs stand-in (upstream's definitions, built where no vision_msgs is installed; see Makefile).
VISION_MSGS_STAND_IN = CHECKOUT / "ros" / VISION_MSGS / MSG_DIR


def installed_msg_dir(package: str) -> Path | None:
    """share/<package>/msg of the first prefix on AMENT_PREFIX_PATH that has one, else None."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        installed = Path(prefix) / "share" / package / MSG_DIR
        if prefix and installed.is_dir():
            return installed
    return None


def msg_dir() -> Path:
    """Folder of the project's .msg files: the checkout's msg/, else the installed share/ros2_sixdpose/msg."""
    checkout = CHECKOUT / MSG_DIR
    if checkout.is_dir():
        return checkout
    installed = installed_msg_dir(PACKAGE)
    if installed is None:
        raise FileNotFoundError(f"no msg/ folder of {PACKAGE} beside the sources or under AMENT_PREFIX_PATH")
    return installed


def vision_msgs_dir() -> Path | None:
    """Folder of vision_msgs' .msg files: the installed package's (the definitions published), else the stand-in's."""
    installed = installed_msg_dir(VISION_MSGS)
    if installed is not None:
        return installed
    return VISION_MSGS_STAND_IN if VISION_MSGS_STAND_IN.is_dir() else None


def msg_types(folder: Path, package: str) -> dict:
    """rosbags type definitions of every <package>/msg/<Name> in `folder`/<Name>.msg."""
    types = {}
    for path in sorted(folder.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
    return types


@functools.cache
def typestore() -> Typestore:
    """A ROS 2 Kilted typestore that also knows ros2_sixdpose/msg/* and, where found, vision_msgs/msg/*."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = msg_types(msg_dir(), PACKAGE)
    vision = vision_msgs_dir()
    if vision is not None:
        types.update(msg_types(vision, VISION_MSGS))
    store.register(types)
    return store

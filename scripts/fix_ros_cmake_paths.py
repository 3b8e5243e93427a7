"""Point the ROS wheels' exported CMake files at this venv's Python and NumPy headers.

The ROS 2 Kilted wheels were built on a manylinux image and their CMake config files hard-code that
machine's include directories; CMake's generate step fails on them until they name this interpreter's.
Idempotent: a second run finds nothing to replace.
"""
import pathlib
import re
import sys
import sysconfig

import numpy

BUILD_PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
BUILD_NUMPY_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include")


def main() -> int:
    """Rewrite every CMake file under <venv>/share; print how many were changed."""
    share = pathlib.Path(sys.prefix) / "share"
    changed = 0
    for path in share.glob("*/cmake/*.cmake"):
        text = path.read_text()
        new = BUILD_NUMPY_INCLUDE.sub(numpy.get_include(), text)
        new = BUILD_PYTHON_INCLUDE.sub(sysconfig.get_paths()["include"], new)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"fix_ros_cmake_paths: {changed} CMake files rewritten under {share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

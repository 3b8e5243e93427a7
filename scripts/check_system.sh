#!/usr/bin/env bash
# The system packages `make setup` needs (Debian 12 / Ubuntu names): checked by what the build uses, not by
# package name, so a Python or compiler installed another way counts too. Missing ones are installed with
# apt-get when run as root (unless CHECK_ONLY=1); otherwise the one command that would install them is
# printed, and this fails.
#   scripts/check_system.sh [PYTHON]      (default python3.11)
set -uo pipefail
python=${1:-python3.11}
missing=()

need() {  # need PACKAGE COMMAND...: PACKAGE is missing unless COMMAND succeeds
    local package=$1
    shift
    "$@" >/dev/null 2>&1 || missing+=("$package")
}

need "$python" command -v "$python"
need "$python-venv" "$python" -c "import ensurepip, venv"   # the venv and its pip
need cmake command -v cmake                                  # colcon builds the messages with CMake ...
need g++ command -v g++                                      # ... and a C/C++ compiler
need iproute2 command -v ip                                  # scripts/in-netns: loopback-only namespace
need libegl1 bash -c "ldconfig -p | grep -q 'libEGL.so.1 '"  # the renderer's headless OpenGL context
need libgl1-mesa-dri bash -c "ls /usr/lib/*/dri/swrast_dri.so /usr/lib/dri/swrast_dri.so 2>/dev/null | grep -q ."  # llvmpipe

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
command="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && [ "${CHECK_ONLY:-0}" != 1 ] && command -v apt-get >/dev/null; then
    echo "installing the missing system packages: ${missing[*]}"
    bash -c "$command" || exit 1
    exit 0
fi
echo "missing system packages: ${missing[*]}" >&2
echo "install them (as root) with:  $command" >&2
exit 1

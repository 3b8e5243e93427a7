# ros2_sixdpose: `make demo` and `make test` each set up what they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PIP := $(VENV)/bin/pip install -q -c constraints.txt
RUN := scripts/env
NETNS := scripts/in-netns
export ROS_HOME ?= $(CURDIR)/out/ros_home
export MESA_SHADER_CACHE_DIR ?= $(CURDIR)/out/mesa_cache

MSG_FILES := $(wildcard msg/*.msg)
PY_SOURCES := $(shell find ros2_sixdpose -name '*.py' -not -path '*/__pycache__/*')

.PHONY: setup test demo bench clean

setup: $(VENV)/.stamp-deps install/.stamp-msgs assets/models/.stamp

$(VENV)/.stamp-deps: requirements.txt requirements-ros.txt constraints.txt setup.py scripts/fix_ros_cmake_paths.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt -r requirements-ros.txt
	$(PIP) --no-deps -e .
	$(VENV)/bin/python scripts/fix_ros_cmake_paths.py
	touch $@

# Messages only, built from a copy staged outside the checkout's root: CMake refuses exported include
# paths inside the source tree, and the venv (whose NumPy headers the messages use) lives there.
# The venv imports the Python sources from this checkout (editable install).
install/.stamp-msgs: $(VENV)/.stamp-deps $(MSG_FILES) CMakeLists.txt package.xml
	rm -rf build/msg_pkg && mkdir -p build/msg_pkg/ros2_sixdpose log
	cp -r package.xml CMakeLists.txt msg build/msg_pkg/ros2_sixdpose/
	source $(VENV)/bin/activate && AMENT_PREFIX_PATH=$(CURDIR)/$(VENV) colcon --log-base log build \
		--base-paths build/msg_pkg --build-base build/colcon --install-base install \
		--cmake-args -DSIXDPOSE_MESSAGES_ONLY=ON -DPython3_EXECUTABLE=$(CURDIR)/$(VENV)/bin/python \
		> log/colcon-build.txt 2>&1 || { cat log/colcon-build.txt; exit 1; }
	touch $@

assets/models/.stamp: $(VENV)/.stamp-deps ros2_sixdpose/data/objectset.py ros2_sixdpose/data/ply.py ros2_sixdpose/core/objects.py
	$(VENV)/bin/sixdpose objects build --out assets/models
	touch $@

test: setup
	$(NETNS) $(RUN) python -m pytest -q test

demo: setup
	$(NETNS) $(RUN) sixdpose demo --out out/demo

bench: setup
	$(RUN) sixdpose bench render

clean:
	rm -rf build install log out assets

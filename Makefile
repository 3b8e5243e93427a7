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
TF2_MSGS_FILES := ros/tf2_msgs/package.xml ros/tf2_msgs/CMakeLists.txt $(wildcard ros/tf2_msgs/msg/*.msg)

.PHONY: setup system test demo bench clean

setup: system $(VENV)/.stamp-deps install/.stamp-msgs assets/models/.stamp assets/gaussians/.stamp out/retrieval_banks/.stamp

# The system packages the build needs (compiler, CMake, Python venv, iproute2, headless OpenGL): installed
# when run as root, else the command that would install them is printed.
system:
	scripts/check_system.sh $(PYTHON)

$(VENV)/.stamp-deps: | system
$(VENV)/.stamp-deps: requirements.txt requirements-ros.txt constraints.txt setup.py scripts/fix_ros_cmake_paths.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt -r requirements-ros.txt
	$(PIP) --no-deps -e .
	$(VENV)/bin/python scripts/fix_ros_cmake_paths.py
	touch $@

# Messages only, built from a copy staged outside the checkout's root: CMake refuses exported include
# paths inside the source tree, and the venv (whose NumPy headers the messages use) lives there.
# The venv imports the Python sources from this checkout (editable install).
# ros/tf2_msgs (TFMessage alone, for /tf) is built too, but only where no tf2_msgs but our own is
# importable: beside a real ROS install's it would shadow the real one.
install/.stamp-msgs: $(VENV)/.stamp-deps $(MSG_FILES) CMakeLists.txt package.xml $(TF2_MSGS_FILES)
	rm -rf build/msg_pkg && mkdir -p build/msg_pkg/ros2_sixdpose log
	cp -r package.xml CMakeLists.txt msg build/msg_pkg/ros2_sixdpose/
	if $(VENV)/bin/python -c "import sys, tf2_msgs; sys.exit('$(CURDIR)/install/' in tf2_msgs.__file__)" 2>/dev/null; \
	then rm -rf install/tf2_msgs; \
	else mkdir -p build/msg_pkg/tf2_msgs && cp -r ros/tf2_msgs/package.xml ros/tf2_msgs/CMakeLists.txt ros/tf2_msgs/msg build/msg_pkg/tf2_msgs/; fi
	source $(VENV)/bin/activate && AMENT_PREFIX_PATH=$(CURDIR)/$(VENV) colcon --log-base log build \
		--base-paths build/msg_pkg --build-base build/colcon --install-base install \
		--cmake-args -DSIXDPOSE_MESSAGES_ONLY=ON -DPython3_EXECUTABLE=$(CURDIR)/$(VENV)/bin/python \
		> log/colcon-build.txt 2>&1 || { cat log/colcon-build.txt; exit 1; }
	touch $@

assets/models/.stamp: $(VENV)/.stamp-deps ros2_sixdpose/data/objectset.py ros2_sixdpose/data/ply.py ros2_sixdpose/core/objects.py
	$(VENV)/bin/sixdpose objects build --out assets/models
	touch $@

# Template banks of the refiner's retrieval (about 17 s): cached here so that nodes and tests start in seconds.
out/retrieval_banks/.stamp: assets/models/.stamp config/refiner.yaml $(wildcard ros2_sixdpose/estimation/retrieval/*.py)
	$(VENV)/bin/sixdpose objects banks --config config/refiner.yaml
	touch $@

# 3D Gaussian objects of the object set (GS-Pose's refiner renders them); a few minutes on one core.
GAUSSIAN_SOURCES := $(wildcard ros2_sixdpose/core/gaussian*.py ros2_sixdpose/core/splat*.py) config/gaussians.yaml
assets/gaussians/.stamp: assets/models/.stamp $(GAUSSIAN_SOURCES)
	$(VENV)/bin/sixdpose objects gaussians --models assets/models --out assets/gaussians
	touch $@

test: setup
	$(NETNS) $(RUN) python -m pytest -q test

demo: setup
	$(NETNS) $(RUN) sixdpose demo --out out/demo

bench: setup
	$(RUN) sixdpose bench render

clean:
	rm -rf build install log out assets

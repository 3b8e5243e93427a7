"""Where the package's files live: the root folder and its default sub-folders, named once.

Relative paths in the configuration files (`weights/detector.pt`, `assets/models`) resolve against
`package_root()`: the folder `SIXDPOSE_ROOT` names when set (as bop_toolkit's config.py takes its data
path from BOP_PATH), else the source checkout when running from one (it holds config/, weights/,
assets/), else the package's installed share folder (ament_index), else the current directory.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "ros2_sixdpose"
ROOT_ENV = "SIXDPOSE_ROOT"
CHECKOUT = Path(__file__).resolve().parents[1]

# Default folders, relative to the root (the form the configuration files use).
MODELS_DIR = "assets/models"  # BOP models folder of the object set (`sixdpose objects build`)
GAUSSIANS_DIR = "assets/gaussians"  # 3D Gaussian models of the same objects, one per object
WEIGHTS_DIR = "weights"  # shipped network weights, each with the JSON of how it was trained
CONFIG_DIR = "config"  # stage and deployment configuration (YAML)
OUT_DIR = "out"  # everything the commands make: data sets, benchmarks, replays, the demo
MSG_DIR = "msg"  # the package's message definitions


def package_root() -> Path:
    """Folder that relative config, weight and model paths resolve against (see the module's docstring)."""
    override = os.environ.get(ROOT_ENV)
    if override:
        return Path(override).expanduser()
    if (CHECKOUT / CONFIG_DIR).is_dir() and (CHECKOUT / "setup.py").is_file():
        return CHECKOUT
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return Path.cwd()
    try:
        return Path(get_package_share_directory(PACKAGE))
    except PackageNotFoundError:
        return Path.cwd()


def resolve(root: str | Path, path: str | Path) -> Path:
    """`path` if absolute, else `root / path`; `~` and environment variables expanded."""
    path = Path(os.path.expandvars(os.path.expanduser(str(path))))
    return path if path.is_absolute() else Path(root) / path


def under_root(path: str | Path) -> Path:
    """`path` resolved against `package_root()` (absolute paths unchanged)."""
    return resolve(package_root(), path)


def config_file(name: str) -> Path:
    """A file of the root's config/ folder, e.g. `config_file("nodes.yaml")`."""
    return package_root() / CONFIG_DIR / name


def models_dir() -> Path:
    """The object set's BOP models folder under the root."""
    return package_root() / MODELS_DIR


def gaussians_dir() -> Path:
    """The object set's 3D Gaussian models folder under the root."""
    return package_root() / GAUSSIANS_DIR


def weights_file(name: str) -> Path:
    """A shipped weights file under the root, e.g. `weights_file("detector.pt")`."""
    return package_root() / WEIGHTS_DIR / name


def out_dir() -> Path:
    """The root's output folder."""
    return package_root() / OUT_DIR

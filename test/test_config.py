"""Stage configuration: YAML (plain or ROS parameter file) -> dataclass, with dotted overrides."""
import dataclasses
import importlib
from dataclasses import dataclass, field

import pytest

from ros2_sixdpose.config import flatten, load_config
from ros2_sixdpose.estimation.factory import EstimatorConfig
from ros2_sixdpose.paths import ROOT_ENV, config_file, models_dir, package_root


@dataclass
class Inner:
    width: int = 640
    scale: float = 1.0


@dataclass
class Stage:
    name: str = "nocs"
    objects: tuple[int, ...] = (1, 2)
    threshold: float | None = None
    inner: Inner = field(default_factory=Inner)


def test_defaults_yaml_and_overrides_apply_in_order(tmp_path):
    path = tmp_path / "stage.yaml"
    path.write_text("stage_node:\n  ros__parameters:\n    name: bbdm\n    inner:\n      width: 320\n      scale: 2\n")
    config = load_config(Stage, path, overrides={"inner.width": 128, "objects": [4]})
    assert config == Stage(name="bbdm", objects=(4,), threshold=None, inner=Inner(width=128, scale=2.0))
    assert isinstance(config.inner.scale, float)


def test_flatten_gives_ros_parameter_names():
    assert flatten(Stage()) == {"name": "nocs", "objects": [1, 2], "threshold": None, "inner.width": 640, "inner.scale": 1.0}


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("inner:\n  widht: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml.inner: unknown key\(s\) \['widht'\]"):
        load_config(Stage, path)


def test_wrong_type_is_named():
    with pytest.raises(TypeError, match=r"Stage.inner.width: expected int, got str"):
        load_config(Stage, overrides={"inner.width": "wide"})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(Stage, tmp_path / "nope.yaml")


@pytest.mark.parametrize("cls, name", [
    ("ros2_sixdpose.detection.base.DetectorConfig", "detector.yaml"),
    ("ros2_sixdpose.estimation.factory.EstimatorConfig", "estimator.yaml"),
    ("ros2_sixdpose.data.synth.SynthConfig", "synth.yaml"),
    ("ros2_sixdpose.refinement.factory.RefinerConfig", "refiner.yaml"),
])
def test_code_defaults_equal_the_shipped_configuration(cls, name):
    module, _, class_name = cls.rpartition(".")
    config_class = getattr(importlib.import_module(module), class_name)
    assert load_config(config_class, config_file(name)) == config_class()


def test_bbdm_configuration_differs_from_the_default_only_in_its_weights():
    default = load_config(EstimatorConfig, config_file("estimator.yaml"))
    bbdm = load_config(EstimatorConfig, config_file("estimator_bbdm.yaml"))
    assert bbdm.nocs.weights == "weights/nocs_bbdm.pt"
    assert dataclasses.replace(bbdm.nocs, weights=default.nocs.weights) == default.nocs


def test_paths_root_follows_sixdpose_root(monkeypatch, tmp_path):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    assert package_root() == tmp_path
    assert models_dir() == tmp_path / "assets" / "models" and config_file("nodes.yaml") == tmp_path / "config" / "nodes.yaml"
    monkeypatch.delenv(ROOT_ENV)
    assert (package_root() / "config" / "estimator.yaml").is_file()  # the checkout, which holds config/

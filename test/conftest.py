"""Session-wide test environment (ROS logs and Mesa's shader cache in temporary folders) and shared fixtures."""
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.perturb import perturb_pose
from ros2_sixdpose.data.bop import BopSplit, read_rgb
from ros2_sixdpose.data.synth import SynthConfig, generate_split
from ros2_sixdpose.detection.oracle import OracleDetector
from ros2_sixdpose.estimation.base import PoseEstimate
from ros2_sixdpose.evaluation.split_run import split_frames

MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"

# A suite started in the background of a non-interactive shell (`make test &`, nohup) inherits SIGINT ignored, and
# every command and node it starts would inherit that too (an ignored signal stays ignored across exec), so the
# Ctrl-C tests would see their SIGINT vanish. A handled signal is reset to the default on exec: children start as
# from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _scratch_home_folders(tmp_path_factory):
    """Point ROS_HOME and MESA_SHADER_CACHE_DIR (inherited by node subprocesses) at temporary folders."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_HOME", str(tmp_path_factory.mktemp("ros_home")))
        mp.setenv("MESA_SHADER_CACHE_DIR", str(tmp_path_factory.mktemp("mesa_cache")))
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread, as the estimator runs: two threads on two shared cores stall in OpenMP spin-waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fresh_split(tmp_path_factory) -> Callable[[int], BopSplit]:
    """`fresh_split(seed)`: a new test split of 2 scenes x 3 640x480 images of the bundled objects.

    Use seeds that no training, validation or test data set was made with, so the shipped weights never saw it.
    """
    def make(seed: int) -> BopSplit:
        root = tmp_path_factory.mktemp(f"fresh_{seed}")
        generate_split(root, "test", 2, 3, seed=seed, config=SynthConfig(), models_dir=MODELS, progress=False)
        return BopSplit(root, "test")

    return make


@pytest.fixture(scope="session")
def oracle_frames() -> Callable:
    """`oracle_frames(split)`: (frame, oracle detections, [(ground-truth instance, visib_fract)] per detection) per image."""
    def frames(split: BopSplit):
        oracle = OracleDetector(split.root, split.split)
        for frame in split_frames(split):
            scene = split.read_scene(frame.key.scene_id)
            truth = {(inst.obj_id, info.bbox_visib): (inst, info.visib_fract)
                     for inst, info in zip(scene.gt[frame.key.im_id], scene.gt_info[frame.key.im_id])}
            detections = oracle.detect(frame.rgb, frame.key)
            boxes = [detection.box.astype(int) for detection in detections]
            yield frame, detections, [truth[(d.object_id, (x0, y0, x1 - x0, y1 - y0))]
                                      for d, (x0, y0, x1, y1) in zip(detections, boxes)]

    return frames


def fresh_starts(split, models, rot_deg: float):
    """(rgb, camera, start, T_gt) of every instance with visib_fract >= 0.5 of `split`, the start its ground truth turned
    up to rot_deg per axis and shifted up to 1 / 1 / 5 cm (seeded)."""
    rng = np.random.default_rng(1)
    for scene_id in split.scene_ids():
        scene = split.read_scene(scene_id)
        for im_id in sorted(scene.gt):
            rgb = read_rgb(split.rgb_path(scene_id, im_id))
            camera = PinholeCamera(scene.camera[im_id].K, rgb.shape[1], rgb.shape[0])
            for gt, info in zip(scene.gt[im_id], scene.gt_info[im_id]):
                if info.visib_fract >= 0.5:
                    model = models[gt.obj_id]
                    T0 = perturb_pose(gt.T_cam_obj, model.bbox_min + model.bbox_size / 2, rng, rot_deg)
                    yield rgb, camera, PoseEstimate(gt.obj_id, T0, 1.0, "perturbed"), gt.T_cam_obj

"""NOCS networks: U-Net shapes, the Brownian bridge's maths, symmetry-canonical targets, smoke training of both
models through the shared loop, the weights file, and the estimator end to end on rendered crops."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core import metrics
from ros2_sixdpose.core.camera import PinholeCamera
from ros2_sixdpose.core.checks import mask_box
from ros2_sixdpose.core.geometry import make_pose
from ros2_sixdpose.core.objects import ContinuousSymmetry, ObjectModel, load_models
from ros2_sixdpose.core.render import Lighting, Renderer
from ros2_sixdpose.data.augment import AugmentConfig
from ros2_sixdpose.data.bop import BopSplit
from ros2_sixdpose.data.views import CropDataset, ViewConfig
from ros2_sixdpose.detection.base import Detection
from ros2_sixdpose.estimation.bbdm import BBDM, BridgeConfig
from ros2_sixdpose.estimation.nocs_estimator import NocsEstimator, NocsEstimatorConfig
from ros2_sixdpose.estimation.nocs_net import CropSpec, ObjectConditioning
from ros2_sixdpose.estimation.nocs_weights import load_nocs_net, save_nocs_net
from ros2_sixdpose.estimation.pix2pix import PatchDiscriminator, PatchDiscriminatorConfig
from ros2_sixdpose.estimation.pnp import PnPConfig
from ros2_sixdpose.estimation.symmetry import canonical_nocs, canonical_symmetry, symmetric_nocs_error
from ros2_sixdpose.estimation.train import BBDMTask, CropCache, NocsTrainConfig, Pix2PixTask
from ros2_sixdpose.estimation.unet import UNet, UNetConfig
from ros2_sixdpose.evaluation.nocs_study import VariantScores, findings, late_validation, plot_validation
from ros2_sixdpose.train.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
# Shipped weights -> least (mean mask IoU, fraction of positions within 0.5 diameters, fraction of poses with
# ADD(-S) below 0.1 diameters) in a fresh scene; None where the weights reach too few to bound.
# Measured on that scene (26 instances, 3 px RANSAC): Pix2Pix 11000 steps 0.91 / 0.54 / 0.08, BBDM 16000 steps
# 0.80 / 0.50 / 0.08, the other 11000-step networks of the NOCS study: Pix2Pix without augmentation
# 0.93 / 0.38 / 0.04, BBDM without 0.83 / 0.19 / 0, BBDM with 0.80 / 0.15 / 0.
SHIPPED_BOUNDS = {
    "nocs_pix2pix.pt": (0.85, 0.5, 0.07),
    "nocs_pix2pix_noaug.pt": (0.85, 0.3, None),
    "nocs_bbdm.pt": (0.7, 0.35, 0.07),
    "nocs_bbdm_noaug.pt": (0.75, 0.12, None),
    "nocs_bbdm_11000.pt": (0.72, 0.1, None),
}
S = 32  # crop side of the smoke tests
TINY = (8, 16)
K = np.array([[500.0, 0.0, 160.0], [0.0, 500.0, 120.0], [0.0, 0.0, 1.0]])

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _block() -> ObjectModel:
    """An asymmetric 8 x 5 x 3 cm block with a different colour at each corner."""
    mesh = trimesh.creation.box((0.08, 0.05, 0.03))
    colors = np.concatenate([(mesh.vertices > 0) * 200 + 40, np.full((8, 1), 255)], axis=1).astype(np.uint8)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=colors)
    return ObjectModel.from_trimesh(mesh, 1, "block")


@pytest.fixture(scope="module")
def block() -> ObjectModel:
    return _block()


@pytest.fixture(scope="module")
def crops(block) -> dict[str, torch.Tensor]:
    """48 rendered 32x32 crops of the block (RGB, NOCS, mask) at random rotations, and their poses."""
    rng = np.random.default_rng(0)
    K_crop = np.array([[260.0, 0.0, 15.5], [0.0, 260.0, 15.5], [0.0, 0.0, 1.0]])
    out = {"rgb": [], "nocs": [], "mask": [], "T": []}
    with Renderer({1: block}) as renderer:
        for _ in range(48):
            T = make_pose(Rotation.random(random_state=rng).as_matrix(), [0.0, 0.0, 0.6])
            r = renderer.render(K_crop, S, S, [(1, T)], lighting=Lighting(ambient=0.6, diffuse=0.4))
            mask = r.instance == 0
            out["rgb"].append(torch.from_numpy(r.rgb).permute(2, 0, 1))
            out["nocs"].append(torch.from_numpy(r.nocs * mask[..., None]).permute(2, 0, 1).half())
            out["mask"].append(torch.from_numpy(mask)[None])
            out["T"].append(T)
    return {k: torch.stack(v) if k != "T" else v for k, v in out.items()}


def _cache(crops: dict[str, torch.Tensor], rows: slice) -> CropCache:
    return CropCache({"rgb": crops["rgb"][rows], "nocs": crops["nocs"][rows], "mask": crops["mask"][rows],
                      "obj_id": torch.ones(len(crops["rgb"][rows]), dtype=torch.int64)})


def test_unet_keeps_the_size_and_uses_time():
    torch.manual_seed(0)
    net = UNet(UNetConfig(in_channels=7, out_channels=4, widths=(8, 16, 24), time_conditioned=True)).eval()
    x = torch.randn(2, 7, 32, 32)
    a = net(x, torch.tensor([0, 0]))
    b = net(x, torch.tensor([0, 900]))
    assert a.shape == (2, 4, 32, 32)
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.randn(1, 7, 30, 30), torch.tensor([0]))
    with pytest.raises(ValueError, match="needs t"):
        net(x)


def test_conditioning_planes_name_the_object_and_the_pixel():
    planes = ObjectConditioning([2, 5, 7])(torch.tensor([7, 2]), 4)
    assert planes.shape == (2, 5, 4, 4)
    assert torch.equal(planes[0, :3, 1, 2], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(planes[1, :3, 3, 0], torch.tensor([1.0, 0.0, 0.0]))
    # x grows along columns, y along rows, from -1 to 1.
    torch.testing.assert_close(planes[0, 3, 0], torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))
    torch.testing.assert_close(planes[0, 4, :, 0], torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))
    with pytest.raises(ValueError, match="not trained on"):
        ObjectConditioning([2, 5, 7])(torch.tensor([3]), 4)


def test_patch_discriminator_judges_34px_patches():
    disc = PatchDiscriminator(PatchDiscriminatorConfig(in_channels=8, width=8, layers=2))
    logits = disc(torch.rand(1, 5, 64, 64), torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64))
    # 64 -> 32 -> 16 (stride 2), then two stride-1 4x4 convolutions with padding 1: 15, then 14.
    assert logits.shape == (1, 1, 14, 14)


def _bbdm(timesteps: int = 1000) -> BBDM:
    return BBDM(TINY, [1], BridgeConfig(timesteps=timesteps))


@pytest.mark.slow
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_bridge_step_keeps_the_bridge_marginals(eta):
    """x_t drawn from q(x_t | x0, y), stepped to s with the true x0 (deterministically or through the posterior),
    is distributed as q(x_s | x0, y)."""
    model = _bbdm()
    x0, y = torch.full((200_000,), -0.5), torch.full((200_000,), 0.8)
    gen = torch.Generator().manual_seed(0)
    t, s = 700, 350
    m_t, var_t = model.m[t], model.var[t]
    x_t = (1 - m_t) * x0 + m_t * y + var_t.sqrt() * torch.randn(x0.shape, generator=gen)
    x_s = model._bridge_step(x_t, x0, y, t, s, eta=eta, generator=gen)
    m_s, var_s = float(model.m[s]), float(model.var[s])
    assert abs(float(x_s.mean()) - ((1 - m_s) * -0.5 + m_s * 0.8)) < 0.005
    assert abs(float(x_s.var()) - var_s) < 0.01 * var_s
    # The schedule itself: m from 0.001 to 0.999, delta_t = 2 (m - m^2) peaking at 0.5.
    assert abs(float(model.m[0]) - 0.001) < 1e-6 and abs(float(model.var.max()) - 0.5) < 1e-3


def test_bridge_sampler_with_an_exact_denoiser_returns_the_target():
    """If the network predicted the objective exactly, the deterministic sampler would land on x0 in any number of steps."""
    model = _bbdm(timesteps=100)
    x0 = torch.rand(2, 4, 8, 8) * 2 - 1
    rgb = torch.rand(2, 3, 8, 8)
    y = model.condition(rgb)

    def exact(x_t, condition, t):
        # x_t = x0 + objective on every bridge path, so the exact objective is x_t - x0.
        return x_t - x0

    model._denoise = exact
    for steps in (1, 3, 10):
        torch.testing.assert_close(model.sample(rgb, torch.tensor([1, 1]), steps=steps), x0.clamp(-1, 1))
    assert model.timesteps_for(3) == [99, 50, 0]
    assert torch.equal(y[:, 3], torch.zeros(2, 8, 8))


def _torus_like() -> ObjectModel:
    """A cylinder symmetric about z (continuous) for the canonicalisation tests."""
    mesh = trimesh.creation.cylinder(radius=0.04, height=0.03, sections=64)
    sym = ContinuousSymmetry(axis=np.array([0.0, 0.0, 1.0]), offset=np.zeros(3))
    return ObjectModel.from_trimesh(mesh, 2, "disc", symmetries_continuous=(sym,))


def test_symmetric_poses_get_one_canonical_map():
    """Two poses that differ by a turn about the symmetry axis look the same, so they must get the same map."""
    model = _torus_like()
    rng = np.random.default_rng(1)
    points = rng.uniform(-1, 1, (50, 3)) * [0.03, 0.03, 0.015]
    T = make_pose(Rotation.random(random_state=rng).as_matrix(), [0.0, 0.0, 0.5])
    turn = make_pose(Rotation.from_rotvec([0.0, 0.0, 1.1]).as_matrix(), np.zeros(3))
    # The same camera points seen through the two poses have model coordinates p and turn^-1 p.
    nocs_a = model.points_to_nocs(points)
    nocs_b = model.points_to_nocs(points @ Rotation.from_rotvec([0.0, 0.0, -1.1]).as_matrix().T)
    canon_a, T_a = canonical_nocs(nocs_a, model, T)
    canon_b, T_b = canonical_nocs(nocs_b, model, T @ turn)
    np.testing.assert_allclose(canon_a, canon_b, atol=0.02)  # 315 sampled turns: within half a step
    np.testing.assert_allclose(T_a[:3, :3], T_b[:3, :3], atol=0.02)
    # The canonical pose is the symmetric pose closest to the camera frame.
    best = canonical_symmetry(T[:3, :3], model.symmetry_transforms(0.01))
    assert np.trace(T[:3, :3] @ best[:3, :3]) >= np.trace(T[:3, :3]) - 1e-12
    # The symmetric NOCS error does not count the turn; the plain one does.
    assert symmetric_nocs_error(nocs_b, nocs_a, model) < 0.02 < np.abs(nocs_b - nocs_a).mean()


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("task_class", [Pix2PixTask, BBDMTask])
def test_smoke_training_learns_and_round_trips(tmp_path, crops, block, task_class, device):
    """A tiny network trained for 150 steps on 40 crops halves its validation NOCS error and masks the object;
    its weights file loads back (on the CPU) into the same network, and the estimator runs on it. On CUDA the
    same training (`sixdpose train nocs --device cuda`) must reach the same bounds."""
    config = NocsTrainConfig(widths=TINY, crop_size=S, batch_size=8, augment=AugmentConfig(enabled=False),
                             bridge=BridgeConfig(timesteps=100, sample_steps=4))
    val = _cache(crops, slice(40, 48))
    task = task_class(config, [1], val, seed=0, device=device)
    task.train_mode(False)
    with torch.no_grad():
        before = task.validate()
    loader = torch.utils.data.DataLoader(_cache(crops, slice(0, 40)), batch_size=8, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    loop = TrainConfig(steps=150, lr=3e-3, warmup_steps=10, eval_every=150, checkpoint_every=150)
    result = train(task, loader, loop, tmp_path / "nocs.pt", run_info={"model": task.net.kind})
    after = result.final_metrics
    assert after["nocs_l1"] < 0.5 * before["nocs_l1"], (before, after)
    assert after["mask_iou"] > 0.7, after
    assert json.loads((tmp_path / "nocs.pt.json").read_text())["steps"] == 150

    net, spec = load_nocs_net(tmp_path / "nocs.pt")
    assert spec == CropSpec(size=S, scale=1.2) and net.kind == task.net.kind
    rgb, obj_id = crops["rgb"][40:42].float() / 255, torch.tensor([1, 1])
    with torch.no_grad():
        trained = task.net.predict(rgb.to(device), obj_id.to(device)).nocs.cpu()
        # Exact on the CPU; cuDNN's kernels differ from the CPU's in the last bits (1.7e-4 seen on an H100).
        tolerance = 0.0 if device == "cpu" else 1e-3
        torch.testing.assert_close(net.predict(rgb, obj_id).nocs, trained, atol=tolerance, rtol=0.0)

    # The estimator on a full frame: one detection gives one estimate (a pose, or no pose with a reason).
    camera = PinholeCamera(K, 320, 240)
    with Renderer({1: block}) as renderer:
        T = make_pose(Rotation.from_rotvec([0.4, -0.3, 0.2]).as_matrix(), [0.0, 0.0, 0.5])
        frame = renderer.render(K, 320, 240, [(1, T)])
    mask = frame.instance == 0
    estimator = NocsEstimator(net, spec, {1: block}, NocsEstimatorConfig())
    (estimate,) = estimator.estimate(frame.rgb, camera, [Detection(1, mask_box(mask), mask, 1.0)])
    assert estimate.object_id == 1 and estimate.method == f"nocs_{net.kind}"
    assert estimate.found or estimate.reason

    # Correspondences come only from pixels that the detection's mask holds too.
    left = mask.copy()
    left[:, int(mask_box(mask)[[0, 2]].mean()):] = False
    (full,) = estimator.run(frame.rgb, camera, [Detection(1, mask_box(mask), mask, 1.0)])
    (half,) = estimator.run(frame.rgb, camera, [Detection(1, mask_box(mask), left, 1.0)])
    inside = half.crop.warp(left, cv2.INTER_NEAREST)
    assert 0 < half.pnp.n_correspondences <= inside.sum() < full.pnp.n_correspondences


def test_checkpoint_of_another_device_kind_is_refused_clearly():
    task = BBDMTask(NocsTrainConfig(widths=TINY, crop_size=S), [1], _empty_cache(), seed=0)
    state = task.state_dict()
    task.load_state_dict(state)  # its own state round-trips
    state["generator"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA generator's state
    with pytest.raises(ValueError, match="resume on the device kind it was written on"):
        task.load_state_dict(state)


def test_estimator_reports_unknown_objects_and_bad_images(block):
    net = Pix2PixTask(NocsTrainConfig(widths=TINY, crop_size=S), [1], _empty_cache(), seed=0).net
    estimator = NocsEstimator(net, CropSpec(size=S), {1: block}, NocsEstimatorConfig())
    camera = PinholeCamera(K, 320, 240)
    mask = np.zeros((240, 320), bool)
    mask[100:120, 150:170] = True
    (estimate,) = estimator.estimate(np.zeros((240, 320, 3), np.uint8), camera, [Detection(9, mask_box(mask), mask, 0.9)])
    assert not estimate.found and estimate.score == 0.0 and "object 9" in estimate.reason
    with pytest.raises(ValueError, match="camera is 320x240"):
        estimator.estimate(np.zeros((100, 100, 3), np.uint8), camera, [])


def test_corrupt_or_missing_weights_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_nocs_net(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt"):
        load_nocs_net(tmp_path / "junk.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a NOCS network file"):
        load_nocs_net(tmp_path / "other.pt")
    content = save_nocs_net(_bbdm(), CropSpec(), path=None)
    content["state_dict"].pop(next(iter(content["state_dict"])))
    torch.save(content, tmp_path / "truncated.pt")
    with pytest.raises(ValueError, match="do not match a bbdm network"):
        load_nocs_net(tmp_path / "truncated.pt")


def _empty_cache() -> CropCache:
    return CropCache({"rgb": torch.zeros(0, 3, S, S, dtype=torch.uint8), "nocs": torch.zeros(0, 3, S, S),
                      "mask": torch.zeros(0, 1, S, S, dtype=torch.bool), "obj_id": torch.zeros(0, dtype=torch.int64)})


@pytest.fixture(scope="module")
def nocs_scene(fresh_split) -> BopSplit:
    """Two fresh scenes of three 640x480 images (seed 9200, never used in training)."""
    return fresh_split(9200)


def test_crop_cache_holds_the_crops_of_the_views_dataset(nocs_scene):
    """The image-by-image cache equals CropDataset's samples; symmetric maps are redrawn in the canonical pose."""
    models = load_models(nocs_scene.models_dir)
    view = ViewConfig(size=S)
    cache = CropCache.build(nocs_scene, view, models, epochs=2, seed=5, progress=False)
    dataset = CropDataset(nocs_scene, view, seed=5)
    assert len(cache) == 2 * len(dataset) > 0
    for row in (0, len(dataset) - 1, len(dataset), 2 * len(dataset) - 1):
        dataset.set_epoch(row // len(dataset))
        sample = dataset[row % len(dataset)]
        model = models[int(sample["obj_id"])]
        assert int(cache.obj_id[row]) == model.obj_id
        torch.testing.assert_close(cache.rgb[row], (sample["rgb"] * 255).round().to(torch.uint8))
        assert torch.equal(cache.mask[row], sample["mask"] > 0.5)
        inside = cache.mask[row, 0]
        expected = sample["nocs"].permute(1, 2, 0)[inside].numpy()
        if model.is_symmetric:
            expected = canonical_nocs(expected, model, sample["T_cam_obj"].numpy())[0]
        np.testing.assert_allclose(cache.nocs[row].permute(1, 2, 0)[inside].float().numpy(), expected, atol=1e-3)
    # Threads cutting images in parallel fill the same rows with the same crops.
    threaded = CropCache.build(nocs_scene, view, models, epochs=2, seed=5, progress=False, workers=3)
    for name in ("rgb", "nocs", "mask", "obj_id"):
        assert torch.equal(getattr(threaded, name), getattr(cache, name)), name


@pytest.mark.parametrize("weights", sorted(SHIPPED_BOUNDS))
def test_shipped_model_in_a_fresh_scene(nocs_scene, weights, oracle_frames):
    """Each shipped network through the real estimator, oracle detections, on scenes never seen in training
    (instances with visib_fract >= 0.5): masks, positions and ADD(-S) as good as measured. No network reaches
    ADD(-S) < 0.1 d on most instances yet (docs/nocs_study.md); these bounds guard what they do reach."""
    net, spec = load_nocs_net(ROOT / "weights" / weights)
    models = load_models(nocs_scene.models_dir)
    # The bounds were measured with a 3 px RANSAC threshold (the code default then; config/estimator.yaml ships 6).
    config = NocsEstimatorConfig(sample_steps=10, pnp=PnPConfig(ransac_threshold=3.0))
    estimator = NocsEstimator(net, spec, models, config)
    ious, position_errors, add_s_errors = [], [], []
    for frame, detections, truths in oracle_frames(nocs_scene):
        for detection, out, (inst, visib) in zip(detections, estimator.run(frame.rgb, frame.camera, detections), truths):
            if visib < 0.5:
                continue
            true_mask = out.crop.warp(detection.mask, cv2.INTER_NEAREST)
            predicted = out.mask > 0.5
            ious.append(np.count_nonzero(predicted & true_mask) / np.count_nonzero(predicted | true_mask))
            model = models[inst.obj_id]
            position, add_s = np.inf, np.inf
            if out.estimate.found:
                assert 0.0 < out.estimate.score <= 1.0
                T, T_gt = out.estimate.T_cam_obj, inst.T_cam_obj
                position = np.linalg.norm(T[:3, 3] - T_gt[:3, 3])
                add_s = metrics.add_s(T, T_gt, model.vertices, model.is_symmetric)
            position_errors.append(position / model.diameter)
            add_s_errors.append(add_s / model.diameter)
    assert len(ious) >= 20
    min_iou, min_close, min_add_s = SHIPPED_BOUNDS[weights]
    assert np.mean(ious) >= min_iou
    if min_close is not None:
        assert np.mean(np.asarray(position_errors) < 0.5) >= min_close
    if min_add_s is not None:
        assert np.mean(np.asarray(add_s_errors) < 0.1) >= min_add_s


def _scores(name: str, augment: str, steps: int, add: float, nocs_error: float, iou: float) -> VariantScores:
    return VariantScores(name, f"{name}.pt", "pix2pix", 1000, 10, nocs_error, iou, add, 0.0, 0.0, 1.0, 0,
                         train_info={"augment": augment, "steps": steps})


def test_study_findings_compare_augmentation_only_at_equal_training_steps():
    on = _scores("on", "on", 1800, 0.30, 0.10, 0.90)
    off = _scores("off", "off", 1800, 0.25, 0.12, 0.85)
    lines = findings([off, on])
    assert "Best ADD(-S) recall: on (30.00 %)." in lines
    assert "Best NOCS error: on (10.00 % of the box)." in lines
    assert lines[-1] == ("pix2pix: augmentation changes ADD(-S) recall by +5.0 points, NOCS error by -2.00 % of the "
                         "box and mask IoU by +0.050.")
    longer = _scores("on", "on", 11000, 0.30, 0.10, 0.90)
    assert findings([off, longer])[-1] == ("pix2pix: augmentation not compared, the variants were trained 11000 (on) "
                                           "and 1800 (off) steps.")


def test_study_findings_say_which_model_is_better_and_gains_more_and_whether_training_levelled_off(tmp_path):
    def variant(model: str, augment: str, add: float, nocs_error: float, iou: float, val: list[float]) -> VariantScores:
        history = [{"step": step, "nocs_l1": v} for step, v in zip((800, 900, 1000), val)]
        return VariantScores(f"{model} {augment}", "w.pt", model, 1000, 10, nocs_error, iou, add, 0.0, 0.0, 1.0, 0,
                             train_info={"augment": augment, "steps": 1000, "val_history": history})

    flat = [0.20, 0.199, 0.198]
    scores = [variant("pix2pix", "off", 0.10, 0.20, 0.90, flat), variant("pix2pix", "on", 0.15, 0.16, 0.92, flat),
              variant("bbdm", "off", 0.05, 0.25, 0.80, flat), variant("bbdm", "on", 0.20, 0.15, 0.93, flat)]
    lines = findings(scores)
    assert ("Augmentation off, 1000 steps each: the diffusion model (BBDM) gives worse maps (NOCS error 25.00 vs "
            "20.00 % of the box), worse masks (IoU 0.800 vs 0.900) and worse poses (ADD(-S) 5.0 vs 10.0 %) than the "
            "GAN (Pix2Pix).") in lines
    assert ("Augmentation on, 1000 steps each: the diffusion model (BBDM) gives better maps (NOCS error 15.00 vs "
            "16.00 % of the box), better masks (IoU 0.930 vs 0.920) and better poses (ADD(-S) 20.0 vs 15.0 %) than "
            "the GAN (Pix2Pix).") in lines
    assert "BBDM gains more from augmentation: ADD(-S) +5.0 points for Pix2Pix, +15.0 for BBDM." in lines
    assert lines[-1] == ("Validation NOCS L1 changed by less than 2 % over the last fifth of training for every "
                         "variant: levelled off.")
    assert late_validation(scores[0].train_info) == (0.20, 0.198)
    # One variant still improving (0.20 -> 0.18 over the last fifth) is named.
    scores[3] = variant("bbdm", "on", 0.20, 0.15, 0.93, [0.20, 0.19, 0.18])
    assert findings(scores)[-1].startswith("Not levelled off: validation NOCS L1 still fell over the last fifth of "
                                           "training for bbdm on (-10.0 %)")
    assert late_validation({"steps": 1000}) is None
    assert not any("training sets differ" in line for line in lines)
    scores[0].train_info["train_crops"], scores[1].train_info["train_crops"] = 27924, 28228
    assert any(line.startswith("The training sets differ (pix2pix off: 27924 crops, pix2pix on: 28228 crops")
               for line in findings(scores))
    # The validation curves of the variants that recorded them, as a figure.
    assert plot_validation(scores, tmp_path / "curves.png") and (tmp_path / "curves.png").stat().st_size > 5000
    assert not plot_validation([_scores("off", "off", 1800, 0.25, 0.12, 0.85)], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()

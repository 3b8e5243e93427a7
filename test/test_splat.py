"""Gaussian splatting on CPU: projection against gsplat's pure-torch reference, images against a dense
per-pixel compositing written here, gradients against finite differences, and CPU against CUDA when present."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci
from scipy.spatial.transform import Rotation

from ros2_sixdpose.core.gaussians import SH_C0, GaussianModel
from ros2_sixdpose.core.splat import GaussianRenderer, cuda_available
from ros2_sixdpose.core.splat_cpu import composite, composite_backward, footprints
from ros2_sixdpose.core.splat_projection import covariance_factors, gsplat_K, log_scale_gradient, project_gaussians

W, H = 64, 48
# Off-centre principal point and fx != fy so that a convention error cannot cancel out.
K = np.array([[120.0, 0.0, 30.3], [0.0, 110.0, 22.6], [0.0, 0.0, 1.0]])


def _pose(rotvec, t) -> np.ndarray:
    """T_cam_obj (4, 4) from a rotation vector (rad) and a translation (m)."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


def _random_model(rng: np.random.Generator, n: int, spread: float, scale: tuple[float, float],
                  sh_degree: int = 0) -> GaussianModel:
    """n random Gaussians around the origin (m)."""
    return GaussianModel(
        means=rng.normal(0.0, spread, (n, 3)),
        quats=rng.normal(size=(n, 4)),
        scales=rng.uniform(*scale, (n, 3)),
        opacities=rng.uniform(0.3, 0.95, n),
        sh=rng.normal(0.0, 0.6, (n, 4 if sh_degree else 1, 3)),
    )


def test_projection_matches_gsplat_reference():
    """Means, conics, 2D covariances, depths and radii equal gsplat's `_fully_fused_projection` (float64)."""
    rng = np.random.default_rng(3)
    # Some Gaussians outside the view and behind the camera, to exercise the clamping and culling too.
    model = _random_model(rng, 400, 0.3, (0.002, 0.05))
    T = _pose([0.3, -0.5, 0.2], [0.02, -0.01, 0.6])
    means = model.means.astype(np.float64)
    quats = model.quats.astype(np.float64)
    scales = model.scales.astype(np.float64)
    factors = covariance_factors(quats, scales)
    covars_ref, _ = _quat_scale_to_covar_preci(torch.from_numpy(quats), torch.from_numpy(scales))
    torch.testing.assert_close(torch.from_numpy(factors @ factors.transpose(0, 2, 1)), covars_ref)

    Kg = gsplat_K(K)
    ours = project_gaussians(means, factors, T, Kg, W, H)
    radii, means2d, depths, conics, compensations = _fully_fused_projection(
        torch.from_numpy(means), covars_ref, torch.from_numpy(T)[None], torch.from_numpy(Kg)[None], W, H,
        calc_compensations=True)
    drawn = radii[0].numpy().any(axis=1)
    assert 50 < drawn.sum() < 400  # both cases occur
    np.testing.assert_array_equal(ours.radii, radii[0].numpy())
    torch.testing.assert_close(torch.from_numpy(ours.depths), depths[0])
    torch.testing.assert_close(torch.from_numpy(ours.means2d[drawn]), means2d[0][drawn])
    torch.testing.assert_close(torch.from_numpy(ours.conics[drawn]), conics[0][drawn])
    torch.testing.assert_close(torch.from_numpy(ours.compensations[drawn]), compensations[0][drawn])
    # gsplat returns conics only: its 2D covariance is their inverse.
    a, b, c = conics[0][drawn].unbind(-1)
    det = a * c - b * b
    cov_ref = torch.stack([c / det, -b / det, -b / det, a / det], -1).reshape(-1, 2, 2)
    torch.testing.assert_close(torch.from_numpy(ours.covars2d[drawn]), cov_ref)


def _dense_reference(model: GaussianModel, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour (H, W, 3), alpha, expected depth by brute force: every Gaussian at every pixel, near to far.

    Written from the 3DGS equations, independently of splat_projection: Sigma_2d = J W Sigma W^T J^T + 0.3 I,
    pixel (u, v) centred at (u, v) in the project's K, alpha = min(0.999, o c exp(-d^T Sigma_2d^-1 d / 2)),
    skipped below 1/255, with c = sqrt(det(Sigma_2d - 0.3 I) / det Sigma_2d) (gsplat's antialiased mode).
    """
    R, t = T[:3, :3], T[:3, 3]
    cam = -R.T @ t
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    color = np.zeros((H, W, 3))
    trans = np.ones((H, W))
    wdepth = np.zeros((H, W))
    p_cam = model.means.astype(np.float64) @ R.T + t
    for i in np.argsort(p_cam[:, 2]):
        x, y, z = p_cam[i]
        J = np.array([[K[0, 0] / z, 0, -K[0, 0] * x / z**2], [0, K[1, 1] / z, -K[1, 1] * y / z**2]])
        rot = Rotation.from_quat(model.quats[i].astype(np.float64), scalar_first=True).as_matrix()
        sigma3 = rot @ np.diag(model.scales[i].astype(np.float64) ** 2) @ rot.T
        sigma2 = J @ R @ sigma3 @ R.T @ J.T + 0.3 * np.eye(2)
        conic = np.linalg.inv(sigma2)
        compensation = np.sqrt(np.linalg.det(sigma2 - 0.3 * np.eye(2)) / np.linalg.det(sigma2))
        du, dv = u - (K[0, 0] * x / z + K[0, 2]), v - (K[1, 1] * y / z + K[1, 2])
        power = 0.5 * (conic[0, 0] * du**2 + 2 * conic[0, 1] * du * dv + conic[1, 1] * dv**2)
        alpha = np.minimum(0.999, model.opacities[i] * compensation * np.exp(-power))
        alpha[alpha < 1 / 255] = 0.0
        rgb = SH_C0 * model.sh[i, 0].astype(np.float64) + 0.5
        assert np.allclose(rgb, model.colors(cam)[i], atol=1e-6)
        color += (alpha * trans)[..., None] * np.maximum(rgb, 0)
        wdepth += alpha * trans * z
        trans *= 1 - alpha
    alpha = 1 - trans
    depth = np.where(alpha > 0.5, wdepth / np.maximum(alpha, 1e-12), 0.0)
    return color, alpha, depth


def test_cpu_render_matches_dense_compositing():
    """A few overlapping Gaussians: rgb, alpha and depth within 1e-5 of the brute-force compositing."""
    rng = np.random.default_rng(5)
    model = _random_model(rng, 12, 0.02, (0.003, 0.012))
    model.opacities[:4] = 0.98  # some pixels near saturation
    T = _pose([0.4, 0.1, -0.3], [0.0, 0.0, 0.35])
    ref_rgb, ref_alpha, ref_depth = _dense_reference(model, T)
    with GaussianRenderer({7: model}, backend="cpu") as renderer:
        out = renderer.render(7, T, K, W, H)
    assert out.rgb.shape == (H, W, 3) and out.alpha.shape == out.depth.shape == (H, W)
    assert (ref_alpha > 0.5).sum() > 200  # the Gaussians cover a good part of the image (measured 241 px)
    np.testing.assert_allclose(out.rgb, ref_rgb, atol=1e-5)
    np.testing.assert_allclose(out.alpha, ref_alpha, atol=1e-5)
    np.testing.assert_allclose(out.depth, ref_depth, atol=1e-5)


def test_backward_matches_finite_differences():
    """composite_backward's colour and opacity gradients of a weighted sum of the image equal numerical ones."""
    rng = np.random.default_rng(8)
    model = _random_model(rng, 10, 0.015, (0.004, 0.01))
    T = _pose([0.2, 0.3, 0.1], [0.0, 0.0, 0.3])
    fp = footprints(model, covariance_factors(model.quats, model.scales), T, K, W, H)
    fp.colors, fp.opacities = fp.colors.astype(np.float64), fp.opacities.astype(np.float64)
    g_color = rng.normal(size=(H, W, 3))
    g_alpha = rng.normal(size=(H, W))

    def loss() -> float:
        color, trans, _ = composite(fp, W, H)
        return float((color * g_color).sum() + ((1 - trans) * g_alpha).sum())

    color, trans, _ = composite(fp, W, H)
    grads = composite_backward(fp, color, trans, g_color, g_alpha)
    grad_c, grad_o = grads.colors, grads.opacities
    # Small steps: alpha's cut at 1/255 makes the image jump by about 0.004 where a pixel crosses it, which a
    # finite difference turns into a spike; at 1e-4 a crossing is rare, and one outlier is allowed for it.
    eps = 1e-4
    numeric_o, numeric_c = [], []
    for i in range(len(fp.opacities)):
        for array, index, out in ((fp.opacities, (i,), numeric_o), (fp.colors, (i, 1), numeric_c)):
            array[index] += eps
            up = loss()
            array[index] -= 2 * eps
            down = loss()
            array[index] += eps
            out.append((up - down) / (2 * eps))
    close_o = np.isclose(grad_o, numeric_o, rtol=1e-2, atol=2e-2)
    close_c = np.isclose(grad_c[:, 1], numeric_c, rtol=1e-2, atol=2e-2)
    assert close_o.sum() >= len(close_o) - 1, (grad_o, numeric_o)
    assert close_c.sum() >= len(close_c) - 1, (grad_c[:, 1], numeric_c)


def test_log_scale_gradient_matches_finite_differences():
    """Log-scale gradients (composite_backward's conic gradient through log_scale_gradient) of a weighted sum
    of the image follow central differences of the whole render."""
    rng = np.random.default_rng(9)
    model = _random_model(rng, 8, 0.015, (0.004, 0.01))
    model.opacities[:] = 0.5  # no clamping at 0.999, where the gradient is zero
    T = _pose([0.2, 0.3, 0.1], [0.0, 0.0, 0.3])
    g_color = rng.normal(size=(H, W, 3))

    def loss() -> float:
        fp = footprints(model, covariance_factors(model.quats, model.scales), T, K, W, H)
        return float((composite(fp, W, H)[0] * g_color).sum())

    fp = footprints(model, covariance_factors(model.quats, model.scales), T, K, W, H)
    color, trans, _ = composite(fp, W, H)
    grads = composite_backward(fp, color, trans, g_color, np.zeros((H, W)))
    analytic = log_scale_gradient(model.means[fp.index], model.quats[fp.index], model.scales[fp.index], T,
                                  gsplat_K(K), W, H, grads.conics)
    numeric = np.zeros_like(analytic)
    eps = 1e-2
    for row, i in enumerate(fp.index):
        for k in range(3):
            base = model.scales[i, k]
            model.scales[i, k] = base * np.exp(eps)
            up = loss()
            model.scales[i, k] = base * np.exp(-eps)
            down = loss()
            model.scales[i, k] = base
            numeric[row, k] = (up - down) / (2 * eps)
    # Pixels crossing alpha's 1/255 cut and the integer footprint radius make the finite differences
    # noisy, so the test asks for agreement in direction and size: measured correlation 0.987, norm ratio 0.965.
    correlation = np.corrcoef(analytic.ravel(), numeric.ravel())[0, 1]
    assert correlation > 0.95
    assert np.linalg.norm(analytic) == pytest.approx(np.linalg.norm(numeric), rel=0.1)


def test_renderer_rejects_bad_input():
    """Unknown ids, bad poses, K and sizes, and non-models give ValueError."""
    model = _random_model(np.random.default_rng(0), 5, 0.01, (0.002, 0.004))
    with GaussianRenderer({1: model}, backend="cpu") as renderer:
        T = _pose([0, 0, 0], [0, 0, 0.3])
        with pytest.raises(ValueError, match="unknown obj_id"):
            renderer.render(2, T, K, W, H)
        with pytest.raises(ValueError, match="T_cam_obj"):
            renderer.render(1, np.eye(3), K, W, H)
        with pytest.raises(ValueError, match="K must be"):
            renderer.render(1, T, -K, W, H)
        with pytest.raises(ValueError, match="image size"):
            renderer.render(1, T, K, 0, H)
    with pytest.raises(ValueError, match="backend"):
        GaussianRenderer({1: model}, backend="opengl")
    with pytest.raises(ValueError, match="GaussianModel"):
        GaussianRenderer({1: "duck"}, backend="cpu")


@pytest.mark.skipif(not cuda_available(), reason="needs CUDA and gsplat")
def test_cuda_matches_cpu():
    """gsplat's CUDA rasteriser and the CPU backend agree on one object (SH degree 1)."""
    rng = np.random.default_rng(11)
    model = _random_model(rng, 300, 0.02, (0.001, 0.006), sh_degree=1)
    T = _pose([0.5, -0.2, 0.8], [0.01, 0.0, 0.4])
    with GaussianRenderer({1: model}, backend="cpu") as cpu, GaussianRenderer({1: model}, backend="cuda") as gpu:
        a, b = cpu.render(1, T, K, W, H), gpu.render(1, T, K, W, H)
    np.testing.assert_allclose(b.alpha, a.alpha, atol=2e-3)
    np.testing.assert_allclose(b.rgb, a.rgb, atol=2e-3)
    both = (a.alpha > 0.55) & (b.alpha > 0.55)
    np.testing.assert_allclose(b.depth[both], a.depth[both], atol=1e-4)

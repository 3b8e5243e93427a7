"""Building a 3D Gaussian object from posed reference images (GS-Pose's object representation, step 3).

From reference views (rgb + mask + K + T_cam_obj: rendered around a mesh, or a user's photographs), a
`GaussianModel` is seeded (gaussian_seed.py: on the mesh surface, or on the masks' visual hull for an
object without a mesh), its colours initialised in closed form, then fitted against the views with 3DGS's
loss, (1 - l) L1 + l D-SSIM (Kerbl et al. 2023, l = 0.2), plus an L1 term on alpha against the mask.
- CPU: colours (SH), opacities and scales are fitted through the numba rasteriser and its hand-written
  backward pass (splat_cpu.py, splat_projection.log_scale_gradient); means and rotations stay where they
  were seeded (on a mesh they are right already).
- CUDA: every parameter is fitted through `gsplat.rasterization`.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ros2_sixdpose.core.gaussian_seed import PosedMask, seed_from_masks, seed_from_mesh
from ros2_sixdpose.core.gaussians import SH_C0, SH_C1, GaussianModel
from ros2_sixdpose.core.geometry import invert_pose, look_at
from ros2_sixdpose.core.objects import ObjectModel
from ros2_sixdpose.core.render import Lighting, Renderer
from ros2_sixdpose.core.splat import ALPHA_COVERED, GaussianRenderer
from ros2_sixdpose.core.splat_cpu import composite, composite_backward, footprints
from ros2_sixdpose.core.splat_projection import NEAR, covariance_factors, gsplat_K, log_scale_gradient
from ros2_sixdpose.core.ssim import ssim

logger = logging.getLogger(__name__)

SUPERSAMPLE = 3  # reference views are rendered this many times finer per axis, then averaged down


@dataclass
class GaussianFitConfig:
    """How a Gaussian object is built (config/gaussians.yaml); sizes in pixels, lengths relative to the object."""

    n_gaussians: int = 5000
    views: int = 48  # reference views rendered around a mesh
    image_size: int = 128  # px, square reference views
    fill: float = 0.8  # share of the image width the object's diameter spans
    distance: float = 2.5  # camera distance, in object diameters
    light_jitter: float = 0.1  # reference lighting: +- this share on the default's direction and intensities
    sh_degree: int = 1
    spread: float = 0.7  # tangential sigma / sample spacing
    flatness: float = 0.1  # normal sigma / tangential sigma
    opacity: float = 0.9  # initial opacity
    inset: float = 0.5  # seeds sink this many tangential sigmas below the surface (gaussian_seed.flat_gaussians)
    hull_resolution: int = 64  # voxels per side of the visual hull (objects without a mesh)
    steps: int = 300  # optimisation steps, one view each
    lr_sh: float = 0.01
    lr_opacity: float = 0.05
    lr_means: float = 0.0002  # CUDA only, m
    lr_scales: float = 0.005  # on log scales
    lr_quats: float = 0.001  # CUDA only
    ssim_weight: float = 0.2  # 3DGS's lambda
    mask_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        """Reject values that cannot work (ValueError naming the field)."""
        for name in ("n_gaussians", "views", "image_size", "hull_resolution"):
            if getattr(self, name) < 1:
                raise ValueError(f"GaussianFitConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0:
            raise ValueError(f"GaussianFitConfig.steps must be >= 0, got {self.steps}")
        if self.sh_degree not in (0, 1):
            raise ValueError(f"GaussianFitConfig.sh_degree must be 0 or 1, got {self.sh_degree}")
        if self.inset < 0:
            raise ValueError(f"GaussianFitConfig.inset must be >= 0, got {self.inset}")
        for name in ("fill", "distance", "spread", "flatness"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GaussianFitConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.opacity < 1:
            raise ValueError(f"GaussianFitConfig.opacity must lie in (0, 1), got {self.opacity}")


@dataclass
class ReferenceView:
    """A posed reference image: rgb (H, W, 3) uint8, mask (H, W) bool, K (3, 3), T_cam_obj (4, 4) m."""

    rgb: np.ndarray
    mask: np.ndarray
    K: np.ndarray
    T_cam_obj: np.ndarray

    def __post_init__(self) -> None:
        """Check shapes (ValueError with what was received)."""
        h, w = np.asarray(self.mask).shape[:2]
        if np.asarray(self.rgb).shape != (h, w, 3) or np.asarray(self.rgb).dtype != np.uint8:
            raise ValueError(f"ReferenceView.rgb must be ({h}, {w}, 3) uint8, got {np.asarray(self.rgb).shape} "
                             f"{np.asarray(self.rgb).dtype}")
        if np.asarray(self.K).shape != (3, 3) or np.asarray(self.T_cam_obj).shape != (4, 4):
            raise ValueError("ReferenceView.K must be (3, 3) and T_cam_obj (4, 4)")
        self.mask = np.asarray(self.mask, dtype=bool)
        self.K = np.asarray(self.K, dtype=np.float64)
        self.T_cam_obj = np.asarray(self.T_cam_obj, dtype=np.float64)


def view_poses(model: ObjectModel, n: int, config: GaussianFitConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """K (3, 3) and n poses T_cam_obj (n, 4, 4) m looking at the model's box centre from a Fibonacci sphere
    turned by a rotation drawn from `seed` (another seed gives other, held-out viewpoints)."""
    size = config.image_size
    f = config.fill * size * config.distance
    K = np.array([[f, 0.0, (size - 1) / 2], [0.0, f, (size - 1) / 2], [0.0, 0.0, 1.0]])
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    dirs = np.stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z], axis=1)
    from scipy.spatial.transform import Rotation

    dirs = dirs @ Rotation.random(random_state=np.random.default_rng(seed)).as_matrix().T
    center = model.bbox_min + model.bbox_size / 2
    eyes = center + dirs * config.distance * model.diameter
    up = np.where(np.abs(dirs[:, 2:3]) > 0.95, [[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]])
    return K, invert_pose(look_at(eyes, center, up))


def render_reference_views(model: ObjectModel, n: int, config: GaussianFitConfig, seed: int,
                           lighting_jitter: float | None = None) -> list[ReferenceView]:
    """n views of `model` by the mesh renderer with lighting varied per view (`light_jitter`; 0 for the
    default `Lighting`), from `view_poses(..., seed)`."""
    jitter = config.light_jitter if lighting_jitter is None else lighting_jitter
    rng = np.random.default_rng(seed)
    K, poses = view_poses(model, n, config, seed)
    # Rendered at SUPERSAMPLE x the size and averaged down: anti-aliased edges, as a camera's are.
    size = config.image_size * SUPERSAMPLE
    K_fine = np.diag([SUPERSAMPLE, SUPERSAMPLE, 1.0]) @ K
    K_fine[:2, 2] = (K[:2, 2] + 0.5) * SUPERSAMPLE - 0.5
    base = Lighting()
    views = []
    with Renderer({model.obj_id: model}) as renderer:
        for T in poses:
            u = rng.uniform(-jitter, jitter, 5)
            lighting = Lighting(ambient=base.ambient * (1 + u[0]), diffuse=base.diffuse * (1 + u[1]),
                                specular=base.specular, shininess=base.shininess,
                                direction=tuple(np.asarray(base.direction) + [u[2], u[3], u[4]]))
            out = renderer.render(K_fine, size, size, [(model.obj_id, T)], lighting, outputs=("rgb", "depth"))
            shape = (config.image_size, config.image_size)
            rgb = cv2.resize(out.rgb, shape, interpolation=cv2.INTER_AREA)
            coverage = cv2.resize((out.depth > 0).astype(np.float32), shape, interpolation=cv2.INTER_AREA)
            views.append(ReferenceView(rgb=rgb, mask=coverage > 0.5, K=K, T_cam_obj=T))
    return views


def build_gaussian_object(views: Sequence[ReferenceView], config: GaussianFitConfig, mesh: ObjectModel | None = None,
                          device: str = "cpu", progress: bool = True) -> tuple[GaussianModel, dict]:
    """Seed (on `mesh`, else on the masks' visual hull), initialise colours, fit; the model and a record."""
    if not views:
        raise ValueError("build_gaussian_object needs at least one reference view")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    if mesh is not None:
        model = seed_from_mesh(mesh, config.n_gaussians, config.spread, config.flatness, config.opacity, config.inset,
                               rng)
    else:
        masks = [PosedMask(v.mask, v.K, v.T_cam_obj) for v in views]
        model = seed_from_masks(masks, config.n_gaussians, config.spread, config.flatness, config.opacity,
                                config.inset, config.hull_resolution, rng)
    model = init_colors(model, views, config.sh_degree)
    seeded = time.perf_counter() - t0
    if config.steps:
        fit = _fit_cuda if device == "cuda" else _fit_cpu
        model, losses = fit(model, views, config, rng, progress)
    else:
        losses = []
    record = {"config": asdict(config), "device": device, "views": len(views), "seed": "mesh" if mesh else "masks",
              "n_gaussians": len(model), "seed_seconds": round(seeded, 2),
              "fit_seconds": round(time.perf_counter() - t0 - seeded, 2),
              "first_loss": round(float(np.mean(losses[:10])), 5) if losses else None,
              "last_loss": round(float(np.mean(losses[-10:])), 5) if losses else None}
    return model, record


def _sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """gsplat's real SH basis (V, K) at unit directions (V, 3), K = 1 or 4."""
    basis = [np.full(len(dirs), SH_C0)]
    if degree == 1:
        basis += [-SH_C1 * dirs[:, 1], SH_C1 * dirs[:, 2], -SH_C1 * dirs[:, 0]]
    return np.stack(basis, axis=1)


def init_colors(model: GaussianModel, views: Sequence[ReferenceView], degree: int, ridge: float = 4.0) -> GaussianModel:
    """Colours by least squares over the views that see each Gaussian: the pixel under its mean, where its
    depth agrees with the seed's own rendered depth; degree-1 terms ridge-regularised towards zero. Also
    turns each normal to the side the cameras that see it are on."""
    n, k = len(model), 1 + 3 * degree
    A = np.zeros((n, k, k))
    b = np.zeros((n, k, 3))
    facing = np.zeros(n)
    unculled = GaussianModel(model.means, model.quats, model.scales, model.opacities, model.sh[:, :1])
    with GaussianRenderer({0: unculled}, backend="cpu") as renderer:
        for view in views:
            h, w = view.mask.shape
            depth = renderer.render(0, view.T_cam_obj, view.K, w, h).depth
            p = model.means @ view.T_cam_obj[:3, :3].T + view.T_cam_obj[:3, 3]
            u = np.round(view.K[0, 0] * p[:, 0] / p[:, 2] + view.K[0, 2]).astype(int)
            v = np.round(view.K[1, 1] * p[:, 1] / p[:, 2] + view.K[1, 2]).astype(int)
            seen = (p[:, 2] > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
            seen[seen] &= view.mask[v[seen], u[seen]] & (depth[v[seen], u[seen]] > 0)
            # Visible: no nearer surface at that pixel (1 % of the distance allows for the footprints' blur).
            seen[seen] &= p[seen, 2] < depth[v[seen], u[seen]] * 1.01 + 1e-4
            idx = np.flatnonzero(seen)
            center = -view.T_cam_obj[:3, :3].T @ view.T_cam_obj[:3, 3]
            dirs = model.means[idx] - center
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
            basis = _sh_basis(dirs, degree)
            cos = np.ones(len(idx))
            if model.normals is not None:
                cos = np.einsum("ij,ij->i", model.normals[idx], -dirs)
                facing[idx] += np.sign(cos)
            # A grazing view puts the pixel under the mean on a neighbour's footprint: weight views by |cos|.
            weight = np.abs(cos)[:, None, None]
            A[idx] += weight * basis[:, :, None] * basis[:, None, :]
            b[idx] += weight * basis[:, :, None] * (view.rgb[v[idx], u[idx]] / 255.0 - 0.5)[:, None, :]
    seen_any = A[:, 0, 0] > 0
    A[:, 1:, 1:] += ridge * np.eye(k - 1) * SH_C1**2
    sh = np.zeros((n, k, 3), np.float32)
    sh[:, :1] = model.sh[:, :1]  # never seen: keep the seed's colour
    sh[seen_any] = np.linalg.solve(A[seen_any], b[seen_any])
    normals = None
    if model.normals is not None:
        normals = model.normals * np.where(facing < 0, -1.0, 1.0)[:, None]
    logger.debug("colour init: %d of %d Gaussians seen", seen_any.sum(), n)
    return GaussianModel(model.means, model.quats, model.scales, model.opacities, sh, normals)


class _CpuRender(torch.autograd.Function):
    """Rendered rgb (H, W, 3) and alpha (H, W) of a model whose colours (N, 3) for this view, opacities (N,)
    and log scales (N, 3) are tensors (means and rotations fixed); backward by `composite_backward` and
    `log_scale_gradient` (the antialiasing compensation's own dependence on the scales is left out)."""

    @staticmethod
    def forward(ctx, colors, opacities, log_scales, model: GaussianModel, view: ReferenceView):
        h, w = view.mask.shape
        scales = np.exp(log_scales.detach().numpy())
        fp = footprints(model, covariance_factors(model.quats, scales), view.T_cam_obj, view.K, w, h)
        fp.colors = colors.detach().numpy()[fp.index]
        fp.opacities = opacities.detach().numpy()[fp.index] * fp.compensations
        color, trans, _ = composite(fp, w, h)
        ctx.save = (fp, color, trans, scales, model, view)
        return torch.from_numpy(color), torch.from_numpy(1.0 - trans)

    @staticmethod
    def backward(ctx, grad_rgb, grad_alpha):
        fp, color, trans, scales, model, view = ctx.save
        h, w = view.mask.shape
        grads = composite_backward(fp, color, trans, grad_rgb.numpy(), grad_alpha.numpy())
        n = len(model)
        grad_colors, grad_opacities, grad_log_scales = np.zeros((n, 3)), np.zeros(n), np.zeros((n, 3))
        grad_colors[fp.index] = grads.colors
        grad_opacities[fp.index] = grads.opacities * fp.compensations
        grad_log_scales[fp.index] = log_scale_gradient(model.means[fp.index], model.quats[fp.index], scales[fp.index],
                                                       view.T_cam_obj, gsplat_K(view.K), w, h, grads.conics)
        return (torch.from_numpy(grad_colors).float(), torch.from_numpy(grad_opacities).float(),
                torch.from_numpy(grad_log_scales).float(), None, None)


def _loss(rgb: torch.Tensor, alpha: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
          config: GaussianFitConfig) -> torch.Tensor:
    """(1 - l) L1 + l (1 - SSIM) on rgb (H, W, 3), plus mask_weight x L1 of alpha (H, W) against the mask."""
    l1 = (rgb - target).abs().mean()
    d_ssim = 1 - ssim(rgb.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None])
    mask_l1 = (alpha - mask).abs().mean()
    return (1 - config.ssim_weight) * l1 + config.ssim_weight * d_ssim + config.mask_weight * mask_l1


def _targets(view: ReferenceView, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The view's rgb on black (H, W, 3) float in [0, 1] and mask (H, W) float, as tensors."""
    rgb = view.rgb * view.mask[..., None] / 255.0
    return (torch.as_tensor(rgb, dtype=torch.float32, device=device),
            torch.as_tensor(view.mask, dtype=torch.float32, device=device))


def _fit_cpu(model: GaussianModel, views: Sequence[ReferenceView], config: GaussianFitConfig,
             rng: np.random.Generator, progress: bool) -> tuple[GaussianModel, list[float]]:
    """Adam on SH coefficients, opacity logits and log scales; means and rotations stay where seeded."""
    prepared = []
    for view in views:
        center = -view.T_cam_obj[:3, :3].T @ view.T_cam_obj[:3, 3]
        dirs = model.means - center
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        basis = torch.as_tensor(_sh_basis(dirs, model.sh_degree), dtype=torch.float32)
        prepared.append((view, basis, *_targets(view, "cpu")))
    sh = torch.tensor(model.sh, requires_grad=True)
    logit = torch.tensor(np.log(model.opacities / (1 - model.opacities)), requires_grad=True)
    log_scales = torch.tensor(np.log(model.scales), requires_grad=True)
    optimizer = torch.optim.Adam([{"params": [sh], "lr": config.lr_sh}, {"params": [logit], "lr": config.lr_opacity},
                                  {"params": [log_scales], "lr": config.lr_scales}])
    losses = []
    for _ in tqdm(range(config.steps), desc="fit (cpu)", disable=not progress, leave=False):
        view, basis, target, mask = prepared[rng.integers(len(prepared))]
        colors = torch.clamp_min(torch.einsum("nk,nkc->nc", basis, sh) + 0.5, 0.0)
        rgb, alpha = _CpuRender.apply(colors, torch.sigmoid(logit), log_scales, model, view)
        loss = _loss(rgb, alpha, target, mask, config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            logit.clamp_(-9.0, 9.0)  # opacities stay inside (0, 1) in float32
        losses.append(loss.item())
    fitted = GaussianModel(model.means, model.quats, np.exp(log_scales.detach().numpy()),
                           torch.sigmoid(logit).detach().numpy(), sh.detach().numpy(), model.normals)
    return fitted, losses


def _fit_cuda(model: GaussianModel, views: Sequence[ReferenceView], config: GaussianFitConfig,
              rng: np.random.Generator, progress: bool) -> tuple[GaussianModel, list[float]]:
    """Adam on every parameter through `gsplat.rasterization` (means, log scales, quats, SH, opacity logits)."""
    from gsplat import rasterization

    dev = "cuda"

    def leaf(array: np.ndarray) -> torch.Tensor:
        return torch.tensor(np.asarray(array, np.float32), device=dev, requires_grad=True)

    means, quats, log_scales = leaf(model.means), leaf(model.quats), leaf(np.log(model.scales))
    sh, logit = leaf(model.sh), leaf(np.log(model.opacities / (1 - model.opacities)))
    optimizer = torch.optim.Adam([
        {"params": [means], "lr": config.lr_means}, {"params": [quats], "lr": config.lr_quats},
        {"params": [log_scales], "lr": config.lr_scales}, {"params": [sh], "lr": config.lr_sh},
        {"params": [logit], "lr": config.lr_opacity}])
    cameras = [(torch.tensor(v.T_cam_obj, dtype=torch.float32, device=dev)[None],
                torch.tensor(gsplat_K(v.K), dtype=torch.float32, device=dev)[None], *_targets(v, dev)) for v in views]
    losses = []
    for _ in tqdm(range(config.steps), desc="fit (cuda)", disable=not progress, leave=False):
        viewmat, K, target, mask = cameras[rng.integers(len(cameras))]
        h, w = mask.shape
        rgb, alpha, _ = rasterization(means, quats, torch.exp(log_scales), torch.sigmoid(logit), sh, viewmat, K, w, h,
                                      near_plane=NEAR, sh_degree=model.sh_degree, packed=False,
                                      rasterize_mode="antialiased")
        loss = _loss(rgb[0], alpha[0, ..., 0], target, mask, config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            logit.clamp_(-9.0, 9.0)
        losses.append(loss.item())

    def host(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    fitted = GaussianModel(host(means), host(quats), np.exp(host(log_scales)), host(torch.sigmoid(logit)), host(sh),
                           model.normals)
    return fitted, losses


@dataclass
class ViewScores:
    """Per-view agreement of a Gaussian object with reference views, arrays (V,).

    iou: silhouette (alpha > 0.5) against the view's mask.
    psnr: dB, colour over the whole image (black background included), the usual 3DGS / NeRF figure.
    psnr_object: dB, colour over the union of both silhouettes only: stricter, background not counted.
    """

    iou: np.ndarray
    psnr: np.ndarray
    psnr_object: np.ndarray


def score_views(model: GaussianModel, views: Sequence[ReferenceView]) -> ViewScores:
    """Render `model` (CPU backend) at each view's K and pose and compare with its rgb and mask."""
    scores = []
    with GaussianRenderer({0: model}, backend="cpu") as renderer:
        for view in views:
            h, w = view.mask.shape
            out = renderer.render(0, view.T_cam_obj, view.K, w, h)
            covered = out.alpha > ALPHA_COVERED
            union = covered | view.mask
            error = (np.clip(out.rgb, 0, 1) - view.rgb * view.mask[..., None] / 255.0) ** 2
            scores.append(((covered & view.mask).sum() / max(union.sum(), 1),
                           _psnr(error.mean()), _psnr(error[union].mean())))
    iou, psnr, psnr_object = np.asarray(scores).T
    return ViewScores(iou, psnr, psnr_object)


def _psnr(mse: float) -> float:
    """dB for images in [0, 1]."""
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))

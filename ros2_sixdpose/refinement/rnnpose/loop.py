"""The recurrent refinement RNNPose runs, for training (with gradients) and inference alike.

Per render (the object drawn at the current pose in the fixed crop): encode the reference, build the correlation
pyramid against the observed crop, compute the 3D descriptors of the rendered model points; then per update: look up
costs around the current correspondences, let the ConvGRU update the flow and confidence, weight every reference
pixel's correspondence (confidence x 3D / 2D descriptor agreement) and take a weighted LM step on the pose. The next
render is drawn at the last LM pose, which is detached there: the renderer has no gradient. Unlike RNNPose, the flow
is not restarted from the rigid flow each LM pose induces: while the flow was still poor, every bad LM step threw
the next update's flow off too and the flow loss hardly fell (32 -> 29 px in 300 steps); within a render the flow is
refined as in RAFT and the poses follow it. The final pose-induced flow still makes the score's consistency term.
The LM step's gradient reaches the weights (confidence and descriptors learn from the 3D alignment loss through it)
but not the flow targets, which the flow loss alone trains: with both, the alignment loss pulled the flow away from
the true matches early in training (one batch overfit for 35 steps: flow L1 9.7 -> 7.1 px with the gradient, 9.7 ->
3.1 px without).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ros2_sixdpose.refinement.rnnpose.network import RNNPoseNet, correlation_pyramid, lookup
from ros2_sixdpose.refinement.rnnpose.pose_solver import lm_step, project
from ros2_sixdpose.refinement.rnnpose.references import Reference

# The pose solver, weights and flow loss use every LM_STRIDE-th pixel of the crop in each direction: 1024 points of a
# 64 px crop are plenty for 6 unknowns and cost a quarter of the full grid.
LM_STRIDE = 2
# A pixel whose network flow and pose-induced flow differ by less than this (crop px) counts as consistent (score).
CONSISTENT_PX = 2.0

RenderFn = Callable[[np.ndarray], Sequence[Reference]]  # poses (B, 4, 4) -> one reference per instance


@dataclass
class ReferenceTensors:
    """One render of the batch: rgb (B, 3, S, S) in [0, 1], mask (B, 1, S, S) float; on the LM grid (n = S / LM_STRIDE)
    mask_lm (B, n, n) bool, points (B, n, n, 3) model metres and their unit 3D descriptors (B, D, n, n)."""

    rgb: torch.Tensor
    mask: torch.Tensor
    mask_lm: torch.Tensor
    points: torch.Tensor
    descriptors: torch.Tensor


@dataclass
class Step:
    """One recurrent update on the LM grid: the network's flow (B, 2, n, n) crop px, weights (B, n, n), the pose after
    LM (B, 4, 4)."""

    render: int
    flow: torch.Tensor
    weight: torch.Tensor
    T: torch.Tensor


@dataclass
class LoopResult:
    """Every step and render of one refinement, the observed crops (B, 3, S, S) and their 2D descriptors
    (B, D, S/4, S/4), and the score (B,)."""

    observed: torch.Tensor
    steps: list[Step]
    references: list[ReferenceTensors]
    observed_descriptors: torch.Tensor
    score: torch.Tensor
    min_weight_sum: torch.Tensor  # (B,) the smallest total weight any LM step had

    @property
    def T(self) -> torch.Tensor:
        """The final poses (B, 4, 4)."""
        return self.steps[-1].T


def reference_tensors(references: Sequence[Reference], models_nocs: Callable[[int, np.ndarray], np.ndarray],
                       obj_ids: Sequence[int], net: RNNPoseNet, device: torch.device) -> ReferenceTensors:
    """Stack a batch's references as tensors and compute the 3D descriptors of the LM grid's points."""
    rgb = torch.from_numpy(np.stack([r.rgb for r in references])).to(device).permute(0, 3, 1, 2).float() / 255.0
    mask = torch.from_numpy(np.stack([r.mask for r in references])).to(device)
    mask_lm = mask[:, ::LM_STRIDE, ::LM_STRIDE]
    points = np.stack([r.points[::LM_STRIDE, ::LM_STRIDE] for r in references])
    nocs = np.stack([models_nocs(i, p) for i, p in zip(obj_ids, points)]) * mask_lm.cpu().numpy()[..., None]
    nocs_t = torch.from_numpy(nocs.astype(np.float32)).to(device).permute(0, 3, 1, 2)
    ids = torch.as_tensor(list(obj_ids), device=device)
    return ReferenceTensors(rgb, mask[:, None].float(), mask_lm, torch.from_numpy(points).to(device),
                            net.points(nocs_t, ids))


def pixel_grid(size: int, device: torch.device, stride: int = 1) -> torch.Tensor:
    """Pixel centres (size / stride, size / stride, 2) (x, y) of every stride-th pixel of a size x size crop."""
    axis = torch.arange(0, size, stride, dtype=torch.float32, device=device)
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([u, v], -1)


def refine_loop(net: RNNPoseNet, render: RenderFn, models_nocs: Callable[[int, np.ndarray], np.ndarray],
                observed: torch.Tensor, K: torch.Tensor, T0: torch.Tensor, obj_ids: Sequence[int],
                renders: int, updates: int, damping: float) -> LoopResult:
    """Refine poses T0 (B, 4, 4) of objects `obj_ids` seen in crops `observed` (B, 3, S, S) in [0, 1] with intrinsics
    K (B, 3, 3): `renders` x `updates` recurrent updates, each followed by one LM step."""
    B, _, S, _ = observed.shape
    if S % 8:
        raise ValueError(f"crop size must be a multiple of 8, got {S}")
    device = observed.device
    config = net.config
    f_obs, d_obs = net.encode_observed(observed)
    pixels = pixel_grid(S, device, LM_STRIDE)
    n = S // LM_STRIDE
    cells = pixel_grid(S // 4, device).permute(2, 0, 1)[None]  # (1, 2, h, w) cell coordinates
    T = T0
    steps: list[Step] = []
    references: list[ReferenceTensors] = []
    weight_sums = []
    for r in range(renders):
        T = T.detach()
        ref = reference_tensors(render(T.cpu().double().numpy()), models_nocs, obj_ids, net, device)
        references.append(ref)
        f_ref, hidden, context = net.encode_reference(ref.rgb, ref.mask)
        pyramid = correlation_pyramid(f_ref, f_obs, config.corr_levels)
        X = ref.points.reshape(B, n * n, 3)
        flow_cells = torch.zeros(B, 2, S // 4, S // 4, device=device)
        for _ in range(updates):
            costs = lookup(pyramid, cells + flow_cells, config.corr_radius)
            hidden, delta, confidence = net.update(hidden, context, costs, flow_cells)
            flow_cells = flow_cells + delta
            flow = F.interpolate(flow_cells * 4.0, scale_factor=4, mode="bilinear", align_corners=False)
            flow = flow[:, :, ::LM_STRIDE, ::LM_STRIDE]
            target = pixels[None] + flow.permute(0, 2, 3, 1)  # (B, n, n, 2)
            d2 = F.grid_sample(d_obs, (target + 0.5) / S * 2.0 - 1.0, align_corners=False)
            cosine = (ref.descriptors * d2).sum(1)
            confidence = F.interpolate(confidence, scale_factor=4, mode="bilinear", align_corners=False)
            confidence = confidence[:, 0, ::LM_STRIDE, ::LM_STRIDE]
            weight = net.confidence_weight(confidence) * net.similarity_weight(cosine) * ref.mask_lm
            w = weight.reshape(B, -1)
            weight_sums.append(w.detach().sum(1))
            # The solver sees weights relative to their mean on the object: scaling every weight down together would
            # otherwise let the damping freeze the pose, a "do nothing" optimum training fell into (weights -> 1e-20).
            # Their absolute size still says whether there is evidence (min_weight_sum) and makes the score.
            mean = w.sum(1, keepdim=True) / ref.mask_lm.reshape(B, -1).sum(1, keepdim=True).clamp(min=1)
            T = lm_step(T, X, target.detach().reshape(B, -1, 2), w / mean.clamp(min=1e-12), K, damping)
            steps.append(Step(r, flow, weight, T))
            flow_cells = flow_cells.detach()
    # Score: mean weight on the reference's pixels x the weighted share whose network flow agrees with the final pose.
    last = steps[-1]
    uv, _ = project(T.detach(), X.to(T.dtype), K.to(T.dtype))
    induced = (uv.float().reshape(B, n, n, 2) - pixels[None]).permute(0, 3, 1, 2)
    mask = references[-1].mask_lm.float()
    w = last.weight.detach()
    residual = (induced - last.flow.detach()).norm(dim=1)
    consistency = (w * (residual < CONSISTENT_PX)).sum((1, 2)) / w.sum((1, 2)).clamp(min=1e-9)
    mean_weight = w.sum((1, 2)) / mask.sum((1, 2)).clamp(min=1.0)
    score = (mean_weight * consistency).clamp(0.0, 1.0)
    return LoopResult(observed, steps, references, d_obs, score, torch.stack(weight_sums, 1).amin(1))

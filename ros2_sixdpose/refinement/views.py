"""Renders of one object in a crop camera, as the render-and-compare refiners need them, from either renderer.

`ViewRenderer` is the one thing a refiner asks of a renderer: the colour, coverage and depth of one object
at one pose in a small camera. `MeshViews` answers it with the OpenGL mesh rasteriser (`core/render.py`);
`GaussianViews` with the 3D Gaussian object models (`core/splat.py`), GS-Pose's representation, which
works for objects known only from posed images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ros2_sixdpose.core.render import Lighting, Renderer
from ros2_sixdpose.core.splat import GaussianRenderer

# Ambient light only: the render shows the surface colours (albedo), which the appearance term compares.
ALBEDO = Lighting(ambient=1.0, diffuse=0.0, specular=0.0)


@dataclass(frozen=True)
class ObjectView:
    """One object rendered alone on black.

    rgb: (S, S, 3) float32 in [0, 1]; None when only the shape was asked for.
    alpha: (S, S) float32 in [0, 1]: the share of each pixel the object covers.
    depth: (S, S) float32 metres along the optical axis, 0 where the object is absent.
    """

    rgb: np.ndarray | None
    alpha: np.ndarray
    depth: np.ndarray


class ViewRenderer(Protocol):
    """Renders one object at `T_cam_obj` (4, 4) m in a `size` x `size` camera with intrinsics `K` (3, 3)."""

    def render_view(self, obj_id: int, T_cam_obj: np.ndarray, K: np.ndarray, size: int,
                    colour: bool = True) -> ObjectView:
        """The object's view (see `ObjectView`); without `colour` only alpha and depth (cheaper)."""


class MeshViews:
    """`ViewRenderer` over the OpenGL mesh renderer (hard coverage: alpha is 0 or 1)."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer

    def render_view(self, obj_id: int, T_cam_obj: np.ndarray, K: np.ndarray, size: int,
                    colour: bool = True) -> ObjectView:
        """The mesh's colour (albedo) and depth; alpha where depth was written."""
        # Each output read back costs about as much as the draw on a software GL: skip colour when not needed.
        outputs = ("rgb", "depth") if colour else ("depth",)
        out = self.renderer.render(K, size, size, [(obj_id, T_cam_obj)], lighting=ALBEDO, outputs=outputs)
        return ObjectView(
            rgb=out.rgb.astype(np.float32) / 255.0 if colour else None,
            alpha=(out.depth > 0).astype(np.float32),
            depth=out.depth,
        )


class GaussianViews:
    """`ViewRenderer` over 3D Gaussian object models (soft coverage; colours as fitted to the reference images)."""

    def __init__(self, renderer: GaussianRenderer) -> None:
        self.renderer = renderer

    def render_view(self, obj_id: int, T_cam_obj: np.ndarray, K: np.ndarray, size: int,
                    colour: bool = True) -> ObjectView:
        """The splatted colour (un-premultiplied), accumulated opacity and expected depth (colour costs nothing extra)."""
        out = self.renderer.render(obj_id, T_cam_obj, K, size, size)
        rgb = out.rgb / np.maximum(out.alpha, 1e-3)[..., None]
        return ObjectView(rgb=np.clip(rgb, 0.0, 1.0).astype(np.float32), alpha=out.alpha, depth=out.depth)

"""Pinhole camera with OpenCV distortion, projection, back-projection and crop/resize transforms that keep K consistent.

Pixel convention (OpenCV's, used throughout the package): integer pixel coordinates (u, v) are pixel
centres, so pixel (u, v) covers [u - 0.5, u + 0.5] x [v - 0.5, v + 0.5] and an image of width W spans
u in [-0.5, W - 0.5]. Points in the camera frame are in metres in the OpenCV optical frame (x right,
y down, z forward). Boxes (x0, y0, x1, y1) are given by their pixel edges as NumPy slices count them:
the integer box (x0, y0, x1, y1) covers exactly `image[y0:y1, x0:x1]`; its edges lie at u = x0 - 0.5 and
u = x1 - 0.5. A BOP bbox (x, y, w, h) is the box (x, y, x + w, y + h).

Resizing and cropping are affine maps of the pixel plane, u' = a (u + 0.5 - x0) - 0.5, applied to K as
K' = A K. Distortion coefficients act on normalised coordinates, which such a map leaves unchanged, so a
cropped or resized camera keeps the same `dist`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np
from numpy.typing import ArrayLike

from ros2_sixdpose.core.geometry import checked_array

__all__ = ["CropTransform", "PinholeCamera", "square_box"]

# Numbers of distortion coefficients OpenCV accepts: (k1, k2, p1, p2[, k3[, k4, k5, k6[, s1..s4[, tx, ty]]]]).
_DIST_LENGTHS = (4, 5, 8, 12, 14)
# cv2.undistortPoints stops after 5 fixed-point iterations (0.4 px off at the corners of a wide-angle
# lens); iterating each point until it reprojects within 1e-10 px (OpenCV's EPS is in pixels) makes
# project(backproject(uv)) return uv; a 640x480 grid then takes ~0.1 s with a strong wide-angle lens.
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)
# Image dtypes cv2.warpAffine handles (bool is warped as uint8).
_WARP_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64, np.bool_)


def _pixel_affine(scale_x: float, scale_y: float, x0: float, y0: float) -> np.ndarray:
    """Map (3, 3) taking full-image pixels to pixels of the region whose top-left edge is (x0, y0), scaled.

    u' = scale_x (u + 0.5 - x0) - 0.5: pixel edges, not centres, scale, hence the half-pixel shifts.
    """
    return np.array(
        [
            [scale_x, 0.0, scale_x * (0.5 - x0) - 0.5],
            [0.0, scale_y, scale_y * (0.5 - y0) - 0.5],
            [0.0, 0.0, 1.0],
        ]
    )


def _apply_affine(A: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Apply a (3, 3) affine pixel map to points uv (*, 2)."""
    return uv @ A[:2, :2].T + A[:2, 2]


@dataclass(frozen=True, eq=False)
class PinholeCamera:
    """A pinhole camera with OpenCV lens distortion.

    Attributes:
        K: (3, 3) float64 intrinsics in pixels, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew: OpenCV's
            distortion model has none).
        width, height: image size in pixels.
        dist: (D,) float64 OpenCV distortion (k1, k2, p1, p2[, k3[, k4, k5, k6[, s1, s2, s3, s4[, tx, ty]]]]),
            D in {4, 5, 8, 12, 14} (ROS `plumb_bob` and `rational_polynomial`); empty or zeros for none.

    Raises ValueError on construction for a K that is not finite, has non-positive focal lengths, skew or a
    bottom row other than (0, 0, 1) (an all-zero CameraInfo K among them), non-positive sizes, or a
    distortion vector of another length or not finite.

    Example:
        >>> cam = PinholeCamera(np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), 640, 480)
        >>> cam.project(np.array([[0.1, 0.0, 1.0]]))
        array([[370., 240.]])
    """

    K: np.ndarray
    width: int
    height: int
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))

    def __post_init__(self) -> None:
        K = checked_array(self.K, "3,3", "K")
        if not np.all(np.isfinite(K)):
            raise ValueError(f"K must be finite, got {K.tolist()}")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"K must have positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
        if K[0, 1] != 0 or K[1, 0] != 0 or not np.array_equal(K[2], [0.0, 0.0, 1.0]):
            raise ValueError(f"K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got {K.tolist()}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        dist = checked_array(self.dist, "D", "dist")
        if dist.size == 0:
            dist = np.zeros(5)
        if dist.size not in _DIST_LENGTHS or not np.all(np.isfinite(dist)):
            raise ValueError(f"dist must hold {_DIST_LENGTHS} finite OpenCV coefficients, got {dist.tolist()}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "dist", dist)

    @property
    def has_distortion(self) -> bool:
        """True when any distortion coefficient is non-zero."""
        return bool(np.any(self.dist != 0))

    def project(self, points_cam: ArrayLike) -> np.ndarray:
        """Project points (N, 3) metres, camera frame, to pixels (N, 2), distortion applied.

        Points with z <= 0 (on or behind the camera plane) have no image and come back as NaN rows.
        Points are not clipped to the image: check 0 <= u < width yourself where it matters. With
        distortion, points far outside the field of view may fold back into the image (a property of the
        polynomial lens model), so do not trust projections well beyond the image borders.
        """
        points = checked_array(points_cam, "N,3", "points_cam")
        in_front = points[:, 2] > 0
        if self.has_distortion and len(points):
            uv = cv2.projectPoints(points, np.zeros(3), np.zeros(3), self.K, self.dist)[0].reshape(-1, 2)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                uv = points[:, :2] / points[:, 2:] * self.K[[0, 1], [0, 1]] + self.K[:2, 2]
        uv[~in_front] = np.nan
        return uv

    def backproject(self, uv: ArrayLike, depth: ArrayLike) -> np.ndarray:
        """Lift pixels uv (N, 2) with depths (N,) or scalar, metres along the optical axis, to points (N, 3).

        Distortion is removed by iterating OpenCV's undistortion to convergence. Depth is z, as in a depth
        image, not the distance along the ray; a zero depth gives the point (0, 0, 0).
        """
        uv = checked_array(uv, "N,2", "uv")
        depth = np.asarray(depth, dtype=np.float64)
        if depth.shape not in ((), (len(uv),)):
            raise ValueError(f"depth must have shape ({len(uv)},) or be a scalar, got {depth.shape}")
        if self.has_distortion and len(uv):
            xy = cv2.undistortPointsIter(uv, self.K, self.dist, None, None, _UNDISTORT_CRITERIA).reshape(-1, 2)
        else:
            xy = (uv - self.K[:2, 2]) / self.K[[0, 1], [0, 1]]
        depth = np.broadcast_to(depth, (len(uv),))
        return np.concatenate([xy * depth[:, None], depth[:, None]], axis=1)

    @cached_property
    def pixel_rays(self) -> np.ndarray:
        """Read-only rays (H, W, 3) through every pixel centre, scaled to z = 1, distortion removed.

        Computed once per camera (undistorting a 640x480 grid takes ~0.1 s), so keep the camera object
        while the intrinsics stay the same.
        """
        v, u = np.mgrid[: self.height, : self.width]
        rays = self.backproject(np.stack([u.ravel(), v.ravel()], axis=1), 1.0).reshape(self.height, self.width, 3)
        rays.setflags(write=False)
        return rays

    def depth_to_points(self, depth: ArrayLike) -> np.ndarray:
        """Back-project a depth image (H, W) metres (z; 0 where invalid) to camera-frame points (H, W, 3) m."""
        depth = checked_array(depth, "H,W", "depth")
        if depth.shape != (self.height, self.width):
            raise ValueError(f"depth must be ({self.height}, {self.width}) to match the camera, got {depth.shape}")
        return self.pixel_rays * depth[..., None]

    def scaled(self, sx: float, sy: float) -> PinholeCamera:
        """The camera of images resized by factors (sx, sy), as `cv2.resize(image, None, fx=sx, fy=sy)` does.

        The new size is round(width * sx) x round(height * sy) (OpenCV's rounding); K follows the
        pixel-centre convention, u' = sx (u + 0.5) - 0.5.
        """
        if not (np.isfinite(sx) and np.isfinite(sy) and sx > 0 and sy > 0):
            raise ValueError(f"scale factors must be finite and positive, got sx={sx}, sy={sy}")
        width, height = round(self.width * sx), round(self.height * sy)
        if width < 1 or height < 1:
            raise ValueError(f"scaling {self.width}x{self.height} by ({sx}, {sy}) leaves an empty image")
        return PinholeCamera(_pixel_affine(sx, sy, 0.0, 0.0) @ self.K, width, height, self.dist)


@dataclass(frozen=True)
class CropTransform:
    """An axis-aligned crop of the full image, resized to a fixed output size, as one affine pixel map.

    Attributes:
        box: (x0, y0, x1, y1) pixel edges in the full image (see the module docstring); may extend past
            the image, which then reads as zeros.
        size: (width, height) of the output crop in pixels.

    `K_crop`, `warp`, `to_crop` and `to_full` use the same map, so a point projected with K and mapped by
    `to_crop` lands exactly where projecting it with `K_crop(K)` puts it, and on the same pixel of `warp`.

    Example:
        >>> crop = CropTransform((100.0, 50.0, 164.0, 114.0), (128, 128))
        >>> crop.to_crop(np.array([[100.0, 50.0]]))  # first box pixel, 2x: covers crop pixels 0 and 1
        array([[0.5, 0.5]])
    """

    box: tuple[float, float, float, float]
    size: tuple[int, int]

    def __post_init__(self) -> None:
        box = checked_array(self.box, "4", "box")
        x0, y0, x1, y1 = box
        if not np.all(np.isfinite(box)) or x1 <= x0 or y1 <= y0:
            raise ValueError(f"box must be finite (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box.tolist()}")
        if len(self.size) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0
                                      for s in self.size):
            raise ValueError(f"size must be two positive integers (width, height), got {self.size!r}")
        object.__setattr__(self, "box", tuple(float(b) for b in box))
        object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    @property
    def matrix(self) -> np.ndarray:
        """The (3, 3) affine map from full-image pixels to crop pixels (homogeneous)."""
        x0, y0, x1, y1 = self.box
        return _pixel_affine(self.size[0] / (x1 - x0), self.size[1] / (y1 - y0), x0, y0)

    def K_crop(self, K: ArrayLike) -> np.ndarray:
        """Intrinsics (3, 3) of the crop for a full-image K (3, 3); distortion coefficients carry over unchanged."""
        return self.matrix @ checked_array(K, "3,3", "K")

    def to_crop(self, uv_full: ArrayLike) -> np.ndarray:
        """Map full-image pixels (*, 2) to crop pixels (*, 2)."""
        return _apply_affine(self.matrix, checked_array(uv_full, "*,2", "uv_full"))

    def to_full(self, uv_crop: ArrayLike) -> np.ndarray:
        """Map crop pixels (*, 2) back to full-image pixels (*, 2)."""
        return _apply_affine(np.linalg.inv(self.matrix), checked_array(uv_crop, "*,2", "uv_crop"))

    def warp(self, image: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Cut the crop out of `image` (H, W) or (H, W, C), giving (h, w) or (h, w, C) of the same dtype.

        Pass `cv2.INTER_NEAREST` for masks, instance ids and NOCS maps, which must not be blended. Outside
        the image the crop is zero. Bool masks are supported (warped as uint8).
        """
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
            shape = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"image must be a non-empty (H, W) or (H, W, C) array, got {shape}")
        if image.dtype.type not in _WARP_DTYPES:
            raise ValueError(f"image dtype must be one of {[d.__name__ for d in _WARP_DTYPES]}, got {image.dtype}")
        source = image.view(np.uint8) if image.dtype == np.bool_ else image
        out = cv2.warpAffine(
            source, self.matrix[:2], self.size, flags=interpolation,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
        if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a trailing channel axis of size 1
            out = out[..., None]
        return out.astype(bool) if image.dtype == np.bool_ else out


def square_box(box: ArrayLike, scale: float = 1.2, min_size: float = 16.0) -> np.ndarray:
    """Square boxes (*, 4) (x0, y0, x1, y1) around detection boxes (*, 4), same centre, pixel edges.

    The side is max(scale * longer side, min_size) pixels; `scale` pads for context and for the error
    of the detection box, `min_size` keeps tiny detections from being magnified into noise. The box is
    not clipped to the image: `CropTransform.warp` pads with zeros and keeps the aspect ratio.
    """
    box = checked_array(box, "*,4", "box")
    size = box[..., 2:] - box[..., :2]
    if not np.all(np.isfinite(box)) or np.any(size <= 0):
        raise ValueError(f"box must be finite (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box.tolist()}")
    if not (scale > 0 and min_size >= 0):
        raise ValueError(f"scale must be > 0 and min_size >= 0, got scale={scale}, min_size={min_size}")
    centre = (box[..., :2] + box[..., 2:]) / 2
    half = np.maximum(size.max(axis=-1) * scale, min_size)[..., None] / 2
    return np.concatenate([centre - half, centre + half], axis=-1)

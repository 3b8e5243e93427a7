"""Tests of ros2_sixdpose.core.camera: validation, projection round trips, resizing and K-consistent crops."""
import cv2
import numpy as np
import pytest

from ros2_sixdpose.core.camera import CropTransform, PinholeCamera, square_box

K = np.array([[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]])
# A strong wide-angle lens: barrel distortion moves the image corners by about 67 px.
DIST = np.array([-0.28, 0.09, 0.0012, -0.0008, -0.012])


def points_in_view(camera: PinholeCamera, n: int, seed: int) -> np.ndarray:
    """n camera-frame points (n, 3) m, 0.3-3 m deep, whose undistorted projections fall inside the image."""
    rng = np.random.default_rng(seed)
    uv = rng.uniform([0.0, 0.0], [camera.width - 1, camera.height - 1], (n, 2))
    z = rng.uniform(0.3, 3.0, n)
    xy = (uv - K[:2, 2]) / K[[0, 1], [0, 1]]
    return np.concatenate([xy * z[:, None], z[:, None]], axis=1)


@pytest.mark.parametrize(
    "K_bad, match",
    [
        (np.zeros((3, 3)), "positive focal lengths"),
        (np.full((3, 3), np.nan), "finite"),
        (np.array([[-500.0, 0, 320], [0, 400, 240], [0, 0, 1]]), "positive focal lengths"),
        (np.array([[500.0, 2, 320], [0, 400, 240], [0, 0, 1]]), r"K must be \[\[fx"),
        (np.array([[500.0, 0, 320], [0, 400, 240], [0, 0, 0]]), r"K must be \[\[fx"),
        (np.eye(4), r"K must have shape \(3, 3\), got \(4, 4\)"),
    ],
)
def test_bad_intrinsics_raise(K_bad, match):
    with pytest.raises(ValueError, match=match):
        PinholeCamera(K_bad, 640, 480)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(width=0, height=480), "width must be a positive integer"),
        (dict(width=640, height=-1), "height must be a positive integer"),
        (dict(width=640.0, height=480), "width must be a positive integer"),
        (dict(width=640, height=480, dist=np.zeros(3)), "dist must hold"),
        (dict(width=640, height=480, dist=[0.1, np.nan, 0, 0, 0]), "dist must hold"),
    ],
)
def test_bad_size_or_distortion_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PinholeCamera(K, **kwargs)


def test_empty_distortion_means_none():
    camera = PinholeCamera(K.tolist(), np.int64(640), 480, dist=[])
    assert camera.K.dtype == np.float64 and isinstance(camera.width, int)
    np.testing.assert_array_equal(camera.dist, np.zeros(5))
    assert not camera.has_distortion


def test_project_hand_value_and_points_behind():
    camera = PinholeCamera(K, 640, 480)
    uv = camera.project([[0.1, -0.2, 2.0], [0.0, 0.0, 1.0], [0.1, 0.1, -1.0], [0.1, 0.1, 0.0]])
    np.testing.assert_allclose(uv[:2], [[345.0, 200.0], [320.0, 240.0]], atol=1e-12)
    assert np.isnan(uv[2:]).all()
    assert camera.project(np.zeros((0, 3))).shape == (0, 2)


def test_project_with_radial_distortion_hand_value():
    camera = PinholeCamera(K, 640, 480, dist=[-0.2, 0.0, 0.0, 0.0, 0.0])
    # Normalised (0.2, 0.1): r^2 = 0.05, radial factor 1 - 0.2 * 0.05 = 0.99.
    uv = camera.project([[0.4, 0.2, 2.0]])
    np.testing.assert_allclose(uv, [[320.0 + 500.0 * 0.2 * 0.99, 240.0 + 400.0 * 0.1 * 0.99]], atol=1e-9)
    camera_behind = camera.project([[0.4, 0.2, -2.0]])
    assert np.isnan(camera_behind).all()


@pytest.mark.parametrize("dist", [np.zeros(5), DIST])
def test_project_backproject_round_trip(dist):
    camera = PinholeCamera(K, 640, 480, dist=dist)
    points = points_in_view(camera, 2000, seed=0)
    uv = camera.project(points)
    np.testing.assert_allclose(camera.backproject(uv, points[:, 2]), points, rtol=0, atol=1e-9)
    pixels = np.random.default_rng(1).uniform([0.0, 0.0], [639.0, 479.0], (2000, 2))
    depth = np.random.default_rng(2).uniform(0.3, 3.0, 2000)
    np.testing.assert_allclose(camera.project(camera.backproject(pixels, depth)), pixels, rtol=0, atol=1e-6)


def test_backproject_scalar_depth_and_bad_depth():
    camera = PinholeCamera(K, 640, 480)
    np.testing.assert_allclose(camera.backproject([[345.0, 200.0]], 2.0), [[0.1, -0.2, 2.0]], atol=1e-12)
    with pytest.raises(ValueError, match=r"depth must have shape \(2,\) or be a scalar, got \(3,\)"):
        camera.backproject(np.zeros((2, 2)), np.ones(3))


@pytest.mark.parametrize("dist", [np.zeros(5), DIST])
def test_depth_to_points_reprojects_to_pixel_grid(dist):
    camera = PinholeCamera(np.array([[80.0, 0, 31.5], [0, 80, 23.5], [0, 0, 1]]), 64, 48, dist=dist)
    depth = np.full((48, 64), 1.5)
    depth[0, 0] = 0.0
    points = camera.depth_to_points(depth)
    assert points.shape == (48, 64, 3)
    assert camera.pixel_rays is camera.pixel_rays and not camera.pixel_rays.flags.writeable
    np.testing.assert_array_equal(points[0, 0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(points[..., 2], depth)
    v, u = np.mgrid[:48, :64]
    uv = camera.project(points[1:].reshape(-1, 3))
    np.testing.assert_allclose(uv, np.stack([u[1:].ravel(), v[1:].ravel()], axis=1), atol=1e-6)
    if not camera.has_distortion:
        np.testing.assert_allclose(points[10, 40], [(40 - 31.5) / 80 * 1.5, (10 - 23.5) / 80 * 1.5, 1.5])


def test_depth_to_points_rejects_wrong_size():
    with pytest.raises(ValueError, match=r"depth must be \(480, 640\) to match the camera, got \(48, 64\)"):
        PinholeCamera(K, 640, 480).depth_to_points(np.ones((48, 64)))


def test_scaled_matches_cv2_resize():
    camera = PinholeCamera(K, 640, 480, dist=DIST)
    half = camera.scaled(0.5, 0.5)
    assert (half.width, half.height) == (320, 240)
    np.testing.assert_array_equal(half.dist, DIST)
    np.testing.assert_allclose(half.K, [[250.0, 0.0, 159.75], [0.0, 200.0, 119.75], [0.0, 0.0, 1.0]])
    points = points_in_view(camera, 100, seed=3)
    np.testing.assert_allclose(half.project(points), 0.5 * (camera.project(points) + 0.5) - 0.5, atol=1e-9)
    # A ramp image holding each pixel's own u coordinate, resized by OpenCV, holds u at the mapped centre.
    ramp = np.broadcast_to(np.arange(640, dtype=np.float32), (480, 640))
    small = cv2.resize(ramp, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_LINEAR)
    u_small = np.arange(1, 319)
    np.testing.assert_allclose(small[100, 1:319], (u_small + 0.5) / 0.5 - 0.5, atol=1e-4)
    with pytest.raises(ValueError, match="finite and positive"):
        camera.scaled(0.0, 1.0)


@pytest.mark.parametrize("dist", [np.zeros(5), DIST])
def test_crop_keeps_projection_consistent(dist):
    camera = PinholeCamera(K, 640, 480, dist=dist)
    crop = CropTransform((201.3, 87.9, 301.7, 171.2), (128, 96))
    crop_camera = PinholeCamera(crop.K_crop(camera.K), 128, 96, dist=camera.dist)
    points = points_in_view(camera, 500, seed=4)
    uv_full = camera.project(points)
    uv_crop = crop_camera.project(points)
    np.testing.assert_allclose(crop.to_crop(uv_full), uv_crop, rtol=0, atol=1e-6)
    np.testing.assert_allclose(crop.to_full(uv_crop), uv_full, rtol=0, atol=1e-6)
    # The box edges map to the crop's edges, half a pixel outside the first and last pixel centres.
    np.testing.assert_allclose(crop.to_crop([[201.3 - 0.5, 87.9 - 0.5], [301.7 - 0.5, 171.2 - 0.5]]),
                               [[-0.5, -0.5], [127.5, 95.5]], atol=1e-12)


def test_integer_crop_without_scaling_equals_slicing():
    image = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    crop = CropTransform((10, 5, 42, 29), (32, 24))
    for interpolation in (cv2.INTER_NEAREST, cv2.INTER_LINEAR):
        np.testing.assert_array_equal(crop.warp(image, interpolation), image[5:29, 10:42])


def test_warped_bright_pixel_lands_where_K_crop_projects_it():
    camera = PinholeCamera(K, 640, 480)
    u, v = 250, 130
    point = camera.backproject([[u, v]], 1.7)
    image = np.zeros((480, 640), np.float32)
    image[v, u] = 1.0
    # 2x zoom with quarter-pixel box offsets, so the pixel's centre maps onto a crop pixel centre.
    crop = CropTransform((230.25, 110.25, 262.25, 142.25), (64, 64))
    uv_crop = PinholeCamera(crop.K_crop(K), 64, 64).project(point)[0]
    np.testing.assert_allclose(uv_crop, [40.0, 40.0], atol=1e-9)
    out = crop.warp(image, cv2.INTER_LINEAR)
    assert np.unravel_index(out.argmax(), out.shape) == (40, 40)
    assert out[40, 40] == pytest.approx(1.0)
    rows, cols = np.nonzero(out)
    weights = out[rows, cols]
    np.testing.assert_allclose([cols @ weights / weights.sum(), rows @ weights / weights.sum()], uv_crop, atol=1e-6)


def test_warp_follows_the_affine_map_to_subpixel_accuracy():
    # An image holding a linear function of the full-image pixel position; bilinear warping reproduces it,
    # so each crop pixel must hold the function's value at that pixel's to_full position.
    v, u = np.mgrid[:480, :640].astype(np.float32)
    image = np.stack([u, v], axis=-1)
    crop = CropTransform((117.37, 203.81, 301.05, 355.4), (96, 80))
    out = crop.warp(image, cv2.INTER_LINEAR)
    vc, uc = np.mgrid[:80, :96]
    expected = crop.to_full(np.stack([uc, vc], axis=-1).astype(float))
    # OpenCV quantises sampling positions to 1/32 px.
    np.testing.assert_allclose(out, expected, atol=1 / 32)


def test_warp_pads_outside_image_and_keeps_dtypes():
    mask = np.ones((48, 64), bool)
    crop = CropTransform((-16, -8, 16, 24), (32, 32))
    out = crop.warp(mask, cv2.INTER_NEAREST)
    assert out.dtype == bool and out.shape == (32, 32)
    assert not out[:8].any() and not out[:, :16].any() and out[8:, 16:].all()
    single_channel = crop.warp(np.ones((48, 64, 1), np.float32))
    assert single_channel.shape == (32, 32, 1)
    with pytest.raises(ValueError, match="image dtype must be one of"):
        crop.warp(np.ones((48, 64), np.float16))
    with pytest.raises(ValueError, match=r"non-empty \(H, W\) or \(H, W, C\) array, got \(2, 48, 64, 3\)"):
        crop.warp(np.ones((2, 48, 64, 3), np.uint8))


@pytest.mark.parametrize(
    "box, size",
    [((10, 10, 10, 20), (32, 32)), ((0, 0, np.nan, 5), (32, 32)), ((0, 0, 5, 5), (0, 32)), ((0, 0, 5, 5), (32.0, 32))],
)
def test_bad_crop_raises(box, size):
    with pytest.raises(ValueError, match="box must be|size must be"):
        CropTransform(box, size)


def test_square_box_hand_values():
    np.testing.assert_allclose(square_box([10.0, 20.0, 30.0, 60.0], scale=1.2), [-4.0, 16.0, 44.0, 64.0])
    np.testing.assert_allclose(square_box([10.0, 10.0, 12.0, 12.0], min_size=16.0), [3.0, 3.0, 19.0, 19.0])
    boxes = square_box(np.array([[0.0, 0.0, 10.0, 4.0], [5.0, 5.0, 7.0, 15.0]]), scale=1.0, min_size=0.0)
    np.testing.assert_allclose(boxes, [[0.0, -3.0, 10.0, 7.0], [1.0, 5.0, 11.0, 15.0]])
    with pytest.raises(ValueError, match="x1 > x0"):
        square_box([10.0, 10.0, 5.0, 20.0])

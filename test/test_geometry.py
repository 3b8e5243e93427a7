"""Tests of ros2_sixdpose.core.geometry: SE(3) identities, quaternions, rotation distance, random rotations, look_at."""
import numpy as np
import pytest

from ros2_sixdpose.core.geometry import (
    checked_array,
    invert_pose,
    look_at,
    make_pose,
    matrix_from_quat_xyzw,
    quat_xyzw_from_matrix,
    random_rotations,
    rotation_angle,
    transform_points,
)


def rot_z(angle: float) -> np.ndarray:
    """Rotation (3, 3) by `angle` radians about z, written out by hand."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def random_poses(n: int, seed: int) -> np.ndarray:
    """n random rigid transforms (n, 4, 4) with translations within 1 m."""
    rng = np.random.default_rng(seed)
    return make_pose(random_rotations(n, rng), rng.uniform(-1.0, 1.0, (n, 3)))


def test_make_pose_places_rotation_and_translation():
    T = make_pose(rot_z(np.pi / 2), [1.0, 2.0, 3.0])
    expected = np.array([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], dtype=float)
    np.testing.assert_allclose(T, expected, atol=1e-15)


def test_make_pose_broadcasts_one_rotation_over_many_translations():
    T = make_pose(np.eye(3), np.arange(6.0).reshape(2, 3))
    assert T.shape == (2, 4, 4)
    np.testing.assert_array_equal(T[1, :3, 3], [3.0, 4.0, 5.0])


def test_invert_pose_identities_on_random_poses():
    A, B = random_poses(50, seed=0), random_poses(50, seed=1)
    np.testing.assert_allclose(A @ invert_pose(A), np.broadcast_to(np.eye(4), A.shape), atol=1e-12)
    np.testing.assert_allclose(invert_pose(A) @ A, np.broadcast_to(np.eye(4), A.shape), atol=1e-12)
    np.testing.assert_allclose(invert_pose(invert_pose(A)), A, atol=1e-12)
    np.testing.assert_allclose(invert_pose(A @ B), invert_pose(B) @ invert_pose(A), atol=1e-12)
    np.testing.assert_allclose(invert_pose(A[3]), np.linalg.inv(A[3]), atol=1e-12)


def test_transform_points_hand_value():
    T = make_pose(rot_z(np.pi / 2), [1.0, 2.0, 3.0])
    out = transform_points(T, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(out, [[1.0, 3.0, 3.0], [1.0, 2.0, 4.0]], atol=1e-15)


def test_transform_points_composes_like_matrix_product():
    A, B = random_poses(8, seed=2), random_poses(8, seed=3)
    points = np.random.default_rng(4).normal(size=(8, 20, 3))
    np.testing.assert_allclose(
        transform_points(A @ B, points), transform_points(A, transform_points(B, points)), atol=1e-12
    )
    np.testing.assert_allclose(transform_points(invert_pose(A), transform_points(A, points)), points, atol=1e-12)


def test_quaternion_of_90_degrees_about_z_in_ros_order():
    q = quat_xyzw_from_matrix(rot_z(np.pi / 2))
    np.testing.assert_allclose(q, [0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-15)
    np.testing.assert_allclose(matrix_from_quat_xyzw([0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)]), rot_z(np.pi / 2),
                               atol=1e-15)


def test_quaternion_round_trip_and_sign():
    R = random_rotations(200, np.random.default_rng(5))
    q = quat_xyzw_from_matrix(R)
    assert q.shape == (200, 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-14)
    assert np.all(q[:, 3] >= 0)
    np.testing.assert_allclose(matrix_from_quat_xyzw(q), R, atol=1e-14)
    np.testing.assert_allclose(matrix_from_quat_xyzw(-q), R, atol=1e-14)


def test_quaternion_input_is_normalised():
    q = np.array([0.0, 0.0, 3.0, 3.0])  # 90 deg about z, norm 3 sqrt(2)
    np.testing.assert_allclose(matrix_from_quat_xyzw(q), rot_z(np.pi / 2), atol=1e-15)


@pytest.mark.parametrize("q", [[0.0, 0.0, 0.0, 0.0], [np.nan, 0.0, 0.0, 1.0], [np.inf, 0.0, 0.0, 1.0]])
def test_bad_quaternion_raises(q):
    with pytest.raises(ValueError, match="finite and non-zero"):
        matrix_from_quat_xyzw(q)


@pytest.mark.parametrize(
    "R", [2.0 * np.eye(3), np.diag([1.0, 1.0, -1.0]), np.array([[1.0, 0.1, 0], [0, 1, 0], [0, 0, 1]])]
)
def test_non_rotation_matrix_raises(R):
    with pytest.raises(ValueError, match="not a rotation"):
        quat_xyzw_from_matrix(R)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, 0.3, np.pi / 2, 3.0, np.pi - 1e-4, np.pi - 1e-9, np.pi])
def test_rotation_angle_of_known_rotations(angle):
    R_a = random_rotations(1, np.random.default_rng(6))[0]
    axis = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    # Rodrigues' formula, written out so that the expected angle does not go through the code under test.
    S = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    R_rel = np.eye(3) + np.sin(angle) * S + (1 - np.cos(angle)) * S @ S
    assert rotation_angle(R_a, R_a @ R_rel) == pytest.approx(angle, abs=1e-12)
    assert rotation_angle(R_a @ R_rel, R_a) == pytest.approx(angle, abs=1e-12)


def test_rotation_angle_batched_and_broadcast():
    angles = np.array([0.1, 1.0, 2.5])
    R_b = np.stack([rot_z(a) for a in angles])
    np.testing.assert_allclose(rotation_angle(np.eye(3), R_b), angles, atol=1e-14)


def test_random_rotations_are_seeded_proper_and_uniform():
    R = random_rotations(20000, np.random.default_rng(7))
    np.testing.assert_array_equal(R[:5], random_rotations(5, np.random.default_rng(7)))
    np.testing.assert_allclose(np.swapaxes(R, 1, 2) @ R, np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    # Under the Haar measure E[R] = 0 and the angle has density (1 - cos a) / pi, mean pi/2 + 2/pi.
    assert np.abs(R.mean(axis=0)).max() < 0.02
    assert rotation_angle(np.eye(3), R).mean() == pytest.approx(np.pi / 2 + 2 / np.pi, abs=0.02)


def test_look_at_puts_target_on_optical_axis_at_its_distance():
    eye, target = np.array([0.4, -0.3, 0.8]), np.array([0.05, 0.1, 0.02])
    T_world_cam = look_at(eye, target)
    target_cam = transform_points(invert_pose(T_world_cam), target[None])[0]
    np.testing.assert_allclose(target_cam, [0.0, 0.0, np.linalg.norm(target - eye)], atol=1e-12)
    R = T_world_cam[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    # Image y points down: the world's up direction has a negative y in the camera frame, and no x.
    up_cam = R.T @ np.array([0.0, 0.0, 1.0])
    assert up_cam[1] < 0 and abs(up_cam[0]) < 1e-12


def test_look_at_horizontal_camera_hand_value():
    # Looking along world +x with z up: camera x = world -y, camera y = world -z.
    T = look_at([0.0, 0.0, 0.0], [2.0, 0.0, 0.0])
    np.testing.assert_allclose(T[:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-15)


def test_look_at_batched_eyes():
    rng = np.random.default_rng(8)
    eyes = rng.normal(size=(100, 3)) + [0.0, 0.0, 5.0]
    T = look_at(eyes, np.zeros(3))
    assert T.shape == (100, 4, 4)
    target_cam = transform_points(invert_pose(T), np.zeros((100, 1, 3)))[:, 0]
    np.testing.assert_allclose(target_cam[:, :2], 0.0, atol=1e-12)
    np.testing.assert_allclose(target_cam[:, 2], np.linalg.norm(eyes, axis=1), atol=1e-12)


@pytest.mark.parametrize(
    "eye, target, up",
    [([0, 0, 1], [0, 0, 1], [0, 0, 1]), ([0, 0, 1], [0, 0, 0], [0, 0, 1]), ([0, 0, 1], [1, 0, 0], [0, 0, 0])],
)
def test_look_at_degenerate_raises(eye, target, up):
    with pytest.raises(ValueError, match="look_at"):
        look_at(eye, target, up)


def test_shape_errors_name_the_argument_and_shape():
    with pytest.raises(ValueError, match=r"R must have shape \(\*, 3, 3\), got \(3, 4\)"):
        make_pose(np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(ValueError, match=r"T must have shape \(\*, 4, 4\), got \(4,\)"):
        invert_pose(np.zeros(4))
    with pytest.raises(ValueError, match=r"points must have shape \(\*, N, 3\), got \(3,\)"):
        transform_points(np.eye(4), np.zeros(3))
    with pytest.raises(ValueError, match=r"q must have shape \(\*, 4\), got \(2, 3\)"):
        matrix_from_quat_xyzw(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\), got \(5, 2, 1\)"):
        checked_array(np.zeros((5, 2, 1)), "N,2", "x")

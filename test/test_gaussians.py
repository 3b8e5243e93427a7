"""Gaussian object models: checks on construction, SH colours, and the 3DGS PLY round trip and its errors."""
from __future__ import annotations

import numpy as np
import pytest

from ros2_sixdpose.core.gaussians import SH_C0, SH_C1, GaussianModel, load_ply, rgb_to_sh_dc, save_ply


def _model(n: int = 6, degree: int = 1, normals: bool = True) -> GaussianModel:
    """n Gaussians with distinct values in every field."""
    rng = np.random.default_rng(1)
    return GaussianModel(
        means=rng.normal(0, 0.05, (n, 3)),
        quats=rng.normal(size=(n, 4)),
        scales=rng.uniform(0.001, 0.01, (n, 3)),
        opacities=rng.uniform(0.05, 0.95, n),
        sh=rng.normal(0, 0.5, (n, 4 if degree else 1, 3)),
        normals=rng.normal(size=(n, 3)) if normals else None,
    )


@pytest.mark.parametrize("degree,normals", [(0, False), (1, True)])
def test_ply_round_trip(tmp_path, degree, normals):
    """save_ply then load_ply gives the same model (float32 exact up to the log / logit round trip)."""
    model = _model(degree=degree, normals=normals)
    save_ply(tmp_path / "g.ply", model)
    back = load_ply(tmp_path / "g.ply")
    for name in ("means", "sh"):
        np.testing.assert_array_equal(getattr(back, name), getattr(model, name))
    np.testing.assert_allclose(back.quats, model.quats, atol=1e-7)  # renormalised on load
    np.testing.assert_allclose(back.scales, model.scales, rtol=1e-6)
    np.testing.assert_allclose(back.opacities, model.opacities, rtol=1e-5)
    assert (back.normals is None) == (not normals)
    if normals:
        np.testing.assert_allclose(back.normals, model.normals, atol=1e-7)
    header = (tmp_path / "g.ply").read_bytes().split(b"end_header")[0].decode()
    # The standard 3DGS names, in the standard order, so splat viewers read the file.
    names = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    rest = [f"f_rest_{i}" for i in range(9 if degree else 0)]
    assert names == (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + rest
                     + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def test_ply_stores_log_scales_logit_opacity_channel_major_rest(tmp_path):
    """The file holds log scales, logit opacities and f_rest grouped by channel (3DGS's layout)."""
    model = _model(n=1, degree=1)
    save_ply(tmp_path / "g.ply", model)
    data = (tmp_path / "g.ply").read_bytes()
    values = np.frombuffer(data[data.index(b"end_header\n") + 11:], dtype="<f4")
    assert values[6:9].tolist() == model.sh[0, 0].tolist()
    assert values[9:12].tolist() == model.sh[0, 1:, 0].tolist()  # red's three degree-1 coefficients first
    o = model.opacities[0]
    assert values[18] == pytest.approx(np.log(o / (1 - o)), rel=1e-5)
    np.testing.assert_allclose(values[19:22], np.log(model.scales[0]), rtol=1e-6)


def test_colors_follow_gsplat_sh():
    """Degree 0 gives SH_C0 * dc + 0.5; degree 1 adds C1 (-y f1 + z f2 - x f3) along the view ray."""
    model = _model(n=1, degree=1)
    model.means[:] = [0.0, 0.0, 1.0]
    rgb = model.colors(np.zeros(3))  # ray along +z
    np.testing.assert_allclose(rgb[0], np.maximum(SH_C0 * model.sh[0, 0] + SH_C1 * model.sh[0, 2] + 0.5, 0), rtol=1e-6)
    np.testing.assert_allclose(SH_C0 * rgb_to_sh_dc([0.2, 0.5, 0.9]) + 0.5, [0.2, 0.5, 0.9], rtol=1e-6)


def test_bad_models_and_files(tmp_path):
    """Wrong shapes, ranges and malformed files give ValueError / FileNotFoundError naming the problem."""
    good = _model()
    with pytest.raises(ValueError, match="opacities"):
        GaussianModel(good.means, good.quats, good.scales, np.ones(len(good)), good.sh)
    with pytest.raises(ValueError, match="scales"):
        GaussianModel(good.means, good.quats, -good.scales, good.opacities, good.sh)
    with pytest.raises(ValueError, match="sh"):
        GaussianModel(good.means, good.quats, good.scales, good.opacities, np.zeros((len(good), 2, 3)))
    with pytest.raises(ValueError, match="quats"):
        GaussianModel(good.means, good.quats[:, :3], good.scales, good.opacities, good.sh)
    with pytest.raises(FileNotFoundError):
        load_ply(tmp_path / "missing.ply")
    (tmp_path / "text.ply").write_bytes(b"hello\n")
    with pytest.raises(ValueError, match="not a PLY"):
        load_ply(tmp_path / "text.ply")
    (tmp_path / "ascii.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n")
    with pytest.raises(ValueError, match="binary_little_endian"):
        load_ply(tmp_path / "ascii.ply")
    header = (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n"
              b"property float x\nproperty float y\nproperty float z\nend_header\n")
    (tmp_path / "mesh.ply").write_bytes(header + bytes(12))
    with pytest.raises(ValueError, match="missing properties"):
        load_ply(tmp_path / "mesh.ply")
    save_ply(tmp_path / "g.ply", good)
    data = (tmp_path / "g.ply").read_bytes()
    (tmp_path / "short.ply").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_ply(tmp_path / "short.ply")

"""3D Gaussian object models (3D Gaussian Splatting, Kerbl et al. 2023) and their standard PLY files.

A `GaussianModel` lives in the object's model frame, in metres, like the mesh it may stand for. Its
PLY file uses the layout of the reference 3DGS code (x, y, z, nx, ny, nz, f_dc_*, f_rest_*, opacity as a
logit, scale_* as logs, rot_* as w, x, y, z), so common splat viewers open it; the arrays in memory hold
the activated values (linear scales, opacities in (0, 1), unit quaternions).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Real spherical-harmonic constants of degrees 0 and 1 (the colour of 3DGS is SH(dir) + 0.5).
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_SIZES = (1, 4)  # coefficients per channel for degree 0 and 1
_PLY_FLOAT = "<f4"


@dataclass
class GaussianModel:
    """N anisotropic 3D Gaussians in the model frame.

    Arrays (float32):
        means: (N, 3) centres, metres.
        quats: (N, 4) unit rotations, w, x, y, z order (gsplat's).
        scales: (N, 3) standard deviations along the rotated axes, metres (linear; logs only in the PLY).
        opacities: (N,) in (0, 1).
        sh: (N, K, 3) spherical-harmonic coefficients per RGB channel, K = 1 (degree 0) or 4 (degree 1);
            colour(dir) = max(SH(dir) + 0.5, 0) with dir the unit ray from the camera centre to the mean.
        normals: (N, 3) unit outward surface normals of flat Gaussians seeded on a surface, or None. Renderers
            skip Gaussians facing away from the camera when they are known (stored in the PLY's nx, ny, nz,
            which 3DGS writes as zeros and viewers ignore; all zeros there reads back as None).
    """

    means: np.ndarray
    quats: np.ndarray
    scales: np.ndarray
    opacities: np.ndarray
    sh: np.ndarray
    normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Convert to float32 and check shapes, finiteness and ranges (ValueError naming the field)."""
        n = len(np.asarray(self.means))
        expected = {"means": (n, 3), "quats": (n, 4), "scales": (n, 3), "opacities": (n,)}
        for name, shape in expected.items():
            value = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            if value.shape != shape:
                raise ValueError(f"GaussianModel.{name} must have shape {shape}, got {value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"GaussianModel.{name} has non-finite values")
            setattr(self, name, value)
        sh = np.ascontiguousarray(self.sh, dtype=np.float32)
        if sh.ndim != 3 or sh.shape[0] != n or sh.shape[1] not in SH_SIZES or sh.shape[2] != 3:
            raise ValueError(f"GaussianModel.sh must have shape ({n}, K in {SH_SIZES}, 3), got {sh.shape}")
        if not np.all(np.isfinite(sh)):
            raise ValueError("GaussianModel.sh has non-finite values")
        self.sh = sh
        if n == 0:
            raise ValueError("GaussianModel needs at least one Gaussian")
        if np.any(self.scales <= 0):
            raise ValueError(f"GaussianModel.scales must be > 0, min is {self.scales.min()}")
        if np.any(self.opacities <= 0) or np.any(self.opacities >= 1):
            raise ValueError(f"GaussianModel.opacities must lie in (0, 1), range [{self.opacities.min()}, "
                             f"{self.opacities.max()}]")
        norms = np.linalg.norm(self.quats, axis=1)
        if np.any(norms < 1e-6):
            raise ValueError("GaussianModel.quats has zero-length quaternions")
        self.quats = (self.quats / norms[:, None]).astype(np.float32)
        if self.normals is not None:
            normals = np.asarray(self.normals, dtype=np.float64)
            if normals.shape != (n, 3) or not np.all(np.isfinite(normals)):
                raise ValueError(f"GaussianModel.normals must be finite ({n}, 3) or None, got {normals.shape}")
            lengths = np.linalg.norm(normals, axis=1, keepdims=True)
            if np.any(lengths < 1e-6):
                raise ValueError("GaussianModel.normals has zero-length vectors")
            self.normals = (normals / lengths).astype(np.float32)

    def __len__(self) -> int:
        """Number of Gaussians."""
        return len(self.means)

    @property
    def sh_degree(self) -> int:
        """0 or 1."""
        return SH_SIZES.index(self.sh.shape[1])

    def colors(self, camera_center: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        """RGB (M, 3) float32 >= 0 of the Gaussians `index` (M,) (default all) seen from `camera_center` (3,) m,
        model frame (gsplat's SH evaluation)."""
        sh = self.sh if index is None else self.sh[index]
        rgb = SH_C0 * sh[:, 0]
        if self.sh_degree == 1:
            dirs = (self.means if index is None else self.means[index]) - np.asarray(camera_center, dtype=np.float32)
            dirs /= np.maximum(np.sqrt(np.einsum("ij,ij->i", dirs, dirs)), 1e-12)[:, None]
            x, y, z = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
            rgb = rgb + SH_C1 * (-y * sh[:, 1] + z * sh[:, 2] - x * sh[:, 3])
        return np.ascontiguousarray(np.maximum(rgb + 0.5, 0.0), dtype=np.float32)


def rgb_to_sh_dc(rgb: np.ndarray) -> np.ndarray:
    """Degree-0 coefficients (*, 3) whose colour is `rgb` (*, 3) in [0, 1]."""
    return (np.asarray(rgb, dtype=np.float32) - 0.5) / SH_C0


def save_ply(path: str | Path, model: GaussianModel) -> None:
    """Write `model` as a binary little-endian 3DGS PLY (opacity logit, log scales, f_rest channel-major)."""
    path = Path(path)
    n, k = len(model), model.sh.shape[1]
    rest_names = [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + rest_names
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    # 3DGS stores f_rest channel-major: all of R's higher-order coefficients, then G's, then B's.
    rest = model.sh[:, 1:].transpose(0, 2, 1).reshape(n, -1)
    opacity = np.log(model.opacities) - np.log1p(-model.opacities)
    normals = np.zeros((n, 3), np.float32) if model.normals is None else model.normals
    columns = [model.means, normals, model.sh[:, 0], rest, opacity[:, None],
               np.log(model.scales), model.quats]
    data = np.concatenate(columns, axis=1).astype(_PLY_FLOAT)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names] + ["end_header"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(np.ascontiguousarray(data).tobytes())


def load_ply(path: str | Path) -> GaussianModel:
    """Read a 3DGS PLY (binary little-endian, float properties; extra properties ignored) into a model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Gaussian PLY not found")
    with open(path, "rb") as f:
        names, n = _read_header(path, f)
        payload = f.read()
    if len(payload) < 4 * len(names) * n:
        raise ValueError(f"{path}: truncated: {len(payload)} bytes of data for {n} vertices x {len(names)} floats")
    table = np.frombuffer(payload, dtype=_PLY_FLOAT, count=n * len(names)).reshape(n, len(names))
    column = {name: table[:, i] for i, name in enumerate(names)}
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [name for name in required if name not in column]
    if missing:
        raise ValueError(f"{path}: not a 3DGS PLY, missing properties {missing}")
    n_rest = sum(name.startswith("f_rest_") for name in names)
    if n_rest % 3 or n_rest // 3 + 1 not in SH_SIZES:
        raise ValueError(f"{path}: {n_rest} f_rest_* properties; supported: 0 or 9 (SH degree 0 or 1)")
    k = n_rest // 3 + 1
    rest = np.stack([column[f"f_rest_{i}"] for i in range(n_rest)], axis=1) if n_rest else np.zeros((n, 0))
    sh = np.concatenate([_stack(column, "f_dc_", 3)[:, None], rest.reshape(n, 3, k - 1).transpose(0, 2, 1)], axis=1)
    with np.errstate(over="ignore"):
        opacities = 1.0 / (1.0 + np.exp(-column["opacity"].astype(np.float64)))
    # Viewers accept logits of any size; keep the value inside the open interval the model requires.
    opacities = np.clip(opacities, 1e-6, 1.0 - 1e-6)
    try:
        return GaussianModel(
            means=_stack(column, "", 3, ("x", "y", "z")),
            quats=_stack(column, "rot_", 4),
            scales=np.exp(_stack(column, "scale_", 3)),
            opacities=opacities,
            sh=sh,
            normals=_normals(column),
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _read_header(path: Path, f) -> tuple[list[str], int]:
    """Property names of the vertex element and its count; ValueError on anything but float vertices."""
    if f.readline().strip() != b"ply":
        raise ValueError(f"{path}: not a PLY file (no 'ply' magic line)")
    names: list[str] = []
    n = None
    element = None
    for _ in range(10000):
        line = f.readline()
        if not line:
            raise ValueError(f"{path}: PLY header has no end_header")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format" and words[1:2] != ["binary_little_endian"]:
            raise ValueError(f"{path}: PLY format {' '.join(words[1:])!r}; only binary_little_endian is supported")
        if words[0] == "element":
            element = words[1]
            if element == "vertex":
                n = int(words[2])
            elif int(words[2]) > 0:
                raise ValueError(f"{path}: unexpected PLY element {element!r} in a Gaussian file")
        if words[0] == "property" and element == "vertex":
            if words[1] != "float" and words[1] != "float32":
                raise ValueError(f"{path}: vertex property {words[-1]!r} is {words[1]}; expected float")
            names.append(words[-1])
    else:
        raise ValueError(f"{path}: PLY header too long")
    if n is None or n <= 0:
        raise ValueError(f"{path}: PLY has no vertices")
    return names, n


def _normals(column: dict[str, np.ndarray]) -> np.ndarray | None:
    """nx, ny, nz as (N, 3) when the file has them and none is zero, else None (3DGS writes zeros)."""
    if not all(name in column for name in ("nx", "ny", "nz")):
        return None
    normals = _stack(column, "", 3, ("nx", "ny", "nz"))
    return normals if np.all(np.linalg.norm(normals, axis=1) > 1e-6) else None


def _stack(column: dict[str, np.ndarray], prefix: str, count: int, names: tuple[str, ...] | None = None) -> np.ndarray:
    """Columns `prefix0..count-1` (or `names`) as an (N, count) float32 array."""
    names = names or tuple(f"{prefix}{i}" for i in range(count))
    return np.stack([column[name] for name in names], axis=1).astype(np.float32)

"""BOP data set I/O: scene JSON files, images, the results CSV and models_info.json, with mm <-> m at this boundary.

Format: Hodan et al., "BOP: Benchmark for 6D Object Pose Estimation", ECCV 2018, and the BOP toolkit's
`docs/bop_datasets_format.md`. BOP files hold millimetres (translations, models, depth x depth_scale);
every value that leaves this module is in metres, and poses are `T_cam_obj` 4x4 float64.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
from PIL import Image

from ros2_sixdpose.core.checks import BopFormatError, number_list

T = TypeVar("T")

MM_PER_M = 1000.0
RESULTS_CSV_HEADER = "scene_id,im_id,obj_id,score,R,t,time"
UINT16_MAX = np.iinfo(np.uint16).max
RGB_EXTENSIONS = (".png", ".jpg")  # looked up in this order


@dataclass(frozen=True)
class GtInstance:
    """One annotated object instance of an image (an entry of scene_gt.json)."""

    obj_id: int
    T_cam_obj: np.ndarray  # (4, 4) float64, metres, object -> camera

    def __post_init__(self) -> None:
        object.__setattr__(self, "T_cam_obj", _as_pose(self.T_cam_obj, "T_cam_obj"))


@dataclass(frozen=True)
class GtInfo:
    """Visibility meta data of one ground-truth instance (an entry of scene_gt_info.json)."""

    bbox_obj: tuple[int, int, int, int]  # x, y, width, height of the full silhouette, pixels
    bbox_visib: tuple[int, int, int, int]  # x, y, width, height of the visible part, pixels
    px_count_all: int
    px_count_valid: int  # silhouette pixels with a depth measurement
    px_count_visib: int
    visib_fract: float  # px_count_visib / px_count_all


@dataclass(frozen=True)
class CameraParams:
    """Per-image camera of scene_camera.json: intrinsics, depth unit and optional extrinsics."""

    K: np.ndarray  # (3, 3) float64, pixels
    depth_scale: float = 1.0  # depth PNG value x depth_scale = millimetres
    T_cam_world: np.ndarray | None = None  # (4, 4) float64, metres, world -> camera (cam_R_w2c, cam_t_w2c)

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must have shape (3, 3), got {K.shape}")
        object.__setattr__(self, "K", K)
        if self.T_cam_world is not None:
            object.__setattr__(self, "T_cam_world", _as_pose(self.T_cam_world, "T_cam_world"))


@dataclass(frozen=True)
class PoseResult:
    """One pose estimate of the BOP results CSV."""

    scene_id: int
    im_id: int
    obj_id: int
    score: float
    T_cam_obj: np.ndarray  # (4, 4) float64, metres, object -> camera
    time: float = -1.0  # seconds spent on the image, -1 when unknown (as in BOP)

    def __post_init__(self) -> None:
        object.__setattr__(self, "T_cam_obj", _as_pose(self.T_cam_obj, "T_cam_obj"))


@dataclass(frozen=True)
class SceneAnnotations:
    """All per-image annotations of one scene, keyed by image id."""

    camera: dict[int, CameraParams]
    gt: dict[int, list[GtInstance]]
    gt_info: dict[int, list[GtInfo]] | None = None  # None when scene_gt_info.json is absent


@dataclass(frozen=True)
class BopSplit:
    """Paths and ids of one split of a BOP data set: `<root>/<split>/<scene:06d>/...`."""

    root: Path
    split: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def path(self) -> Path:
        """Folder of the split."""
        return self.root / self.split

    @property
    def models_dir(self) -> Path:
        """Default models folder of the data set (`<root>/models`)."""
        return self.root / "models"

    def scene_ids(self) -> list[int]:
        """Ids of the scenes present in the split folder, sorted."""
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: split folder not found")
        return sorted(int(p.name) for p in self.path.iterdir() if p.is_dir() and p.name.isdigit())

    def scene_dir(self, scene_id: int) -> Path:
        """Folder of one scene."""
        return self.path / f"{scene_id:06d}"

    def scene_camera_path(self, scene_id: int) -> Path:
        """Path of scene_camera.json of a scene."""
        return self.scene_dir(scene_id) / "scene_camera.json"

    def scene_gt_path(self, scene_id: int) -> Path:
        """Path of scene_gt.json of a scene."""
        return self.scene_dir(scene_id) / "scene_gt.json"

    def scene_gt_info_path(self, scene_id: int) -> Path:
        """Path of scene_gt_info.json of a scene."""
        return self.scene_dir(scene_id) / "scene_gt_info.json"

    def image_ids(self, scene_id: int) -> list[int]:
        """Ids of the images of a scene, as listed in its scene_camera.json, sorted."""
        return sorted(read_scene_camera(self.scene_camera_path(scene_id)))

    def rgb_path(self, scene_id: int, im_id: int, ext: str | None = None) -> Path:
        """Path of a colour image; without `ext`, the existing .png or .jpg (.png when neither exists yet)."""
        stem = self.scene_dir(scene_id) / "rgb" / f"{im_id:06d}"
        if ext is not None:
            return stem.with_suffix(ext)
        for candidate in RGB_EXTENSIONS:
            if stem.with_suffix(candidate).is_file():
                return stem.with_suffix(candidate)
        return stem.with_suffix(RGB_EXTENSIONS[0])

    def depth_path(self, scene_id: int, im_id: int) -> Path:
        """Path of a depth image (uint16 PNG)."""
        return self.scene_dir(scene_id) / "depth" / f"{im_id:06d}.png"

    def mask_path(self, scene_id: int, im_id: int, gt_index: int) -> Path:
        """Path of the full silhouette mask of ground-truth instance `gt_index` of an image."""
        return self.scene_dir(scene_id) / "mask" / f"{im_id:06d}_{gt_index:06d}.png"

    def mask_visib_path(self, scene_id: int, im_id: int, gt_index: int) -> Path:
        """Path of the visible-part mask of ground-truth instance `gt_index` of an image."""
        return self.scene_dir(scene_id) / "mask_visib" / f"{im_id:06d}_{gt_index:06d}.png"

    def read_scene(self, scene_id: int) -> SceneAnnotations:
        """Read the scene_camera, scene_gt and (if present) scene_gt_info files of a scene, checked together."""
        camera = read_scene_camera(self.scene_camera_path(scene_id))
        gt_path = self.scene_gt_path(scene_id)
        gt = read_scene_gt(gt_path)
        info_path = self.scene_gt_info_path(scene_id)
        gt_info = read_scene_gt_info(info_path) if info_path.is_file() else None
        for im_id, instances in gt.items():
            if im_id not in camera:
                raise BopFormatError(f"{gt_path}: image {im_id} has no entry in {self.scene_camera_path(scene_id)}")
            if gt_info is not None:
                if im_id not in gt_info:
                    raise BopFormatError(f"{info_path}: image {im_id} of {gt_path} is missing")
                if len(gt_info[im_id]) != len(instances):
                    raise BopFormatError(
                        f"{info_path}: image {im_id} has {len(gt_info[im_id])} entries, "
                        f"{gt_path} has {len(instances)} instances"
                    )
        return SceneAnnotations(camera=camera, gt=gt, gt_info=gt_info)


# ---------------------------------------------------------------- scene JSON files


def _read_instances(path: str | Path, parse: Callable[[Path, str, Any], T]) -> dict[int, list[T]]:
    """Read a per-image list of per-instance entries (scene_gt.json, scene_gt_info.json), each `parse(path, where,
    entry)`d, `where` naming the image and instance for errors."""
    path = Path(path)
    out: dict[int, list[T]] = {}
    for im_id, entries in _image_entries(path, _load_json(path)):
        if not isinstance(entries, list):
            raise BopFormatError(f"{path}: image {im_id}: expected a list of instances, got {type(entries).__name__}")
        out[im_id] = [parse(path, f"image {im_id}, instance {index}", entry) for index, entry in enumerate(entries)]
    return out


def _write_instances(path: str | Path, per_image: Mapping[int, Sequence[T]], encode: Callable[[T], dict]) -> None:
    """Write a per-image list of per-instance entries, each `encode`d to its JSON object."""
    _write_image_keyed_json(path, {im_id: [encode(item) for item in items] for im_id, items in per_image.items()})


def _gt_instance(path: Path, where: str, entry: Any) -> GtInstance:
    """One scene_gt.json entry: `cam_R_m2c`, `cam_t_m2c` (mm) and `obj_id`."""
    R = _numbers(path, where, entry, "cam_R_m2c", 9).reshape(3, 3)
    t_mm = _numbers(path, where, entry, "cam_t_m2c", 3)
    obj_id = _integer(path, where, entry, "obj_id")
    return GtInstance(obj_id=obj_id, T_cam_obj=_pose_from_mm(R, t_mm))


def _gt_info(path: Path, where: str, entry: Any) -> GtInfo:
    """One scene_gt_info.json entry."""
    return GtInfo(
        bbox_obj=_bbox(path, where, entry, "bbox_obj"),
        bbox_visib=_bbox(path, where, entry, "bbox_visib"),
        px_count_all=_integer(path, where, entry, "px_count_all"),
        px_count_valid=_integer(path, where, entry, "px_count_valid"),
        px_count_visib=_integer(path, where, entry, "px_count_visib"),
        visib_fract=float(_numbers(path, where, entry, "visib_fract", None)),
    )


def read_scene_gt(path: str | Path) -> dict[int, list[GtInstance]]:
    """Read scene_gt.json: per image id, the annotated instances with `T_cam_obj` in metres."""
    return _read_instances(path, _gt_instance)


def write_scene_gt(path: str | Path, scene_gt: Mapping[int, Sequence[GtInstance]]) -> None:
    """Write scene_gt.json from per-image instances (`T_cam_obj` metres -> `cam_t_m2c` mm)."""
    _write_instances(path, scene_gt, lambda inst: {
        "cam_R_m2c": _flat(inst.T_cam_obj[:3, :3]),
        "cam_t_m2c": _flat(inst.T_cam_obj[:3, 3] * MM_PER_M),
        "obj_id": int(inst.obj_id),
    })


def read_scene_gt_info(path: str | Path) -> dict[int, list[GtInfo]]:
    """Read scene_gt_info.json: per image id, one `GtInfo` per ground-truth instance (same order as scene_gt.json)."""
    return _read_instances(path, _gt_info)


def write_scene_gt_info(path: str | Path, scene_gt_info: Mapping[int, Sequence[GtInfo]]) -> None:
    """Write scene_gt_info.json from per-image `GtInfo` lists."""
    _write_instances(path, scene_gt_info, lambda info: {
        "bbox_obj": [int(v) for v in info.bbox_obj],
        "bbox_visib": [int(v) for v in info.bbox_visib],
        "px_count_all": int(info.px_count_all),
        "px_count_valid": int(info.px_count_valid),
        "px_count_visib": int(info.px_count_visib),
        "visib_fract": float(info.visib_fract),
    })


def read_scene_camera(path: str | Path) -> dict[int, CameraParams]:
    """Read scene_camera.json: per image id, K, depth_scale and, when given, `T_cam_world` in metres."""
    path = Path(path)
    cameras: dict[int, CameraParams] = {}
    for im_id, entry in _image_entries(path, _load_json(path)):
        where = f"image {im_id}"
        K = _numbers(path, where, entry, "cam_K", 9).reshape(3, 3)
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise BopFormatError(f"{path}: {where}: 'cam_K' has a non-positive focal length ({K[0, 0]}, {K[1, 1]})")
        depth_scale = float(_numbers(path, where, entry, "depth_scale", None)) if "depth_scale" in entry else 1.0
        if depth_scale <= 0:
            raise BopFormatError(f"{path}: {where}: 'depth_scale' must be positive, got {depth_scale}")
        T_cam_world = None
        if "cam_R_w2c" in entry or "cam_t_w2c" in entry:
            R = _numbers(path, where, entry, "cam_R_w2c", 9).reshape(3, 3)
            T_cam_world = _pose_from_mm(R, _numbers(path, where, entry, "cam_t_w2c", 3))
        cameras[im_id] = CameraParams(K=K, depth_scale=depth_scale, T_cam_world=T_cam_world)
    return cameras


def write_scene_camera(path: str | Path, scene_camera: Mapping[int, CameraParams]) -> None:
    """Write scene_camera.json from per-image `CameraParams` (`T_cam_world` metres -> `cam_t_w2c` mm)."""
    content = {}
    for im_id, cam in scene_camera.items():
        entry: dict[str, Any] = {"cam_K": _flat(cam.K), "depth_scale": float(cam.depth_scale)}
        if cam.T_cam_world is not None:
            entry["cam_R_w2c"] = _flat(cam.T_cam_world[:3, :3])
            entry["cam_t_w2c"] = _flat(cam.T_cam_world[:3, 3] * MM_PER_M)
        content[im_id] = entry
    _write_image_keyed_json(path, content)


# ---------------------------------------------------------------- models_info.json


def write_models_info(path: str | Path, models_info: Mapping[int, Mapping[str, Any]]) -> None:
    """Write models_info.json from per-object dicts in millimetres (read back by `core.objects.read_models_info`)."""
    _write_image_keyed_json(path, {int(k): dict(v) for k, v in models_info.items()})


# ---------------------------------------------------------------- images


def read_rgb(path: str | Path) -> np.ndarray:
    """Read a colour image (PNG or JPEG) as (H, W, 3) uint8 RGB; grey images are expanded to three channels."""
    image = _read_image(path, cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, rgb: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an (H, W, 3) uint8 RGB image; the suffix (.png, .jpg) picks the format."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{path}: rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    is_jpeg = Path(path).suffix.lower() in (".jpg", ".jpeg")
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if is_jpeg else []
    _write_image(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)


def read_depth(path: str | Path, depth_scale: float) -> np.ndarray:
    """Read a uint16 depth PNG as (H, W) float32 metres (value x depth_scale = mm; 0 = no measurement)."""
    raw = _read_image(path, cv2.IMREAD_UNCHANGED)
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise BopFormatError(f"{path}: depth must be a single-channel 16-bit PNG, got {raw.shape} {raw.dtype}")
    return (raw.astype(np.float64) * (depth_scale / MM_PER_M)).astype(np.float32)


def write_depth(path: str | Path, depth: np.ndarray, depth_scale: float = 1.0) -> None:
    """Write (H, W) depth in metres as a uint16 PNG in units of depth_scale mm; 0, NaN and inf mean no measurement."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"{path}: depth must be (H, W), got {depth.shape}")
    if not depth_scale > 0:
        raise ValueError(f"{path}: depth_scale must be > 0, got {depth_scale}")
    finite = np.isfinite(depth)
    if np.any(depth[finite] < 0):
        raise ValueError(f"{path}: depth has negative values (min {depth[finite].min()} m)")
    raw = np.where(finite, np.round(depth * (MM_PER_M / depth_scale)), 0.0)
    if raw.max(initial=0) > UINT16_MAX:
        raise ValueError(
            f"{path}: depth up to {depth[finite].max():.3f} m does not fit uint16 at depth_scale {depth_scale} "
            f"(max {UINT16_MAX * depth_scale / MM_PER_M:.3f} m); use a larger depth_scale"
        )
    _write_image(path, raw.astype(np.uint16))


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask PNG as (H, W) bool (any non-zero pixel is inside)."""
    mask = _read_image(path, cv2.IMREAD_UNCHANGED)
    if mask.ndim != 2:
        raise BopFormatError(f"{path}: mask must be single-channel, got {mask.shape}")
    return mask > 0


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write an (H, W) bool mask as a 0/255 uint8 PNG."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{path}: mask must be (H, W), got {mask.shape}")
    _write_image(path, np.where(mask, 255, 0).astype(np.uint8))


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    with Image.open(path) as image:
        return image.size


# ---------------------------------------------------------------- results CSV


def read_results_csv(path: str | Path) -> list[PoseResult]:
    """Read a BOP results CSV (`scene_id,im_id,obj_id,score,R,t,time`; R row-major, t mm) as `PoseResult`s in metres."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: results file not found")
    results = []
    with path.open() as f:
        for line_no, line in enumerate(f, start=1):
            line = line.strip()
            if not line or (line_no == 1 and line.replace(" ", "") == RESULTS_CSV_HEADER):
                continue
            results.append(_parse_result_line(path, line_no, line))
    return results


def write_results_csv(path: str | Path, results: Iterable[PoseResult]) -> None:
    """Write `PoseResult`s as a BOP results CSV (translations converted to mm)."""
    lines = [RESULTS_CSV_HEADER]
    for res in results:
        R = " ".join(repr(float(v)) for v in res.T_cam_obj[:3, :3].ravel())
        t = " ".join(repr(float(v)) for v in res.T_cam_obj[:3, 3] * MM_PER_M)
        lines.append(f"{res.scene_id},{res.im_id},{res.obj_id},{float(res.score)!r},{R},{t},{float(res.time)!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _parse_result_line(path: Path, line_no: int, line: str) -> PoseResult:
    """Parse one CSV row into a `PoseResult`."""
    fields = line.split(",")
    where = f"{path}: line {line_no}"
    if len(fields) != 7:
        raise BopFormatError(f"{where}: expected 7 comma-separated fields ({RESULTS_CSV_HEADER}), got {len(fields)}")
    names = RESULTS_CSV_HEADER.split(",")
    values: dict[str, Any] = {}
    for name, text in zip(names, fields):
        try:
            if name in ("scene_id", "im_id", "obj_id"):
                values[name] = int(text)
            elif name in ("R", "t"):
                values[name] = np.array([float(v) for v in text.split()], dtype=np.float64)
            else:
                values[name] = float(text)
        except ValueError as exc:
            raise BopFormatError(f"{where}: '{name}' is not a number: {text!r}") from exc
    for name, count in (("R", 9), ("t", 3)):
        if values[name].size != count:
            raise BopFormatError(f"{where}: '{name}' has {values[name].size} values, expected {count}")
    for name in ("score", "R", "t"):
        if not np.all(np.isfinite(values[name])):
            raise BopFormatError(f"{where}: '{name}' has non-finite values")
    return PoseResult(
        scene_id=values["scene_id"],
        im_id=values["im_id"],
        obj_id=values["obj_id"],
        score=values["score"],
        T_cam_obj=_pose_from_mm(values["R"].reshape(3, 3), values["t"]),
        time=values["time"],
    )


# ---------------------------------------------------------------- helpers


def _as_pose(T: np.ndarray, name: str) -> np.ndarray:
    """Check and convert a pose to a (4, 4) float64 array."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name} must have shape (4, 4), got {T.shape}")
    return T


def _pose_from_mm(R: np.ndarray, t_mm: np.ndarray) -> np.ndarray:
    """(4, 4) pose in metres from a rotation (3, 3) and a translation (3,) in millimetres."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t_mm, dtype=np.float64) / MM_PER_M
    return T


def _flat(array: np.ndarray) -> list[float]:
    """Row-major list of Python floats (JSON keeps their shortest round-trip repr)."""
    return [float(v) for v in np.asarray(array, dtype=np.float64).ravel()]


def _load_json(path: Path) -> Any:
    """Parse a JSON file, with errors that name it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BopFormatError(f"{path}: not valid JSON ({exc})") from exc


def _int_key(path: Path, key: str, what: str) -> int:
    """A JSON object key as an integer id."""
    try:
        return int(key)
    except ValueError as exc:
        raise BopFormatError(f"{path}: key {key!r} is not an integer {what}") from exc


def _image_entries(path: Path, content: Any) -> Iterator[tuple[int, Any]]:
    """(image id, entry) pairs of a JSON object keyed by image id."""
    if not isinstance(content, dict):
        raise BopFormatError(f"{path}: expected an object keyed by image id, got {type(content).__name__}")
    for key, entry in content.items():
        yield _int_key(path, key, "image id"), entry


def _get(path: Path, where: str, entry: Any, key: str) -> Any:
    """Field `key` of a JSON object, or an error naming file, location and field."""
    if not isinstance(entry, dict):
        raise BopFormatError(f"{path}: {where}: expected an object, got {type(entry).__name__}")
    if key not in entry:
        raise BopFormatError(f"{path}: {where}: missing '{key}'")
    return entry[key]


def _numbers(path: Path, where: str, entry: Any, key: str, count: int | None) -> np.ndarray:
    """Field `key` as a float64 array of `count` finite values (a scalar when `count` is None)."""
    value = _get(path, where, entry, key)
    if count is None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BopFormatError(f"{path}: {where}: '{key}' must be a finite number, got {value!r}")
        return np.float64(value)
    return number_list(path, where, key, value, count)


def _integer(path: Path, where: str, entry: Any, key: str) -> int:
    """Field `key` as an integer."""
    value = _get(path, where, entry, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BopFormatError(f"{path}: {where}: '{key}' must be an integer, got {value!r}")
    return value


def _bbox(path: Path, where: str, entry: Any, key: str) -> tuple[int, int, int, int]:
    """Field `key` as an (x, y, width, height) integer box."""
    values = _numbers(path, where, entry, key, 4)
    return tuple(int(round(v)) for v in values)  # type: ignore[return-value]


def _write_image_keyed_json(path: str | Path, content: Mapping[int, Any]) -> None:
    """Write a JSON object keyed by integer ids, one id per line, sorted (the layout of BOP files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    items = [f'  "{key}": {json.dumps(content[key], sort_keys=True)}' for key in sorted(content)]
    path.write_text("{\n" + ",\n".join(items) + "\n}\n")


def _read_image(path: str | Path, flags: int) -> np.ndarray:
    """Read an image with OpenCV, turning its silent failures into named errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    image = cv2.imread(str(path), flags)
    if image is None:
        raise BopFormatError(f"{path}: not a readable image")
    return image


def _write_image(path: str | Path, image: np.ndarray, params: list[int] | None = None) -> None:
    """Write an image with OpenCV, creating the folder and failing loudly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, params or []):
        raise OSError(f"{path}: could not write image (unsupported suffix or unwritable folder)")

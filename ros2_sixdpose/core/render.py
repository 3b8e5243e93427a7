"""Mesh rasterizer over OpenGL (moderngl, headless EGL): colour, depth, instance and NOCS maps for any K.

One `Renderer` serves data synthesis, NOCS ground truth and render-and-compare: it keeps every model's
buffers on the GPU, draws a frame in one pass into several colour attachments (colour, NOCS, camera z,
instance index) and reads back only the outputs asked for.

Camera convention is OpenCV's: x right, y down, z forward; pixel (u, v) covers [u - 0.5, u + 0.5) x
[v - 0.5, v + 0.5), so a model point lands in the pixel `cv2.projectPoints` gives. A crop is rendered
by passing the crop's K and size; nothing else changes.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import moderngl
import numpy as np

from ros2_sixdpose.core.objects import ObjectModel

logger = logging.getLogger(__name__)

OUTPUTS = ("rgb", "depth", "instance", "nocs")
DEFAULT_GREY = 0.7
# Framebuffers kept per image size; render-and-compare over many crop sizes must not grow without bound.
MAX_CACHED_FRAMEBUFFERS = 8

_VERTEX_SHADER = """
#version 330
uniform mat4 u_proj;        // camera (OpenCV) -> clip
uniform mat4 u_cam_obj;     // object -> camera
uniform vec3 u_bbox_min;    // model frame, m
uniform vec3 u_nocs_scale;  // 1 / bbox size, 1/m (0 along a flat axis)
in vec3 in_position;
in vec3 in_normal;
in vec3 in_color;
in vec2 in_uv;
out vec3 v_pos_cam;
out vec3 v_normal_cam;
out vec3 v_color;
out vec2 v_uv;
out vec3 v_nocs;
void main() {
    vec4 p = u_cam_obj * vec4(in_position, 1.0);
    v_pos_cam = p.xyz;
    v_normal_cam = mat3(u_cam_obj) * in_normal;
    v_color = in_color;
    v_uv = in_uv;
    v_nocs = (in_position - u_bbox_min) * u_nocs_scale;
    gl_Position = u_proj * p;
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform sampler2D u_texture;
uniform float u_instance;       // index into the object list + 1; 0 is background
uniform vec3 u_light_dir;       // unit, camera frame, the direction the light travels
uniform vec3 u_light_color;
uniform float u_ambient;
uniform float u_diffuse;
uniform float u_specular;
uniform float u_shininess;
in vec3 v_pos_cam;
in vec3 v_normal_cam;
in vec3 v_color;
in vec2 v_uv;
in vec3 v_nocs;
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec4 out_nocs;
layout(location = 2) out float out_z;
layout(location = 3) out float out_instance;
void main() {
    vec3 view = normalize(v_pos_cam);
    vec3 n = v_normal_cam;
    // Exported normals sometimes point inwards: light whichever side faces the camera.
    n = dot(n, n) > 1e-12 ? normalize(n) : -view;
    if (dot(n, view) > 0.0) n = -n;
    vec3 to_light = -u_light_dir;
    float lambert = max(dot(n, to_light), 0.0);
    float phong = lambert > 0.0 ? pow(max(dot(reflect(u_light_dir, n), -view), 0.0), u_shininess) : 0.0;
    vec3 albedo = v_color * texture(u_texture, v_uv).rgb;
    vec3 c = (albedo * (u_ambient + u_diffuse * lambert) + u_specular * phong) * u_light_color;
    out_color = vec4(clamp(c, 0.0, 1.0), 1.0);
    out_nocs = vec4(v_nocs, 1.0);
    // z itself rather than the depth buffer: exact, no linearisation of a 24-bit value.
    out_z = v_pos_cam.z;
    out_instance = u_instance;
}
"""


@dataclass(frozen=True)
class Lighting:
    """Phong lighting in the camera frame; every field may be randomised by the data engine.

    direction: (3,) the direction the light travels, camera frame (need not be unit); +z is a headlight.
    color: (3,) RGB multiplier, >= 0.
    """

    ambient: float = 0.35
    diffuse: float = 0.65
    specular: float = 0.15
    shininess: float = 20.0
    direction: tuple[float, float, float] = (0.2, 0.4, 1.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        direction = np.asarray(self.direction, dtype=np.float64)
        color = np.asarray(self.color, dtype=np.float64)
        if direction.shape != (3,) or not np.all(np.isfinite(direction)) or np.linalg.norm(direction) < 1e-9:
            raise ValueError(f"Lighting.direction must be a finite non-zero 3-vector, got {self.direction!r}")
        if color.shape != (3,) or not np.all(np.isfinite(color)) or np.any(color < 0):
            raise ValueError(f"Lighting.color must be 3 finite values >= 0, got {self.color!r}")
        for name in ("ambient", "diffuse", "specular"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"Lighting.{name} must be finite and >= 0, got {value!r}")
        if not np.isfinite(self.shininess) or self.shininess <= 0:
            raise ValueError(f"Lighting.shininess must be finite and > 0, got {self.shininess!r}")
        object.__setattr__(self, "direction", tuple(float(x) for x in direction))
        object.__setattr__(self, "color", tuple(float(x) for x in color))


@dataclass
class RenderResult:
    """Rendered maps of one frame; an output that was not requested is None.

    rgb: (H, W, 3) uint8, black background.
    depth: (H, W) float32, metres, z along the optical axis, 0 where empty.
    instance: (H, W) int32, index into the rendered object list, -1 background.
    nocs: (H, W, 3) float32 in [0, 1] (`ObjectModel.points_to_nocs` of the visible surface), 0 background.
    """

    rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    instance: np.ndarray | None = None
    nocs: np.ndarray | None = None


def projection_from_K(K: np.ndarray, width: int, height: int, near: float, far: float) -> np.ndarray:
    """OpenGL clip matrix (4, 4) float64 taking OpenCV camera-frame points (x right, y down, z forward).

    Maps pixel u in [-0.5, width - 0.5) to NDC x in [-1, 1) and v likewise to NDC y, without flipping y:
    GL's first framebuffer row (its bottom) then holds image row 0, so read-back needs no flip.
    """
    fx, s, cx = K[0]
    fy, cy = K[1, 1], K[1, 2]
    P = np.zeros((4, 4))
    P[0] = [2.0 * fx / width, 2.0 * s / width, 2.0 * (cx + 0.5) / width - 1.0, 0.0]
    P[1] = [0.0, 2.0 * fy / height, 2.0 * (cy + 0.5) / height - 1.0, 0.0]
    P[2] = [0.0, 0.0, (far + near) / (far - near), -2.0 * far * near / (far - near)]
    P[3] = [0.0, 0.0, 1.0, 0.0]
    return P


@dataclass
class _GpuModel:
    """GL objects of one uploaded model, with its NOCS normalisation."""

    vbo: moderngl.Buffer
    ibo: moderngl.Buffer
    vao: moderngl.VertexArray
    texture: moderngl.Texture | None
    bbox_min: bytes  # vec3 float32
    nocs_scale: bytes  # vec3 float32

    def release(self) -> None:
        """Free the GL objects."""
        for obj in (self.vao, self.vbo, self.ibo, self.texture):
            if obj is not None:
                obj.release()


@dataclass
class _Targets:
    """Framebuffer of one image size (colour RGBA8, NOCS RGBA32F, z R32F, instance R32F, depth buffer)."""

    fbo: moderngl.Framebuffer
    buffers: tuple[moderngl.Renderbuffer, ...]
    instance: np.ndarray  # (H, W) float32 read-back scratch

    def release(self) -> None:
        """Free the GL objects."""
        self.fbo.release()
        for rb in self.buffers:
            rb.release()


class Renderer:
    """Headless OpenGL renderer of `ObjectModel`s keyed by obj_id; also a context manager that closes itself.

    Calls may come from any thread (a lock serialises them and each makes the GL context current).
    """

    def __init__(self, models: Mapping[int, ObjectModel], context: moderngl.Context | None = None) -> None:
        """Create a headless EGL context (or share `context`, which `close` then leaves alive); upload every model."""
        self._owns_context = context is None
        self._ctx = moderngl.create_context(standalone=True, backend="egl") if context is None else context
        self._lock = threading.Lock()
        self._models: dict[int, _GpuModel] = {}
        self._targets: OrderedDict[tuple[int, int], _Targets] = OrderedDict()
        self._closed = False
        with self._ctx:
            self._program = self._ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
            self._white = self._ctx.texture((1, 1), 3, b"\xff\xff\xff")
            self._max_size = int(self._ctx.info["GL_MAX_RENDERBUFFER_SIZE"])
        try:
            for obj_id, model in models.items():
                self.add_model(model, obj_id)
        except Exception:
            self.close()
            raise
        logger.debug("renderer on %s with %d models", self.gl_renderer, len(self._models))

    @property
    def gl_renderer(self) -> str:
        """The GL_RENDERER string of the context (e.g. 'llvmpipe (LLVM 15.0.6, 256 bits)')."""
        return str(self._ctx.info["GL_RENDERER"])

    @property
    def object_ids(self) -> tuple[int, ...]:
        """Ids of the uploaded models."""
        return tuple(self._models)

    def add_model(self, model: ObjectModel, obj_id: int | None = None) -> None:
        """Upload a model under `obj_id` (default `model.obj_id`), replacing one already there."""
        self._check_open()
        obj_id = model.obj_id if obj_id is None else int(obj_id)
        vertex_data, texture = _vertex_data(model)
        with self._lock, self._ctx:
            if obj_id in self._models:
                self._models.pop(obj_id).release()
            vbo = self._ctx.buffer(vertex_data.tobytes())
            ibo = self._ctx.buffer(np.ascontiguousarray(model.faces, dtype=np.int32).tobytes())
            vao = self._ctx.vertex_array(
                self._program,
                [(vbo, "3f 3f 3f 2f", "in_position", "in_normal", "in_color", "in_uv")],
                index_buffer=ibo,
                index_element_size=4,
            )
            gl_texture = None
            if texture is not None:
                # GL's texture row 0 is v = 0, the image's bottom row.
                gl_texture = self._ctx.texture(
                    (texture.shape[1], texture.shape[0]), 3, np.ascontiguousarray(texture[::-1]).tobytes()
                )
                gl_texture.build_mipmaps()
                gl_texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
            size = np.asarray(model.bbox_size, dtype=np.float64)
            # A flat model (zero extent along an axis) gets NOCS 0 along it instead of inf.
            nocs_scale = np.divide(1.0, size, out=np.zeros(3), where=size > 0)
            self._models[obj_id] = _GpuModel(
                vbo=vbo,
                ibo=ibo,
                vao=vao,
                texture=gl_texture,
                bbox_min=np.asarray(model.bbox_min, dtype=np.float32).tobytes(),
                nocs_scale=nocs_scale.astype(np.float32).tobytes(),
            )

    def remove_model(self, obj_id: int) -> None:
        """Free the buffers of one model."""
        self._check_open()
        self._model(obj_id)
        with self._lock, self._ctx:
            self._models.pop(obj_id).release()

    def render(
        self,
        K: np.ndarray,
        width: int,
        height: int,
        objects: Sequence[tuple[int, np.ndarray]],
        lighting: Lighting | None = None,
        outputs: Collection[str] = OUTPUTS,
        near: float = 0.01,
        far: float = 10.0,
    ) -> RenderResult:
        """Render `objects` [(obj_id, T_cam_obj (4, 4) m)] seen by camera K (3, 3) into a width x height image.

        `outputs` is any subset of ("rgb", "depth", "instance", "nocs") or one name; only those are read back.
        `near` / `far` (m) bound the z that is drawn.
        """
        self._check_open()
        K = _checked_K(K)
        width, height = self._checked_size(width, height)
        wanted = frozenset([outputs] if isinstance(outputs, str) else outputs)
        if not wanted <= set(OUTPUTS):
            raise ValueError(f"unknown outputs {sorted(wanted - set(OUTPUTS))}; choose from {OUTPUTS}")
        if not (np.isfinite(near) and np.isfinite(far) and 0 < near < far):
            raise ValueError(f"need 0 < near < far (finite), got near={near}, far={far}")
        draws = [(self._model(obj_id), _checked_pose(T, i)) for i, (obj_id, T) in enumerate(objects)]
        lighting = Lighting() if lighting is None else lighting
        with self._lock, self._ctx:
            targets = self._targets_for(width, height)
            targets.fbo.use()
            targets.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            self._ctx.enable_only(moderngl.DEPTH_TEST)
            self._set_frame_uniforms(projection_from_K(K, width, height, near, far), lighting)
            for index, (gpu, T) in enumerate(draws):
                self._draw(gpu, T, index)
            return self._read(targets, width, height, wanted)

    def close(self) -> None:
        """Release every GL object (and the context when this renderer created it); idempotent."""
        if self._closed:
            return
        with self._lock:
            with self._ctx:
                for gpu in self._models.values():
                    gpu.release()
                for targets in self._targets.values():
                    targets.release()
                self._white.release()
                self._program.release()
            self._models.clear()
            self._targets.clear()
            if self._owns_context:
                self._ctx.release()
            self._closed = True

    def __enter__(self) -> "Renderer":
        """The renderer itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the renderer."""
        self.close()

    def _check_open(self) -> None:
        """Raise RuntimeError once closed."""
        if self._closed:
            raise RuntimeError("Renderer is closed")

    def _model(self, obj_id: int) -> _GpuModel:
        """The uploaded model of `obj_id`, or ValueError naming the known ids."""
        gpu = self._models.get(obj_id)
        if gpu is None:
            raise ValueError(f"unknown obj_id {obj_id}; renderer has {sorted(self._models)}")
        return gpu

    def _checked_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) as ints after checking they are integers the GL can allocate."""
        for value in (width, height):
            if not isinstance(value, (int, np.integer)) or not 0 < value <= self._max_size:
                raise ValueError(f"image size must be integers in [1, {self._max_size}], got {width!r} x {height!r}")
        return int(width), int(height)

    def _targets_for(self, width: int, height: int) -> _Targets:
        """The cached framebuffer of this size, created (evicting the least recently used) when missing."""
        key = (width, height)
        if key in self._targets:
            self._targets.move_to_end(key)
            return self._targets[key]
        if len(self._targets) >= MAX_CACHED_FRAMEBUFFERS:
            self._targets.popitem(last=False)[1].release()
        size = (width, height)
        # RGBA, not RGB: RGB32F need not be renderable; the alpha channels are never read.
        attachments = [
            self._ctx.renderbuffer(size, 4),
            self._ctx.renderbuffer(size, 4, dtype="f4"),
            self._ctx.renderbuffer(size, 1, dtype="f4"),
            self._ctx.renderbuffer(size, 1, dtype="f4"),
        ]
        depth = self._ctx.depth_renderbuffer(size)
        self._targets[key] = _Targets(
            fbo=self._ctx.framebuffer(color_attachments=attachments, depth_attachment=depth),
            buffers=(*attachments, depth),
            instance=np.empty((height, width), dtype=np.float32),
        )
        return self._targets[key]

    def _set_frame_uniforms(self, P: np.ndarray, lighting: Lighting) -> None:
        """Upload the projection (4, 4) and the lighting shared by every draw of a frame."""
        prog = self._program
        # GL matrices are column-major: the transposed float32 bytes.
        prog["u_proj"].write(P.T.astype(np.float32).tobytes())
        direction = np.asarray(lighting.direction)
        prog["u_light_dir"].value = tuple(direction / np.linalg.norm(direction))
        prog["u_light_color"].value = lighting.color
        prog["u_ambient"].value = lighting.ambient
        prog["u_diffuse"].value = lighting.diffuse
        prog["u_specular"].value = lighting.specular
        prog["u_shininess"].value = lighting.shininess
        prog["u_texture"].value = 0

    def _draw(self, gpu: _GpuModel, T: np.ndarray, index: int) -> None:
        """Draw one object at T_cam_obj (4, 4) m as instance `index`."""
        prog = self._program
        prog["u_cam_obj"].write(T.T.astype(np.float32).tobytes())
        prog["u_bbox_min"].write(gpu.bbox_min)
        prog["u_nocs_scale"].write(gpu.nocs_scale)
        prog["u_instance"].value = float(index + 1)
        (self._white if gpu.texture is None else gpu.texture).use(location=0)
        gpu.vao.render(moderngl.TRIANGLES)

    def _read(self, targets: _Targets, width: int, height: int, wanted: frozenset[str]) -> RenderResult:
        """Read back the `wanted` outputs into new arrays (GL finishes drawing on the first read)."""
        fbo = targets.fbo
        result = RenderResult()
        if "rgb" in wanted:
            result.rgb = np.empty((height, width, 3), dtype=np.uint8)
            fbo.read_into(result.rgb, components=3, attachment=0)
        if "nocs" in wanted:
            result.nocs = np.empty((height, width, 3), dtype=np.float32)
            fbo.read_into(result.nocs, components=3, attachment=1, dtype="f4")
        if "depth" in wanted:
            result.depth = np.empty((height, width), dtype=np.float32)
            fbo.read_into(result.depth, components=1, attachment=2, dtype="f4")
        if "instance" in wanted:
            fbo.read_into(targets.instance, components=1, attachment=3, dtype="f4")
            result.instance = targets.instance.astype(np.int32)
            result.instance -= 1
        return result


def _vertex_data(model: ObjectModel) -> tuple[np.ndarray, np.ndarray | None]:
    """Interleaved vertex array (N, 11) float32 [position m, normal, colour, uv] and the texture to upload."""
    vertices = np.asarray(model.vertices, dtype=np.float32)
    n = len(vertices)
    name = f"model {model.obj_id} ({model.name!r})"
    if vertices.ndim != 2 or vertices.shape[1] != 3 or n == 0 or not np.all(np.isfinite(vertices)):
        raise ValueError(f"{name}: vertices must be finite (N, 3), got shape {vertices.shape}")
    faces = np.asarray(model.faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0 or faces.max() >= n)):
        raise ValueError(f"{name}: faces must be (F, 3) indices into {n} vertices, got shape {faces.shape}")
    normals = np.asarray(model.normals, dtype=np.float32)
    if normals.shape != (n, 3):
        raise ValueError(f"{name}: normals must be ({n}, 3), got {normals.shape}")
    if model.colors is None:
        colors = np.full((n, 3), DEFAULT_GREY, np.float32)
    else:
        colors = np.asarray(model.colors, np.float32)
    if colors.shape != (n, 3):
        raise ValueError(f"{name}: colors must be ({n}, 3), got {colors.shape}")
    texture = None
    uvs = np.zeros((n, 2), np.float32)
    if model.texture is not None and model.uvs is not None:
        uvs = np.asarray(model.uvs, dtype=np.float32)
        texture = np.asarray(model.texture)
        if uvs.shape != (n, 2):
            raise ValueError(f"{name}: uvs must be ({n}, 2), got {uvs.shape}")
        if texture.ndim != 3 or texture.shape[2] != 3 or texture.dtype != np.uint8:
            raise ValueError(f"{name}: texture must be (H, W, 3) uint8, got {texture.shape} {texture.dtype}")
        if model.colors is None:
            # The texture alone gives the albedo.
            colors[:] = 1.0
    return np.hstack([vertices, normals, colors, uvs]).astype(np.float32), texture


_K_LAST_ROW = np.array([0.0, 0.0, 1.0])
_T_LAST_ROW = np.array([0.0, 0.0, 0.0, 1.0])
_I3 = np.eye(3)


def _checked_K(K: np.ndarray) -> np.ndarray:
    """K as (3, 3) float64 after checking it is a finite pinhole matrix with positive focal lengths."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)):
        raise ValueError(f"K must be a finite (3, 3) matrix, got shape {K.shape}: {K.tolist()}")
    # Plain max-abs tests: np.allclose costs ~30 us a call, a tenth of a small render in render-and-compare.
    if K[0, 0] <= 0 or K[1, 1] <= 0 or np.abs(K[2] - _K_LAST_ROW).max() > 1e-8 or K[1, 0] != 0:
        raise ValueError(f"K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got {K.tolist()}")
    return K


def _checked_pose(T: np.ndarray, index: int) -> np.ndarray:
    """T_cam_obj as (4, 4) float64 after checking it is a finite rigid transform."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"objects[{index}]: T_cam_obj must be a finite (4, 4) matrix, got shape {T.shape}")
    R = T[:3, :3]
    rigid = (np.abs(T[3] - _T_LAST_ROW).max() <= 1e-8 and np.abs(R.T @ R - _I3).max() <= 1e-4
             and np.linalg.det(R) > 0)
    if not rigid:
        raise ValueError(f"objects[{index}]: T_cam_obj must be a rigid transform, got {T.tolist()}")
    return T

"""`sixdpose objects build|list|add|gaussians|views|compare`: make the project's object set, list the objects of
any BOP models folder, add a new object to one from its mesh (no training: retrieval and refinement work from the
model alone), build 3D Gaussian objects, write posed reference views (the input format of Gaussian objects from
photographs), or score Gaussian objects against their meshes."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from ros2_sixdpose.cli.common import invoked_command
from ros2_sixdpose.paths import config_file, gaussians_dir, models_dir, package_root, resolve

logger = logging.getLogger(__name__)

HELD_OUT_VIEWS = 12  # mesh-rendered views, not used in the fit, on which the JSON record scores the model
HELD_OUT_SEED = 1000  # seed of their viewpoints (the fit's views use the config's seed)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `objects` with its `build`, `list` and `add` actions."""
    parser = subparsers.add_parser("objects", help="build the object set or list a BOP models folder")
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="write the object set (from pybullet_data) as a BOP models folder")
    build.add_argument("--out", type=Path, default=models_dir(), help="models folder to write")
    build.add_argument("--force", action="store_true", help="rebuild even when the folder is up to date")
    listing = actions.add_parser("list", help="print the objects of a BOP models folder")
    listing.add_argument("--models", type=Path, default=models_dir(), help="BOP models folder")
    add = actions.add_parser("add", help="add a mesh as a new object (next free id) to a BOP models folder")
    add.add_argument("--models", type=Path, required=True, help="BOP models folder to add to (changed in place)")
    add.add_argument("--mesh", type=Path, required=True, help="mesh file (OBJ, PLY, STL, ... as trimesh reads)")
    add.add_argument("--name", required=True, help="the object's name (its TF frame sixdpose/<name>)")
    add.add_argument("--scale", type=float, default=1.0, help="metres per mesh unit (e.g. 0.001 for mm)")
    add.add_argument("--color", type=_rgb, default=None, help="R,G,B in [0, 1]: a uniform colour instead of a texture")
    banks = actions.add_parser("banks", help="render and cache the retrieval template banks the refiner uses "
                                             "(make setup does it, so that nodes start in seconds)")
    banks.add_argument("--config", type=Path, default=config_file("refiner.yaml"),
                       help="refiner configuration; its `retrieval` section names the models, bank and cache")
    gaussians = actions.add_parser(
        "gaussians", help="build a 3D Gaussian object (3DGS PLY) per object from posed reference views",
        description="Reference views are rendered around each mesh of --models, or read from --images "
                    "(DIR/obj_XXXXXX/ folders in the format of ros2_sixdpose/data/reference_views.py; seeded on "
                    "the mesh when --models has it, else on the masks' visual hull). Writes OUT/obj_XXXXXX.ply "
                    "and a JSON record of how it was built.")
    gaussians.add_argument("--models", type=Path, default=None,
                           help="BOP models folder (default: the object set, unless --images is given)")
    gaussians.add_argument("--images", type=Path, default=None, help="folder of per-object reference-view folders")
    gaussians.add_argument("--out", type=Path, default=gaussians_dir(), help="folder for the PLY files")
    gaussians.add_argument("--config", type=Path, default=config_file("gaussians.yaml"), help="GaussianFitConfig YAML")
    gaussians.add_argument("--views", type=int, default=None, help="reference views rendered per mesh")
    gaussians.add_argument("--gaussians", type=int, default=None, help="Gaussians per object")
    gaussians.add_argument("--steps", type=int, default=None, help="optimisation steps per object")
    gaussians.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="fit on the CPU or with gsplat")
    gaussians.add_argument("--objects", type=int, nargs="+", default=None, help="object ids (default: all)")
    views = actions.add_parser("views", help="write posed reference views of each mesh (example input of "
                                             "`objects gaussians --images`)")
    views.add_argument("--models", type=Path, default=models_dir(), help="BOP models folder")
    views.add_argument("--out", type=Path, required=True, help="folder for the obj_XXXXXX/ view folders")
    views.add_argument("--views", type=int, default=None, help="views per object")
    views.add_argument("--config", type=Path, default=config_file("gaussians.yaml"), help="GaussianFitConfig YAML")
    compare = actions.add_parser("compare", help="score Gaussian objects against their meshes on held-out views "
                                                 "and draw mesh | Gaussian renders side by side")
    compare.add_argument("--models", type=Path, default=models_dir(), help="BOP models folder")
    compare.add_argument("--gaussians", type=Path, default=gaussians_dir(), help="folder of obj_XXXXXX.ply")
    compare.add_argument("--out", type=Path, default=Path("docs/gaussians.png"), help="PNG figure")
    compare.add_argument("--config", type=Path, default=config_file("gaussians.yaml"), help="GaussianFitConfig YAML (view size)")
    parser.set_defaults(func=run)


def _rgb(text: str) -> tuple[float, float, float]:
    """Parse 'R,G,B' with values in [0, 1]."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected R,G,B with values in [0, 1], got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    """Run `objects build`, `list`, `add`, `gaussians`, `views` or `compare`; 1 with a message on bad input."""
    from ros2_sixdpose.core.object_table import object_table
    from ros2_sixdpose.core.objects import ObjectRegistry
    from ros2_sixdpose.data.objectset import add_object, build_object_set

    try:
        if args.action == "build":
            built = build_object_set(args.out, force=args.force)
            print(f"{'built' if built else 'up to date'}: {args.out}")
            return 0
        if args.action == "banks":
            return _cache_banks(args.config)
        if args.action == "add":
            model = add_object(args.models, args.mesh, args.name, args.scale, args.color)
            print(f"added object {model.obj_id} {model.name!r} ({1000 * model.diameter:.1f} mm) to {args.models}")
            return 0
        if args.action == "gaussians":
            return build_gaussians(args)
        if args.action == "views":
            return write_views(args)
        if args.action == "compare":
            return compare_gaussians(args)
        print(object_table(ObjectRegistry.from_dir(args.models)))
        return 0
    except (FileNotFoundError, ValueError, KeyError) as exc:
        logger.error("%s", exc)
        return 1


def _cache_banks(config_path: Path) -> int:
    """Build the retrieval template banks of the refiner's configuration into its cache folder."""
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.estimation.retrieval.bank import load_or_build_banks
    from ros2_sixdpose.refinement.factory import RefinerConfig

    retrieval = load_config(RefinerConfig, config_path).retrieval
    if not retrieval.cache_dir:
        logger.error("%s: retrieval.cache_dir is empty, so banks are made at every start and there is nothing to cache",
                     config_path)
        return 1
    cache = resolve(package_root(), retrieval.cache_dir)
    banks = load_or_build_banks(load_models(resolve(package_root(), retrieval.models_dir)), retrieval.bank, cache,
                                progress=True)
    print(f"{len(banks)} template banks in {cache}")
    return 0


def _fit_config(args: argparse.Namespace):
    """The YAML's `GaussianFitConfig` with the command line's overrides."""
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.gaussian_fit import GaussianFitConfig

    overrides = {key: value for key, value in (("views", args.views), ("n_gaussians", getattr(args, "gaussians", None)),
                                               ("steps", getattr(args, "steps", None))) if value is not None}
    return load_config(GaussianFitConfig, args.config, overrides)


def build_gaussians(args: argparse.Namespace) -> int:
    """`objects gaussians`: one PLY + JSON record per object; returns 0."""
    from ros2_sixdpose.core.gaussian_fit import build_gaussian_object, render_reference_views, score_views
    from ros2_sixdpose.core.gaussians import save_ply
    from ros2_sixdpose.core.objects import ObjectRegistry, model_file_name
    from ros2_sixdpose.data.reference_views import load_reference_views

    config = _fit_config(args)
    models_folder = args.models if args.models is not None or args.images is not None else models_dir()
    meshes = ObjectRegistry.from_dir(models_folder).models if models_folder is not None else {}
    if args.images is not None:
        folders = sorted(p for p in args.images.glob("obj_*") if p.is_dir())
        if not folders:
            raise FileNotFoundError(f"{args.images}: no obj_XXXXXX/ reference-view folders")
        sources = {int(p.name.split("_")[1]): p for p in folders}
    else:
        sources = dict.fromkeys(meshes)
    obj_ids = sorted(sources) if args.objects is None else args.objects
    unknown = sorted(set(obj_ids) - set(sources))
    if unknown:
        raise ValueError(f"objects {unknown} not found; available: {sorted(sources)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for obj_id in obj_ids:
        mesh = meshes.get(obj_id)
        t0 = time.perf_counter()
        if sources[obj_id] is None:
            views = render_reference_views(mesh, config.views, config, seed=config.seed)
        else:
            views = load_reference_views(sources[obj_id])
        model, record = build_gaussian_object(views, config, mesh=mesh, device=args.device)
        path = args.out / model_file_name(obj_id)
        save_ply(path, model)
        record.update(obj_id=obj_id, command=invoked_command(),
                      source=str(sources[obj_id] or models_folder), seconds=round(time.perf_counter() - t0, 2))
        summary = ""
        if mesh is not None:
            held_out = render_reference_views(mesh, HELD_OUT_VIEWS, config, seed=HELD_OUT_SEED, lighting_jitter=0.0)
            scores = score_views(model, held_out)
            record["held_out"] = {"views": HELD_OUT_VIEWS, "seed": HELD_OUT_SEED, "lighting": "default"}
            for name in ("iou", "psnr", "psnr_object"):
                values = getattr(scores, name)
                record["held_out"].update({f"{name}_min": round(float(values.min()), 4),
                                           f"{name}_mean": round(float(values.mean()), 4)})
            summary = (f", held-out IoU {scores.iou.mean():.3f} (min {scores.iou.min():.3f}), PSNR "
                       f"{scores.psnr.mean():.1f} dB (min {scores.psnr.min():.1f}; "
                       f"object only {scores.psnr_object.mean():.1f})")
        path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"{path}: {len(model)} Gaussians in {record['seconds']:.1f} s{summary}")
    return 0


def write_views(args: argparse.Namespace) -> int:
    """`objects views`: OUT/obj_XXXXXX/ reference-view folders rendered around each mesh; returns 0."""
    from ros2_sixdpose.core.gaussian_fit import render_reference_views
    from ros2_sixdpose.core.objects import ObjectRegistry, model_file_name
    from ros2_sixdpose.data.reference_views import save_reference_views

    config = _fit_config(args)
    for model in ObjectRegistry.from_dir(args.models):
        folder = args.out / model_file_name(model.obj_id).removesuffix(".ply")
        save_reference_views(folder, render_reference_views(model, config.views, config, seed=config.seed))
        print(f"{folder}: {config.views} views")
    return 0


def compare_gaussians(args: argparse.Namespace) -> int:
    """`objects compare`: held-out IoU / PSNR per object printed, and a PNG of two held-out views per object,
    mesh render beside Gaussian render (CPU backend); returns 0."""
    import cv2
    import numpy as np
    from PIL import Image

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.gaussian_fit import GaussianFitConfig, render_reference_views, score_views
    from ros2_sixdpose.core.gaussians import load_ply
    from ros2_sixdpose.core.objects import ObjectRegistry, model_file_name
    from ros2_sixdpose.core.splat import GaussianRenderer

    config = load_config(GaussianFitConfig, args.config)
    tiles, lines = [], [f"{'id':>3} {'name':<10}{'IoU mean':>9}{'IoU min':>9}{'PSNR dB':>9}{'min':>7}{'object':>8}"]
    for mesh in ObjectRegistry.from_dir(args.models):
        path = args.gaussians / model_file_name(mesh.obj_id)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (build with `sixdpose objects gaussians`)")
        model = load_ply(path)
        held_out = render_reference_views(mesh, HELD_OUT_VIEWS, config, seed=HELD_OUT_SEED, lighting_jitter=0.0)
        s = score_views(model, held_out)
        lines.append(f"{mesh.obj_id:>3} {mesh.name:<10}{s.iou.mean():>9.3f}{s.iou.min():>9.3f}{s.psnr.mean():>9.1f}"
                     f"{s.psnr.min():>7.1f}{s.psnr_object.mean():>8.1f}")
        with GaussianRenderer({mesh.obj_id: model}, backend="cpu") as renderer:
            for view in held_out[:2]:
                h, w = view.mask.shape
                splat = renderer.render(mesh.obj_id, view.T_cam_obj, view.K, w, h).rgb
                tile = np.hstack([view.rgb, (np.clip(splat, 0, 1) * 255).astype(np.uint8)])
                cv2.putText(tile, mesh.name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
                tiles.append(tile)
    columns = 4
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    sheet = np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out, optimize=True)
    print("\n".join(lines))
    print(f"held-out views: {HELD_OUT_VIEWS} per object, default lighting; figure (mesh | Gaussians): {args.out}")
    return 0

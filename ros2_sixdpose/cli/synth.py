"""`sixdpose synth`: generate a synthetic BOP split (physics scenes, randomised views, full ground truth)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ros2_sixdpose.cli.common import parse_overrides
from ros2_sixdpose.paths import config_file, models_dir

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `synth` parser."""
    parser = subparsers.add_parser(
        "synth", help="generate a synthetic BOP split",
        description="Drop objects and distractors with pybullet, render randomised views and write a BOP split "
                    "(rgb, depth, masks, NOCS, scene_gt/_info/_camera, scene_times) under OUT/SPLIT.",
    )
    parser.add_argument("--out", type=Path, required=True, help="data set root; the split goes to OUT/SPLIT")
    parser.add_argument("--split", required=True, help="split name, e.g. train_pbr or test")
    parser.add_argument("--scenes", type=int, required=True, help="number of scenes")
    parser.add_argument("--images-per-scene", type=int, required=True, help="images (frames) per scene")
    parser.add_argument("--seed", type=int, required=True, help="seed; scene k uses default_rng([seed, k])")
    parser.add_argument("--objects", nargs="+", metavar="ID|NAME",
                        help="objects to place (ids or names of the models folder); default: all")
    parser.add_argument("--models", type=Path, default=models_dir(), help="BOP models folder")
    parser.add_argument("--sequence", action="store_true",
                        help="a smooth camera trajectory per scene at the configured rate (30 Hz)")
    parser.add_argument("--preview", action="store_true", help="also write OUT/<split>_preview.png")
    # The package's own config/synth.yaml when there is one; built-in defaults (the same values) otherwise.
    default_config = config_file("synth.yaml")
    parser.add_argument("--config", type=Path, default=default_config if default_config.is_file() else None,
                        help="SynthConfig YAML (default: config/synth.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set camera.width=320 (repeatable; VALUE is YAML)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty split folder")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes building scenes (each with its own renderer); the output does not depend on it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the split (and the preview); 1 with a one-line error on bad input."""
    import time

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.data.synth import SynthConfig, generate_split
    from ros2_sixdpose.data.synth_preview import write_contact_sheet

    try:
        config = load_config(SynthConfig, args.config, parse_overrides(args.overrides))
        object_ids = resolve_objects(args.models, args.objects) if args.objects else None
        start = time.perf_counter()
        stats = generate_split(
            args.out, args.split, args.scenes, args.images_per_scene, args.seed, config, args.models,
            object_ids=object_ids, sequence=args.sequence, progress=not args.no_progress, overwrite=args.overwrite,
            workers=args.workers,
        )
        elapsed = time.perf_counter() - start
        print(f"wrote {stats.images} images ({stats.instances} annotated instances) of {stats.scenes} scenes "
              f"to {args.out / args.split} in {elapsed:.1f} s ({stats.images / elapsed:.1f} images/s)")
        if args.preview:
            split = BopSplit(args.out, args.split)
            path = write_contact_sheet(args.out / f"{args.split}_preview.png", split, load_models(split.models_dir))
            print(f"preview: {path}")
        return 0
    except (FileNotFoundError, FileExistsError, ValueError, KeyError, TypeError, OSError) as exc:
        logger.error("%s", exc)
        return 1


def resolve_objects(models_dir: Path, tokens: list[str]) -> list[int]:
    """Object ids of `--objects` tokens, each an id or a name of the models folder (ValueError if unknown)."""
    from ros2_sixdpose.core.objects import model_names

    names = model_names(models_dir)
    by_name = {name: obj_id for obj_id, name in names.items()}
    ids, unknown = [], []
    for token in tokens:
        if token.isdigit() and int(token) in names:
            ids.append(int(token))
        elif token in by_name:
            ids.append(by_name[token])
        else:
            unknown.append(token)
    if unknown:
        listing = ", ".join(f"{obj_id} ({name})" for obj_id, name in names.items())
        raise ValueError(f"unknown objects {unknown}; {models_dir} has {listing}")
    return ids

"""`sixdpose bench <target>`: run one benchmark module of `ros2_sixdpose.bench`."""
from __future__ import annotations

import argparse
import importlib

# Target name -> help; each is a module ros2_sixdpose/bench/<name>.py with add_arguments(parser) and run(args) -> int.
TARGETS = {
    "render": "ms per 640x480 frame of 5 objects, colour + depth + mask + NOCS",
    "synth": "images/s of sixdpose synth at 640x480 (4 scenes x 10 images) and time per stage",
    "detector": "ms per 640x480 frame of the configured detector (median, p90) and peak RSS",
    "estimator": "ms per crop of the NOCS estimator (network + PnP) for Pix2Pix and BBDM",
    "splat": "ms per 96x96 render of each Gaussian object (CPU rasteriser by default)",
    "pipeline": "ms per 640x480 frame of detector + estimator, per stage and end to end, with 1 and 5 objects, "
                "and peak RSS",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `bench` and one sub-parser per target."""
    parser = subparsers.add_parser("bench", help="benchmarks; figures printed and written as JSON")
    targets = parser.add_subparsers(dest="target", required=True)
    for name, help_text in TARGETS.items():
        module = importlib.import_module(f"ros2_sixdpose.bench.{name}")
        target = targets.add_parser(name, help=help_text)
        module.add_arguments(target)
        target.set_defaults(func=module.run)

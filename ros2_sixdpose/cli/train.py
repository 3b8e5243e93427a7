"""`sixdpose train <network>`: train one of the project's networks with the shared training loop."""
from __future__ import annotations

import argparse
import importlib

# Network name -> (module with add_arguments(parser) and run(args) -> int, help text).
TRAINERS = {
    "detector": ("ros2_sixdpose.detection.train", "segmentation-based object detector (class map + instance centres)"),
    "nocs": (
        "ros2_sixdpose.estimation.train", "NOCS-map network of the dense-correspondence estimator (Pix2Pix or BBDM)"
    ),
    "retrieval": (
        "ros2_sixdpose.estimation.retrieval.train", "rotation-aware embedding encoder of template retrieval (InfoNCE)"
    ),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` and one sub-parser per network."""
    parser = subparsers.add_parser(
        "train", help="train a network; writes weights, a resumable checkpoint, JSON and curves"
    )
    networks = parser.add_subparsers(dest="network", required=True)
    for name, (module_name, help_text) in TRAINERS.items():
        module = importlib.import_module(module_name)
        network = networks.add_parser(name, help=help_text)
        module.add_arguments(network)
        network.set_defaults(func=module.run)

"""`sixdpose`: the project's one command line; each subcommand lives in its own module here.

Building the parser imports no torch, pybullet, moderngl or rclpy: each subcommand imports what it
needs when it runs, so `sixdpose --help` and `sixdpose X --help` answer at once.
"""
from __future__ import annotations

import argparse
import logging
import sys

import yaml

from ros2_sixdpose.cli import bag, bench, demo, objects, replay, run, study, synth, train
from ros2_sixdpose.cli import eval as eval_command

# In the order `sixdpose --help` lists them; each module's `register(subparsers)` adds its parser and sets
# `func(args) -> int`.
SUBCOMMANDS = (objects, synth, bag, train, eval_command, study, bench, run, replay, demo)


def build_parser() -> argparse.ArgumentParser:
    """Build the `sixdpose` argument parser from every subcommand module."""
    parser = argparse.ArgumentParser(prog="sixdpose", description="6D object pose estimation for ROS 2.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error or interruption (a bug report wants it)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


# What a user's mistake raises (a missing or unreadable file, a bad value, corrupt YAML / JSON / weights):
# reported in one line; any other exception is a bug and keeps its traceback.
USER_ERRORS = (OSError, ValueError, TypeError, KeyError, yaml.YAMLError)
EXIT_INTERRUPTED = 130  # what a shell reports for a command ended by SIGINT


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sixdpose` console script: user errors and Ctrl-C end with one line, not a traceback."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logger = logging.getLogger("sixdpose")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        logger.error("interrupted")
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        if args.debug:
            raise
        logger.error("%s: %s (--debug shows where)", type(exc).__name__, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())

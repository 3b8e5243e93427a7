"""What several subcommands share: `--set`/`--param` overrides and the command line recorded beside results."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings to a dict of dotted keys to YAML-parsed values."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE (e.g. camera.width=320), got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def invoked_command() -> str:
    """This process's command line as a shell would take it back, `sixdpose ...` when run as the console script.

    Training commands record it in their weights' JSON, studies in their report.
    """
    argv = ["sixdpose", *sys.argv[1:]] if sys.argv[0].endswith("sixdpose") else sys.argv
    return shlex.join(argv)


def add_training_arguments(parser: argparse.ArgumentParser, *, split: str, out: Path, config_help: str, steps: int,
                           lr: float, eval_every: int, seed_help: str, device_help: str, seeds_example: str) -> None:
    """The options every `sixdpose train` command of a rendered-crop network shares (data, validation, schedule,
    seed, threads, device); each command passes its own defaults and adds its own options."""
    parser.add_argument("--data", type=Path, required=True, help="BOP data set root (from `sixdpose synth`)")
    parser.add_argument("--split", default=split, help="training split")
    parser.add_argument("--val-data", type=Path, default=None, help="data set root of the validation split (default DATA)")
    parser.add_argument("--val-split", default="val", help="validation split")
    parser.add_argument("--out", type=Path, default=out, help="weights file to write")
    parser.add_argument("--config", type=Path, default=None, help=config_help)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--until", type=int, default=None, help="stop at this step (resumable)")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--eval-every", type=int, default=eval_every)
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu", help=device_help)
    parser.add_argument("--data-seeds", default="", help=f"free text recorded in the JSON, e.g. '{seeds_example}'")


def training_schedule(args: argparse.Namespace, max_warmup: int, max_checkpoint_every: int) -> Any:
    """The training loop's `TrainConfig` from the shared options: warm-up a tenth of the steps (at most
    `max_warmup`), a checkpoint every evaluation (at most every `max_checkpoint_every` steps)."""
    from ros2_sixdpose.train.loop import TrainConfig

    return TrainConfig(
        steps=args.steps, lr=args.lr, warmup_steps=min(max_warmup, args.steps // 10), eval_every=args.eval_every,
        checkpoint_every=min(max_checkpoint_every, args.eval_every), seed=args.seed, threads=args.threads,
    )


def training_run_info(args: argparse.Namespace) -> dict[str, Any]:
    """What the weights' JSON records of the shared options: the command, the data and the device."""
    return {
        "command": invoked_command(),
        "data": str(args.data), "split": args.split, "val_data": str(args.val_data or args.data),
        "val_split": args.val_split, "data_seeds": args.data_seeds, "device": args.device,
    }

"""What several subcommands share: `--set`/`--param` overrides and the command line recorded beside results."""
from __future__ import annotations

import shlex
import sys
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

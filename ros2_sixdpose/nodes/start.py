"""The console-script entry of every node: `<executable> = ros2_sixdpose.nodes.start:<executable>`.

Importing a node's module takes seconds (torch, the stages). A Ctrl-C meanwhile would end the process with
an import traceback, so the entry first makes SIGINT and SIGTERM end the process quietly, then imports the
module and hands over to its main(), which installs the node's own handling.
"""
from __future__ import annotations

import functools
import importlib
import signal
from collections.abc import Callable
from typing import Any

from ros2_sixdpose.nodes import NODES


def _quit(signum: int, frame: Any) -> None:
    """Signal handler while the node's module loads: end at once, no traceback (0: stopped on purpose)."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not interrupt the exit
        signal.signal(sig, signal.SIG_IGN)
    raise SystemExit(0)


def start(executable: str) -> int:
    """Import the module of node `executable` with quiet interruption, then run its main(); the exit code."""
    spec = NODES[executable]
    previous = {sig: signal.signal(sig, _quit) for sig in (signal.SIGINT, signal.SIGTERM)}
    module = importlib.import_module(spec.module)
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    return module.main()


def __getattr__(name: str) -> Callable[[], int]:
    """`start` bound to executable `name`: what each console script calls, with no arguments."""
    if name in NODES:
        return functools.partial(start, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

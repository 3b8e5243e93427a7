"""Reading the weights files the training commands write: one place for the checks every network's loader needs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def read_weights(path: str | Path, file_format: str, what: str, command: str) -> dict[str, Any]:
    """The content of a weights file of `file_format` (`torch.load(weights_only=True)`, CPU).

    Raises FileNotFoundError naming the training `command` when the file is missing, and ValueError when it
    cannot be read or holds another format; `what` names the network in the messages (e.g. "NOCS network").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} weights not found (train them with `{command}`)")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files; name the file
        raise ValueError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(content, dict) or content.get("format") != file_format:
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"{path}: not a {what} file (format {found!r}, expected {file_format!r})")
    return content

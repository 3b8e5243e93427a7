"""scene_sequence.json: what happens in each frame of a synthesised sequence, for the sequence metrics.

Written by `sixdpose synth --sequence` beside scene_gt.json and copied into the scene's bag folder by
`sixdpose bag`. Instances carry a persistent id (their index among the scene's objects), since a frame's
scene_gt lists only the instances inside the image:

    {"rate_hz": 30.0,
     "events": [{"kind": "occlusion", "start": 41, "end": 52, "instance": -1}, ...],
     "frames": {"0": {"instances": [0, 1], "visib": [0.93, 0.4], "camera_still": false, "moving": [],
                      "occluded": [], "occluder": false, "light_change": false}, ...}}

instances / visib: persistent id and visible fraction of each scene_gt entry of the frame, in its order;
camera_still: the camera's pose equals the previous frame's; moving: ids of instances whose world pose changed
since the previous frame; occluded: ids with no visible pixel while the occluder is in view (a full
occlusion); occluder: the occluder is in view; light_change: the light differs from the previous frame's.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["SEQUENCE_FILE", "FrameAnnotation", "SequenceEvent", "SequenceAnnotation", "write_sequence_annotation",
           "read_sequence_annotation"]

SEQUENCE_FILE = "scene_sequence.json"


@dataclass(frozen=True)
class FrameAnnotation:
    """One frame of scene_sequence.json (see the module docstring)."""

    instances: tuple[int, ...]
    visib: tuple[float, ...]
    camera_still: bool
    moving: tuple[int, ...]
    occluded: tuple[int, ...]
    occluder: bool
    light_change: bool

    def __post_init__(self) -> None:
        if len(self.instances) != len(self.visib):
            raise ValueError(f"a frame needs one visible fraction per instance, got {self.instances} and {self.visib}")


@dataclass(frozen=True)
class SequenceEvent:
    """An event of the sequence: kind ("still", "push", "carry", "occlusion", "light"), frames [start, end), the
    moved instance's persistent id (-1 for the others)."""

    kind: str
    start: int
    end: int
    instance: int = -1


@dataclass(frozen=True)
class SequenceAnnotation:
    """scene_sequence.json of one scene: frame rate, events, and one `FrameAnnotation` per frame in image-id order."""

    rate_hz: float
    events: tuple[SequenceEvent, ...]
    frames: tuple[FrameAnnotation, ...]

    def still(self, frame: int, instance: int) -> bool:
        """Whether camera and instance `instance` stand as they did in the previous frame."""
        annotation = self.frames[frame]
        return annotation.camera_still and instance not in annotation.moving


def write_sequence_annotation(path: str | Path, annotation: SequenceAnnotation) -> None:
    """Write `annotation` as scene_sequence.json at `path`."""
    content = {"rate_hz": annotation.rate_hz, "events": [asdict(e) for e in annotation.events],
               "frames": {str(i): asdict(f) for i, f in enumerate(annotation.frames)}}
    Path(path).write_text(json.dumps(content, indent=1) + "\n")


def read_sequence_annotation(path: str | Path) -> SequenceAnnotation:
    """Read a scene_sequence.json; ValueError naming the file and what is wrong when it is malformed."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
        frames = content["frames"]
        ordered = [frames[str(i)] for i in range(len(frames))]
        return SequenceAnnotation(
            rate_hz=float(content["rate_hz"]),
            events=tuple(SequenceEvent(str(e["kind"]), int(e["start"]), int(e["end"]), int(e["instance"]))
                         for e in content["events"]),
            frames=tuple(FrameAnnotation(
                instances=tuple(int(i) for i in f["instances"]), visib=tuple(float(v) for v in f["visib"]),
                camera_still=bool(f["camera_still"]), moving=tuple(int(i) for i in f["moving"]),
                occluded=tuple(int(i) for i in f["occluded"]), occluder=bool(f["occluder"]),
                light_change=bool(f["light_change"])) for f in ordered))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: sequence annotation not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a valid scene_sequence.json ({type(exc).__name__}: {exc})") from exc

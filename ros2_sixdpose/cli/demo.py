"""`sixdpose demo`: synthesise a test sequence, replay it through the ROS 2 nodes, and leave pictures and figures.

The sequence comes from a fixed seed that no training run uses and holds a camera stop, a moved object, a full
occlusion and a light change (`data.sequence_script`); its bag is played at the recorded 30 Hz pace to the
tracking deployment (config/nodes.yaml, the default: detector, estimator and refiner when a track is needed, the
region-based tracker on every other frame), running in its own process over DDS, so which frames are answered
depends on the machine's speed (`--lockstep` plays each image only once the previous one was answered);
`--oracle` gives the nodes the sequence's ground-truth masks instead of the learned detector. The output
folder holds:

    objects.png          the object set, three views each
    replay/              the replay: published.json, metrics.json, logs/
    contact_sheet.png    frames spread over the sequence: the nodes' overlay beside the ground truth
    overview.png         six overlay frames side by side
    video.mp4            every frame at the recorded pace (H.264): the nodes' overlay, or the frame dimmed where
                         they did not answer, captioned with the sequence's events
    timeline.png         each object's ADD(-S) error over the sequence, with the events and the unanswered frames
    metrics.json         the replay's metrics (a copy of replay/metrics.json), with the sequence metrics under
                         "sequence": ADD(-S) and RBOT over every frame, drift, re-acquisition, jitter

With `--keep-bags` it also keeps what the pictures are made from (about 300 MB): data/ (the synthesised BOP
split), sequence_bag/ (its rosbag2: camera topics, depth, ground truth), replay/output/ (the recorded
topics) and overlay/ (every answered frame as a PNG); without, the folder stays under 50 MB.

Needs the ROS 2 environment and, here, the private network namespace: `make demo` runs it so.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ros2_sixdpose.paths import OUT_DIR, config_file, models_dir

logger = logging.getLogger(__name__)

DEMO_SEED = 4242  # no training or test set of the project uses it


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` parser."""
    parser = subparsers.add_parser(
        "demo", help="replay a synthesised sequence through the nodes; prints the metrics and the output folder",
        description="Synthesise a short 640x480 test sequence with events (camera stop, moved object, full "
                    "occlusion, light change), write its bag, replay it at the recorded pace through the ROS 2 "
                    "tracking nodes over DDS, and write overlay frames, a contact sheet, a video and the metrics.",
    )
    parser.add_argument("--out", type=Path, default=Path(OUT_DIR) / "demo", help="output folder")
    parser.add_argument("--config", type=Path, default=config_file("nodes.yaml"),
                        help="deployment file (default: config/nodes.yaml, the tracker deployment)")
    parser.add_argument("--models", type=Path, default=models_dir(), help="BOP models folder")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="seed of the synthesised sequence")
    parser.add_argument("--frames", type=int, default=240, help="frames of the sequence (30 Hz)")
    parser.add_argument("--lockstep", action="store_true",
                        help="play each image only once the previous one was answered (default: the recorded pace)")
    parser.add_argument("--video-fps", type=float, default=None,
                        help="frame rate of the video (default: the sequence's recorded pace, 30)")
    parser.add_argument("--keep-bags", action="store_true",
                        help="keep the data set, the bags and the overlay PNGs (about 300 MB)")
    parser.add_argument("--oracle", action="store_true",
                        help="ground-truth detections (the sequence's masks) instead of the configured detector")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the demo's folder; print the metrics table and where everything is. 1 with the reason on failure."""
    import shutil
    import time

    import yaml

    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.core.render import Renderer
    from ros2_sixdpose.data import bop
    from ros2_sixdpose.data.bags import BagError, read_bag
    from ros2_sixdpose.evaluation.demo import (
        contact_sheet, object_gallery, overlay_images, overview_strip, recorded_fps, sequence_timeline, synthesise_bag,
        video_frames, write_overlays, write_video,
    )
    from ros2_sixdpose.data.sequence_annotation import SEQUENCE_FILE, read_sequence_annotation
    from ros2_sixdpose.evaluation.replay import (
        PUBLISHED_FILE, first_answers, format_table, read_output, read_published, sequence_series,
    )
    from ros2_sixdpose.evaluation.replay_run import METRICS_FILE, OUTPUT_BAG, replay_and_score
    from ros2_sixdpose.evaluation.scoring import EvalConfig
    from ros2_sixdpose.nodes.deployment import load_deployment, with_parameters
    from ros2_sixdpose.nodes.processes import NodeExited
    from ros2_sixdpose.nodes.replay import ReplayError, ReplaySettings

    out: Path = args.out
    started = time.perf_counter()
    try:
        if args.frames < 2 or (args.video_fps is not None and not args.video_fps > 0):
            raise ValueError(f"need --frames >= 2 and --video-fps > 0, got {args.frames} and {args.video_fps}")
        deployment = load_deployment(args.config)
        if args.oracle:
            oracle = {"detector.type": "oracle", "detector.dataset": str((out / "data").resolve()),
                      "detector.split": "test", "oracle_scene": 0}
            deployment = with_parameters(deployment, oracle)
        models = load_models(args.models)
        out.mkdir(parents=True, exist_ok=True)
        with Renderer(models) as renderer:
            bop.write_rgb(out / "objects.png", object_gallery(models, renderer))
        bag = synthesise_bag(out, args.models, args.seed, args.frames)
        metrics = replay_and_score(bag, deployment, out / "replay", ReplaySettings(lockstep=args.lockstep), args.models,
                                   EvalConfig(), overwrite=True)
    except (FileNotFoundError, BagError, ValueError, NodeExited, ReplayError, yaml.YAMLError) as exc:
        logger.error("%s", exc)
        return 1
    shutil.copyfile(out / "replay" / METRICS_FILE, out / METRICS_FILE)
    frames = list(read_bag(bag))
    overlays = dict(overlay_images(out / "replay" / OUTPUT_BAG))
    images = write_overlays(frames, overlays, out / "overlay")
    bop.write_rgb(out / "contact_sheet.png", contact_sheet(frames, overlays, models))
    fps = args.video_fps or recorded_fps([frame.stamp_ns for frame in frames])
    annotation = read_sequence_annotation(bag / SEQUENCE_FILE)
    video = write_video(out / "video.mp4", video_frames(frames, overlays, annotation.frames), fps)
    answers = first_answers(read_published(out / "replay" / PUBLISHED_FILE), read_output(out / "replay" / OUTPUT_BAG)[0])
    series = sequence_series(frames, answers, annotation, models, EvalConfig().min_visib)
    sequence_timeline(out / "timeline.png", series, annotation, [f.stamp_ns in answers for f in frames],
                      {obj_id: model.name for obj_id, model in models.items()})
    if images:
        bop.write_rgb(out / "overview.png", overview_strip(images))
    else:
        logger.warning("the nodes published no overlay image: no overlay frames and no overview")
    if not args.keep_bags:  # what the pictures were made from: about 300 MB
        for folder in (out / "data", bag, out / "replay" / OUTPUT_BAG, out / "overlay"):
            shutil.rmtree(folder, ignore_errors=True)

    print(format_table(metrics))
    lines = [f"object gallery:  {out / 'objects.png'}", f"contact sheet:   {out / 'contact_sheet.png'}",
             f"overview:        {out / 'overview.png'}", f"video:           {video} ({fps:.0f} fps)",
             f"timeline:        {out / 'timeline.png'}",
             f"overlay frames:  {len(images)} of {len(frames)} answered", f"metrics:         {out / METRICS_FILE}"]
    if args.keep_bags:
        lines += [f"overlay PNGs:    {out / 'overlay'}", f"recorded topics: {out / 'replay' / OUTPUT_BAG}"]
    print("\n" + "\n".join(lines))
    print(f"demo took {time.perf_counter() - started:.0f} s; output folder: {out.resolve()}")
    return 0

"""`sixdpose bench <target>`: run one benchmark of `ros2_sixdpose.bench`, print its figures and write them as JSON."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ros2_sixdpose.paths import OUT_DIR, WEIGHTS_DIR, config_file, gaussians_dir, package_root


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `bench` and one sub-parser per target."""
    parser = subparsers.add_parser("bench", help="benchmarks; figures printed and written as JSON")
    targets = parser.add_subparsers(dest="target", required=True)
    for name, help_text, add_arguments, run in (
        ("render", "ms per 640x480 frame of 5 objects, colour + depth + mask + NOCS", _render_arguments, run_render),
        ("synth", "images/s of sixdpose synth at 640x480 (4 scenes x 10 images) and time per stage",
         _synth_arguments, run_synth),
        ("detector", "ms per 640x480 frame of the configured detector (median, p90) and peak RSS",
         _detector_arguments, run_detector),
        ("estimator", "ms per crop of the NOCS estimator (network + PnP) for Pix2Pix and BBDM",
         _estimator_arguments, run_estimator),
        ("pipeline", "ms per 640x480 frame of detector + estimator, per stage and end to end, with 1 and 5 "
                     "objects, and peak RSS", _pipeline_arguments, run_pipeline),
        ("refiner", "ms per object of the configured refiner (retrieval + render-and-compare, or RNNPose) from "
         "15 deg / 2 cm starts",
         _refiner_arguments, run_refiner),
        ("tracking", "frames/s and accuracy of the tracker on a held-out 30 Hz sequence, 1 and 3 objects",
         _tracking_arguments, run_tracking),
        ("splat", "ms per 96x96 render of each Gaussian object (CPU rasteriser by default)",
         _splat_arguments, run_splat),
        ("flood", "a node flooded with images over DDS: latency p50 / p99, stalls, RSS curve, diagnostics counts",
         _flood_arguments, run_flood),
    ):
        target = targets.add_parser(name, help=help_text)
        target.add_argument("--out", type=Path, default=Path(OUT_DIR) / "bench" / f"{name}.json",
                            help="JSON file for the figures")
        add_arguments(target)
        target.set_defaults(func=run)


def _write(figures: dict[str, Any], out: Path) -> None:
    """Write a benchmark's figures as JSON to `out`, creating its folder, with the machine's load average.

    The 1, 5 and 15 minute load averages at the end of the run say how busy the shared machine was: timings
    taken beside other work are slower, and a reader must be able to tell.
    """
    figures.setdefault("load_average", [round(v, 2) for v in os.getloadavg()])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")


def _verdict(meets_target: bool) -> str:
    return "met" if meets_target else "NOT met"


# ---------------------------------------------------------------- render


def _render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=50, help="timed frames (after 3 warm-up frames)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the object poses")
    parser.add_argument(
        "--models", type=Path, default=None,
        help="BOP models folder (default: the project's object set, built in memory from pybullet_data)",
    )


def run_render(args: argparse.Namespace) -> int:
    """Time the renderer with every output at 640x480; print and write median / p90 ms per frame."""
    from ros2_sixdpose.bench import render

    figures = render.measure(args.models, args.frames, args.seed)
    _write(figures, args.out)
    print(f"renderer: {figures['gl_renderer']}")
    scene = f"{figures['n_objects']} objects ({', '.join(figures['objects'])}; {figures['n_triangles']} triangles)"
    print(f"{figures['width']}x{figures['height']}, {scene}, {args.frames} frames")
    print(f"{'outputs':<28}{'median ms':>10}{'p90 ms':>10}{'CPU ms':>10}")
    print(f"{'rgb+depth+instance+nocs':<28}{figures['median_ms']:>10.2f}{figures['p90_ms']:>10.2f}"
          f"{figures['cpu_median_ms']:>10.2f}")
    print(f"{'depth':<28}{figures['depth_only_median_ms']:>10.2f}{figures['depth_only_p90_ms']:>10.2f}")
    print(f"target <= {figures['target_ms']:.0f} ms: {_verdict(figures['meets_target'])}; written to {args.out}")
    return 0


# ---------------------------------------------------------------- synth


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--images-per-scene", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequence", action="store_true", help="time --sequence scenes")
    parser.add_argument("--models", type=Path, default=None,
                        help="BOP models folder (default: the object set, built in a temporary folder)")
    default_config = config_file("synth.yaml")
    parser.add_argument("--config", type=Path, default=default_config if default_config.is_file() else None)


def run_synth(args: argparse.Namespace) -> int:
    """Generate a split in a temporary folder; print and write images/s and seconds per stage."""
    from ros2_sixdpose.bench import synth
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.data.synth import SynthConfig

    config = load_config(SynthConfig, args.config)
    figures = synth.measure(config, args.scenes, args.images_per_scene, args.seed, args.sequence, args.models)
    _write(figures, args.out)
    print(f"{figures['images']} images ({figures['instances']} instances) of {figures['scenes']} scenes at "
          f"{figures['width']}x{figures['height']} in {figures['seconds']:.1f} s: {figures['images_per_s']:.2f} "
          f"images/s ({figures['ms_per_image']:.0f} ms per image, {figures['megabytes_per_image']:.2f} MB per image)")
    print(f"{'per scene':<28}{'ms':>8}")
    for stage, ms in figures["per_scene_ms"].items():
        print(f"  {stage:<26}{ms:>8.1f}")
    print(f"{'per image':<28}{'ms':>8}")
    for stage, ms in figures["per_image_ms"].items():
        note = "  (writer thread, overlaps the rest)" if stage == "write" else ""
        print(f"  {stage:<26}{ms:>8.1f}{note}")
    print(f"target >= {figures['target_images_per_s']:.0f} images/s: {_verdict(figures['meets_target'])}; "
          f"written to {args.out}")
    return 0


# ---------------------------------------------------------------- detector


def _detector_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=config_file("detector.yaml"), help="detector configuration")
    parser.add_argument("--frames", type=int, default=100, help="timed frames (after 3 warm-up frames)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's)")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="BOP data set to take frames from "
                        "(default: 2 scenes x 5 images synthesised in a temporary folder)")
    parser.add_argument("--split", default="test", help="split of --dataset")


def run_detector(args: argparse.Namespace) -> int:
    """Time the configured detector on 640x480 frames; print and write median / p90 ms per frame and peak RSS."""
    from ros2_sixdpose.bench import detector
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.detection.base import DetectorConfig

    overrides = {"threads": args.threads} if args.threads is not None else None
    config = load_config(DetectorConfig, args.config, overrides)
    figures = detector.measure(config, args.frames, args.dataset, args.split)
    _write(figures, args.out)
    print(f"{config.type} detector, {figures['width']}x{figures['height']} (network input x{config.input_scale}), "
          f"{figures['threads']} threads, {args.frames} frames, {figures['mean_detections']:.1f} detections per frame")
    print(f"{'median ms':>10}{'p90 ms':>10}{'CPU ms':>10}{'peak RSS MB':>14}")
    print(f"{figures['median_ms']:>10.2f}{figures['p90_ms']:>10.2f}{figures['cpu_median_ms']:>10.2f}"
          f"{figures['peak_rss_mb']:>14.1f}")
    print(f"target <= {figures['target_ms']:.0f} ms: {_verdict(figures['meets_target'])}; written to {args.out}")
    return 0


# ---------------------------------------------------------------- estimator


def _estimator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, nargs="+",
                        default=[Path(WEIGHTS_DIR) / "nocs_pix2pix.pt", Path(WEIGHTS_DIR) / "nocs_bbdm.pt"])
    parser.add_argument("--models", type=Path, default=None, help="BOP models folder (default: assets/models)")
    parser.add_argument("--steps", type=int, nargs="+", default=[10], help="BBDM sampler steps to time")
    parser.add_argument("--crops", type=int, default=30, help="timed crops (after 3 warm-up crops)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--estimator-config", type=Path, default=None,
                        help="time this estimator configuration instead of the NOCS weights (e.g. config/estimator_mrcnet.yaml)")


def run_estimator(args: argparse.Namespace) -> int:
    """Time every weights file (BBDM at each step count), or one estimator configuration; print a table, write the JSON."""
    from ros2_sixdpose.bench import estimator
    from ros2_sixdpose.paths import models_dir

    if args.estimator_config is not None:
        return _run_estimator_config(args)
    content = estimator.measure(args.weights, args.models or models_dir(), args.steps, args.crops, args.threads)
    _write(content, args.out)
    print(f"{'weights':<32}{'steps':>6}{'median ms':>11}{'p90 ms':>9}{'CPU ms':>9}{'net ms':>9}{'PnP ms':>9}  target")
    for r in content["results"]:
        print(f"{r['weights']:<32}{r['sample_steps'] or '-':>6}{r['median_ms']:>11.1f}{r['p90_ms']:>9.1f}"
              f"{r['cpu_median_ms']:>9.1f}{r['network_median_ms']:>9.1f}{r['pnp_median_ms']:>9.1f}  "
              f"<= {r['target_ms']:.0f} ms {_verdict(r['meets_target'])}")
    print(f"written to {args.out}")
    return 0


def _run_estimator_config(args: argparse.Namespace) -> int:
    """`sixdpose bench estimator --estimator-config`: ms per crop of that configuration's estimator."""
    from ros2_sixdpose.bench import estimator
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.estimation.factory import EstimatorConfig
    from ros2_sixdpose.paths import models_dir, package_root

    config = load_config(EstimatorConfig, args.estimator_config)
    content = estimator.measure_config(config, package_root(), args.models or models_dir(), args.crops, args.threads)
    content["estimator_config"] = str(args.estimator_config)
    # The default JSON holds the NOCS figures; a configuration's go beside it under its own name.
    out = args.out
    if out.name == "estimator.json":
        out = out.with_name(f"estimator_{args.estimator_config.stem.removeprefix('estimator_')}.json")
    _write(content, out)
    (r,) = content["results"]
    target = "" if r["target_ms"] is None else f"  target <= {r['target_ms']:.0f} ms {_verdict(r['meets_target'])}"
    print(f"{args.estimator_config}: median {r['median_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms, CPU {r['cpu_median_ms']:.1f} "
          f"ms per crop{target}; written to {out}")
    return 0


# ---------------------------------------------------------------- pipeline


def _pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detector-config", type=Path, default=config_file("detector.yaml"),
                        help="detection stage (an oracle reads the synthesised scenes' ground truth)")
    parser.add_argument("--estimator-config", type=Path, default=config_file("estimator.yaml"),
                        help="pose-estimation stage")
    parser.add_argument("--frames", type=int, default=20, help="timed frames per case (after 2 warm-up)")
    parser.add_argument("--synth-config", type=Path, default=config_file("synth.yaml"), help="scene settings")


def run_pipeline(args: argparse.Namespace) -> int:
    """Time the pipeline with one and with five objects per frame; print a table and write the JSON."""
    from ros2_sixdpose.bench import pipeline
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.data.synth import SynthConfig
    from ros2_sixdpose.detection.base import DetectorConfig
    from ros2_sixdpose.estimation.factory import EstimatorConfig

    figures = pipeline.measure(
        load_config(DetectorConfig, args.detector_config), load_config(EstimatorConfig, args.estimator_config),
        load_config(SynthConfig, args.synth_config), args.frames, package_root(),
    )
    _write(figures, args.out)
    cases = figures["objects"]
    print(f"{figures['detector']} detector + {figures['estimator']}, 640x480, {figures['torch_threads']} torch "
          f"threads, {args.frames} frames per case; ms per frame, median / p90")
    print(f"{'stage':<18}" + "".join(f"{n + (' object' if n == '1' else ' objects'):>20}" for n in cases))
    for stage in next(iter(cases.values()))["stages"]:
        cells = [case["stages"].get(stage) for case in cases.values()]
        print(f"{stage:<18}" + "".join(f"{c['median_ms']:>11.1f} / {c['p90_ms']:>6.1f}" if c else f"{'-':>20}"
                                       for c in cells))
    print(f"{'detections':<18}" + "".join(f"{case['mean_detections']:>20.1f}" for case in cases.values()))
    print(f"{'poses':<18}" + "".join(f"{case['mean_poses']:>20.1f}" for case in cases.values()))
    print(f"peak RSS {figures['peak_rss_mb']:.0f} MB; model loading {figures['load_ms']:.0f} ms; written to {args.out}")
    return 0


# ---------------------------------------------------------------- refiner


def _refiner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--refiner-config", type=Path, default=config_file("refiner.yaml"),
                        help="refinement stage configuration")
    parser.add_argument("--trials", type=int, default=5, help="timed refinements per object (after one warm-up)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the poses, lights and starts")


def run_refiner(args: argparse.Namespace) -> int:
    """Time the configured refiner on every object; print and write median / p90 ms per object."""
    from ros2_sixdpose.bench import refiner
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.refinement.factory import RefinerConfig

    config = load_config(RefinerConfig, args.refiner_config)
    figures = refiner.measure(config, package_root(), args.trials, args.seed)
    _write(figures, args.out)
    print(f"{config.type} refiner, {figures['retrieval_hypotheses']} retrieved hypotheses, start: {figures['start']}, "
          f"{args.trials} trials per object; load average {figures['load_average'][0]:.1f}")
    print(f"{'object':<12}{'median ms':>10}{'success':>9}")
    for name, row in figures["per_object"].items():
        print(f"{name:<12}{row['median_ms']:>10.1f}{row['success']:>9.2f}")
    print(f"{'all':<12}{figures['median_ms']:>10.1f}   (p90 {figures['p90_ms']:.1f}, CPU {figures['cpu_median_ms']:.1f})")
    target = "no target" if figures["target_ms"] is None else \
        f"target <= {figures['target_ms']:.0f} ms: {_verdict(figures['meets_target'])}"
    print(f"{target}; written to {args.out}")
    return 0


# ---------------------------------------------------------------- tracking


def _tracking_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=config_file("tracker.yaml"), help="tracking configuration")
    parser.add_argument("--sequence", type=Path, default=Path(OUT_DIR) / "bench" / "tracking_sequence",
                        help="data set root of the benchmark sequence (synthesised there when absent)")
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--frames", type=int, default=240, help="frames per scene (30 Hz)")


def run_tracking(args: argparse.Namespace) -> int:
    """Track a held-out sequence with 1 and 3 objects; print and write frames/s, ADD(-S) recall, RBOT success."""
    from ros2_sixdpose.bench import tracking
    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.tracking.factory import TrackingConfig

    config = load_config(TrackingConfig, args.config)
    figures = tracking.measure(config, package_root(), args.sequence, args.scenes, args.frames)
    _write(figures, args.out)
    print(f"{config.refiner} tracker on {figures['sequence']} (seed {figures['seed']}), from the first frame's "
          "ground truth; without reset, and with RBOT's reset to the ground truth on failure")
    print(f"{'instances':<10}{'Hz':>7}{'median ms':>10}{'p90 ms':>8}{'ADD(-S)':>8}{'RBOT':>6}{'ADD/reset':>10}"
          f"{'RBOT/reset':>11}{'re-acq s':>9}{'jitter mm/deg':>15}{'frames':>7}")

    def figure(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"
    for n, key in ((1, "1_object"), (3, "3_objects")):
        f = figures[key]
        print(f"{n:<10}{figures['hz_' + key]:>7.1f}{f['median_ms']:>10.1f}{f['p90_ms']:>8.1f}"
              f"{f['add_recall']:>8.3f}{f['rbot_success']:>6.3f}{figure(f['add_recall_with_reset'], 3):>10}"
              f"{figure(f['rbot_success_with_reset'], 3):>11}{figure(f['reacquisition_s_median'], 2):>9}"
              f"{figure(f['jitter_mm'], 2) + ' / ' + figure(f['jitter_deg'], 2):>15}{f['frames']:>7d}")
    print(f"targets >= {figures['target_hz_1_object']:.0f} Hz (1) and >= {figures['target_hz_3_objects']:.0f} Hz (3): "
          f"{_verdict(figures['meets_target'])}; written to {args.out}")
    return 0


# ---------------------------------------------------------------- splat


def _splat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gaussians", type=Path, default=gaussians_dir(),
                        help="folder of obj_XXXXXX.ply Gaussian objects (sixdpose objects gaussians)")
    parser.add_argument("--renders", type=int, default=100, help="timed renders per object (after 3 warm-up)")
    parser.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="cpu", help="renderer backend")
    parser.add_argument("--seed", type=int, default=0, help="seed of the poses")


def run_splat(args: argparse.Namespace) -> int:
    """Time the Gaussian renderer on every object; print and write median / p90 / CPU ms per render."""
    from ros2_sixdpose.bench import splat

    figures = splat.measure(args.gaussians, args.renders, args.backend, args.seed)
    _write(figures, args.out)
    print(f"{figures['size']}x{figures['size']} renders, backend {figures['backend']}, {args.renders} per object")
    print(f"{'obj':>4}{'Gaussians':>11}{'median ms':>11}{'p90 ms':>9}{'CPU ms':>9}")
    for r in figures["objects"]:
        print(f"{r['obj_id']:>4}{r['n_gaussians']:>11}{r['median_ms']:>11.2f}{r['p90_ms']:>9.2f}"
              f"{r['cpu_median_ms']:>9.2f}")
    print(f"median over objects {figures['median_ms']:.2f} ms (CPU {figures['cpu_median_ms']:.2f} ms); "
          f"target <= {figures['target_ms']:.0f} ms: {_verdict(figures['meets_target'])}; written to {args.out}")
    return 0


# ---------------------------------------------------------------- flood


def _flood_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=config_file("nodes.yaml"),
                        help="deployment file of the one node flooded (default: config/nodes.yaml, the tracker)")
    parser.add_argument("--data", type=Path, required=True, help="BOP data set whose images are sent, e.g. a "
                                                                 "`sixdpose synth --sequence` output")
    parser.add_argument("--split", default="test")
    parser.add_argument("--scene", type=int, default=0)
    parser.add_argument("--frames", type=int, default=300, help="distinct images sent round and round")
    parser.add_argument("--rate", type=float, default=60.0, help="images per second")
    parser.add_argument("--duration", type=float, default=60.0, help="s of flooding")
    parser.add_argument("--param", dest="params", action="append", default=[], metavar="KEY=VALUE",
                        help="set a ROS parameter of the node (repeatable; VALUE is YAML)")


def run_flood(args: argparse.Namespace) -> int:
    """Flood the deployment's node over DDS; print and write latency, stalls, RSS growth, counts; PNG beside."""
    from ros2_sixdpose.bench import flood
    from ros2_sixdpose.cli.common import parse_overrides
    from ros2_sixdpose.nodes.deployment import load_deployment, with_parameters

    deployment = with_parameters(load_deployment(args.config), parse_overrides(args.params))
    png = args.out.with_suffix(".png")
    figures = flood.measure(deployment, args.data, args.split, args.scene, args.frames, args.rate, args.duration,
                            args.out.parent / f"{args.out.stem}_logs", png)
    _write(figures, args.out)
    print(f"{figures['node']} flooded at {args.rate:.0f} Hz for {args.duration:.0f} s "
          f"({figures['distinct_frames']} distinct images); load average {figures['load_average'][0]:.1f}")
    nan = float("nan")
    print(f"answered {figures['frames_answered']} / {figures['frames_sent']} ({figures['answer_hz']:.1f} Hz); latency "
          f"p50 {figures.get('latency_ms_p50', nan):.0f} ms, p99 {figures.get('latency_ms_p99', nan):.0f} ms")
    print(f"longest gap between answers {figures['longest_gap_ms']:.0f} ms, p99 {figures['gap_ms_p99']:.0f} ms "
          f"({figures['stalls_over_2_periods']} gaps over 2 periods of {figures['answer_period_ms']:.0f} ms); RSS "
          f"{figures.get('rss_mb_start', 0):.0f} -> {figures.get('rss_mb_end', 0):.0f} MB (growth "
          f"{figures.get('rss_growth_mb', nan):.1f} MB)")
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.items() if k.startswith("frames_") and
                       k not in ("frames_sent", "frames_answered"))
    print(f"node diagnostics: {counts}; crashed: {figures['crashed'] or 'no'}")
    print(f"targets p99 < {figures['target_p99_ms']:.0f} ms, RSS growth < {figures['target_rss_growth_mb']:.0f} MB, "
          f"no stall: {_verdict(figures['meets_target'])}; written to {args.out} and {png}")
    return 0

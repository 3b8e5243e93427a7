"""`sixdpose train <network>`: train one of the project's networks with the shared training loop."""
from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ros2_sixdpose.cli.common import add_training_arguments, invoked_command, training_run_info, training_schedule
from ros2_sixdpose.cli.train_mrcnet import add_mrcnet_arguments, run_mrcnet
from ros2_sixdpose.paths import WEIGHTS_DIR, config_file

if TYPE_CHECKING:
    from ros2_sixdpose.data.bop import BopSplit

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` and one sub-parser per network."""
    parser = subparsers.add_parser(
        "train", help="train a network; writes weights, a resumable checkpoint, JSON and curves"
    )
    networks = parser.add_subparsers(dest="network", required=True)
    detector = networks.add_parser("detector", help="segmentation-based object detector (class map + instance centres)")
    _add_detector_arguments(detector)
    detector.set_defaults(func=run_detector)
    nocs = networks.add_parser(
        "nocs", help="NOCS-map network of the dense-correspondence estimator (Pix2Pix or BBDM)"
    )
    _add_nocs_arguments(nocs)
    nocs.set_defaults(func=run_nocs)
    retrieval = networks.add_parser(
        "retrieval", help="rotation-aware embedding encoder of template retrieval (InfoNCE, GS-Pose)"
    )
    _add_retrieval_arguments(retrieval)
    retrieval.set_defaults(func=run_retrieval)
    # MRC-Net's options and runner live in their own module (train_mrcnet.py).
    mrcnet = networks.add_parser(
        "mrcnet", help="MRC-Net pose classifier and multi-scale residual-correlation regressor (Li et al. 2024)"
    )
    add_mrcnet_arguments(mrcnet)
    mrcnet.set_defaults(func=run_mrcnet)
    rnnpose = networks.add_parser("rnnpose", help="RNNPose refiner: correspondence field, descriptors, weighted LM")
    _add_rnnpose_arguments(rnnpose)
    rnnpose.set_defaults(func=run_rnnpose)


def _add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sixdpose train detector`."""
    parser.add_argument("--data", type=Path, required=True, help="BOP data set root (from `sixdpose synth`)")
    parser.add_argument("--split", default="train_pbr", help="training split")
    parser.add_argument("--val-split", default="val", help="validation split (its first --val-images images)")
    parser.add_argument("--out", type=Path, default=Path(WEIGHTS_DIR) / "detector.pt", help="weights file to write")
    parser.add_argument("--config", type=Path, default=config_file("detector.yaml"),
                        help="detector configuration (input scale, thresholds used in validation)")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default DATA/models)")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--until", type=int, default=None, help="stop at this step (resumable), e.g. to split a run")
    parser.add_argument("--batch-size", type=int, default=None, help="default: DetectorTrainConfig's")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--augment", choices=("on", "off"), default="on", help="online augmentation")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--val-images", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--data-seeds", default="", help="free text recorded in the JSON, e.g. 'train 1, val 2'")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from these detector weights (fine-tuning; a fresh optimizer and schedule)")


def run_detector(args: argparse.Namespace) -> int:
    """`sixdpose train detector`: train (or resume) and write the weights, checkpoint, JSON and curves."""
    import torch
    from torch.utils.data import DataLoader

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import MODELS_INFO_FILE, read_models_info
    from ros2_sixdpose.data.augment import AugmentConfig
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.detection.base import DetectorConfig
    from ros2_sixdpose.detection.evaluate import iter_frames
    from ros2_sixdpose.detection.segmentation import input_size
    from ros2_sixdpose.detection.train import (
        DETECTOR_AUGMENT, CachedFrames, DetectorTask, DetectorTrainConfig, start_from,
    )
    from ros2_sixdpose.train.loop import train

    detector_config = load_config(DetectorConfig, args.config if args.config.is_file() else None)
    models_dir = args.models or args.data / "models"
    object_ids = sorted(read_models_info(models_dir / MODELS_INFO_FILE))
    augment_config = DETECTOR_AUGMENT if args.augment == "on" else AugmentConfig(enabled=False)
    batch_size = DetectorTrainConfig.batch_size if args.batch_size is None else args.batch_size
    config = DetectorTrainConfig(batch_size=batch_size, val_images=args.val_images, augment=augment_config)
    loop_config = training_schedule(args, 500, 500)
    torch.set_num_threads(args.threads)
    train_split = BopSplit(args.data, args.split)
    width, height = _frame_size(train_split)
    size = input_size(width, height, detector_config.input_scale)
    dataset = CachedFrames(train_split, size, object_ids)
    val_frames = list(iter_frames(BopSplit(args.data, args.val_split), args.val_images))
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True, generator=generator)
    task = DetectorTask(object_ids, config, detector_config, val_frames, seed=args.seed)
    if args.init is not None:
        start_from(task.net, object_ids, args.init)
    run_info = {
        "command": invoked_command(),
        "data": str(args.data),
        "split": args.split,
        "val_split": args.val_split,
        "data_seeds": args.data_seeds,
        "train_images": len(dataset),
        "val_images": len(val_frames),
        "object_ids": object_ids,
        "input_size": list(size),
        "augment": args.augment,
        "init": str(args.init) if args.init is not None else None,
        "detector_train_config": asdict(config),
        "detector_config": asdict(detector_config),
    }
    result = train(task, loader, loop_config, args.out, run_info=run_info, until=args.until)
    print(f"step {result.history['step'][-1] if result.history['step'] else 0}: {result.final_metrics}")
    print(f"wrote {result.weights} (+ .json, .curves.png); checkpoint {result.checkpoint}")
    return 0




def _frame_size(split: BopSplit) -> tuple[int, int]:
    """(width, height) of the first image of a split; the detector trains on one frame size."""
    from ros2_sixdpose.data.bop import image_size

    scene_id = split.scene_ids()[0]
    return image_size(split.rgb_path(scene_id, split.image_ids(scene_id)[0]))


def _add_nocs_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sixdpose train nocs`."""
    parser.add_argument("--model", required=True, help="network: pix2pix (GAN) or bbdm (Brownian-bridge diffusion)")
    parser.add_argument("--augment", choices=("on", "off"), default="on", help="online augmentation")
    parser.add_argument("--data", type=Path, required=True, help="BOP data set root (from `sixdpose synth`)")
    parser.add_argument("--split", default="train_pbr", help="training split")
    parser.add_argument("--val-split", default="val", help="validation split")
    parser.add_argument("--out", type=Path, required=True, help="weights file to write, e.g. weights/nocs_bbdm.pt")
    parser.add_argument("--config", type=Path, default=config_file("estimator_nocs_train.yaml"),
                        help="network and loss settings (NocsTrainConfig)")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default DATA/models)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--until", type=int, default=None, help="stop at this step (resumable)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling, jitter and augmentation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (2 on 2 shared cores stalled in spin-waits)")
    parser.add_argument("--device", default="cpu",
                        help="torch device of networks, batches and augmentation (cpu, cuda); a checkpoint resumes on "
                             "the device kind it was written on")
    parser.add_argument("--workers", type=int, default=1, help="threads cutting the crop caches on first use")
    parser.add_argument("--data-seeds", default="", help="free text recorded in the JSON, e.g. 'train 600, val 601'")


def run_nocs(args: argparse.Namespace) -> int:
    """`sixdpose train nocs`: train (or resume) and write weights, checkpoint, JSON, curves and example maps."""
    import torch
    from torch.utils.data import DataLoader

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.data.views import ViewConfig
    from ros2_sixdpose.estimation.train import TASKS, NocsTrainConfig, cached_crops
    from ros2_sixdpose.train.loop import train

    if args.model not in TASKS:
        logger.error("sixdpose train nocs: --model must be one of %s, got %r", ", ".join(TASKS), args.model)
        return 2
    config_path = args.config if args.config.is_file() else None
    config = load_config(NocsTrainConfig, config_path, {"augment.enabled": args.augment == "on"})
    torch.set_num_threads(args.threads)
    models = load_models(args.models or args.data / "models")
    view = ViewConfig(size=config.crop_size, pad_scale=config.crop_scale, min_visib_fract=config.min_visib_fract)
    train_crops = cached_crops(BopSplit(args.data, args.split), view, models, config.cache_epochs, args.seed,
                               workers=args.workers)
    still = ViewConfig(size=config.crop_size, pad_scale=config.crop_scale, min_visib_fract=0.5, scale_jitter=0.0,
                       shift_jitter=0.0)
    val_crops = cached_crops(BopSplit(args.data, args.val_split), still, models, 1, args.seed, limit=config.val_crops)
    loader = DataLoader(train_crops, batch_size=config.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(args.seed))
    task = TASKS[args.model](config, sorted(models), val_crops, args.seed, args.device)
    loop_config = training_schedule(args, 100, 100)
    run_info = {
        "command": invoked_command(),
        "model": args.model,
        "augment": args.augment,
        "data": str(args.data),
        "split": args.split,
        "val_split": args.val_split,
        "data_seeds": args.data_seeds,
        "device": args.device,
        "train_crops": len(train_crops),
        "val_crops": len(val_crops),
        "parameters": sum(p.numel() for p in task.net.parameters()),
        "nocs_train_config": asdict(config),
    }
    result = train(task, loader, loop_config, args.out, run_info=run_info, until=args.until)
    task.save_examples(args.out.with_name(args.out.name + ".examples.png"))
    print(f"step {result.history['step'][-1] if result.history['step'] else 0}: {result.final_metrics}")
    print(f"wrote {result.weights} (+ .json, .curves.png, .examples.png); checkpoint {result.checkpoint}")
    return 0


def _add_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sixdpose train retrieval`."""
    add_training_arguments(
        parser, split="train", out=Path(WEIGHTS_DIR) / "retrieval_encoder.pt",
        config_help="RetrievalTrainConfig YAML (default: code defaults)", steps=2000, lr=1e-3, eval_every=250,
        seed_help="seed of initialisation, rotations, lights and augmentation",
        device_help="torch device of the encoder (cpu, cuda); batches are rendered on the CPU either way",
        seeds_example="train 707, val 601")
    parser.add_argument("--retrieval-config", type=Path, default=config_file("estimator_retrieval.yaml"),
                        help="the estimator's settings (template banks); its `retrieval` key is read")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: the object set's)")


def run_retrieval(args: argparse.Namespace) -> int:
    """`sixdpose train retrieval`: train (or resume) and write weights, checkpoint, JSON and curves."""
    import torch
    from torch.utils.data import DataLoader

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.estimation.factory import EstimatorConfig
    from ros2_sixdpose.estimation.retrieval.bank import load_or_build_banks
    from ros2_sixdpose.estimation.retrieval.train import (
        ContrastiveBatches, RetrievalTask, RetrievalTrainConfig, scene_pool, validation_instances,
    )
    from ros2_sixdpose.paths import models_dir, under_root
    from ros2_sixdpose.train.loop import train

    config = load_config(RetrievalTrainConfig, args.config)
    retrieval = load_config(EstimatorConfig, args.retrieval_config if args.retrieval_config.is_file() else None).retrieval
    if config.encoder.crop_size != retrieval.bank.crop_size:
        logger.error("encoder crop_size %d differs from the banks' %d", config.encoder.crop_size, retrieval.bank.crop_size)
        return 2
    torch.set_num_threads(args.threads)
    models = load_models(args.models or models_dir())
    cache_dir = under_root(retrieval.cache_dir) if retrieval.cache_dir else None
    banks = load_or_build_banks(models, retrieval.bank, cache_dir)
    pool = scene_pool(BopSplit(args.data, args.split), config.min_visib_fract, set(models))
    val = validation_instances(BopSplit(args.val_data or args.data, args.val_split), config.val_instances, 0.5)
    batches = ContrastiveBatches(pool, models, config, retrieval.bank, args.seed)
    task = RetrievalTask(config, val, models, retrieval, banks, args.device)
    loop_config = training_schedule(args, 100, 100)
    run_info = {
        **training_run_info(args),
        "scene_instances": len(pool.obj_id), "val_instances": len(val),
        "parameters": sum(p.numel() for p in task.net.parameters()),
        "retrieval_train_config": asdict(config), "bank": asdict(retrieval.bank),
    }
    result = train(task, DataLoader(batches, batch_size=None), loop_config, args.out, run_info=run_info, until=args.until)
    print(f"step {result.history['step'][-1] if result.history['step'] else 0}: {result.final_metrics}")
    print(f"wrote {result.weights} (+ .json, .curves.png); checkpoint {result.checkpoint}")
    return 0


def _add_rnnpose_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sixdpose train rnnpose`."""
    add_training_arguments(
        parser, split="train", out=Path(WEIGHTS_DIR) / "rnnpose.pt",
        config_help="RNNPoseTrainConfig YAML (default: code defaults)", steps=2700, lr=8e-4, eval_every=300,
        seed_help="seed of initialisation, disturbances and augmentation",
        device_help="torch device of the network (cpu, cuda); references are rendered on the CPU either way",
        seeds_example="train 614, val 601")
    parser.add_argument("--refiner-config", type=Path, default=config_file("refiner_rnnpose.yaml"),
                        help="the refiner's settings (crop size, iterations); its `rnnpose` key is read")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default DATA/models)")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from these RNNPose weights (training on; a fresh optimizer and schedule)")


def run_rnnpose(args: argparse.Namespace) -> int:
    """`sixdpose train rnnpose`: train (or resume) and write weights, checkpoint, JSON, curves and flow / weight maps."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.refinement.factory import RefinerConfig
    from ros2_sixdpose.refinement.rnnpose.train import (
        RNNPoseTask, RNNPoseTrainConfig, TrainingBatches, instance_pool, make_batch,
    )
    from ros2_sixdpose.train.loop import train

    config = load_config(RNNPoseTrainConfig, args.config)
    refiner = load_config(RefinerConfig, args.refiner_config if args.refiner_config.is_file() else None).rnnpose
    torch.set_num_threads(args.threads)
    models = load_models(args.models or args.data / "models")
    pool = instance_pool(BopSplit(args.data, args.split), models, config)
    val_pool = instance_pool(BopSplit(args.val_data or args.data, args.val_split), models,
                             replace(config, min_visib_fract=0.5), limit=config.val_instances)
    val = make_batch(val_pool, np.arange(len(val_pool.obj_id)), models, refiner, np.random.default_rng(args.seed),
                     config.val_rot_deg, config.trans_sigma_m, gaussian=False)
    task = RNNPoseTask(config, refiner, models, val, args.seed, args.device)
    if args.init is not None:
        task.start_from(args.init)
    loop_config = training_schedule(args, 200, 100)
    run_info = {
        **training_run_info(args), "init": str(args.init) if args.init is not None else None,
        "train_instances": len(pool.obj_id), "val_instances": len(val.obj_ids),
        "parameters": sum(p.numel() for p in task.net.parameters()),
        "rnnpose_train_config": asdict(config), "refiner": asdict(refiner),
    }
    batches = TrainingBatches(pool, models, config, refiner, args.seed)
    result = train(task, DataLoader(batches, batch_size=None), loop_config, args.out, run_info=run_info, until=args.until)
    task.save_examples(args.out.with_name(args.out.name + ".examples.png"))
    print(f"step {result.history['step'][-1] if result.history['step'] else 0}: {result.final_metrics}")
    print(f"wrote {result.weights} (+ .json, .curves.png, .examples.png); checkpoint {result.checkpoint}")
    return 0

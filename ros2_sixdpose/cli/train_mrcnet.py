"""`sixdpose train mrcnet`: the MRC-Net pose classifier and residual regressor (estimation.mrcnet)."""
from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path

from ros2_sixdpose.cli.common import add_training_arguments, training_run_info, training_schedule
from ros2_sixdpose.paths import OUT_DIR, WEIGHTS_DIR

logger = logging.getLogger(__name__)


def add_mrcnet_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sixdpose train mrcnet`."""
    add_training_arguments(
        parser, split="train_pbr", out=Path(WEIGHTS_DIR) / "mrcnet.pt",
        config_help="MrcTrainConfig YAML (default: code defaults)", steps=6000, lr=1e-3, eval_every=500,
        seed_help="seed of initialisation, jitter, initial poses, augmentation",
        device_help="torch device of the network (cpu, cuda); renders stay on the CPU", seeds_example="train 150, val 601")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default DATA/models)")
    parser.add_argument("--cache-dir", type=Path, default=Path(OUT_DIR) / "mrcnet" / "cache",
                        help="where the crop caches (with their rendered initial poses) are kept")
    parser.add_argument("--residual-from", type=Path, default=None,
                        help="train only the residual stage (MRC layer and regressor) on the frozen encoder and "
                             "classifier of these MRC-Net weights")


def run_mrcnet(args: argparse.Namespace) -> int:
    """Train (or resume) and write weights, checkpoint, JSON, curves and example renders."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from ros2_sixdpose.config import load_config
    from ros2_sixdpose.core.objects import load_models
    from ros2_sixdpose.core.render import Renderer
    from ros2_sixdpose.data.bop import BopSplit
    from ros2_sixdpose.data.views import ViewConfig
    from ros2_sixdpose.estimation.mrcnet.predictor import load_mrcnet
    from ros2_sixdpose.estimation.mrcnet.train import MrcTask, MrcTrainConfig, cached_mrc_crops
    from ros2_sixdpose.estimation.mrcnet.visualize import save_examples
    from ros2_sixdpose.train.loop import train

    config = load_config(MrcTrainConfig, args.config)
    torch.set_num_threads(args.threads)
    models = load_models(args.models or args.data / "models")
    object_ids = sorted(models)
    if config.net.objects != len(object_ids) or config.net.rotation_bins != config.bins.count:
        logger.error("the network has %d object rows and %d rotation bins; the models folder has %d objects and "
                     "the bins %d", config.net.objects, config.net.rotation_bins, len(object_ids), config.bins.count)
        return 2
    size = config.net.crop_size
    view = ViewConfig(size=size, pad_scale=config.crop_scale, min_visib_fract=config.min_visib_fract)
    still = ViewConfig(size=size, pad_scale=config.crop_scale, min_visib_fract=0.5, scale_jitter=0.0, shift_jitter=0.0)
    with Renderer(models) as renderer:
        train_crops = cached_mrc_crops(BopSplit(args.data, args.split), view, config, models, object_ids, renderer,
                                       config.cache_epochs, args.seed, args.cache_dir)
        val_crops = cached_mrc_crops(BopSplit(args.val_data or args.data, args.val_split), still, config, models,
                                     object_ids, renderer, 1, args.seed, args.cache_dir, limit=config.val_crops)
        loader = DataLoader(train_crops, batch_size=config.batch_size, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(args.seed))
        stage1_from = load_mrcnet(args.residual_from)[0] if args.residual_from is not None else None
        task = MrcTask(config, models, object_ids, val_crops, renderer, args.seed, args.device, stage1_from)
        loop_config = training_schedule(args, 200, 250)
        run_info = {
            **training_run_info(args),
            "train_crops": len(train_crops), "val_crops": len(val_crops), "object_ids": object_ids,
            "parameters": sum(p.numel() for p in task.net.parameters()),
            "residual_from": str(args.residual_from) if args.residual_from is not None else None,
            # How the frozen stage 1 was trained, so the whole chain stays on record.
            "residual_from_info": _training_info(args.residual_from),
            "mrcnet_train_config": asdict(config),
        }
        result = train(task, loader, loop_config, args.out, run_info=run_info, until=args.until)
        task.train_mode(False)
        examples = val_crops[:6]
        rgb = np.ascontiguousarray(examples["rgb"].permute(0, 2, 3, 1).numpy())
        K_crops = examples["K_crop"].double().numpy()
        obj_ids = [object_ids[int(r)] for r in examples["row"]]
        prediction = task.predictor.predict(rgb, K_crops, obj_ids)
        save_examples(args.out.with_name(args.out.name + ".examples.png"), rgb, K_crops, obj_ids,
                      examples["T_gt"].double().numpy(), prediction, renderer)
    print(f"step {result.history['step'][-1] if result.history['step'] else 0}: {result.final_metrics}")
    print(f"wrote {result.weights} (+ .json, .curves.png, .examples.png); checkpoint {result.checkpoint}")
    return 0


def _training_info(weights: Path | None) -> dict | None:
    """The training JSON beside `weights` (None without weights or JSON)."""
    import json

    info = None if weights is None else weights.with_name(weights.name + ".json")
    return json.loads(info.read_text()) if info is not None and info.is_file() else None

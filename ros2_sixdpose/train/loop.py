"""The training loop shared by every network: schedule, checkpoints that resume, validation, curves.

A network plugs in as a `TrainTask`: it owns its modules and optimizers and does one optimisation step per
batch (a GAN steps two optimizers, a diffusion model one), while this loop owns everything around it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Schedule and bookkeeping of one training run (the network's own settings live in its task)."""

    steps: int = 2000
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    eval_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default


class TrainTask(Protocol):
    """What a network provides to `train()`."""

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every optimizer; the loop sets their learning rate each step."""

    def training_step(self, batch: Any, step: int) -> dict[str, float]:
        """Forward, backward and optimizer step(s) on one batch; returns the losses to log."""

    def validate(self) -> dict[str, float]:
        """Metrics on held-out data (called under no_grad with modules in eval mode)."""

    def train_mode(self, training: bool) -> None:
        """Switch every module between train and eval mode."""

    def state_dict(self) -> dict[str, Any]:
        """Modules and optimizers, for checkpoints (tensors and plain Python values only)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned."""

    def export(self) -> dict[str, Any]:
        """What inference needs (weights and model config), saved as the run's final weights file."""


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to `lr * min_lr_ratio` at `steps`."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    min_lr = config.lr * config.min_lr_ratio
    return min_lr + 0.5 * (config.lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def _forever(loader: torch.utils.data.DataLoader) -> Iterator[Any]:
    """Cycle through a data loader without end (a new shuffle each pass)."""
    while True:
        yield from loader


@dataclass
class TrainResult:
    """Where a run left its files and what it measured last."""

    weights: Path
    checkpoint: Path
    history: dict[str, list]
    final_metrics: dict[str, float]
    seconds: float


def train(
    task: TrainTask,
    loader: torch.utils.data.DataLoader,
    config: TrainConfig,
    out: Path,
    run_info: dict[str, Any] | None = None,
    until: int | None = None,
) -> TrainResult:
    """Train `task` on batches from `loader`, resuming from `<out>.ckpt` if it exists.

    `until` stops early at that step (checkpointed), e.g. to split a long run across sessions.

    Writes `<out>` (the exported weights), `<out>.ckpt` (resumable), `<out>.json` (how it was trained and
    the final metrics) and `<out>.curves.png` (losses and validation metrics against steps).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = out.with_name(out.name + ".ckpt")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    history: dict[str, Any] = {"step": [], "losses": [], "val_step": [], "val": [], "seconds": 0.0}
    step = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        task.load_state_dict(state["task"])
        history = state["history"]
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed %s at step %d", checkpoint, step)
    # Training seconds over every session; None for checkpoints written before they were counted.
    seconds_before = history.setdefault("seconds", None)
    start = time.monotonic()
    batches = _forever(loader)
    metrics: dict[str, float] = history["val"][-1] if history["val"] else {}
    task.train_mode(True)
    with tqdm(total=config.steps, initial=step, desc=out.stem, unit="step") as bar:
        while step < min(config.steps, until or config.steps):
            lr = learning_rate(step, config)
            for optimizer in task.optimizers():
                for group in optimizer.param_groups:
                    group["lr"] = lr
            losses = task.training_step(next(batches), step)
            step += 1
            history["step"].append(step)
            history["losses"].append(losses)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
            if step % config.eval_every == 0 or step == config.steps:
                metrics = _validate(task)
                history["val_step"].append(step)
                history["val"].append(metrics)
                log.info("step %d: %s", step, metrics)
            if step % config.checkpoint_every == 0 or step in (config.steps, until):
                if seconds_before is not None:
                    history["seconds"] = seconds_before + time.monotonic() - start
                _save_checkpoint(task, history, step, checkpoint)
    seconds = time.monotonic() - start
    torch.save(task.export(), out)
    info = {
        "train_config": dataclasses.asdict(config),
        "steps": step,
        "seconds_this_session": round(seconds, 1),
        "seconds_total": None if history["seconds"] is None else round(history["seconds"], 1),
        "final_metrics": metrics,
        # Every validation of the run (resumed ones too), so that a reader can see whether it had levelled off.
        "val_history": [{"step": s, **m} for s, m in zip(history["val_step"], history["val"])],
        **(run_info or {}),
    }
    out.with_name(out.name + ".json").write_text(json.dumps(info, indent=2) + "\n")
    plot_curves(history, out.with_name(out.name + ".curves.png"), title=out.stem)
    return TrainResult(out, checkpoint, history, metrics, seconds)


def _validate(task: TrainTask) -> dict[str, float]:
    """Run the task's validation in eval mode without gradients."""
    task.train_mode(False)
    with torch.no_grad():
        metrics = task.validate()
    task.train_mode(True)
    return metrics


def _save_checkpoint(task: TrainTask, history: dict[str, list], step: int, path: Path) -> None:
    """Write a resumable checkpoint atomically (a crash mid-write leaves the previous one)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"task": task.state_dict(), "history": history, "step": step, "torch_rng": torch.get_rng_state()}, tmp)
    tmp.replace(path)


def plot_curves(history: dict[str, list], path: Path, title: str) -> None:
    """Training losses (smoothed) and validation metrics against steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    steps = history["step"]
    for name in sorted({k for losses in history["losses"] for k in losses}):
        values = torch.tensor([losses.get(name, float("nan")) for losses in history["losses"]])
        window = max(1, len(values) // 50)
        smooth = torch.nn.functional.avg_pool1d(values[None, None], window, stride=1).flatten()
        ax_loss.plot(steps[window - 1:], smooth.tolist(), label=name)
    ax_loss.set_xlabel("step")
    ax_loss.set_yscale("log")
    ax_loss.set_title("training losses")
    ax_loss.legend(fontsize=8)
    for name in sorted({k for metrics in history["val"] for k in metrics}):
        ax_val.plot(history["val_step"], [m.get(name, float("nan")) for m in history["val"]], marker="o", label=name)
    ax_val.set_xlabel("step")
    ax_val.set_title("validation")
    if history["val"]:
        ax_val.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

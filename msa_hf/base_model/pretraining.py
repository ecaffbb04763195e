# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Pretraining the small promptable base model on the synthetic data engine (`msa-hf pretrain-base`).

The base is a plain `SamModel` (so `SamModel` and `SamAdapterModel` load it), trained fully, the way SAM
was: boxes and clicks simulated from the target, SAM's focal:Dice 20:1 loss on the best of three masks for
ambiguous single clicks, an IoU-head loss, and iterative rounds in which the previous low-resolution
logits come back as the mask prompt (`input_masks`) together with a click on the largest error.

The base's shape and from-scratch initialisation live in `geometry.py`, its held-out check in
`held_out.py`; their public names are importable from here too.

Training is resumable (`accelerate` state every `checkpoint_every` steps) and logs a learning curve
(`metrics.csv`) with held-out Dice by prompt type next to the "fill the box" baseline.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import SamModel

from msa_hf.base_model.data_engine import SyntheticSegmentationDataset
from msa_hf.base_model.geometry import BASE_GEOMETRY, base_config, initialise_from_scratch
from msa_hf.base_model.held_out import (
    EVAL_PROMPTS,
    box_prompts,
    click_prompts,
    collate_samples,
    evaluate_prompted_segmentation,
    held_out_set,
    pixel_values_from_uint8,
    predict,
)
from msa_hf.output_files import atomic_folder
from msa_hf.processing.mask_outputs import upsample_mask_logits
from msa_hf.processing.prompts import error_click_round
from msa_hf.training.config_checks import check_field_ranges
from msa_hf.training.loop import Checkpoints, LoopSettings, TrainingLoop
from msa_hf.training.losses import sam_loss


@dataclass
class PretrainingConfig:
    """Hyper-parameters of `pretrain_base` (saved next to the checkpoints)."""

    total_images: int = 300_000
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 300
    decay_fraction: float = (
        0.2  # cosine decay over the last 20% of steps; flat before (notes: decaying early stalls)
    )
    box_probability: float = 0.5
    box_only_fraction: float = 0.15  # curriculum: boxes only for the first 15% of steps (boxes are easiest)
    iterative_probability: float = 0.35
    seed: int = 0
    eval_samples: int = 300
    eval_every: int = 1000
    checkpoint_every: int = 500
    num_workers: int = 1

    def __post_init__(self) -> None:
        # checked before anything runs: 0 images exported an untrained base, batch 0 divided by zero
        check_field_ranges(
            self,
            at_least_one=("total_images", "batch_size", "eval_samples", "eval_every", "checkpoint_every"),
            positive=("learning_rate",),
            non_negative=("weight_decay", "warmup_steps", "num_workers"),
            shares=("decay_fraction", "box_probability", "box_only_fraction", "iterative_probability"),
        )
        if self.total_images < self.batch_size:
            raise ValueError(
                f"total_images ({self.total_images}) must be at least one batch ({self.batch_size})."
            )


def _training_step(
    model: Any,
    batch: dict[str, torch.Tensor],
    rng: np.random.Generator,
    config: PretrainingConfig,
    boxes_only: bool = False,
    unwrapped: SamModel | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One loss. `model` may be DDP-wrapped: the graded pass goes through it (so gradients synchronise);
    the gradient-free iterative pre-pass uses `unwrapped`."""
    images, masks = batch["images"], batch["masks"]
    size = masks.shape[-1]
    device = images.device
    pixel_values = pixel_values_from_uint8(images)
    targets = masks[:, None].float()
    prompts: dict[str, torch.Tensor] = {}
    multimask = False
    if boxes_only or rng.random() < config.box_probability:
        prompts["input_boxes"] = box_prompts(masks.cpu(), rng, 0.1).to(device)
    else:
        count = 1 if rng.random() < 0.5 else int(rng.integers(2, 4))
        points, labels = click_prompts(masks.cpu(), rng, count, interior_first=False)
        prompts["input_points"], prompts["input_labels"] = points.to(device), labels.to(device)
        multimask = count == 1
    if not boxes_only and rng.random() < config.iterative_probability:
        # SAM's iterative rounds: predict without gradients, then click the largest error and give the
        # previous logits back as the mask prompt.
        with torch.no_grad():
            _, _, previous = predict(
                unwrapped or model, pixel_values=pixel_values, multimask=multimask, **prompts
            )
        prompts = error_click_round(previous, targets[:, 0], prompts)
        multimask = False
    logits, iou, _ = predict(model, pixel_values=pixel_values, multimask=multimask, **prompts)
    return sam_loss(upsample_mask_logits(logits, size), iou, targets)


def _learning_rate_factor(step: int, total_steps: int, config: PretrainingConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    decay_start = int(total_steps * (1 - config.decay_fraction))
    if step < decay_start:
        return 1.0
    progress = (step - decay_start) / max(total_steps - decay_start, 1)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


STAGES_FILE = "stages.jsonl"


def record_stage(output_dir: Path, start_step: int, config: PretrainingConfig) -> None:
    """Append `{"start_step", "config"}` to `output_dir/stages.jsonl`: a run resumed with a different config
    (say a new `total_images`, which moves the learning-rate decay) is then reproducible stage by stage."""
    stages = read_stages(output_dir)
    if stages and stages[-1]["config"] == asdict(config):
        return  # a plain resume continues the same stage
    with (output_dir / STAGES_FILE).open("a") as handle:
        handle.write(json.dumps({"start_step": start_step, "config": asdict(config)}) + "\n")


def read_stages(output_dir: str | Path) -> list[dict[str, Any]]:
    """The stages of a run, oldest first (empty for a run without `stages.jsonl`)."""
    path = Path(output_dir) / STAGES_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pretrain_base(
    output_dir: str | Path,
    config: PretrainingConfig | None = None,
    max_minutes: float | None = None,
    stop_at_step: int | None = None,
) -> Path:
    """Pretrain (or resume) the base in `output_dir`; returns the folder of the exported model.

    `output_dir/checkpoint/` holds the accelerate state (resumed automatically), `metrics.csv` the learning
    curve, `stages.jsonl` the configs the run was resumed with, `final/` the exported `SamModel` once
    `total_images` are seen. `max_minutes` stops early (after a checkpoint) so a long run can be done in
    slices; `stop_at_step` stops (after a checkpoint) at that step, which replays a staged run exactly.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed

    torch.set_flush_denormal(True)
    config = config or PretrainingConfig()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "pretraining_config.json").write_text(json.dumps(asdict(config), indent=2))
    # box batches leave the point embeddings unused, and batches without a mask prompt the mask encoder:
    # DDP must be told, or it waits for their gradients forever
    accelerator = Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    set_seed(config.seed)  # the decoder's default init draws from the global generator: a replay must match
    model = initialise_from_scratch(SamModel(base_config()), seed=config.seed)
    total_steps = config.total_images // (config.batch_size * accelerator.num_processes)
    images_per_step = config.batch_size * accelerator.num_processes
    settings = LoopSettings(
        steps=total_steps, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
        checkpoint_every=config.checkpoint_every, description="pretrain base",
    )  # fmt: skip

    # not transformers' cosine: warm-up, a plateau, then cosine decay to 5%, as the shipped base was trained
    # (its recorded stages replay exactly only with this schedule)
    def schedule(optimizer: torch.optim.Optimizer, settings: LoopSettings) -> Any:
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: _learning_rate_factor(step, total_steps, config)
        )

    loop = TrainingLoop(model, settings, accelerator, schedule, Checkpoints(output_dir, rolling=False))
    checkpoint = loop.checkpoints.latest()
    if checkpoint is not None:
        loop.resume(checkpoint)
        # the saved scheduler state carries the old base learning rate: a stage resumed with another
        # --learning-rate must run at the new one
        loop.scheduler.scheduler.base_lrs = [config.learning_rate] * len(loop.optimizer.param_groups)
        for group in loop.optimizer.param_groups:
            group["initial_lr"] = config.learning_rate
            group["lr"] = config.learning_rate * _learning_rate_factor(loop.step, total_steps, config)
    if accelerator.is_main_process:
        record_stage(output_dir, loop.step, config)
    # the stream continues where the checkpoint stopped: the images of a step are a function of the step
    dataset = SyntheticSegmentationDataset(
        max(total_steps - loop.step, 0) * images_per_step, seed=config.seed, start=loop.step * images_per_step
    )
    loader = loop.prepare(
        torch.utils.data.DataLoader(
            dataset, batch_size=config.batch_size, num_workers=config.num_workers, collate_fn=collate_samples,
            persistent_workers=config.num_workers > 0,
        )
    )  # fmt: skip
    held_out_images, held_out_masks = held_out_set(config.eval_samples)
    metrics_file = output_dir / "metrics.csv"
    fields = [
        "step",
        "images",
        "minutes",
        "lr",
        "loss",
        "focal",
        "dice_loss",
        "iou_loss",
        *EVAL_PROMPTS,
        "box_fill",
    ]
    if not metrics_file.exists():
        with metrics_file.open("w", newline="") as handle:
            csv.writer(handle).writerow(fields)
    rng = np.random.default_rng([config.seed, loop.step])
    started = time.time()
    running: list[float] = []

    def log(row: dict[str, Any]) -> None:
        if accelerator.is_main_process:
            with metrics_file.open("a", newline="") as handle:
                csv.writer(handle).writerow([row.get(name, "") for name in fields])

    def loss_of(batch: Any, micro: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        boxes_only = loop.step < config.box_only_fraction * total_steps
        return _training_step(loop.model, batch, rng, config, boxes_only=boxes_only)

    def report(step: int, loss: float, parts: dict[str, float]) -> None:
        loop.state = {"images": step * images_per_step}
        running.append(loss)
        if step % 100 == 0:
            log({
                "step": step, "images": step * images_per_step, "minutes": f"{(time.time() - started) / 60:.2f}",
                "lr": f"{loop.scheduler.get_last_lr()[0]:.2e}", "loss": f"{np.mean(running[-100:]):.4f}",
                "focal": f"{parts['focal']:.4f}", "dice_loss": f"{parts['dice']:.4f}",
                "iou_loss": f"{parts['iou']:.4f}",
            })  # fmt: skip
        if step % config.eval_every == 0 or step == total_steps:
            scores = evaluate_prompted_segmentation(loop.unwrapped, held_out_images, held_out_masks)
            log(
                {"step": step, "images": step * images_per_step, **{k: f"{v:.4f}" for k, v in scores.items()}}
            )
            accelerator.print(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))

    def out_of_time() -> bool:
        minutes_up = max_minutes is not None and (time.time() - started) / 60 > max_minutes
        return minutes_up or loop.step == stop_at_step

    if not loop.run(iter(loader), loss_of, report, out_of_time):
        return loop.checkpoints.root
    final = output_dir / "final"
    if accelerator.is_main_process:
        with atomic_folder(
            final, overwrite=True
        ) as staging:  # an earlier export goes only once this one is whole
            loop.unwrapped.save_pretrained(staging)
    return final


__all__ = [
    "BASE_GEOMETRY",
    "EVAL_PROMPTS",
    "PretrainingConfig",
    "base_config",
    "evaluate_prompted_segmentation",
    "held_out_set",
    "initialise_from_scratch",
    "pixel_values_from_uint8",
    "predict",
    "pretrain_base",
    "read_stages",
    "record_stage",
]

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Pretraining the small promptable base model on the synthetic data engine (`msa-hf pretrain-base`).

The base is a plain `SamModel` (so `SamModel` and `SamAdapterModel` load it), trained fully, the way SAM
was: boxes and clicks simulated from the target, SAM's focal:Dice 20:1 loss on the best of three masks for
ambiguous single clicks, an IoU-head loss, and iterative rounds in which the previous low-resolution
logits come back as the mask prompt (`input_masks`) together with a click on the largest error.

Two transformers defaults make a from-scratch `SamModel` untrainable (docs/base-model.md):
vision weights start at std 1e-10 (`initializer_range`; also denormal floats on CPU), and the
random-Fourier positional matrix starts with std hidden/2 instead of SAM's 1.0. `initialise_from_scratch`
fixes both.

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
from transformers import SamConfig, SamModel

from msa_hf.base_model.data_engine import SyntheticConfig, SyntheticSegmentationDataset
from msa_hf.data.transforms import SamNormalize
from msa_hf.evaluation.decoding import MaskDecoding, decode_protocols
from msa_hf.evaluation.metrics.batched import box_fill_dice, dice_scores
from msa_hf.processing.mask_outputs import best_mask_logits, upsample_mask_logits
from msa_hf.processing.prompts import box_from_mask, error_click_round, sample_point_prompt
from msa_hf.training.config_checks import check_field_ranges
from msa_hf.training.losses import sam_loss
from msa_hf.training.state import save_training_state

# ~0.8 M parameters: ViT width 96, 4 blocks (two global), 128 px input, 16x16 embedding, 64x64 masks.
BASE_GEOMETRY: dict[str, dict[str, Any]] = {
    "vision_config": {
        "hidden_size": 96,
        "output_channels": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "image_size": 128,
        "patch_size": 8,
        "window_size": 8,
        "global_attn_indexes": [1, 3],
        "num_pos_feats": 32,
        "mlp_dim": 384,
        "initializer_range": 0.02,
    },
    "prompt_encoder_config": {
        "hidden_size": 64,
        "image_size": 128,
        "patch_size": 8,
        "mask_input_channels": 16,
    },
    "mask_decoder_config": {
        "hidden_size": 64,
        "mlp_dim": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "iou_head_hidden_dim": 64,
    },
}

EVAL_PROMPTS = ("box", "points1", "points3", "iterative")


def base_config() -> SamConfig:
    """The small base's `SamConfig`."""
    return SamConfig(**{key: dict(value) for key, value in BASE_GEOMETRY.items()})


@torch.no_grad()
def initialise_from_scratch(model: SamModel, seed: int = 0) -> SamModel:
    """Trainable from-scratch init: trunc-normal(0.02) vision linears, SAM's N(0, 1) positional matrix
    (tied between the image and prompt encoders)."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.vision_encoder.named_parameters():
        if parameter.ndim >= 2 and "pos_embed" not in name and "rel_pos" not in name:
            parameter.copy_(torch.randn(parameter.shape, generator=generator).clamp_(-2, 2) * 0.02)
    gaussian = torch.randn(model.shared_image_embedding.positional_embedding.shape, generator=generator)
    model.shared_image_embedding.positional_embedding.copy_(gaussian)
    model.prompt_encoder.shared_embedding.positional_embedding.copy_(gaussian)
    return model


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


def pixel_values_from_uint8(images: torch.Tensor) -> torch.Tensor:
    """`(B, H, W, 3)` uint8 -> `(B, 3, H, W)` SAM-normalised float."""
    return SamNormalize()(images.permute(0, 3, 1, 2).float() / 255.0)


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "images": torch.from_numpy(np.stack([i["image"] for i in items])),
        "masks": torch.from_numpy(np.stack([i["mask"] for i in items])),
    }


def _box_prompts(masks: torch.Tensor, rng: np.random.Generator, jitter: float) -> torch.Tensor:
    return torch.from_numpy(np.stack([box_from_mask(m.numpy(), jitter, rng) for m in masks]))[:, None]


def _click_prompts(masks: torch.Tensor, rng: np.random.Generator, count: int, interior_first: bool):
    prompts = [
        sample_point_prompt(m.numpy(), count, 0, rng, "interior" if interior_first else "uniform")
        for m in masks
    ]
    points = torch.from_numpy(np.stack([p.points for p in prompts]))[:, None]
    labels = torch.from_numpy(np.stack([p.labels for p in prompts]))[:, None]
    return points, labels


def predict(
    model: SamModel,
    pixel_values: torch.Tensor | None = None,
    image_embeddings: torch.Tensor | None = None,
    input_points: torch.Tensor | None = None,
    input_labels: torch.Tensor | None = None,
    input_boxes: torch.Tensor | None = None,
    input_masks: torch.Tensor | None = None,
    multimask: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One decoder pass. Returns `(low-res logits (B, M, h, w), iou (B, M), best low-res logits (B, 1, h, w))`,
    the best mask chosen by the IoU head when `multimask`."""
    outputs = model(
        pixel_values=pixel_values,
        image_embeddings=image_embeddings,
        input_points=input_points,
        input_labels=input_labels,
        input_boxes=input_boxes,
        input_masks=input_masks,
        multimask_output=multimask,
    )
    return outputs.pred_masks[:, 0], outputs.iou_scores[:, 0], best_mask_logits(outputs)


@torch.no_grad()
def evaluate_prompted_segmentation(
    model: SamModel, images: torch.Tensor, masks: torch.Tensor, batch_size: int = 50, seed: int = 1
) -> dict[str, float]:
    """Mean Dice at the input size by protocol (the evaluation core's), next to the box-fill baseline.

    Args:
        images: `(N, S, S, 3)` uint8; masks: `(N, S, S)` bool targets.
    Returns:
        `{"box", "points1", "points3", "iterative", "box_fill"}` -> mean Dice. Box: the tight box. points1:
        the most interior point, best of three masks by the IoU head. points3: the most interior point plus
        two uniform clicks (a prompt set of its own). iterative: points1, then two rounds of an error click
        plus the previous logits as mask prompt.
    """
    model.eval()
    rng = np.random.default_rng(seed)
    size = images.shape[1]
    device = model.device
    scores: dict[str, list[torch.Tensor]] = {name: [] for name in (*EVAL_PROMPTS, "box_fill")}
    decode = MaskDecoding(model)
    for start in range(0, len(images), batch_size):
        image_batch, mask_batch = images[start : start + batch_size], masks[start : start + batch_size]
        decode.set_image_embeddings(
            model.get_image_embeddings(pixel_values_from_uint8(image_batch.to(device)))
        )
        # the prompts are drawn in a fixed order from one generator, so the scores repeat exactly
        boxes = _box_prompts(mask_batch, rng, 0.0).to(device)
        points, labels = (t.to(device) for t in _click_prompts(mask_batch, rng, 1, interior_first=True))
        three = [sample_point_prompt(m.numpy(), 3, 0, rng, "interior") for m in mask_batch]
        rounds = decode_protocols(
            decode,
            ("box", "points1", "iterative"),
            {"input_boxes": boxes, "input_points": points, "input_labels": labels},
            mask_batch.float(),
            clicks=3,
        )
        three_points = {
            "input_points": torch.from_numpy(np.stack([p.points for p in three]))[:, None].to(device),
            "input_labels": torch.from_numpy(np.stack([p.labels for p in three]))[:, None].to(device),
        }
        rounds.update(decode_protocols(decode, ("points3",), three_points))
        for name in EVAL_PROMPTS:
            predicted = upsample_mask_logits(rounds[name][-1], size)[:, 0].cpu() > 0
            scores[name].append(dice_scores(predicted, mask_batch))
        scores["box_fill"].append(box_fill_dice(mask_batch))
    return {name: float(torch.cat(values).mean()) for name, values in scores.items()}


def held_out_set(
    count: int, seed: int = 1, config: SyntheticConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` held-out synthetic samples (a seed the training stream never uses): images, masks."""
    dataset = SyntheticSegmentationDataset(count, seed=seed + 1_000_003, config=config)
    items = [dataset[i] for i in range(count)]
    return _collate(items)["images"], _collate(items)["masks"]


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
        prompts["input_boxes"] = _box_prompts(masks.cpu(), rng, 0.1).to(device)
    else:
        count = 1 if rng.random() < 0.5 else int(rng.integers(2, 4))
        points, labels = _click_prompts(masks.cpu(), rng, count, interior_first=False)
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
    from tqdm.auto import tqdm

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
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    total_steps = config.total_images // (config.batch_size * accelerator.num_processes)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _learning_rate_factor(step, total_steps, config)
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    checkpoint = output_dir / "checkpoint"
    progress_file = output_dir / "progress.json"
    step = 0
    if (
        (checkpoint / "model.safetensors").exists()
        or any(checkpoint.glob("*.safetensors"))
        and progress_file.exists()
    ):
        accelerator.load_state(str(checkpoint))
        step = json.loads(progress_file.read_text())["step"]
        # the saved scheduler state carries the old base learning rate: a stage resumed with another
        # --learning-rate must run at the new one
        scheduler.scheduler.base_lrs = [config.learning_rate] * len(optimizer.param_groups)
        for group in optimizer.param_groups:
            group["initial_lr"] = config.learning_rate
            group["lr"] = config.learning_rate * _learning_rate_factor(step, total_steps, config)
    if accelerator.is_main_process:
        record_stage(output_dir, step, config)
    images_per_step = config.batch_size * accelerator.num_processes
    dataset = SyntheticSegmentationDataset(
        max(total_steps - step, 0) * images_per_step, seed=config.seed, start=step * images_per_step
    )
    loader = accelerator.prepare(
        torch.utils.data.DataLoader(
            dataset, batch_size=config.batch_size, num_workers=config.num_workers, collate_fn=_collate,
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
    rng = np.random.default_rng([config.seed, step])
    started = time.time()
    running: list[float] = []

    def save_checkpoint() -> None:
        save_training_state(accelerator, checkpoint)
        if accelerator.is_main_process:
            progress_file.write_text(json.dumps({"step": step, "images": step * images_per_step}))

    def log(row: dict[str, Any]) -> None:
        if accelerator.is_main_process:
            with metrics_file.open("a", newline="") as handle:
                csv.writer(handle).writerow([row.get(name, "") for name in fields])

    model.train()
    bar = tqdm(
        total=total_steps,
        initial=step,
        desc="pretrain base",
        unit="step",
        disable=not accelerator.is_main_process,
    )
    for batch in loader:
        loss, parts = _training_step(
            model, batch, rng, config, boxes_only=step < config.box_only_fraction * total_steps
        )
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        running.append(loss.detach().item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(running[-50:]):.3f}")
        if step % 100 == 0:
            log({
                "step": step, "images": step * images_per_step, "minutes": f"{(time.time() - started) / 60:.2f}",
                "lr": f"{scheduler.get_last_lr()[0]:.2e}", "loss": f"{np.mean(running[-100:]):.4f}",
                "focal": f"{float(parts['focal']):.4f}", "dice_loss": f"{float(parts['dice']):.4f}",
                "iou_loss": f"{float(parts['iou']):.4f}",
            })  # fmt: skip
        if step % config.eval_every == 0 or step == total_steps:
            scores = evaluate_prompted_segmentation(
                accelerator.unwrap_model(model), held_out_images, held_out_masks
            )
            model.train()
            log(
                {"step": step, "images": step * images_per_step, **{k: f"{v:.4f}" for k, v in scores.items()}}
            )
            accelerator.print(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        if step % config.checkpoint_every == 0:
            save_checkpoint()
        minutes_up = max_minutes is not None and (time.time() - started) / 60 > max_minutes
        if minutes_up or step == stop_at_step:
            save_checkpoint()
            bar.close()
            return output_dir / "checkpoint"
    bar.close()
    save_checkpoint()
    final = output_dir / "final"
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(final)
    return final

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Adapting a promptable base with MSA on a prepared dataset, and scoring it.

`train_adapters` runs the paper's recipe on binary-task rows (`to_binary_tasks` + `SamSegmentationTransform`
with points and boxes): each batch is prompted with its box or its clicks, sometimes followed by an
iterative round (an error click plus the previous logits as the mask prompt), and trained with SAM's
focal + Dice + IoU loss on whatever `model.is_trainable_parameter` allows (adapters, plus the decoder in
"full" mode). `evaluate_segmentation` scores Dice at the model's input size per structure, next to the
"fill the box" baseline.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from msa_hf.evaluation.decoding import PROTOCOLS, MaskDecoding, canonical_protocol, decode_protocols
from msa_hf.evaluation.metrics.batched import box_fill_dice, dice_scores
from msa_hf.modeling.volume_batches import flatten_volume_batch
from msa_hf.processing.mask_outputs import best_mask_logits, upsample_mask_logits
from msa_hf.processing.prompts import error_click_round
from msa_hf.training.config import AdapterTrainingConfig, TrainConfig
from msa_hf.training.losses import sam_loss


def _forward(
    model: Any, batch: dict[str, torch.Tensor], use_box: bool | None, extra: dict | None = None, **kwargs: Any
):
    prompts: dict[str, torch.Tensor] = {}
    if "text_embeddings" in batch:
        prompts["text_embeddings"] = batch["text_embeddings"]
    if use_box is None:  # text alone
        pass
    elif use_box:
        prompts["input_boxes"] = batch["input_boxes"]
    else:
        prompts["input_points"], prompts["input_labels"] = batch["input_points"], batch["input_labels"]
    prompts.update(extra or {})
    if kwargs.get("image_embeddings") is not None:  # encoded once for several prompt types
        return model(**prompts, **kwargs)
    kwargs.pop("image_embeddings", None)
    return model(pixel_values=batch["pixel_values"], **prompts, **kwargs)


def prompted_training_loss(
    model: Any,
    batch: dict[str, Any],
    rng: np.random.Generator,
    box_probability: float,
    iterative_probability: float,
    loss_weights: dict[str, float],
    unwrapped: Any = None,
    text_only_probability: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The MSA training loss of one batch (2-D rows or 3-D windows from the SAM transforms).

    The batch is prompted with its boxes (with probability `box_probability`, when it has boxes) or its
    clicks; with probability `iterative_probability` a gradient-free pass first predicts, a click goes on
    the largest error and the previous logits come back as the mask prompt (the paper's iterative
    training). Single clicks train the best of SAM's three masks. `model` may be DDP-wrapped: the graded
    pass goes through it, the gradient-free pass through `unwrapped`.

    Args:
        loss_weights: `sam_loss` weights, e.g. `{"focal_weight": 0, "dice_weight": 1, "bce_weight": 1,
            "iou_weight": 1}`.
        text_only_probability: with `batch["text_embeddings"]` (text-prompt training), the share of batches
            prompted by the text alone; the others get the text after their clicks or box.
    """
    batch = flatten_volume_batch(batch)
    size = batch["labels"].shape[-1]
    use_box = "input_boxes" in batch and bool(rng.random() < box_probability)
    multimask = not use_box and batch["input_points"].shape[2] == 1
    if "text_embeddings" in batch and rng.random() < text_only_probability:
        # text alone names the target; SAM's multimask output resolves click ambiguity, not this
        outputs = _forward(model, batch, None, multimask_output=False)
        return sam_loss(
            upsample_mask_logits(outputs.pred_masks, size),
            outputs.iou_scores[:, 0],
            batch["labels"],
            **loss_weights,
        )
    extra: dict[str, torch.Tensor] = {}
    if rng.random() < iterative_probability:
        with torch.no_grad():
            previous = best_mask_logits(
                _forward(unwrapped or model, batch, use_box, multimask_output=multimask)
            )
        prompts = {"input_boxes": batch["input_boxes"]} if use_box else {
            "input_points": batch["input_points"], "input_labels": batch["input_labels"]}  # fmt: skip
        extra = error_click_round(previous, batch["labels"][:, 0], prompts)
        multimask = False
    outputs = _forward(model, batch, use_box, extra, multimask_output=multimask)
    return sam_loss(
        upsample_mask_logits(outputs.pred_masks, size),
        outputs.iou_scores[:, 0],
        batch["labels"],
        **loss_weights,
    )


def train_adapters(model: Any, dataset: Any, config: TrainConfig | None = None) -> list[dict[str, float]]:
    """Train `model`'s trainable parameters for `config.steps` batches of `dataset` (cycled), with train.py's
    loop, loss and prompts, in memory: no run folder, no checkpoint, no validation.

    Args:
        model: a `SamAdapterModel` after `mark_only_adapters_as_trainable()` (or any SAM-like model whose
            `requires_grad` flags say what trains).
        dataset: binary-task rows with a `SamSegmentationTransform(prompts=PromptSampling(use_box=True))`
            set, so each row has points, labels and a box.
        config: the run's settings (`AdapterTrainingConfig()`'s short-run defaults when None); the fields
            about data and outputs are not used.
    Returns:
        Per-step history: loss, focal, dice (loss), iou (loss).
    """
    from msa_hf.training.datasets import loader_options
    from msa_hf.training.loop import TrainingLoop

    config = config or AdapterTrainingConfig()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    loop = TrainingLoop(model, config.loop_settings("train adapters"))
    loader = loop.prepare(
        torch.utils.data.DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=True,
            drop_last=True,
            **loader_options(config.num_workers, loop.accelerator.device, loop.accelerator.num_processes),
        )
    )
    history: list[dict[str, float]] = []

    def batches() -> Any:
        while True:
            yield from loader

    def loss_of(batch: dict[str, Any], micro: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return prompted_training_loss(
            loop.model, batch, rng, config.box_probability, config.iterative_probability, config.loss_weights,
            loop.unwrapped,
        )  # fmt: skip

    def record(step: int, loss: float, parts: dict[str, float]) -> None:
        history.append({"loss": loss, **parts})

    loop.run(batches(), loss_of, record)
    model.eval()
    return history


EVALUATION_PROMPTS = PROTOCOLS


@torch.no_grad()
def evaluate_segmentation(
    model: Any, dataset: Any, prompt: str = "box", batch_size: int = 16
) -> dict[str, Any]:
    """Mean Dice (threshold: logit > 0, i.e. sigmoid 0.5) at the model's input size, per structure.

    Args:
        dataset: binary-task rows with a deterministic `SamSegmentationTransform` (points and box), or a
            `VolumeWindowDataset` with a deterministic `SamVolumeTransform` (3-D; slices where the structure
            is absent are not scored).
        prompt: a protocol of `msa_hf.evaluation.decoding.PROTOCOLS`: "box", "points1" (the first click;
            best of three masks by the IoU head), "points3", "points10" or "iterative" (the first click and
            four error clicks; the last prediction is scored).
    Returns:
        `{"dice": mean over rows, "box_fill": the baseline's mean, "per_class": {name: (dice, box_fill, n)}}`.
    """
    return evaluate_prompts(model, dataset, (prompt,), batch_size)[prompt]


@torch.no_grad()
def evaluate_prompts(
    model: Any, dataset: Any, prompts: tuple[str, ...] = ("points1", "box"), batch_size: int = 16
) -> dict[str, dict[str, Any]]:
    """`evaluate_segmentation` for several protocols at once: each batch is encoded once and decoded per
    protocol by the evaluation core (`decode_protocols`). Returns `{prompt: evaluate_segmentation's result}`."""
    protocol_of = {prompt: canonical_protocol(prompt) for prompt in prompts}
    protocols = list(dict.fromkeys(protocol_of.values()))
    model.eval()
    decode = MaskDecoding(model)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    by_prompt: dict[str, dict[str, list[tuple[float, float]]]] = {p: defaultdict(list) for p in prompts}
    for batch in loader:
        batch = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        if batch["pixel_values"].ndim == 5 and "box" in protocols:
            raise ValueError("3-D windows have no box prompts (an empty slice has no box); use 'points1'.")
        batch = flatten_volume_batch(batch)
        # one encoding for all protocols ((V, C, D, H, W) windows: V * D slice embeddings, depth branch on)
        text = {"text_embeddings": batch["text_embeddings"]} if "text_embeddings" in batch else {}
        decode.set_image_embeddings(model.get_image_embeddings(batch["pixel_values"]), text)
        rounds_of = decode_protocols(decode, protocols, batch, batch["labels"][:, 0])
        targets = batch["labels"][:, 0] > 0.5
        present = targets.flatten(1).any(dim=1).cpu()  # 3-D: slices without the structure are not scored here
        fill = box_fill_dice(targets.cpu()[present])
        names = [name for name, keep in zip(batch["class_name"], present.tolist(), strict=True) if keep]
        for prompt, protocol in protocol_of.items():
            predicted = upsample_mask_logits(rounds_of[protocol][-1], targets.shape[-1])[:, 0] > 0
            dice = dice_scores(predicted, targets).cpu()[present]
            for name, d, f in zip(names, dice.tolist(), fill.tolist(), strict=True):
                by_prompt[prompt][name].append((d, f))
    return {prompt: _dice_summary(by_class) for prompt, by_class in by_prompt.items()}


def _dice_summary(by_class: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    rows = [value for values in by_class.values() for value in values]
    return {
        "dice": float(np.mean([d for d, _ in rows])),
        "box_fill": float(np.mean([f for _, f in rows])),
        "per_class": {
            name: (float(np.mean([d for d, _ in v])), float(np.mean([f for _, f in v])), len(v))
            for name, v in sorted(by_class.items())
        },
    }

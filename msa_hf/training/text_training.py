# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Training MSA with free-text prompts on a prepared dataset (paper section 2.3).

Each example is one slice and a description of one of its structures, or (with `union_probability`) of two
at once, supervised with the union of their masks, as the paper does. Descriptions come from the shipped
templates (`msa_hf.modeling.text_prompts.describe`) plus the user's own. The text encoder stays frozen unless it was
built trainable; what trains is what `model.mark_only_adapters_as_trainable()` leaves trainable, the text
projection included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msa_hf.data.tasks import Regions, structure_values, structures_present
from msa_hf.data.transforms import resize_and_pad
from msa_hf.inference.image_encoding import image_to_pixel_values
from msa_hf.modeling.text_prompts import TEXT_TEMPLATES, TextEncoder, random_description
from msa_hf.processing.mask_outputs import upsample_mask_logits
from msa_hf.training.losses import sam_loss


@dataclass
class TextTrainingConfig:
    """Hyper-parameters of `train_text_prompts`."""

    steps: int = 200
    batch_size: int = 8
    learning_rate: float = 1e-3
    union_probability: float = 0.2
    seed: int = 0
    templates: tuple[str, ...] = TEXT_TEMPLATES
    user_descriptions: dict[str, list[str]] = field(default_factory=dict)


def text_examples(
    dataset: Any, class_names: dict[int, str], regions: Regions | None = None
) -> list[tuple[np.ndarray, np.ndarray, str, list[int]]]:
    """`(image, label map, modality, structures present)` of every slice with at least one structure of
    `class_names` (`regions`: the dataset's structures made of several label values, `read_regions`)."""
    examples = []
    for row in dataset:
        present = structures_present([int(v) for v in row["labels_present"]], set(class_names), regions)
        if present:
            examples.append(
                (
                    np.asarray(row["image"]),
                    np.asarray(row["label"]),
                    str(row.get("modality") or "other"),
                    present,
                )
            )
    if not examples:
        raise ValueError("no slice holds a labelled structure: text prompts need labelled examples.")
    return examples


def _example_tensors(image: np.ndarray, label: np.ndarray, values: list[int], modality: str, size: int):
    pixels = image_to_pixel_values(image, size, modality)
    target = torch.from_numpy(np.isin(label, values).astype(np.float32))[None]
    _, target = resize_and_pad(torch.zeros(3, *label.shape), target, size)
    return pixels, (target > 0.5).float()


def sample_text_example(
    example: tuple[np.ndarray, np.ndarray, str, list[int]],
    class_names: dict[int, str],
    rng: np.random.Generator,
    config: TextTrainingConfig,
    size: int,
    regions: Regions | None = None,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """One text-prompted example: `(pixels (3, S, S), target (1, S, S), text)`. With `union_probability` the
    text names two of the slice's structures and the target is the union of their masks."""
    image, label, modality, present = example
    count = 2 if len(present) > 1 and rng.random() < config.union_probability else 1
    values = sorted(rng.choice(present, size=count, replace=False).tolist())
    names = [class_names[v] for v in values]
    text = random_description(names, modality, rng, config.templates, user=config.user_descriptions)
    label_values = [v for value in values for v in structure_values(value, regions)]
    pixels, target = _example_tensors(image, label, label_values, modality, size)
    return pixels, target, text


def train_text_prompts(
    model: Any,
    text_encoder: TextEncoder,
    dataset: Any,
    class_names: dict[int, str],
    config: TextTrainingConfig,
    regions: Regions | None = None,
) -> list[float]:
    """Train `model` (a `SamAdapterModel` with `text_embedding_dim`) on text-prompted examples of `dataset` (a
    prepared split); returns the loss per step. A frozen text encoder embeds each distinct description once."""
    from msa_hf.training.loop import LoopSettings, TrainingLoop, constant_rate

    size = model.config.vision_config.image_size
    examples = text_examples(dataset, class_names, regions)
    model.mark_only_adapters_as_trainable()
    settings = LoopSettings(
        steps=config.steps, learning_rate=config.learning_rate, weight_decay=0.01, max_grad_norm=None,
        description="train text prompts",
    )  # fmt: skip
    loop = TrainingLoop(model, settings, schedule=constant_rate)

    def batches() -> Any:  # each step's examples are a function of the step
        while True:
            rng = np.random.default_rng([config.seed, loop.step])
            drawn = [
                sample_text_example(examples[int(index)], class_names, rng, config, size, regions)
                for index in rng.choice(len(examples), size=config.batch_size)
            ]
            pixels, targets, texts = zip(*drawn, strict=True)
            yield torch.stack(pixels), torch.stack(targets), list(texts)

    def loss_of(batch: Any, micro: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pixels, targets, texts = batch
        device = loop.accelerator.device
        pixels, targets = pixels.to(device), targets.to(device)
        outputs = loop.model(
            pixel_values=pixels, text_embeddings=text_encoder.cached(texts).to(device), multimask_output=False
        )
        return sam_loss(
            upsample_mask_logits(outputs.pred_masks, size), outputs.iou_scores[:, 0], targets,
            focal_weight=0.0, bce_weight=1.0,
        )  # fmt: skip

    losses: list[float] = []
    loop.run(batches(), loss_of, lambda step, loss, parts: losses.append(loss))
    return losses


@torch.no_grad()
def text_prompted_mask(
    model: Any, text_encoder: TextEncoder, image: np.ndarray, text: str, modality: str = "other"
) -> np.ndarray:
    """The mask `(H, W)` bool that `text` asks for on `image` (its original size)."""
    from msa_hf.processing.mask_outputs import logits_to_original_mask
    from msa_hf.processing.prompts import resized_shape

    size = model.config.vision_config.image_size
    pixels = image_to_pixel_values(image, size, modality)[None]
    outputs = model.eval()(pixel_values=pixels, text_embeddings=text_encoder([text]), multimask_output=False)
    shape = np.asarray(image).shape[:2]
    return logits_to_original_mask(
        outputs.pred_masks[0, 0, 0], size, resized_shape(shape, size), shape
    ).numpy()


def read_descriptions(path: str) -> dict[str, list[str]]:
    """`{class name: [descriptions]}` from a JSON file, checked."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"text_descriptions {path}: cannot read it ({error}).") from error
    if not isinstance(content, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) and t.strip() for t in v) for v in content.values()
    ):
        raise ValueError(f'text_descriptions {path}: expected {{"class name": ["description", ...]}}.')
    return content


def batch_descriptions(
    batch: dict[str, Any], rng: np.random.Generator, user: dict[str, list[str]]
) -> list[str]:
    """One description per example, drawn from the shipped templates of its class and the user's own."""
    from msa_hf.modeling.text_prompts import random_description

    modalities = batch.get("modality") or ["other"] * len(batch["class_name"])
    return [
        random_description([name], modality, rng, user=user)
        for name, modality in zip(batch["class_name"], modalities, strict=True)
    ]

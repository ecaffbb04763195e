# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Self-distillation from the base inside the model.

Adapting to a few structures narrows a promptable model: it stops following prompts around anything else
(`make train` shows it on the held-out ventricles). With `distill_probability`, that share of training steps
is a *self-distillation* batch: the step's images, prompted anywhere (a random box or a random click, not
only on labelled structures), supervised by what the base itself predicts for that prompt. The teacher is
the model being trained with every MSA adapter switched off (`adapters_disabled`), so the large image encoder
is not copied; only a decoder that trains in full is kept as it was before training (a few million
parameters at ViT-B), because switching adapters off does not undo its updates.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from msa_hf.modeling.adapter_layers import adapters_disabled
from msa_hf.processing.mask_outputs import upsample_mask_logits

MIN_BOX_FRACTION = 0.1  # a random box spans at least this share of the image side


class BaseTeacher:
    """The base model inside `model` (a `SamAdapterModel`, unwrapped): adapters off, and the mask decoder as
    it was when the teacher was made (a frozen copy when the decoder trains, the model's own otherwise).
    Make it before the first optimiser step."""

    def __init__(self, model: Any) -> None:
        self.model = model
        trains_decoder = any(parameter.requires_grad for parameter in model.mask_decoder.parameters())
        self.decoder = copy.deepcopy(model.mask_decoder).requires_grad_(False) if trains_decoder else None

    @contextmanager
    def _base_decoder(self) -> Iterator[None]:
        if self.decoder is None:
            yield
            return
        trained, self.model.mask_decoder = self.model.mask_decoder, self.decoder
        try:
            yield
        finally:
            self.model.mask_decoder = trained

    @torch.no_grad()
    def __call__(self, pixel_values: torch.Tensor, **prompts: torch.Tensor) -> torch.Tensor:
        """The base's single-mask low-resolution logits `(B, 1, 1, h, w)` for `pixel_values` `(B, 3, S, S)`
        and `prompts` (`input_boxes`, or `input_points` + `input_labels`, in the model frame)."""
        with adapters_disabled(self.model), self._base_decoder():
            return self.model(pixel_values=pixel_values, multimask_output=False, **prompts).pred_masks


def random_prompts(
    rng: np.random.Generator, count: int, size: int, use_box: bool, device: torch.device
) -> dict[str, torch.Tensor]:
    """`count` prompts anywhere in an `size` x `size` model frame: boxes `(count, 1, 4)` of at least
    `MIN_BOX_FRACTION` of the side, or single positive clicks `(count, 1, 1, 2)` with labels `(count, 1, 1)`."""
    if use_box:
        low, last = MIN_BOX_FRACTION * size, size - 1
        x0, y0 = rng.uniform(0, last - low, 2 * count).reshape(2, count)
        x1 = x0 + rng.uniform(low, last - x0)
        y1 = y0 + rng.uniform(low, last - y0)
        boxes = np.stack([x0, y0, x1, y1], axis=1)
        return {"input_boxes": torch.tensor(boxes, dtype=torch.float32, device=device)[:, None]}
    points = rng.uniform(0, size - 1, (count, 1, 1, 2))
    return {
        "input_points": torch.tensor(points, dtype=torch.float32, device=device),
        "input_labels": torch.ones(count, 1, 1, dtype=torch.long, device=device),
    }


def distillation_batch(
    teacher: BaseTeacher, batch: dict[str, Any], rng: np.random.Generator, use_box: bool
) -> dict[str, Any]:
    """A self-distillation batch: `batch`'s images with random prompts, labelled by the teacher's masks
    (`(B, 1, S, S)` at the model's input size). Nothing of `batch`'s own labels or prompts is used."""
    pixel_values = batch["pixel_values"]
    if pixel_values.ndim != 4:
        raise ValueError(
            "self-distillation takes 2-D batches; the depth branch's windows are not supported yet."
        )
    size = pixel_values.shape[-1]
    prompts = random_prompts(rng, len(pixel_values), size, use_box, pixel_values.device)
    logits = teacher(pixel_values, **prompts)[:, 0]  # (B, 1, h, w)
    labels = (upsample_mask_logits(logits, size) > 0).float()
    return {"pixel_values": pixel_values, "labels": labels, **prompts}

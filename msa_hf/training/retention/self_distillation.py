# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Self-distillation from the base inside the model.

Adapting to a few structures narrows a promptable model: it stops following prompts around anything else
(`make train` shows it on the held-out ventricles). With `distill_probability`, that share of training steps
is a *self-distillation* batch: the step's images, prompted anywhere (a random box or a random click, not
only on labelled structures), supervised by what the base itself predicts for that prompt. The teacher is
the model being trained with every MSA adapter switched off (`running_as_base`), so the large image encoder
is not copied; only a decoder that trains in full is kept as it was before training (a few million
parameters at ViT-B), because switching adapters off does not undo its updates.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from msa_hf.modeling.adapter_layers import running_as_base
from msa_hf.modeling.base_fallback import best_scoring_masks
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

    @torch.no_grad()
    def __call__(
        self, pixel_values: torch.Tensor, multimask: bool = False, **prompts: torch.Tensor
    ) -> torch.Tensor:
        """The base's low-resolution logits `(B, P, 1, h, w)` for `pixel_values` `(B, 3, S, S)` and `prompts`
        (`input_boxes`, or `input_points` + `input_labels`, in the model frame; P prompts per image). With
        `multimask`, each prompt's mask is the best of SAM's three by the base's IoU head, as SAM answers a
        single click; otherwise the single-mask output."""
        with running_as_base(self.model, self.decoder):
            outputs = self.model(pixel_values=pixel_values, multimask_output=multimask, **prompts)
        if not multimask:
            return outputs.pred_masks
        return best_scoring_masks(outputs.pred_masks, outputs.iou_scores)[:, :, None]


def random_prompts(
    rng: np.random.Generator, count: int, size: int, use_box: bool, device: torch.device, per_row: int = 1
) -> dict[str, torch.Tensor]:
    """`count` x `per_row` prompts anywhere in an `size` x `size` model frame: boxes `(count, per_row, 4)` of
    at least `MIN_BOX_FRACTION` of the side, or single positive clicks `(count, per_row, 1, 2)` with labels
    `(count, per_row, 1)`."""
    total = count * per_row
    if use_box:
        low, last = MIN_BOX_FRACTION * size, size - 1
        x0, y0 = rng.uniform(0, last - low, 2 * total).reshape(2, total)
        x1 = x0 + rng.uniform(low, last - x0)
        y1 = y0 + rng.uniform(low, last - y0)
        boxes = np.stack([x0, y0, x1, y1], axis=1).reshape(count, per_row, 4)
        return {"input_boxes": torch.tensor(boxes, dtype=torch.float32, device=device)}
    points = rng.uniform(0, size - 1, (count, per_row, 1, 2))
    return {
        "input_points": torch.tensor(points, dtype=torch.float32, device=device),
        "input_labels": torch.ones(count, per_row, 1, dtype=torch.long, device=device),
    }


CANDIDATES = 8  # random prompts tried per image when distillation stays off the adapted structures


def distillation_batch(
    teacher: BaseTeacher, batch: dict[str, Any], rng: np.random.Generator, use_box: bool
) -> dict[str, Any]:
    """A self-distillation batch: `batch`'s images with random prompts, labelled by the teacher's masks
    (`(B, 1, S, S)` at the model's input size). Nothing of `batch`'s own labels or prompts is used. A random
    click is labelled as SAM answers one click, by the best of the base's three masks (a student trained on
    single clicks with the best of its own three is scored, and scores its masks, the same way); a random box
    by the base's single mask.

    When the batch carries `adapted` `(B, 1, S, S)` (the union of the structures being adapted to on each
    image: `TrainConfig.distill_outside_labels`), `CANDIDATES` prompts are tried per image and the one whose
    teacher mask overlaps those structures least is kept (a click on one of them counts as full overlap):
    the base is asked to stay itself around everything else, and never to undo the adaptation on the
    structures it is being taught."""
    pixel_values = batch["pixel_values"]
    if pixel_values.ndim != 4:
        raise ValueError(
            "self-distillation takes 2-D batches; the depth branch's windows are not supported yet."
        )
    size = pixel_values.shape[-1]
    adapted = batch.get("adapted")
    per_row = (
        1 if adapted is None else CANDIDATES
    )  # one random prompt per image, or candidates to choose from
    candidates = random_prompts(rng, len(pixel_values), size, use_box, pixel_values.device, per_row)
    logits = teacher(pixel_values, multimask=not use_box, **candidates)[:, :, 0]  # (B, K, h, w)
    masks = upsample_mask_logits(logits, size) > 0  # (B, K, S, S)
    chosen = torch.zeros(len(masks), dtype=torch.long, device=masks.device)  # (B,)
    if adapted is not None:
        structures = adapted.to(masks.device).bool()  # (B, 1, S, S)
        overlap = (masks & structures).flatten(2).sum(-1) / masks.flatten(2).sum(-1).clamp(min=1)  # (B, K)
        if not use_box:  # a click on an adapted structure asks about that structure: never chosen over others
            clicks = candidates["input_points"][:, :, 0].round().long().clamp(0, size - 1)  # (B, K, 2) x, y
            rows = torch.arange(len(clicks), device=clicks.device)[:, None]
            on_structure = structures[:, 0][rows, clicks[..., 1], clicks[..., 0]]
            overlap = torch.where(on_structure, 1.0 + overlap, overlap)
        chosen = overlap.argmin(dim=1)
    rows = torch.arange(len(chosen), device=chosen.device)
    prompts = {key: value[rows, chosen][:, None] for key, value in candidates.items()}
    labels = masks[rows, chosen][:, None].float()
    return {"pixel_values": pixel_values, "labels": labels, **prompts}

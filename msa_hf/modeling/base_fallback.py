# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The base answers where the adapted model ignores the prompt (`SamAdapterConfig.base_fallback`).

Adapting SAM to a few structures narrows it: asked about anything else, the adapted model answers with a
structure it was adapted to or with nothing, wherever the prompt was. Such an answer does not follow its own
prompt: the click it was asked about lies outside the mask, or most of the mask lies outside the box. On the
adapted structures the adapted answer follows the prompt. So a model with `base_fallback` decodes every
prompt twice, with the adapted model and with the base inside it (adapters off, the base's own mask decoder
kept as `base_mask_decoder`), and keeps the adapted answer where it follows the prompt, the base's elsewhere.
On the embedded data this keeps the held-out structure at its zero-shot Dice and most of the adapted
structures' gain (docs/retention.md).

The rule, per image and prompt, on the adapted answer's best-scoring mask (low resolution, in the frame of
the model's input): a positive click inside it, and with a box at least `BOX_SHARE` of its pixels inside the
box; an empty mask follows no prompt. One positive click inside is enough and negative clicks are not
judged: later clicks of an interactive session are corrections of the answer, which the adapted model
follows on its structures as well as the base does, and judging them sent corrected answers on adapted
structures to the base (iterative Dice below zero-shot on the embedded data). Padding points (label -10)
and points without a label (-1) do not count.
"""

from __future__ import annotations

import threading

import torch

BOX_SHARE = 0.9  # an answer to a box lies at least this share inside it
POSITIVE = 1

# the base's image embedding is the encoder with its adapters switched off (module state): one switch at a
# time, so that a concurrent encoding of the same model (a demo serving several users) never sees it half-way
ADAPTER_SWITCH = threading.Lock()


def has_base_fallback(model: object) -> bool:
    """Whether `model` is configured to answer with its base where the adapted answer ignores the prompt
    (`config.base_fallback`). Read from the config, not the module's mode (`falls_back_to_base` also asks for
    eval mode): a decoding path made while the model trains must not skip the fallback once it is in eval."""
    return bool(getattr(getattr(model, "config", None), "base_fallback", False))


def best_scoring_masks(pred_masks: torch.Tensor, iou_scores: torch.Tensor) -> torch.Tensor:
    """Per image and prompt, the mask the IoU head ranks highest: `(B, P, M, h, w)`, `(B, P, M)` -> `(B, P, h, w)`
    (how SAM answers a single click)."""
    height, width = pred_masks.shape[-2:]
    index = iou_scores.argmax(dim=-1)[..., None, None, None].expand(-1, -1, 1, height, width)
    return torch.gather(pred_masks, 2, index)[:, :, 0]


def clicks_inside(masks: torch.Tensor, image_size: int, input_points: torch.Tensor) -> torch.Tensor:
    """Whether each click lies inside its prompt's mask: `(B, P, h, w)` bool low-resolution masks covering an
    `image_size` input frame, `(B, P, N, 2)` (x, y) clicks in that frame -> `(B, P, N)` bool (the low-resolution
    pixel under the click)."""
    height, width = masks.shape[-2:]
    x = (input_points[..., 0] * width / image_size).long().clamp(0, width - 1)  # (B, P, N)
    y = (input_points[..., 1] * height / image_size).long().clamp(0, height - 1)
    return torch.gather(masks.flatten(2), 2, y * width + x)


def follows_prompt(
    pred_masks: torch.Tensor,
    iou_scores: torch.Tensor,
    image_size: int,
    input_points: torch.Tensor | None = None,
    input_labels: torch.Tensor | None = None,
    input_boxes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Whether each prompt's answer follows the prompt (see the module docstring).

    Args:
        pred_masks: `(B, P, M, h, w)` low-resolution mask logits (SAM's `pred_masks`).
        iou_scores: `(B, P, M)`; the best-scoring of the M masks is judged.
        image_size: the side of the model's input frame the prompts are given in (`h` covers it).
        input_points: `(B, P, N, 2)` (x, y) in that frame; input_labels `(B, P, N)` (1: positive).
        input_boxes: `(B, P, 4)` x0, y0, x1, y1 in that frame.
    Returns:
        `(B, P)` bool.
    """
    height, width = pred_masks.shape[-2:]
    mask = best_scoring_masks(pred_masks, iou_scores) > 0  # (B, P, h, w)
    follows = mask.flatten(2).any(dim=-1)  # an empty answer follows nothing
    if input_points is not None:
        labels = input_labels if input_labels is not None else torch.ones_like(input_points[..., 0]).long()
        inside = clicks_inside(mask, image_size, input_points)
        positive = labels == POSITIVE
        follows &= (positive & inside).any(dim=-1) | ~positive.any(
            dim=-1
        )  # no positive click: the box decides
    if input_boxes is not None:
        # low-resolution pixel centres in the input frame
        columns = (torch.arange(width, device=mask.device) + 0.5) * image_size / width
        rows = (torch.arange(height, device=mask.device) + 0.5) * image_size / height
        box = input_boxes[..., None].to(columns.dtype)  # (B, P, 4, 1)
        in_columns = (columns >= box[:, :, 0]) & (columns <= box[:, :, 2])  # (B, P, w)
        in_rows = (rows >= box[:, :, 1]) & (rows <= box[:, :, 3])  # (B, P, h)
        in_box = in_rows[..., :, None] & in_columns[..., None, :]  # (B, P, h, w)
        area = mask.flatten(2).sum(dim=-1)
        follows &= (mask & in_box).flatten(2).sum(dim=-1) >= BOX_SHARE * area
    return follows


def choose_answers(adapted: torch.Tensor, base: torch.Tensor, follows: torch.Tensor) -> torch.Tensor:
    """`adapted` where `follows` `(B, P)`, else `base`: two tensors `(B, P, ...)` of the same shape."""
    return torch.where(follows.view(*follows.shape, *([1] * (adapted.ndim - 2))), adapted, base)


__all__ = [
    "BOX_SHARE",
    "best_scoring_masks",
    "choose_answers",
    "clicks_inside",
    "follows_prompt",
    "has_base_fallback",
]

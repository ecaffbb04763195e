# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Batched torch Dice for training-time validation (the per-case numpy metrics are in `segmentation.py`)."""

from __future__ import annotations

import torch


def dice_scores(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-example Dice of boolean masks `(B, H, W)`; 1.0 when both are empty."""
    predicted, targets = predicted.flatten(1).bool(), targets.flatten(1).bool()
    intersection = (predicted & targets).sum(1).float()
    total = (predicted.sum(1) + targets.sum(1)).float()
    return torch.where(total > 0, 2 * intersection / total.clamp(min=1), torch.ones_like(total))


def box_fill_masks(masks: torch.Tensor) -> torch.Tensor:
    """The trivial baseline's prediction: each target's whole (tight) box, `(B, H, W)` bool (empty targets:
    empty)."""
    filled = torch.zeros_like(masks, dtype=torch.bool)
    for index, mask in enumerate(masks):
        rows, cols = torch.nonzero(mask, as_tuple=True)
        if len(rows):
            filled[index, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    return filled


def box_fill_dice(masks: torch.Tensor) -> torch.Tensor:
    """The trivial baseline: predict the whole (tight) box of the target, `(B,)` Dice."""
    return dice_scores(box_fill_masks(masks), masks)

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Segmentation losses in SAM's recipe: focal + Dice on mask logits, MSE on the IoU head.

All take logits and targets of the same spatial size and return a per-mask loss `(B, M)` so a caller can
pick the best of SAM's three masks per example (SAM trains only the best one on ambiguous prompts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss averaged over pixels.

    Args:
        logits: `(B, M, H, W)` mask logits; targets: `(B, M, H, W)` or `(B, 1, H, W)` in {0, 1}.
    Returns:
        `(B, M)`.
    """
    targets = targets.expand_as(logits).float()
    probabilities = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probabilities * targets + (1 - probabilities) * (1 - targets)
    loss = cross_entropy * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss `1 - (2|p t| + s) / (|p| + |t| + s)` on sigmoid probabilities, `(B, M)`."""
    targets = targets.expand_as(logits).float()
    probabilities = logits.sigmoid().flatten(2)
    targets = targets.flatten(2)
    intersection = (probabilities * targets).sum(-1)
    return 1 - (2 * intersection + smooth) / (probabilities.sum(-1) + targets.sum(-1) + smooth)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded masks (logit > 0) with the targets, `(B, M)`; 1.0 when both are empty."""
    predicted = (logits > 0).flatten(2)
    targets = targets.expand_as(logits).bool().flatten(2)
    intersection = (predicted & targets).sum(-1).float()
    union = (predicted | targets).sum(-1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


def sam_loss(
    logits: torch.Tensor,
    iou_predictions: torch.Tensor,
    targets: torch.Tensor,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    iou_weight: float = 1.0,
    bce_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SAM's training loss with best-of-M selection (focal:Dice 20:1 by default; `bce_weight` adds binary
    cross-entropy, e.g. `focal_weight=0, bce_weight=1` for MSA's Dice + BCE).

    Args:
        logits: `(B, M, H, W)` mask logits (M = 1 or 3), already at the targets' size.
        iou_predictions: `(B, M)` the IoU head's outputs.
        targets: `(B, 1, H, W)` binary masks.
    Returns:
        The scalar loss (mean over the batch of the best mask's focal/Dice loss, plus the IoU head's MSE on
        every mask) and its parts for logging.
    """
    focal = sigmoid_focal_loss(logits, targets)
    dice = dice_loss(logits, targets)
    bce = F.binary_cross_entropy_with_logits(logits, targets.expand_as(logits).float(), reduction="none")
    bce = bce.flatten(2).mean(-1)
    per_mask = focal_weight * focal + dice_weight * dice + bce_weight * bce
    best = per_mask.argmin(dim=1, keepdim=True)
    mask_loss = per_mask.gather(1, best).mean()
    iou_loss = F.mse_loss(iou_predictions, mask_iou(logits.detach(), targets))
    parts = {
        "focal": focal.gather(1, best).mean().detach(),
        "dice": dice.gather(1, best).mean().detach(),
        "bce": bce.gather(1, best).mean().detach(),
        "iou": iou_loss.detach(),
    }
    return mask_loss + iou_weight * iou_loss, parts

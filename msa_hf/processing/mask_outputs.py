# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Reading SAM's decoder outputs: upsampling low-resolution mask logits, picking the best of M masks."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# the rule lives with the model code (a pushed model carries it without this package)
from msa_hf.modeling.base_fallback import best_scoring_masks


def upsample_mask_logits(pred_masks: torch.Tensor, size: int) -> torch.Tensor:
    """`(B, P=1, M, h, w)` or `(B, M, h, w)` low-resolution logits -> `(B, M, size, size)` (bilinear)."""
    if pred_masks.ndim == 5:
        pred_masks = pred_masks[:, 0]
    return F.interpolate(pred_masks, size=(size, size), mode="bilinear", align_corners=False)


def best_mask_logits(outputs: Any) -> torch.Tensor:
    """`(B, 1, h, w)`: per example, the mask (of the first prompt) that the IoU head ranks highest."""
    return best_scoring_masks(outputs.pred_masks[:, :1], outputs.iou_scores[:, :1])


def logits_to_original_logits(
    logits: torch.Tensor, image_size: int, reshaped_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """SamProcessor's post-processing for one mask, before the threshold: `(h, w)` low-res logits -> upsample
    to the model's `image_size`, crop the padding to `reshaped_size`, resize to `original_size`.

    Returns `(H, W)` float32 logits on the input's device (a probability map is their sigmoid).
    """
    upsampled = F.interpolate(
        logits[None, None].float(), size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    height, width = (int(v) for v in reshaped_size)
    restored = F.interpolate(
        upsampled[..., :height, :width],
        size=tuple(int(v) for v in original_size),
        mode="bilinear",
        align_corners=False,
    )
    return restored[0, 0]


def logits_to_original_mask(
    logits: torch.Tensor, image_size: int, reshaped_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """`logits_to_original_logits` thresholded at 0: a `(H, W)` bool tensor on the logits' device."""
    return logits_to_original_logits(logits, image_size, reshaped_size, original_size) > 0

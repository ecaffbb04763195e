# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Prompt simulation: clicks and boxes drawn from a mask, and iterative error clicks (MSA paper, section 3).

Conventions (SAM's, and the model's):
- Coordinates are `(x, y)` = (column, row) in pixels of the frame the mask is in. Sample on the mask in
  the model's input frame (after resize/pad, see `msa_hf.data.transforms.resize_and_pad`), or map original
  pixels there with `to_model_frame`.
- Point labels: 1 positive (foreground), 0 negative (background), -10 padding (no point; SAM's
  prompt encoder gives it a zero embedding).
- Boxes: `(x0, y0, x1, y1)`, inclusive pixel extents of the mask (SAM's XYXY).

Functions take numpy or torch masks `(H, W)` and a `numpy.random.Generator` so a data loader worker can
own its stream; they return numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import ndimage

from msa_hf.processing.mask_outputs import upsample_mask_logits

PADDING_LABEL = -10
ClickStrategy = Literal["uniform", "interior"]


def _as_bool_mask(mask: np.ndarray | torch.Tensor, name: str = "mask") -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W); got shape {mask.shape}. Pass one slice at a time.")
    return mask.astype(bool)


def most_interior_point(region: np.ndarray | torch.Tensor) -> np.ndarray:
    """The pixel of `region` farthest from its boundary (Euclidean distance transform), as `(x, y)`.

    The image border counts as boundary, so a click is never placed on the frame edge when the region has
    an interior. Ties go to the first pixel in row-major order (deterministic).

    Args:
        region: `(H, W)` mask; must contain at least one pixel.
    Returns:
        `(2,)` int64 array `(x, y)`.
    """
    region = _as_bool_mask(region, "region")
    if not region.any():
        raise ValueError("most_interior_point: the region is empty; there is no pixel to click.")
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return np.array([col, row], dtype=np.int64)


def sample_positive_clicks(
    mask: np.ndarray | torch.Tensor,
    num_clicks: int,
    rng: np.random.Generator,
    strategy: ClickStrategy = "uniform",
) -> np.ndarray:
    """`num_clicks` foreground clicks, `(num_clicks, 2)` int64 `(x, y)`.

    `uniform` draws pixels of the mask uniformly (with replacement only when the mask has fewer pixels
    than clicks); `interior` puts the first click at the most interior point and draws the rest uniformly.
    """
    mask = _as_bool_mask(mask)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError(
            "sample_positive_clicks: the mask is empty. Skip empty targets (msa_hf.data.to_binary_tasks "
            "does) or use a negative-only prompt."
        )
    if strategy not in ("uniform", "interior"):
        raise ValueError(f"unknown click strategy {strategy!r}; use 'uniform' or 'interior'.")
    clicks = []
    if strategy == "interior" and num_clicks > 0:
        clicks.append(most_interior_point(mask))
    remaining = num_clicks - len(clicks)
    if remaining > 0:
        picks = rng.choice(rows.size, size=remaining, replace=rows.size < remaining)
        clicks.extend(np.stack([cols[picks], rows[picks]], axis=1))
    return np.asarray(clicks, dtype=np.int64).reshape(num_clicks, 2)


def sample_negative_clicks(
    mask: np.ndarray | torch.Tensor,
    num_clicks: int,
    rng: np.random.Generator,
    valid_region: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """`num_clicks` background clicks drawn uniformly outside the mask, `(num_clicks, 2)` int64 `(x, y)`.

    Args:
        valid_region: optional `(H, W)` mask of where a click may go (e.g. the image, not its padding).
    """
    background = ~_as_bool_mask(mask)
    if valid_region is not None:
        background &= _as_bool_mask(valid_region, "valid_region")
    rows, cols = np.nonzero(background)
    if rows.size == 0 and num_clicks > 0:
        raise ValueError("sample_negative_clicks: the mask covers the whole image; no background to click.")
    picks = rng.choice(rows.size, size=num_clicks, replace=rows.size < num_clicks) if num_clicks else []
    return np.stack([cols[picks], rows[picks]], axis=1).astype(np.int64).reshape(num_clicks, 2)


@dataclass
class PointPrompt:
    """Clicks for one target: `points` `(N, 2)` float32 `(x, y)` and `labels` `(N,)` int64 (1/0/-10)."""

    points: np.ndarray
    labels: np.ndarray


def sample_point_prompt(
    mask: np.ndarray | torch.Tensor,
    num_positive: int,
    num_negative: int,
    rng: np.random.Generator,
    strategy: ClickStrategy = "uniform",
    valid_region: np.ndarray | torch.Tensor | None = None,
) -> PointPrompt:
    """Positive clicks first, then negative ones: the paper's 1-, 3- and 10-point protocols are
    `num_positive` 1/3/10 with `num_negative=0`."""
    positive = sample_positive_clicks(mask, num_positive, rng, strategy)
    negative = sample_negative_clicks(mask, num_negative, rng, valid_region)
    return PointPrompt(
        points=np.concatenate([positive, negative]).astype(np.float32),
        labels=np.concatenate([np.ones(num_positive), np.zeros(num_negative)]).astype(np.int64),
    )


def box_from_mask(
    mask: np.ndarray | torch.Tensor,
    jitter: float = 0.0,
    rng: np.random.Generator | None = None,
    max_jitter_pixels: float = 20.0,
) -> np.ndarray:
    """The mask's bounding box `(x0, y0, x1, y1)` float32, optionally jittered.

    Jitter follows SAM's training recipe: each coordinate moves by Gaussian noise with standard deviation
    `jitter` x the box side, capped at `max_jitter_pixels`; the box stays inside the image and keeps
    `x0 <= x1`, `y0 <= y1`.
    """
    mask = _as_bool_mask(mask)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("box_from_mask: the mask is empty; an empty target has no box.")
    box = np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.float64)
    if jitter > 0:
        if rng is None:
            raise ValueError("box_from_mask: pass rng when jitter > 0.")
        width, height = box[2] - box[0] + 1, box[3] - box[1] + 1
        scale = np.array([width, height, width, height]) * jitter
        noise = np.clip(rng.normal(0.0, 1.0, size=4) * scale, -max_jitter_pixels, max_jitter_pixels)
        box = box + noise
        h, w = mask.shape
        box[[0, 2]] = np.clip(box[[0, 2]], 0, w - 1)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, h - 1)
        box = np.array([min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])])
    return box.astype(np.float32)


@dataclass
class ErrorClick:
    """The next simulated click: `point` `(2,)` `(x, y)`, `label` 1 (missed foreground) or 0 (false
    positive), and the size in pixels of the error region it corrects."""

    point: np.ndarray
    label: int
    region_size: int


def sample_error_click(
    prediction: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor
) -> ErrorClick | None:
    """Where a user would click next: the most interior point of the largest error region.

    Error regions are the 4-connected components of the false negatives (target not predicted) and of the
    false positives (predicted, not target). The click is positive on a false-negative region and
    negative on a false-positive one. Returns `None` when the prediction equals the target.

    Args:
        prediction: `(H, W)` boolean (or 0/1) predicted mask, already thresholded.
        target: `(H, W)` ground-truth mask, same frame.
    """
    prediction = _as_bool_mask(prediction, "prediction")
    target = _as_bool_mask(target, "target")
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} must have the same shape.")
    best: tuple[int, np.ndarray, int] | None = None
    for errors, label in ((target & ~prediction, 1), (prediction & ~target, 0)):
        components, count = ndimage.label(errors)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())[1:]
        largest = int(np.argmax(sizes))
        if best is None or sizes[largest] > best[0]:
            best = (int(sizes[largest]), components == largest + 1, label)
    if best is None:
        return None
    size, region, label = best
    return ErrorClick(point=most_interior_point(region), label=label, region_size=size)


def next_error_clicks(
    pred_masks: torch.Tensor, targets: torch.Tensor, threshold: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched `sample_error_click` for a training or evaluation loop.

    Args:
        pred_masks: `(B, H, W)` logits (thresholded at `threshold`) or booleans.
        targets: `(B, H, W)` ground truth in the same frame.
    Returns:
        points `(B, 1, 2)` float32 `(x, y)` and labels `(B, 1)` int64; label -10 (padding) where the
        prediction is already perfect, so the extra point changes nothing.
    """
    if pred_masks.shape != targets.shape or pred_masks.ndim != 3:
        raise ValueError(
            f"pred_masks {tuple(pred_masks.shape)} and targets {tuple(targets.shape)}: need (B,H,W)."
        )
    predicted = pred_masks > threshold if pred_masks.dtype != torch.bool else pred_masks
    points = torch.zeros(pred_masks.shape[0], 1, 2)
    labels = torch.full((pred_masks.shape[0], 1), PADDING_LABEL, dtype=torch.int64)
    for index, (prediction, target) in enumerate(zip(predicted.cpu(), targets.cpu() > 0.5, strict=True)):
        click = sample_error_click(prediction, target)
        if click is not None:
            points[index, 0] = torch.from_numpy(click.point.astype(np.float32))
            labels[index, 0] = click.label
    return points.to(pred_masks.device), labels.to(pred_masks.device)


def error_click_round(
    previous_logits: torch.Tensor, targets: torch.Tensor, prompts: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The prompts of SAM's next interactive round: one click on the largest error of the previous
    prediction (positive on a miss, negative on a false positive) added to the clicks so far, and the
    previous logits given back as the mask prompt. A box stays; a box-only prompt gets its first click.

    Args:
        previous_logits: `(B, 1, h, w)` low-resolution logits of the previous round.
        targets: `(B, S, S)` ground truth at the model's input size.
        prompts: the previous round's `input_points (B, 1, N, 2)` / `input_labels (B, 1, N)` and/or
            `input_boxes (B, 1, 4)`.
    Returns:
        a new prompt dict with `input_points (B, 1, N+1, 2)`, `input_labels (B, 1, N+1)` and `input_masks`.
    """
    upsampled = upsample_mask_logits(previous_logits, targets.shape[-1])[:, 0]
    points, labels = next_error_clicks(upsampled, targets)
    device = previous_logits.device
    points, labels = points[:, None].to(device), labels[:, None].to(device)
    out = dict(prompts)
    if "input_points" in prompts:
        out["input_points"], out["input_labels"] = append_clicks(
            prompts["input_points"], prompts["input_labels"], points, labels
        )
    else:
        out["input_points"], out["input_labels"] = points, labels
    out["input_masks"] = previous_logits
    return out


def append_clicks(
    input_points: torch.Tensor, input_labels: torch.Tensor, points: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add one click per prompt to SAM-style prompt tensors.

    Args:
        input_points: `(B, P, N, 2)`; input_labels: `(B, P, N)`.
        points: `(B, P, 2)` or `(B, 2)`-per-prompt clicks; labels: `(B, P)`.
    Returns:
        `(B, P, N+1, 2)` points and `(B, P, N+1)` labels.
    """
    points = points.to(input_points).reshape(input_points.shape[0], input_points.shape[1], 1, 2)
    labels = labels.to(input_labels).reshape(input_labels.shape[0], input_labels.shape[1], 1)
    return torch.cat([input_points, points], dim=2), torch.cat([input_labels, labels], dim=2)


def to_model_frame(
    coordinates: np.ndarray | torch.Tensor, original_size: tuple[int, int], image_size: int
) -> np.ndarray | torch.Tensor:
    """Map `(..., 2)` `(x, y)` pixel coordinates of an `original_size=(H, W)` image into the model's
    `image_size` input frame (longest side resized to `image_size`, then padded bottom/right), the same
    mapping as `SamProcessor`."""
    new_height, new_width = resized_shape(original_size, image_size)
    scale = [new_width / original_size[1], new_height / original_size[0]]
    if isinstance(coordinates, torch.Tensor):
        return coordinates * torch.tensor(scale, dtype=coordinates.dtype, device=coordinates.device)
    return np.asarray(coordinates, dtype=np.float64) * np.array(scale)


def to_original_frame(
    coordinates: np.ndarray | torch.Tensor, original_size: tuple[int, int], image_size: int
) -> np.ndarray | torch.Tensor:
    """Inverse of `to_model_frame`."""
    new_height, new_width = resized_shape(original_size, image_size)
    scale = [original_size[1] / new_width, original_size[0] / new_height]
    if isinstance(coordinates, torch.Tensor):
        return coordinates * torch.tensor(scale, dtype=coordinates.dtype, device=coordinates.device)
    return np.asarray(coordinates, dtype=np.float64) * np.array(scale)


def resized_shape(original_size: tuple[int, int], image_size: int) -> tuple[int, int]:
    """`(H', W')` after resizing the longest side of `original_size` to `image_size` (SamProcessor's
    rounding: `int(side * scale + 0.5)`)."""
    height, width = original_size
    scale = image_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)

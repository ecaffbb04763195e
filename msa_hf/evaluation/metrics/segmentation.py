# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Segmentation metrics in numpy: Dice, IoU, HD95 and normalised surface Dice with voxel spacing.

Conventions (docs/method.md, "Evaluation"):
- Inputs are boolean masks (threshold logits at 0 / probabilities at 0.5 before calling).
- Dice and IoU of an empty prediction on an empty target are undefined: `None`, counted apart by
  `summarise`, never scored 1.0 (which inflates means on slices without the organ).
- HD95 and NSD use surface distances in millimetres with the given `spacing` (rows, cols[, slices]); with
  one side empty HD95 is `inf` and NSD 0, with both empty both are `None`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def _bool(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool:
        if np.issubdtype(mask.dtype, np.floating) and ((mask > 0) & (mask < 1)).any():
            raise ValueError(
                "metrics take binary masks; threshold probabilities (p > 0.5) or logits (> 0) first."
            )
        mask = mask.astype(bool)
    return mask


def dice(prediction: np.ndarray, target: np.ndarray) -> float | None:
    """`2|P & T| / (|P| + |T|)`; None when both are empty."""
    prediction, target = _bool(prediction), _bool(target)
    total = int(prediction.sum()) + int(target.sum())
    if total == 0:
        return None
    return 2.0 * int((prediction & target).sum()) / total


def iou(prediction: np.ndarray, target: np.ndarray) -> float | None:
    """`|P & T| / |P | T|`; None when both are empty."""
    prediction, target = _bool(prediction), _bool(target)
    union = int((prediction | target).sum())
    if union == 0:
        return None
    return int((prediction & target).sum()) / union


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels: the mask minus its erosion (full connectivity)."""
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(
    prediction: np.ndarray, target: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each surface voxel of `prediction` to `target`'s surface, and back.

    Both masks must be non-empty.
    """
    prediction, target = _bool(prediction), _bool(target)
    if len(spacing) != prediction.ndim:
        raise ValueError(
            f"spacing {tuple(spacing)} must give one value per axis of masks shaped {prediction.shape}."
        )
    surface_p, surface_t = _surface(prediction), _surface(target)
    to_target = ndimage.distance_transform_edt(~surface_t, sampling=spacing)
    to_prediction = ndimage.distance_transform_edt(~surface_p, sampling=spacing)
    return to_target[surface_p], to_prediction[surface_t]


def hd95(prediction: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None) -> float | None:
    """95th percentile of the symmetric surface distances in mm (spacing default: 1 per axis)."""
    prediction, target = _bool(prediction), _bool(target)
    spacing = spacing if spacing is not None else [1.0] * prediction.ndim
    if not prediction.any() and not target.any():
        return None
    if not prediction.any() or not target.any():
        return float("inf")
    forward, backward = surface_distances(prediction, target, spacing)
    return float(np.percentile(np.concatenate([forward, backward]), 95))


def normalized_surface_dice(
    prediction: np.ndarray, target: np.ndarray, tolerance_mm: float, spacing: Sequence[float] | None = None
) -> float | None:
    """The share of both surfaces lying within `tolerance_mm` of the other (NSD, Nikolov et al. 2021)."""
    prediction, target = _bool(prediction), _bool(target)
    spacing = spacing if spacing is not None else [1.0] * prediction.ndim
    if not prediction.any() and not target.any():
        return None
    if not prediction.any() or not target.any():
        return 0.0
    forward, backward = surface_distances(prediction, target, spacing)
    return float(
        ((forward <= tolerance_mm).sum() + (backward <= tolerance_mm).sum()) / (len(forward) + len(backward))
    )


@dataclass
class MetricSummary:
    """Mean of the defined values, how many were defined, and how many were empty-on-empty."""

    mean: float
    count: int
    empty_on_empty: int


def summarise(values: Iterable[float | None]) -> MetricSummary:
    """Average the defined values (None = empty prediction on empty target, counted apart)."""
    values = list(values)
    defined = [v for v in values if v is not None]
    return MetricSummary(
        mean=float(np.mean(defined)) if defined else float("nan"),
        count=len(defined),
        empty_on_empty=len(values) - len(defined),
    )

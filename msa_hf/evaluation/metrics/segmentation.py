# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Segmentation metrics in numpy: Dice, IoU, HD95 and normalised surface Dice with voxel spacing.

Conventions (docs/method.md, "Evaluation"):
- Inputs are boolean masks (threshold logits at 0 / probabilities at 0.5 before calling).
- Dice and IoU of an empty prediction on an empty target are undefined: `None`, counted apart by
  `summarise`, never scored 1.0 (which inflates means on slices without the organ).
- HD95 and NSD follow DeepMind's `surface-distance` (the convention of the NSD paper, FLARE and MedSAM):
  the surface is made of surface elements between voxel centres, each with its area in mm^2 (contour
  length in mm in 2-D) at the given `spacing` (one value per axis, in the masks' axis order); HD95 is the
  larger of the two one-way, area-weighted 95th percentiles; NSD is the area share of both surfaces within
  the tolerance. With one side empty HD95 is `inf` and NSD 0; with both empty both are `None` (the
  reference library gives inf and NaN there; we count such cases apart, as for Dice).
- A voxel grid whose axes are not orthogonal (a CT series acquired with the gantry tilted steps each slice
  sideways) is measured with its axes' vectors (`axes`): surface distances are then the physical distances
  between surface elements (a k-d tree in world coordinates), where the spacings alone would measure the grid
  as if upright (a diagonal step 16% long or 19% short at a 20 degree tilt). Surfel sizes stay those of the
  axes' lengths.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from msa_hf.evaluation.metrics.surface_elements import block_codes, contour_lengths_2d, surfel_areas_3d


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


@dataclass
class SurfaceDistances:
    """Every surface element (surfel) of both masks with its size and its distance to the other surface.

    Distances in mm, sorted ascending; sizes in mm^2 (3-D surfel areas) or mm (2-D contour lengths).
    """

    prediction_to_target: np.ndarray
    prediction_sizes: np.ndarray
    target_to_prediction: np.ndarray
    target_sizes: np.ndarray

    def robust_hausdorff(self, percent: float = 95.0) -> float:
        """The larger of the two one-way, size-weighted `percent`-th percentiles of distance."""
        return max(
            _percentile_by_size(self.prediction_to_target, self.prediction_sizes, percent),
            _percentile_by_size(self.target_to_prediction, self.target_sizes, percent),
        )

    def surface_dice(self, tolerance_mm: float) -> float:
        """The size share of both surfaces lying within `tolerance_mm` of the other surface."""
        within = self.prediction_sizes[self.prediction_to_target <= tolerance_mm].sum() + (
            self.target_sizes[self.target_to_prediction <= tolerance_mm].sum()
        )
        return float(within / (self.prediction_sizes.sum() + self.target_sizes.sum()))


# axes this far from orthogonal (the largest cosine between two of them) are measured as a sheared grid
SHEAR_TOLERANCE = 1e-6


def is_sheared(axes: np.ndarray) -> bool:
    """Whether voxel `axes` `(D, D)` (one row per mask axis: its step in mm, world coordinates) are not
    orthogonal, so that spacings alone do not measure distances on their grid."""
    axes = np.asarray(axes, dtype=np.float64)
    unit = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    return bool(np.abs(unit @ unit.T - np.eye(len(axes))).max() > SHEAR_TOLERANCE)


def surface_distances(
    prediction: np.ndarray, target: np.ndarray, spacing: Sequence[float], axes: np.ndarray | None = None
) -> SurfaceDistances:
    """Surfels of `prediction` and `target` (2-D or 3-D masks of one shape) and their distances to the
    other mask's surface, as DeepMind's `surface-distance` computes them (`surface_elements`). `axes`
    `(D, D)`: each mask axis's step in mm in world coordinates, for a grid whose axes are not orthogonal
    (`is_sheared`); its distances are measured between the surfels' world positions.

    A side whose mask is empty has no surfels, and the other side's distances are all `inf`.
    """
    prediction, target = _bool(prediction), _bool(target)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} must have one shape.")
    if prediction.ndim not in (2, 3):
        raise ValueError(
            f"surface metrics take 2-D or 3-D masks; got {prediction.ndim}-D {prediction.shape}."
        )
    if len(spacing) != prediction.ndim:
        raise ValueError(
            f"spacing {tuple(spacing)} must give one value per axis of masks shaped {prediction.shape}."
        )
    empty = np.zeros(0)
    union = prediction | target
    if not union.any():
        return SurfaceDistances(empty, empty, empty, empty)
    # only the bounding box of both masks holds surfels: crop to it before the distance transforms
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(union))
    sizes = surfel_areas_3d(spacing) if prediction.ndim == 3 else contour_lengths_2d(spacing)
    full = 255 if prediction.ndim == 3 else 15
    codes = [block_codes(prediction[box]), block_codes(target[box])]
    borders = [(c != 0) & (c != full) for c in codes]
    if axes is not None and is_sheared(axes):
        nearest = _world_distances(borders, np.asarray(axes, dtype=np.float64))
    else:
        to_surface = [
            ndimage.distance_transform_edt(~b, sampling=spacing) if b.any() else np.full(b.shape, np.inf)
            for b in borders
        ]
        nearest = [to_surface[1][borders[0]], to_surface[0][borders[1]]]

    def sorted_side(own: int) -> tuple[np.ndarray, np.ndarray]:
        distances = nearest[own]
        order = np.argsort(distances, kind="stable")
        return distances[order], sizes[codes[own][borders[own]]][order]

    prediction_side, target_side = sorted_side(0), sorted_side(1)
    return SurfaceDistances(*prediction_side, *target_side)


def _world_distances(borders: list[np.ndarray], axes: np.ndarray) -> list[np.ndarray]:
    """For each side's surfels (True in `borders[side]`, in C order, as a boolean mask indexes them), the
    distance in mm to the nearest surfel of the other side, positions taken through `axes` (world
    coordinates, up to a translation both sides share): what the distance transform gives on an orthogonal
    grid."""
    from scipy.spatial import cKDTree

    points = [np.argwhere(border) @ axes for border in borders]
    nearest = []
    for own, other in ((0, 1), (1, 0)):
        if not len(points[other]):
            nearest.append(np.full(len(points[own]), np.inf))
        else:
            # the sliding-midpoint tree: scipy's default median-split build recursed without end on these
            # grid points where denormals flush to zero (torch.set_flush_denormal, which training sets)
            nearest.append(cKDTree(points[other], balanced_tree=False).query(points[own])[0])
    return nearest


def _percentile_by_size(distances: np.ndarray, sizes: np.ndarray, percent: float) -> float:
    """The distance below which `percent` % of the surface (by surfel size) lies; inf without surfels."""
    if len(distances) == 0:
        return float("inf")
    cumulative = np.cumsum(sizes) / np.sum(sizes)
    return float(distances[min(int(np.searchsorted(cumulative, percent / 100.0)), len(distances) - 1)])


def hd95(
    prediction: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None, percent: float = 95.0
) -> float | None:
    """The robust Hausdorff distance in mm (spacing default: 1 per axis): the larger of the two one-way
    95th percentiles of surface distance, each weighted by surfel size (DeepMind's
    `compute_robust_hausdorff`; MONAI's `compute_hausdorff_distance(percentile=95)` also takes the larger
    one-way value). None when both masks are empty, inf when one is."""
    return surface_metrics(prediction, target, 0.0, spacing, percent)[0]


def normalized_surface_dice(
    prediction: np.ndarray, target: np.ndarray, tolerance_mm: float, spacing: Sequence[float] | None = None
) -> float | None:
    """Normalised surface Dice (Nikolov et al. 2021; DeepMind's `compute_surface_dice_at_tolerance`): the
    share of both surfaces, by surfel area, lying within `tolerance_mm` of the other surface. None when
    both masks are empty, 0 when one is."""
    return surface_metrics(prediction, target, tolerance_mm, spacing)[1]


def surface_metrics(
    prediction: np.ndarray,
    target: np.ndarray,
    tolerance_mm: float,
    spacing: Sequence[float] | None = None,
    percent: float = 95.0,
    axes: np.ndarray | None = None,
) -> tuple[float | None, float | None]:
    """`(hd95, nsd)` from one computation of the surface distances (the distance transforms are the costly
    part of scoring a 3-D case); `axes` for a grid whose axes are not orthogonal (`surface_distances`).
    Empty masks: both empty gives `(None, None)`, one empty `(inf, 0.0)`."""
    prediction, target = _bool(prediction), _bool(target)
    spacing = spacing if spacing is not None else [1.0] * prediction.ndim
    if not prediction.any() and not target.any():
        return None, None
    if not prediction.any() or not target.any():
        return float("inf"), 0.0
    surfaces = surface_distances(prediction, target, spacing, axes)
    return surfaces.robust_hausdorff(percent), surfaces.surface_dice(tolerance_mm)


def picture_surface_metrics(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    tolerance_mm: float,
    spacing: Sequence[float] | None = None,
    percent: float = 95.0,
) -> tuple[float | None, float | None]:
    """`(hd95, nsd)` of several 2-D pictures of one case, `(prediction, target)` per picture (shapes may
    differ between pictures): each picture's contours are measured against the other contour in that
    picture only (separate pictures are not slices of one volume), and the contour elements of all pictures
    are pooled for the percentile and the share. A picture where one side is empty adds its other side's
    elements at distance inf. Both empty in every picture: `(None, None)`; one side empty in every picture:
    `(inf, 0.0)`."""
    spacing = spacing if spacing is not None else [1.0, 1.0]
    parts = [surface_distances(p, t, spacing) for p, t in pairs if _bool(p).any() or _bool(t).any()]
    if not parts:
        return None, None
    pooled = [np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(SurfaceDistances)]
    if not len(pooled[1]) or not len(pooled[3]):
        return float("inf"), 0.0
    for distances, sizes in ((0, 1), (2, 3)):  # each side sorted by distance, its sizes in step
        order = np.argsort(pooled[distances], kind="stable")
        pooled[distances], pooled[sizes] = pooled[distances][order], pooled[sizes][order]
    surfaces = SurfaceDistances(*pooled)
    return surfaces.robust_hausdorff(percent), surfaces.surface_dice(tolerance_mm)


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

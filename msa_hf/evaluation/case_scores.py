# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Scoring per case: the slices of a volume case are stacked at their places in the case, and Dice, IoU,
HD95 and NSD are computed per (case, structure) with the case's spacing, then averaged over cases per
structure (docs/method.md). A case of 2-D pictures is scored in 2-D, in pixels, each picture's contours on
their own."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from msa_hf.evaluation.metrics import dice, iou, picture_surface_metrics, summarise, surface_metrics

NSD_TOLERANCE_MM = 2.0


@dataclass
class CaseScore:
    """Metrics of one structure in one case."""

    case_id: str
    class_name: str
    dice: float | None
    iou: float | None
    hd95: float | None
    nsd: float | None
    dice_per_click: list[float] = field(default_factory=list)
    # the structure's size in the prediction and in the reference: mL for volumes, pixels for 2-D masks
    # (`msa-hf score`; None where not measured)
    sizes: tuple[float, float] | None = None


def case_spacings(rows: Any) -> dict[str, tuple[float, float, float] | None]:
    """Per case id of a prepared dataset's `rows` (unformatted): the `(row, col, slice)` spacing in mm of a
    volume's slices, or None for a case of 2-D pictures (spacing unit "pixel"), whose pictures are scored one
    by one (`score_cases`)."""
    columns = rows.select_columns(["case_id", "spacing", "spacing_unit"])
    return {
        row["case_id"]: None if row["spacing_unit"] == "pixel" else tuple(row["spacing"]) for row in columns
    }


def score_cases(predictions, spacing_of: dict[str, tuple[float, float, float] | None]) -> list[CaseScore]:
    """Score `(case_id, slice, class_name, masks per click, target)` predictions per (case, structure): a
    volume's slices are stacked (at `spacing_of[case]`, default 1 mm), a case of 2-D pictures (`spacing_of`
    None, `case_spacings`) is scored picture by picture (`picture_case_score`)."""
    grouped: dict[tuple[str, str], list[tuple[int, list[np.ndarray], np.ndarray]]] = defaultdict(list)
    for case_id, slice_index, class_name, masks, target in predictions:
        grouped[(case_id, class_name)].append((slice_index, masks, target))
    scores = []
    for (case_id, class_name), rows in sorted(grouped.items()):
        rows.sort(key=lambda r: r[0])
        spacing = spacing_of.get(case_id, (1.0, 1.0, 1.0))
        if spacing is None:
            targets = [t.astype(bool) for _, _, t in rows]
            clicks = [[m[k] for _, m, _ in rows] for k in range(len(rows[0][1]))]
            scores.append(picture_case_score(case_id, class_name, clicks[-1], targets, clicks))
            continue
        # each slice at its own place in the case, the slices between without the structure left empty (a
        # class of several lesions at different levels keeps its gaps: stacked together, the lesions touched)
        first, clicks = rows[0][0], len(rows[0][1])
        stacks = np.zeros((clicks + 1, rows[-1][0] - first + 1, *rows[0][2].shape), bool)
        for slice_index, masks, t in rows:
            stacks[:clicks, slice_index - first] = np.asarray(masks, dtype=bool)
            stacks[clicks, slice_index - first] = t
        target, final = stacks[clicks], stacks[clicks - 1]
        per_click = [dice(stacks[k], target) or 0.0 for k in range(clicks)]
        scores.append(case_score(case_id, class_name, final, target, spacing, per_click))
    return scores


def case_score(
    case_id: str,
    class_name: str,
    prediction: np.ndarray,
    target: np.ndarray,
    spacing: tuple[float, float, float],
    dice_per_click: list[float] | None = None,
    tolerance: float = NSD_TOLERANCE_MM,
    axes: np.ndarray | None = None,
) -> CaseScore:
    """Every metric of one structure in one case: `prediction` and `target` are `(Z, H, W)` slice stacks,
    `spacing` the case's (row, col, slice) voxel spacing in mm, `tolerance` NSD's in mm, `axes` the stacks'
    axes in world coordinates where known (`planes.display_axes`; a gantry-tilted grid is measured with
    them). The surface distances are computed once for HD95 and NSD."""
    volume_spacing = (spacing[2], spacing[0], spacing[1])  # (slice, row, col) for (Z, H, W) stacks
    hd, nsd = surface_metrics(prediction, target, tolerance, volume_spacing, axes=axes)
    return CaseScore(
        case_id=case_id,
        class_name=class_name,
        dice=dice(prediction, target),
        iou=iou(prediction, target),
        hd95=hd,
        nsd=nsd,
        dice_per_click=list(dice_per_click or []),
    )


def _pooled(metric, predictions: list[np.ndarray], targets: list[np.ndarray]) -> float | None:
    """`metric` (Dice or IoU) over several pictures as over one mask: their pixels pooled."""
    return metric(
        np.concatenate([p.reshape(-1) for p in predictions]), np.concatenate([t.reshape(-1) for t in targets])
    )


def picture_case_score(
    case_id: str,
    class_name: str,
    predictions: list[np.ndarray],
    targets: list[np.ndarray],
    clicks: list[list[np.ndarray]] | None = None,
    tolerance: float = NSD_TOLERANCE_MM,
) -> CaseScore:
    """Every metric of one structure in a case of 2-D pictures, `(H_i, W_i)` masks per picture (sizes may
    differ): Dice and IoU over the pictures' pixels pooled, HD95 and NSD in pixels from each picture's own
    contours (`picture_surface_metrics`; stacking pictures as slices would add the faces of a one-slice
    volume to the surface; NSD at `tolerance` pixels), Dice per click from `clicks[k]`, the pictures' masks
    after click k."""
    hd, nsd = picture_surface_metrics(zip(predictions, targets, strict=True), tolerance)
    return CaseScore(
        case_id=case_id,
        class_name=class_name,
        dice=_pooled(dice, predictions, targets),
        iou=_pooled(iou, predictions, targets),
        hd95=hd,
        nsd=nsd,
        dice_per_click=[_pooled(dice, masks, targets) or 0.0 for masks in clicks or []],
    )


def summarise_by_class(scores: list[CaseScore]) -> dict[str, dict[str, float]]:
    """Per structure: mean Dice, IoU, HD95 (finite cases), NSD over cases, and the case count."""
    table: dict[str, dict[str, float]] = {}
    for class_name in sorted({s.class_name for s in scores}):
        rows = [s for s in scores if s.class_name == class_name]
        finite_hd = [s.hd95 for s in rows if s.hd95 is not None and np.isfinite(s.hd95)]
        table[class_name] = {
            "dice": summarise(s.dice for s in rows).mean,
            "iou": summarise(s.iou for s in rows).mean,
            "hd95": float(np.mean(finite_hd)) if finite_hd else float("nan"),
            "nsd": summarise(s.nsd for s in rows).mean,
            "cases": len(rows),
        }
    return table


def clicks_to_reach(scores: list[CaseScore], threshold: float) -> float:
    """Mean number of clicks until Dice >= `threshold` (cases that never reach it count the maximum + 1)."""
    counts = []
    for score in scores:
        reached = [k + 1 for k, d in enumerate(score.dice_per_click) if d >= threshold]
        counts.append(reached[0] if reached else len(score.dice_per_click) + 1)
    return float(np.mean(counts)) if counts else float("nan")

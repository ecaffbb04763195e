# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Segmentation metrics (numpy): Dice, IoU, HD95 and NSD with voxel spacing; see `segmentation.py`."""

from pathlib import Path

from msa_hf.evaluation.metrics.batched import box_fill_dice, dice_scores
from msa_hf.evaluation.metrics.segmentation import (
    MetricSummary,
    dice,
    hd95,
    iou,
    normalized_surface_dice,
    picture_surface_metrics,
    summarise,
    surface_distances,
    surface_metrics,
)

# An `evaluate` module wrapping these metrics, loadable by path: `evaluate.load(EVALUATE_MODULE)`.
EVALUATE_MODULE = str(Path(__file__).resolve().parent / "evaluate_modules" / "msa_segmentation")

__all__ = [
    "EVALUATE_MODULE",
    "MetricSummary",
    "box_fill_dice",
    "dice_scores",
    "dice",
    "hd95",
    "iou",
    "normalized_surface_dice",
    "picture_surface_metrics",
    "summarise",
    "surface_distances",
    "surface_metrics",
]

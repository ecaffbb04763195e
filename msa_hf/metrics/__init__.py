# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Segmentation metrics (numpy): Dice, IoU, HD95 and NSD with voxel spacing; see `segmentation.py`."""

from .segmentation import (
    MetricSummary,
    dice,
    hd95,
    iou,
    normalized_surface_dice,
    summarise,
    surface_distances,
)

__all__ = [
    "MetricSummary",
    "dice",
    "hd95",
    "iou",
    "normalized_surface_dice",
    "summarise",
    "surface_distances",
]

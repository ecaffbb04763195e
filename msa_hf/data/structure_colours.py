# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The colours written structures are shown in: one palette for every file that colours its structures (a 3D
Slicer segmentation, a DICOM-SEG, an RT structure set), so that a structure keeps its colour whichever of
them a user opens."""

from __future__ import annotations

# RGB from 0 to 1, in structure order: distinct on a grey scan and from each other
STRUCTURE_COLOURS = (
    (0.90, 0.30, 0.25),
    (0.25, 0.55, 0.90),
    (0.30, 0.75, 0.35),
    (0.95, 0.75, 0.20),
    (0.65, 0.40, 0.85),
    (0.20, 0.80, 0.80),
    (0.95, 0.55, 0.15),
    (0.85, 0.45, 0.65),
    (0.55, 0.75, 0.20),
    (0.60, 0.40, 0.30),
    (0.50, 0.65, 1.00),
    (0.75, 0.75, 0.75),
)


def structure_colour(index: int) -> tuple[float, float, float]:
    """The colour of a file's `index`-th structure (from 0) as RGB from 0 to 1; the palette repeats after its
    twelve colours."""
    return STRUCTURE_COLOURS[index % len(STRUCTURE_COLOURS)]


def structure_colour_bytes(index: int) -> tuple[int, int, int]:
    """`structure_colour(index)` as RGB from 0 to 255 (as DICOM writes colours)."""
    red, green, blue = (round(255 * channel) for channel in structure_colour(index))
    return red, green, blue

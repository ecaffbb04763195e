# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The image planes of a DICOM stack: where each slice lies in the patient and which instance (or frame) it
is, in position order.

What an object drawn on a series refers to and places itself by: a DICOM-SEG's frames, an RT Structure Set's
contours. A series of single-frame files gives one plane per instance (`volumes.dicom_series_slices`), an
enhanced multi-frame file one per frame of the chosen stack (`dicom_stacks.read_stack`); either way plane
`k` is voxel slice `k` of the volume `load_volume` reads, whose grid `labels_on_grid` maps label volumes onto
(`structures_on_grid`: each structure's own mask, where structures overlap).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# the DICOM objects drawn on a series that msa_hf reads as labels and writes as masks, by kind: their Modality
DICOM_LABEL_KINDS = {"seg": "SEG", "rtstruct": "RTSTRUCT"}


@dataclass(frozen=True)
class ImagePlane:
    """One slice of a DICOM stack: its first pixel's centre `position` (3,) in the patient (LPS mm), the
    directions of increasing column (`row_cosine`) and increasing row (`column_cosine`), `spacing` (between
    rows, between columns) in mm, and the image it is: `sop_class_uid`, `sop_instance_uid` and, in a
    multi-frame file, its `frame` number (from 1)."""

    position: np.ndarray
    row_cosine: np.ndarray
    column_cosine: np.ndarray
    spacing: tuple[float, float]
    sop_class_uid: str
    sop_instance_uid: str
    frame: int | None = None

    @property
    def normal(self) -> np.ndarray:
        """`(3,)` the plane's unit normal (row cosine x column cosine)."""
        return np.cross(self.row_cosine, self.column_cosine)

    def to_patient(self, pixels: np.ndarray) -> np.ndarray:
        """`(N, 2)` `(column, row)` pixel coordinates (pixel centres at integers) -> `(N, 3)` LPS mm."""
        pixels = np.asarray(pixels, dtype=np.float64)
        return (
            self.position
            + pixels[:, :1] * self.spacing[1] * self.row_cosine
            + pixels[:, 1:2] * self.spacing[0] * self.column_cosine
        )

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """`(N, 3)` LPS mm in this plane -> `(N, 2)` `(column, row)` pixel coordinates."""
        offset = np.asarray(points, dtype=np.float64) - self.position
        return np.stack(
            [offset @ self.row_cosine / self.spacing[1], offset @ self.column_cosine / self.spacing[0]],
            axis=1,
        )


@dataclass(frozen=True)
class StackPlanes:
    """A DICOM stack's `planes` in position order, a `header` dataset to copy the patient and study from,
    the RAS `affine` of its voxel grid (i = column, j = row, k = plane) and that grid's `shape` `(columns,
    rows, planes)`."""

    planes: list[ImagePlane]
    header: Any
    affine: np.ndarray
    shape: tuple[int, int, int]


def stack_planes(path: str | Path, series: str | None = None) -> StackPlanes:
    """The planes of the DICOM series in folder `path`, or of the enhanced multi-frame file `path` is (the
    stack `series` chooses where there are several, `dicom_stacks.choose_stack`).

    Raises:
        VolumeReadError: as `dicom_stacks.read_stack`.
    """
    from msa_hf.data.dicom_stacks import read_stack

    images = read_stack(path, series)
    if images.enhanced is not None:
        planes = enhanced_planes(images.enhanced)
    else:
        planes = [
            ImagePlane(
                np.array(dataset.ImagePositionPatient, np.float64),
                np.array(dataset.ImageOrientationPatient[:3], np.float64),
                np.array(dataset.ImageOrientationPatient[3:], np.float64),
                (float(dataset.PixelSpacing[0]), float(dataset.PixelSpacing[1])),
                str(dataset.SOPClassUID),
                str(dataset.SOPInstanceUID),
            )
            for _, dataset in images.slices
        ]
    return StackPlanes(planes, images.header, images.affine, images.shape)


def enhanced_planes(enhanced: Any) -> list[ImagePlane]:
    """The planes of an enhanced multi-frame file's chosen stack (`dicom_stacks.EnhancedGrid`), in position
    order: each frame's own position, orientation and pixel spacing (per-frame or shared)."""
    from msa_hf.data.volumes import frame_value

    dataset = enhanced.dataset

    def value(frame: int, sequence: str, name: str) -> np.ndarray:
        return np.array(frame_value(dataset, frame, sequence, name), np.float64)

    planes = []
    for frame in enhanced.order:
        orientation = value(frame, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = value(frame, "PixelMeasuresSequence", "PixelSpacing")
        planes.append(
            ImagePlane(
                value(frame, "PlanePositionSequence", "ImagePositionPatient"),
                orientation[:3],
                orientation[3:],
                (float(spacing[0]), float(spacing[1])),
                str(dataset.SOPClassUID),
                str(dataset.SOPInstanceUID),
                frame + 1,
            )
        )
    return planes


def labels_on_grid(
    canonical: np.ndarray,
    canonical_affine: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    source: Any,
) -> np.ndarray:
    """A RAS+ label volume `(X, Y, Z)` on a DICOM grid of `shape` (columns, rows, planes) and RAS `affine`, as
    `(planes, rows, columns)`.

    Raises:
        ValueError: the label volume does not lie on that grid (naming `source`).
    """
    from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

    transform = ornt_transform(io_orientation(canonical_affine), io_orientation(affine))
    grid = apply_orientation(canonical, transform)  # (columns, rows, planes)
    if grid.shape != shape:
        raise ValueError(
            f"the label volume {canonical.shape} does not lie on the grid of the series in {source}."
        )
    return np.ascontiguousarray(grid.transpose(2, 1, 0))


# What a DICOM object drawn on a series is written from: a RAS+ label volume `(X, Y, Z)` (one structure per
# label value), or `{label value: RAS+ mask (X, Y, Z)}`, whose masks may overlap (a tumour inside its organ)
Structures = np.ndarray | Mapping[int, np.ndarray]


@dataclass(frozen=True)
class GridStructures:
    """Structures on a DICOM grid (`structures_on_grid`): their label `values` in order, and either one label
    map `labels` `(planes, rows, columns)` (given as one: no two overlap) or each one's own `masks`."""

    values: tuple[int, ...]
    labels: np.ndarray | None = None
    masks: Mapping[int, np.ndarray] | None = None

    def mask(self, value: int) -> np.ndarray:
        """Structure `value`'s `(planes, rows, columns)` bool mask (from the label map: made when asked for,
        so a map of many structures is never held as many masks at once)."""
        return self.masks[value] if self.masks is not None else self.labels == value


def structures_on_grid(
    structures: Structures,
    canonical_affine: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    source: Any,
) -> GridStructures:
    """`structures` (a label volume, or each structure's own mask) on a DICOM grid, as `labels_on_grid` maps
    it, structures in value order and empty ones left out.

    Raises:
        ValueError: a volume off that grid (naming `source`).
    """
    if isinstance(structures, Mapping):
        masks = {
            int(value): labels_on_grid(np.asarray(mask, bool), canonical_affine, affine, shape, source)
            for value, mask in sorted(structures.items())
        }
        drawn = {value: mask for value, mask in masks.items() if mask.any()}
        return GridStructures(tuple(drawn), masks=drawn)
    labels = labels_on_grid(structures, canonical_affine, affine, shape, source)
    return GridStructures(tuple(int(value) for value in np.unique(labels) if value != 0), labels=labels)

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The planes a volume is cut into for a 2-D model: axial, coronal or sagittal display slices.

SAM segments 2-D pictures, resized by pixels. A volume is read in RAS+ order (`msa_hf.data.volumes`) and cut
into slices along one axis. Axial slices suit a scan acquired axially (most CT); a scan acquired in another
plane (a sagittal knee or spine, a coronal abdomen, with slices millimetres apart and fine pixels within
them) has axial pixels many times longer one way than the other, and its structures would look squashed
there. Such a scan is cut in the plane it was acquired in: `choose_plane` keeps axial slices unless their
pixels' sides differ more than `MAX_PIXEL_ASPECT`-fold, then takes the plane with the squarest pixels.

Display conventions (as the demo shows each plane, and as prompts in the display frame are given):

| plane | slice 0 | row 0 | column 0 |
|---|---|---|---|
| axial | most inferior | anterior | the patient's left |
| coronal | most posterior | superior | the patient's left |
| sagittal | the patient's left | superior | anterior |
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")
PLANE_CHOICES = ("auto", *PLANES)  # what --plane takes: auto is `choose_plane`'s rule
# pixels longer than this one way than the other are squashed enough to mislead a 2-D model
MAX_PIXEL_ASPECT = 2.0
# the RAS+ axes, as a message names the direction along them
DIRECTIONS = ("left-right", "front-back", "head-feet")


@dataclass(frozen=True)
class PlaneLayout:
    """Where a plane's display slices `(N, H, W)` come from in a RAS+ `(X, Y, Z)` array: the axis the slices
    run along (ascending), the axes of their rows and columns, and whether each of those runs backwards."""

    slice_axis: int
    row_axis: int
    column_axis: int
    rows_flipped: bool
    columns_flipped: bool

    @property
    def order(self) -> tuple[int, int, int]:
        return self.slice_axis, self.row_axis, self.column_axis


LAYOUTS: dict[Plane, PlaneLayout] = {
    "axial": PlaneLayout(2, 1, 0, rows_flipped=True, columns_flipped=False),
    "coronal": PlaneLayout(1, 2, 0, rows_flipped=True, columns_flipped=False),
    "sagittal": PlaneLayout(0, 2, 1, rows_flipped=True, columns_flipped=True),
}


def check_plane(plane: str, choices: Iterable[str] = PLANES) -> None:
    """Raise `ValueError` naming the choices for a plane that is not one of them."""
    choices = tuple(choices)
    if plane not in choices:
        raise ValueError(f"plane {plane!r}: expected one of {', '.join(choices)}.")


def _flips(layout: PlaneLayout) -> tuple[int, ...]:
    return tuple(
        axis
        for axis, flipped in (
            (layout.row_axis, layout.rows_flipped),
            (layout.column_axis, layout.columns_flipped),
        )
        if flipped
    )


def display_slices(array: np.ndarray, plane: Plane = "axial") -> np.ndarray:
    """RAS+ `(X, Y, Z)` -> `(N, H, W)` display slices of `plane` (the module's table of conventions)."""
    check_plane(plane)
    layout = LAYOUTS[plane]
    flipped = np.flip(np.asarray(array), _flips(layout)) if _flips(layout) else np.asarray(array)
    return np.ascontiguousarray(flipped.transpose(layout.order))


def volume_from_display_slices(slices: np.ndarray, plane: Plane = "axial") -> np.ndarray:
    """Inverse of `display_slices`: `(N, H, W)` slices of `plane` -> RAS+ `(X, Y, Z)`."""
    check_plane(plane)
    layout = LAYOUTS[plane]
    array = np.asarray(slices).transpose(np.argsort(layout.order))
    return np.ascontiguousarray(np.flip(array, _flips(layout)) if _flips(layout) else array)


def display_axes(affine: np.ndarray, plane: Plane = "axial") -> np.ndarray:
    """The world-coordinate step in mm along each axis of `plane`'s display slices `(N, H, W)` of a RAS+ array
    on the voxel grid `affine` `(4, 4)`: one row per display axis, `(3, 3)`, an axis that runs backwards
    negated. Orthogonal rows for an upright grid; a gantry-tilted CT's are not (`metrics.is_sheared`)."""
    check_plane(plane)
    layout = LAYOUTS[plane]
    steps = np.asarray(affine, dtype=np.float64)[:3, :3].T  # one row per RAS+ array axis
    signs = {
        layout.slice_axis: 1.0,
        layout.row_axis: -1.0 if layout.rows_flipped else 1.0,
        layout.column_axis: -1.0 if layout.columns_flipped else 1.0,
    }
    return np.stack([signs[axis] * steps[axis] for axis in layout.order])


def plane_spacing(spacing: Iterable[float], plane: Plane = "axial") -> tuple[float, float, float]:
    """`(row, column, slice)` spacing in mm of `plane`'s display slices, from the RAS+ voxel `spacing`
    `(x, y, z)`."""
    check_plane(plane)
    values = tuple(float(v) for v in spacing)
    layout = LAYOUTS[plane]
    return values[layout.row_axis], values[layout.column_axis], values[layout.slice_axis]


def pixel_aspect(spacing: Iterable[float], plane: Plane = "axial") -> float:
    """How many times longer `plane`'s pixels are one way than the other (1 for square pixels)."""
    row, column, _ = plane_spacing(spacing, plane)
    return max(row, column) / min(row, column)


def choose_plane(spacing: Iterable[float], plane: str = "auto") -> Plane:
    """The plane to cut a volume of RAS+ voxel `spacing` into: `plane` itself, or for "auto" axial unless its
    pixels' sides differ more than `MAX_PIXEL_ASPECT`-fold, then the plane with the squarest pixels (the
    plane the scan was acquired in; axial first on a tie)."""
    check_plane(plane, PLANE_CHOICES)
    if plane != "auto":
        return plane  # type: ignore[return-value]
    spacing = tuple(float(v) for v in spacing)
    if pixel_aspect(spacing, "axial") <= MAX_PIXEL_ASPECT:
        return "axial"
    return min(PLANES, key=lambda p: pixel_aspect(spacing, p))  # min keeps the first of equals: axial


def plane_along(ras_axis: int) -> Plane:
    """The plane whose slices run along RAS+ axis `ras_axis` (0: sagittal, 1: coronal, 2: axial)."""
    return next(plane for plane in PLANES if LAYOUTS[plane].slice_axis == ras_axis)


def pixel_note(spacing: Iterable[float], plane: Plane, source: str | Path) -> str | None:
    """What to know when `plane`'s slices of a volume of RAS+ voxel `spacing` have pixels far from square
    (beyond `MAX_PIXEL_ASPECT`), or None: a 2-D model sees them resized by pixels, so structures look squashed
    along the coarse axis."""
    aspect = pixel_aspect(spacing, plane)
    if aspect <= MAX_PIXEL_ASPECT:
        return None
    row, column, _ = plane_spacing(spacing, plane)
    layout = LAYOUTS[plane]
    across, down = DIRECTIONS[layout.column_axis], DIRECTIONS[layout.row_axis]
    coarse = across if column > row else down
    return (
        f"{source}: its {plane} slices have pixels {column:g} x {row:g} mm ({across} x {down}), {aspect:.1f}x "
        f"longer {coarse}: the scan was likely acquired in another plane. A 2-D model sees the slices resized "
        f"by pixels, so structures there look {aspect:.1f}x thinner {coarse} than they are and masks will be "
        "poor. Cut it in the plane it was acquired in (msa-hf predict --plane auto, the default) or resample it "
        "to near-square pixels (msa-hf prepare --target-spacing X Y Z)."
    )


def unseen_plane_note(plane: Plane, trained: Iterable[str] | None, source: str | Path) -> str | None:
    """What to know when a volume is cut into `plane` slices but the model was trained on `trained` planes
    only (`MsaProcessor.planes`), or None (a plane it saw, or planes unknown): an adapted model meets slices
    unlike its training ones there."""
    seen = tuple(sorted(set(trained or ())))
    if not seen or plane in seen:
        return None
    return (
        f"{source}: cut into {plane} slices, but the model was adapted on {' and '.join(seen)} slices only: expect "
        f"it to do worse than on its own kind of slice. --plane {seen[0]} cuts the volume as the model was "
        "trained (squashed where that plane's pixels are far from square)."
    )

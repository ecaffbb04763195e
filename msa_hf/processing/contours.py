# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Masks as planar contours and back: the geometry of DICOM RT Structure Sets.

A radiotherapy planning system stores a structure as closed polygons per slice, not as a pixel mask.
`mask_contours` traces a binary mask's boundary along the pixels' edges, so each polygon encloses exactly
the mask's pixels: a pixel lies inside the contours (by the even-odd rule, holes being contours of their own)
exactly when its centre does, and `fill_contours` gives the mask back unchanged; `keyhole_contours` joins each
hole to the boundary around it, for readers that fill each polygon on its own, and `fill_nested_contours`
reads contours as such readers differ in (nested ones holes, overlapping ones united). Coordinates are
`(column, row)` in pixel units, a pixel's centre at its integer index and its corners at the half-integers
between.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

# a boundary step: from one pixel corner to the next, as (row, column) corner indices
_Corner = tuple[int, int]


def mask_contours(mask: np.ndarray) -> list[np.ndarray]:
    """The closed contours of a binary mask `(H, W)` along its pixels' edges, each `(N, 2)` float64 `(column,
    row)` vertices (no repeated first vertex; corners at half-integers, only where the boundary turns).

    Outer boundaries run clockwise as the image is shown (rows down), holes anticlockwise. Pixels that touch
    only at a corner are separate contours that share that corner. Filled by the even-odd rule at pixel
    centres (`fill_contours`), the contours give `mask` back exactly.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask_contours takes one 2-D mask; got shape {mask.shape}.")
    padded = np.pad(mask, 1)
    # each boundary edge as a step between corners (corner (r, c) is the top-left corner of padded pixel
    # (r, c)), with the mask's pixel on its right as the image is shown: clockwise around the structure
    steps: dict[_Corner, list[_Corner]] = defaultdict(list)
    rows, cols = np.nonzero(padded[1:, :] & ~padded[:-1, :])  # a pixel with background above
    for r, c in zip(rows + 1, cols, strict=True):
        steps[(r, c)].append((r, c + 1))  # along its top, left to right
    rows, cols = np.nonzero(padded[:-1, :] & ~padded[1:, :])  # background below
    for r, c in zip(rows, cols, strict=True):
        steps[(r + 1, c + 1)].append((r + 1, c))  # along its bottom, right to left
    rows, cols = np.nonzero(padded[:, 1:] & ~padded[:, :-1])  # background on the left
    for r, c in zip(rows, cols + 1, strict=True):
        steps[(r + 1, c)].append((r, c))  # up its left side
    rows, cols = np.nonzero(padded[:, :-1] & ~padded[:, 1:])  # background on the right
    for r, c in zip(rows, cols, strict=True):
        steps[(r, c + 1)].append((r + 1, c + 1))  # down its right side

    contours = []
    while steps:
        first = next(iter(steps))
        first_step = (first, steps[first][0])  # taken last, when the loop comes back to it
        loop, corner, heading = [], first, None
        while True:
            outgoing = steps[corner]
            # where two steps leave one corner (pixels touching only there), turn right: each pixel keeps to
            # its own side, and the contours meet at that corner without crossing
            choice = 0 if heading is None else _rightmost(heading, corner, outgoing)
            following = outgoing[choice]
            if loop and (corner, following) == first_step:  # back at the first step: closed
                outgoing.pop(choice)
                if not outgoing:
                    del steps[corner]
                break
            if loop:  # the first step stays until the loop closes on it
                outgoing.pop(choice)
                if not outgoing:
                    del steps[corner]
            loop.append(corner)
            heading = (following[0] - corner[0], following[1] - corner[1])
            corner = following
        contours.append(_as_vertices(loop))
    return contours


def _rightmost(heading: tuple[int, int], corner: _Corner, outgoing: list[_Corner]) -> int:
    """The index of the step in `outgoing` that turns right of `heading` (rows down, columns right)."""
    right = (heading[1], -heading[0])  # a quarter turn clockwise as shown: (dr, dc) -> (dc, -dr)
    for index, step in enumerate(outgoing):
        if (step[0] - corner[0], step[1] - corner[1]) == right:
            return index
    return 0


def _as_vertices(loop: list[_Corner]) -> np.ndarray:
    """Corner indices -> `(column, row)` vertices at the half-integers, only where the boundary turns."""
    points = np.array(loop, dtype=np.int64)
    before, after = np.roll(points, 1, axis=0), np.roll(points, -1, axis=0)
    turns = np.any((points - before) != (after - points), axis=1)
    kept = points[turns]
    # corner (r, c) of the padded mask is the top-left corner of the mask's pixel (r - 1, c - 1)
    return np.stack([kept[:, 1] - 1.5, kept[:, 0] - 1.5], axis=1).astype(np.float64)


def fill_contours(contours: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """The pixels of a `shape` `(H, W)` grid whose centres lie inside `contours` (each `(N, 2)` `(column, row)`
    vertices of a closed polygon, in pixel units) by the even-odd rule: a pixel inside two contours (a hole in
    a structure) is outside. Returns `(H, W)` bool."""
    height, width = shape
    filled = np.zeros(shape, dtype=bool)
    centres = np.arange(width, dtype=np.float64)
    for contour in contours:
        points = np.asarray(contour, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
            raise ValueError(
                f"a contour needs at least three (column, row) vertices; got shape {points.shape}."
            )
        x0, y0 = points[:, 0], points[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        low, high = np.floor(y0.min()), np.ceil(y0.max())
        for row in range(max(int(low), 0), min(int(high), height - 1) + 1):
            # edges crossing the line through this row's centres, each counted once (half-open in y)
            crossing = (y0 <= row) != (y1 <= row)
            if not crossing.any():
                continue
            t = (row - y0[crossing]) / (y1[crossing] - y0[crossing])
            xs = np.sort(x0[crossing] + t * (x1[crossing] - x0[crossing]))
            inside = np.zeros(width, dtype=bool)
            for start, stop in zip(xs[0::2], xs[1::2], strict=True):
                inside ^= (centres >= start) & (centres < stop)  # a centre on an edge: its left one
            filled[row] ^= inside
    return filled


def keyhole_contours(contours: list[np.ndarray]) -> list[np.ndarray]:
    """`mask_contours`' contours with each hole joined to the boundary around it by a cut of zero width (the
    keyhole technique): one polygon per outer boundary, holes inside it, islands in holes polygons of their own.

    Readers of RT structure sets fill nested contours in two ways: as holes (even-odd, as planning systems take
    them) or each polygon on its own, the results united (as some converters do). Separate hole contours fill
    back only the first way; keyholed ones fill back to the mask both ways, since the cut, run down and back
    along a pixel edge, holds no pixel centre and changes no pixel's parity. Each hole (anticlockwise) is cut
    from its top-left vertex straight up to the nearest boundary above it, which is its outer boundary or a hole
    of that boundary already joined to it (holes are taken from the top down). Vertices are `(column, row)` in
    pixel units as `mask_contours` gives them; a keyholed polygon passes through the ends of its cuts twice."""
    polygons = [np.asarray(contour, dtype=np.float64) for contour in contours]
    areas = [_signed_area(polygon) for polygon in polygons]
    holes = [index for index, area in enumerate(areas) if area < 0]
    outer = [polygon for polygon, area in zip(polygons, areas, strict=True) if area >= 0]
    for index in sorted(holes, key=lambda k: (polygons[k][:, 1].min(), polygons[k][:, 0].min())):
        hole = polygons[index]
        top = np.flatnonzero(hole[:, 1] == hole[:, 1].min())
        start = int(top[np.argmin(hole[top, 0])])  # its top-left vertex
        x, y = hole[start]
        best: tuple[float, int, int] | None = None  # (row of the hit, polygon, edge)
        for which, polygon in enumerate(outer):
            ends = np.roll(polygon, -1, axis=0)
            across = (
                (polygon[:, 1] == ends[:, 1])
                & (polygon[:, 1] < y)
                & (np.minimum(polygon[:, 0], ends[:, 0]) <= x)
                & (np.maximum(polygon[:, 0], ends[:, 0]) >= x)
            )
            for edge in np.flatnonzero(across):
                if best is None or polygon[edge, 1] > best[0]:
                    best = (float(polygon[edge, 1]), which, int(edge))
        if best is None:  # no boundary above: not inside any (cannot happen for mask_contours' holes)
            outer.append(hole)
            continue
        row, which, edge = best
        polygon = outer[which]
        hit = np.array([x, row])
        before = polygon[: edge + 1]
        after = polygon[edge + 1 :]
        # down the cut from the edge, unless its vertex is there; round the hole; back up the cut, unless the
        # next vertex (the first, past the last edge) is there
        down = [] if np.array_equal(before[-1], hit) else [hit[None]]
        around = np.concatenate([hole[start:], hole[:start], hole[start : start + 1]])
        following = after[0] if len(after) else polygon[0]
        back = [] if np.array_equal(following, hit) else [hit[None]]
        outer[which] = np.concatenate([before, *down, around, *back, after])
    return outer


def _signed_area(polygon: np.ndarray) -> float:
    """Twice the signed area of a polygon `(N, 2)` `(column, row)` by the shoelace formula: positive for one
    running clockwise as an image is shown (rows down: an outer boundary of `mask_contours`), negative
    anticlockwise (a hole)."""
    x, y = polygon[:, 0], polygon[:, 1]
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def fill_nested_contours(contours: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """The pixels of a `shape` `(H, W)` grid that one structure's `contours` on a slice (each `(N, 2)`
    `(column, row)` vertices in pixel units) cover, by nesting: each contour filled on its own
    (`fill_contours`); one lying wholly inside another is a hole in it, an island inside a hole is filled
    again, and contours that overlap without one holding the other are united. Returns `(H, W)` bool.

    Readers of RT structure sets differ where a structure's contours overlap: nested ones are holes to planning
    systems, but two strokes drawn over each other are one region, which the even-odd rule alone would cut
    apart where they cross. Keyholed contours (`keyhole_contours`) and contours without overlaps fill alike
    either way."""
    if len(contours) == 1:  # most slices: nothing to nest
        return fill_contours(contours, shape)
    filled = [fill_contours([contour], shape) for contour in contours]
    areas = [int(mask.sum()) for mask in filled]
    order = sorted(range(len(filled)), key=lambda k: -areas[k])  # holders before what they hold
    boxes = [_box(mask) for mask in filled]
    result = np.zeros(shape, dtype=bool)
    for position, index in enumerate(order):
        mask, box = filled[index], boxes[index]
        if box is None:
            continue
        depth = sum(
            areas[other] > areas[index] and _inside(mask, box, filled[other], boxes[other])
            for other in order[:position]
        )  # how many contours hold this one (a larger one: the same pixels are two copies, not a hole)
        if depth % 2:
            result &= ~mask
        else:
            result |= mask
    return result


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The rows and columns `(top, bottom, left, right)` (bottom and right excluded) a mask spans, or None."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def _inside(mask, box, outer, outer_box) -> bool:
    """Whether `mask` (spanning `box`) lies inside `outer` (spanning `outer_box`)."""
    if outer_box is None or not (
        outer_box[0] <= box[0]
        and box[1] <= outer_box[1]
        and outer_box[2] <= box[2]
        and box[3] <= outer_box[3]
    ):
        return False
    crop = (slice(box[0], box[1]), slice(box[2], box[3]))
    return not (mask[crop] & ~outer[crop]).any()

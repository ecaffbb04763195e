# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The demo's HTTP API (`/segment`): its arguments arrive as JSON text and are checked here, so a malformed
request gets a message that names the argument instead of Gradio's generic error."""

from __future__ import annotations

import json
import math
from typing import Any

POINTS_FORMAT = "[[x, y, label], ...] with label 1 (positive) or 0 (negative), e.g. [[120, 80, 1]]"
BOX_FORMAT = "[x0, y0, x1, y1], e.g. [40, 30, 200, 180], or empty"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_api_prompts(
    points_json: str | None, box_json: str | None
) -> tuple[list[list[float]], list[float] | None]:
    """`points_json` and `box_json` as sent to `/segment` -> `(points [[x, y, label], ...], box or None)`.

    Raises:
        ValueError: text that is not JSON, or JSON of another shape (naming the argument and its format).
    """
    try:
        points = json.loads(points_json) if (points_json or "").strip() else []
    except json.JSONDecodeError as error:
        raise ValueError(f"points: not JSON ({error.msg}); expected {POINTS_FORMAT}.") from None
    valid_points = isinstance(points, list) and all(
        isinstance(point, list) and len(point) == 3 and _number(point[0]) and _number(point[1])
        and point[2] in (0, 1) and not isinstance(point[2], bool)
        for point in points
    )  # fmt: skip
    if not valid_points:
        raise ValueError(f"points: got {str(points)[:80]}; expected {POINTS_FORMAT}.")
    try:
        box = json.loads(box_json) if (box_json or "").strip() else None
    except json.JSONDecodeError as error:
        raise ValueError(f"box: not JSON ({error.msg}); expected {BOX_FORMAT}.") from None
    if box is not None and not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
        raise ValueError(f"box: got {str(box)[:80]}; expected {BOX_FORMAT}.")
    return [[float(x), float(y), int(label)] for x, y, label in points], box

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The demo's prompt state for one picture or slice: clicks, a box drawn by two corner clicks, and the
order they were added in (for undo). A plain JSON-like dict, so Gradio can keep it per visitor."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from msa_hf.inference.predictor import Prompt

POSITIVE, NEGATIVE, BOX = "positive click", "negative click", "box (click two corners)"


def empty_prompts() -> dict[str, Any]:
    """A fresh prompt state: clicks `[[x, y, label], ...]`, a box, a half-drawn box's first corner, and the
    order in which clicks and the box were added (for undo)."""
    return {"points": [], "box": None, "corner": None, "history": []}


def add_prompt(
    prompts: dict[str, Any], x: float, y: float, mode: str, shape: tuple[int, ...]
) -> dict[str, Any]:
    """`prompts` with a click at `(x, y)` added in `mode` (a new dict; the state is never mutated).

    In box mode the first click sets a corner and the second completes the box (replacing an earlier box).
    Raises:
        ValueError: a click outside the image of `shape` `(H, W, ...)`, or an unknown mode.
    """
    height, width = shape[:2]
    x, y = (v.item() if isinstance(v, np.generic) else v for v in (x, y))  # the state stays JSON-like
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"the click ({x}, {y}) is outside the {width}x{height} image.")
    prompts = copy.deepcopy(prompts)
    if mode == BOX:
        if prompts["corner"] is None:
            prompts["corner"] = [x, y]
            return prompts
        (x0, y0), (x1, y1) = prompts["corner"], (x, y)
        prompts["box"] = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        prompts["corner"] = None
        prompts["history"] = [kind for kind in prompts["history"] if kind != "box"] + ["box"]
    elif mode in (POSITIVE, NEGATIVE):
        prompts["points"].append([x, y, 1 if mode == POSITIVE else 0])
        prompts["history"].append("point")
    else:
        raise ValueError(f"unknown prompt mode {mode!r}; choose one of {[POSITIVE, NEGATIVE, BOX]}.")
    return prompts


def undo_prompt(prompts: dict[str, Any]) -> dict[str, Any]:
    """`prompts` without its last addition (a pending corner first)."""
    prompts = copy.deepcopy(prompts)
    if prompts["corner"] is not None:
        prompts["corner"] = None
    elif prompts["history"]:
        if prompts["history"].pop() == "box":
            prompts["box"] = None
        else:
            prompts["points"].pop()
    return prompts


def describe(prompts: dict[str, Any]) -> str:
    """A one-line summary for the status box, e.g. "2 click(s), box"."""
    parts = [f"{len(prompts['points'])} click(s)"] if prompts["points"] else []
    parts += ["box"] if prompts["box"] else []
    text = ", ".join(parts) or "no prompts"
    return text + ("; box: click the opposite corner" if prompts["corner"] is not None else "")


def has_prompt(prompts: dict[str, Any]) -> bool:
    return bool(prompts["points"]) or prompts["box"] is not None


def to_prompt(points: list[list[float]], box: list[float] | None, text: str | None = None) -> Prompt:
    """The demo's clicks `[[x, y, label], ...]`, box and text as the predictor's `Prompt`."""
    return Prompt(
        points=[[p[0], p[1]] for p in points] or None,
        labels=[int(p[2]) for p in points] or None,
        box=list(box) if box else None,
        text=text,
    )

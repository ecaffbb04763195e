# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Pictures for people: prediction overlays and a Dice-vs-clicks plot (PIL only, no plotting library)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PREDICTION_COLOUR = (255, 64, 64)
TARGET_COLOUR = (64, 255, 96)


def _outline(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    interior = (
        padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    )
    return mask & ~interior


def overlay(
    image: np.ndarray,
    prediction: np.ndarray,
    target: np.ndarray | None = None,
    scale: int = 2,
    margin: int | None = 16,
) -> Image.Image:
    """The image (grayscale or RGB, any dtype) with the prediction filled in red and the target outlined in
    green, cropped to both masks plus `margin` pixels (None: no crop), enlarged `scale` times."""
    pixels = np.asarray(image).astype(np.float32)
    low, high = np.percentile(pixels, [0.5, 99.5])
    pixels = np.clip((pixels - low) / max(high - low, 1e-6), 0, 1)
    rgb = np.repeat(pixels[..., None], 3, axis=-1) if pixels.ndim == 2 else pixels[..., :3]
    rgb = (rgb * 255).astype(np.uint8)
    prediction = np.asarray(prediction, dtype=bool)
    rgb[prediction] = (0.55 * rgb[prediction] + 0.45 * np.array(PREDICTION_COLOUR)).astype(np.uint8)
    if target is not None:
        rgb[_outline(np.asarray(target, dtype=bool))] = TARGET_COLOUR
    region = prediction | (np.asarray(target, dtype=bool) if target is not None else False)
    if margin is not None and region.any():
        rows, cols = np.nonzero(region)
        top, left = max(rows.min() - margin, 0), max(cols.min() - margin, 0)
        rgb = rgb[top : rows.max() + margin + 1, left : cols.max() + margin + 1]
    picture = Image.fromarray(np.ascontiguousarray(rgb))
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


def draw_prompts(
    picture: Image.Image,
    points: Sequence[Sequence[float]] = (),
    box: Sequence[float] | None = None,
    corner: Sequence[float] | None = None,
    scale: int = 1,
) -> Image.Image:
    """Mark prompts on `picture` (an uncropped `overlay`, enlarged `scale` times): positive clicks as green
    dots, negative ones as red, the box as a yellow rectangle, a half-drawn box's first corner as a yellow
    cross. `points` are `[x, y, label]` in image pixels."""
    picture = picture.copy()
    draw = ImageDraw.Draw(picture)
    radius = max(2, round(min(picture.size) / 80))
    if box is not None:
        x0, y0, x1, y1 = (scale * v for v in box)
        draw.rectangle(
            [x0, y0, x1 + scale - 1, y1 + scale - 1], outline=(255, 220, 0), width=max(1, radius // 2)
        )
    if corner is not None:
        x, y = (scale * v + scale / 2 for v in corner)
        draw.line([(x - 2 * radius, y), (x + 2 * radius, y)], fill=(255, 220, 0), width=2)
        draw.line([(x, y - 2 * radius), (x, y + 2 * radius)], fill=(255, 220, 0), width=2)
    for x, y, label in points:
        x, y = scale * x + scale / 2, scale * y + scale / 2
        colour = (40, 220, 80) if int(label) == 1 else (240, 50, 50)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline="white")
    return picture


def overlay_grid(tiles: Sequence[Image.Image], captions: Sequence[str], columns: int = 4) -> Image.Image:
    """Tiles with captions underneath, `columns` per row (tiles are padded to the largest)."""
    width = max(t.width for t in tiles)
    height = max(t.height for t in tiles) + 14
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * width, rows * height), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        x, y = (index % columns) * width, (index // columns) * height
        sheet.paste(tile, (x, y))
        draw.text((x + 2, y + tile.height + 1), caption[: width // 6], fill="black")
    return sheet


def plot_curves(curves: dict[str, Sequence[float]], path: str | Path, title: str = "Dice vs clicks") -> None:
    """A line plot of y-values in [0, 1] against 1..N (one line per name), saved as PNG."""
    width, height, margin = 420, 300, 40
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    draw.text((margin, 8), title, fill="black")
    draw.line([(margin, height - margin), (width - 10, height - margin)], fill="black")
    draw.line([(margin, height - margin), (margin, 24)], fill="black")
    for tick in (0.0, 0.5, 1.0):
        y = height - margin - tick * (height - margin - 24)
        draw.text((4, y - 6), f"{tick:.1f}", fill="black")
    colours = [(220, 50, 50), (50, 90, 220), (40, 160, 60), (200, 140, 0), (140, 60, 180)]
    longest = max((len(v) for v in curves.values()), default=1)
    for index, (name, values) in enumerate(curves.items()):
        colour = colours[index % len(colours)]
        points = [
            (
                margin + (k / max(longest - 1, 1)) * (width - margin - 20),
                height - margin - v * (height - margin - 24),
            )
            for k, v in enumerate(values)
        ]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.text((width - 150, 24 + 12 * index), name, fill=colour)
    for k in range(longest):
        x = margin + (k / max(longest - 1, 1)) * (width - margin - 20)
        draw.text((x - 3, height - margin + 4), str(k + 1), fill="black")
    picture.save(path)

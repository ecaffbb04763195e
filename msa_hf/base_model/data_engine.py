# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""A synthetic "segment anything" data engine for pretraining the small base model.

Each sample is an RGB picture of several overlapping objects — ellipses, polygons, smooth blobs and thin
curved bands — with per-object colour, texture and intensity gradients, on a cluttered textured background,
then blurred, noised and contrast-changed. Some objects carry a smaller object inside them, so a click on
the inner one is ambiguous (inner part or whole), which is what SAM's three masks are for. Nothing in it is
medical: adapting the base to MRI/CT is a real domain shift, as in the paper (SAM saw natural images).

Samples are a pure function of `(seed, index)`, so a held-out set is just another index range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

SHAPE_KINDS = ("ellipse", "polygon", "blob", "band")


@dataclass
class SyntheticConfig:
    """What the engine draws.

    Attributes:
        image_size: square side in pixels.
        min_objects / max_objects: objects per picture (besides clutter).
        nested_probability: chance that an object gets a smaller object inside it.
        grayscale_probability: chance that a picture is rendered gray (one intensity per object).
        clutter: small background specks that are never targets.
        min_target_pixels: visible area an object needs to be a target.
        blur_sigma / noise_std: ranges of the final Gaussian blur and additive noise (intensities in [0, 1]).
        max_texture_amplitude / max_gradient: strength of per-object texture and intensity gradient (0 gives
            flat objects: each visible part is then one colour, which the tests use).
    """

    image_size: int = 128
    min_objects: int = 3
    max_objects: int = 8
    nested_probability: float = 0.3
    grayscale_probability: float = 0.3
    clutter: int = 6
    min_target_pixels: int = 40
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    noise_std: tuple[float, float] = (0.0, 0.06)
    max_texture_amplitude: float = 0.15
    max_gradient: float = 0.25


@dataclass
class SyntheticSample:
    """One picture: `image` `(H, W, 3)` uint8 and its target masks `masks` `(K, H, W)` bool (visible parts
    of objects, plus the whole of each nested pair), `kinds` naming each mask's shape ("ellipse", ...,
    or "whole" for a nested pair's union)."""

    image: np.ndarray
    masks: np.ndarray
    kinds: list[str]


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field in [-1, 1] of shape `(size, size)` (a `cells`^2 noise grid, interpolated)."""
    grid = rng.standard_normal((cells, cells))
    field = ndimage.zoom(grid, size / cells, order=3, mode="reflect")[:size, :size]
    return field / (np.abs(field).max() + 1e-6)


def _shape_mask(rng: np.random.Generator, kind: str, size: int, center, radius: float) -> np.ndarray:
    cy, cx = center
    if kind == "ellipse":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        a, b = radius, radius * rng.uniform(0.35, 1.0)
        dx, dy = xx - cx, yy - cy
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "polygon":
        count = rng.integers(3, 9)
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = radius * rng.uniform(0.5, 1.0, count)
        draw.polygon(
            [(cx + r * np.cos(t), cy + r * np.sin(t)) for r, t in zip(radii, angles, strict=True)], fill=1
        )
    elif kind == "band":
        # a thin curved structure: a quadratic Bezier through a random control point
        p0 = np.array([cx, cy]) + rng.uniform(-1, 1, 2) * radius
        p2 = np.array([cx, cy]) + rng.uniform(-1, 1, 2) * radius
        p1 = np.array([cx, cy]) + rng.uniform(-1.5, 1.5, 2) * radius
        t = np.linspace(0, 1, 32)[:, None]
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        draw.line([tuple(p) for p in curve], fill=1, width=int(rng.integers(2, 6)), joint="curve")
    elif kind == "blob":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        distance = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / radius
        noise = _smooth_field(rng, size, int(rng.integers(4, 9)))
        return (1.0 - distance + 0.45 * noise) > 0.35
    else:
        raise ValueError(f"unknown shape kind {kind!r}; use one of {SHAPE_KINDS}.")
    return np.asarray(canvas, dtype=bool)


def _texture(rng: np.random.Generator, size: int, grayscale: bool, config: SyntheticConfig) -> np.ndarray:
    """`(size, size, 3)` colour of one object: base colour + texture + a linear intensity gradient."""
    base = rng.uniform(0.05, 0.95, 3)
    if grayscale:
        base[:] = base[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gradient = rng.uniform(-1, 1) * config.max_gradient * (xx * np.cos(rng.uniform(0, 2 * np.pi)) + yy)
    style = rng.integers(0, 3)
    if style == 0:  # stripes
        angle, frequency = rng.uniform(0, np.pi), rng.uniform(4, 16)
        texture = np.sin(2 * np.pi * frequency * (xx * np.cos(angle) + yy * np.sin(angle)))
    elif style == 1:  # mottled
        texture = _smooth_field(rng, size, int(rng.integers(6, 20)))
    else:  # flat
        texture = np.zeros((size, size), np.float32)
    amplitude = rng.uniform(0.0, 1.0) * config.max_texture_amplitude
    return np.clip(base[None, None, :] + (gradient + amplitude * texture)[..., None], 0.0, 1.0)


def generate_sample(seed: int, index: int, config: SyntheticConfig | None = None) -> SyntheticSample:
    """The picture number `index` of stream `seed` (deterministic)."""
    config = config or SyntheticConfig()
    rng = np.random.default_rng([seed, index])
    size = config.image_size
    grayscale = rng.random() < config.grayscale_probability
    image = _texture(rng, size, grayscale, config) * 0.6 + 0.2 * _smooth_field(rng, size, 5)[..., None]
    for _ in range(config.clutter):  # specks: texture, never targets
        speck = _shape_mask(rng, "ellipse", size, rng.uniform(0, size, 2), rng.uniform(1.5, 4))
        image[speck] = rng.uniform(0, 1, 1 if grayscale else 3)
    objects: list[tuple[np.ndarray, str, int | None]] = []  # (painted mask, kind, parent index)
    for _ in range(int(rng.integers(config.min_objects, config.max_objects + 1))):
        kind = SHAPE_KINDS[int(rng.integers(0, len(SHAPE_KINDS)))]
        radius = rng.uniform(0.08, 0.3) * size
        center = rng.uniform(radius * 0.5, size - radius * 0.5, 2)
        mask = _shape_mask(rng, kind, size, center, radius)
        if mask.sum() < config.min_target_pixels:
            continue
        image[mask] = _texture(rng, size, grayscale, config)[mask]
        objects.append((mask, kind, None))
        if kind != "band" and rng.random() < config.nested_probability:
            rows, cols = np.nonzero(ndimage.binary_erosion(mask, iterations=3))
            if rows.size:
                pick = int(rng.integers(0, rows.size))
                child_kind = ("ellipse", "polygon", "blob")[int(rng.integers(0, 3))]
                child = _shape_mask(
                    rng, child_kind, size, (rows[pick], cols[pick]), radius * rng.uniform(0.25, 0.5)
                )
                child &= mask
                if child.sum() >= config.min_target_pixels:
                    image[child] = _texture(rng, size, grayscale, config)[child]
                    objects.append((child, child_kind, len(objects) - 1))
    # visible part of each object = its pixels not painted over by a later object (children included)
    covered = np.zeros((size, size), bool)
    visible: list[np.ndarray | None] = [None] * len(objects)
    for position in range(len(objects) - 1, -1, -1):
        mask = objects[position][0]
        visible[position] = mask & ~covered
        covered |= mask
    masks, kinds = [], []
    for position, (_, kind, parent) in enumerate(objects):
        if visible[position].sum() >= config.min_target_pixels:
            masks.append(visible[position])
            kinds.append(kind)
        if parent is not None:
            whole = visible[parent] | visible[position]
            if visible[parent].sum() >= config.min_target_pixels and whole.sum() >= config.min_target_pixels:
                masks.append(whole)
                kinds.append("whole")
    sigma = rng.uniform(*config.blur_sigma)
    if sigma > 0.3:
        image = ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0))
    image = image + rng.normal(0, rng.uniform(*config.noise_std), image.shape)
    gamma = np.exp(rng.uniform(np.log(0.7), np.log(1.4)))
    image = np.clip(image, 0, 1) ** gamma
    contrast = rng.uniform(0.7, 1.2)
    image = np.clip((image - image.mean()) * contrast + image.mean(), 0, 1)
    stacked = np.stack(masks) if masks else np.zeros((0, size, size), bool)
    return SyntheticSample(image=(image * 255 + 0.5).astype(np.uint8), masks=stacked, kinds=kinds)


class SyntheticSegmentationDataset(torch.utils.data.Dataset):
    """Map-style view of the engine: item `i` is `generate_sample(seed, start + i)`, one target chosen.

    Returns `image` `(H, W, 3)` uint8, `mask` `(H, W)` bool (one target, uniformly among the picture's
    targets, chosen by the same seed) and `kind`. Pictures without a target are replaced by the next one.
    """

    def __init__(
        self, length: int, seed: int = 0, start: int = 0, config: SyntheticConfig | None = None
    ) -> None:
        self.length, self.seed, self.start = length, seed, start
        self.config = config or SyntheticConfig()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        offset = 0
        while True:
            sample = generate_sample(self.seed, self.start + index + offset * 10_000_019, self.config)
            if len(sample.masks):
                break
            offset += 1
        choice = int(np.random.default_rng([self.seed, self.start + index, 1]).integers(0, len(sample.masks)))
        return {"image": sample.image, "mask": sample.masks[choice], "kind": sample.kinds[choice]}

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Image embeddings for the interactive path, with the depth branch when the model has one.

SAM's predictor encodes an image once and decodes per prompt. A model with MSA's depth branch must see its
slices in windows of D consecutive slices (what it was trained on), so slices are encoded window by
window: `encode_slices` takes the slices of a volume and returns one embedding per slice; `encode_pictures`
takes unrelated pictures (each its own window).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from msa_hf.data.transforms import GrayscaleToRGB, SamNormalize, intensity_transform_for, resize_and_pad
from msa_hf.inference.placement import Placement


def depth_branch_slices(model: Any) -> int | None:
    """D, the slices per window of the model's depth branch, or `None` without one.

    Understands `SamAdapterModel` (its config) and a peft model with MSA adapters (the active adapters'
    configs); anything else (a plain `SamModel`, a LoRA model) has no depth branch.
    """
    config = getattr(model, "config", None)
    if getattr(config, "use_depth_branch", False):
        return int(config.num_slices)
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict):
        active = getattr(model, "active_adapters", None) or [getattr(model, "active_adapter", None)]
        for name in active:
            adapter = peft_config.get(name)
            if getattr(adapter, "use_depth_branch", False):
                return int(adapter.num_slices)
    return None


def _checked_picture(image: np.ndarray) -> np.ndarray:
    """`image` as `(H, W)` or `(H, W, 3|4)`; a clear `ValueError` for anything a segmentation would silently
    get wrong: other shapes, an empty picture, NaN or infinite values, RGB outside 0-255 / 0-65535 / [0, 1]."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))) or array.size == 0:
        raise ValueError(
            f"image of shape {array.shape}: expected (H, W) grayscale or (H, W, 3) / (H, W, 4) RGB(A); pick one "
            "channel or one slice of a multi-channel or 3-D array first."
        )
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        count = int((~np.isfinite(array)).sum())
        raise ValueError(
            f"image has {count} NaN or infinite pixel(s); replace them (np.nan_to_num, or the background value) "
            "before segmenting."
        )
    rgb_in_range = array.ndim == 2 or array.dtype in (np.uint8, np.uint16)
    if not rgb_in_range and np.issubdtype(array.dtype, np.floating):
        rgb_in_range = array.min() >= 0 and array.max() <= 1
    if not rgb_in_range:
        raise ValueError(
            f"an RGB image must be uint8 (0-255), uint16 or floating point in [0, 1]; got {array.dtype} with "
            f"values {array.min()}..{array.max()}. Pass a single-channel (H, W) image for other intensities."
        )
    return array


def image_to_pixel_values(
    image: np.ndarray,
    image_size: int,
    modality: str = "other",
    window: str | tuple[float, float] | None = None,
) -> torch.Tensor:
    """One picture -> SAM's input `(3, S, S)`: intensity by modality (CT window, MR percentiles, 8/16-bit
    range) for `(H, W)` images; RGB(A) `(H, W, 3|4)` scaled from its range (uint8 /255, uint16 /65535, float
    in [0, 1] as is, alpha dropped); longest side resized to `S`, padded, normalised.

    Raises:
        ValueError: another shape, an empty picture, NaN or infinite values, RGB outside those ranges.
    """
    array = _checked_picture(image)
    if array.ndim == 3:
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(array.dtype, 1.0)
        pixels = torch.from_numpy(array[..., :3].astype(np.float32) / scale).permute(2, 0, 1)
    else:
        intensity = intensity_transform_for(modality, array.dtype, window)
        pixels = GrayscaleToRGB()(intensity(torch.from_numpy(array.astype(np.float32))))
    resized, _ = resize_and_pad(pixels, None, image_size)
    return SamNormalize()(resized)


@torch.no_grad()
def encode_slices(
    model: Any, pixel_values: torch.Tensor, batch_size: int = 8, placement: Placement | None = None
) -> torch.Tensor:
    """Embeddings of consecutive slices, `(N, 3, S, S)` -> `(N, C, h, w)`; with `placement`, on its device
    under its autocast, returned in float32.

    With a depth branch of D slices, slices `[kD, (k+1)D)` are encoded together as one window; a last
    window short of D (or a single picture) is padded by repeating its last slice, as `slice_windows` pads
    short volumes, and the padding's embeddings are dropped. Without one, slices are encoded in batches.
    `batch_size` bounds memory: slices per encoder call (rounded up to whole windows).
    """
    if placement is None:
        placement = Placement(getattr(model, "device", pixel_values.device), torch.float32)
    pixel_values = pixel_values.to(placement.device)
    count = len(pixel_values)
    depth = depth_branch_slices(model)
    if depth is None:
        step = max(batch_size, 1)
        return torch.cat([placement.encode(model, pixel_values[i : i + step]) for i in range(0, count, step)])
    padded_count = -(-count // depth) * depth
    if padded_count != count:
        padding = pixel_values[-1:].expand(padded_count - count, *pixel_values.shape[1:])
        pixel_values = torch.cat([pixel_values, padding])
    step = max(-(-batch_size // depth), 1) * depth
    embeddings = [
        placement.encode(model, pixel_values[i : i + step], num_slices=depth)
        for i in range(0, padded_count, step)
    ]
    return torch.cat(embeddings)[:count]


@torch.no_grad()
def encode_pictures(
    model: Any, pixel_values: torch.Tensor, batch_size: int = 8, placement: Placement | None = None
) -> torch.Tensor:
    """Embeddings of unrelated pictures (a folder of images), `(N, 3, S, S)` -> `(N, C, h, w)`, `batch_size`
    pictures per encoder call.

    A model with a depth branch sees each picture as a window of D copies of itself: a picture has no
    neighbouring slices, and a window must not mix pictures (`encode_slices` would let them attend to each
    other across depth)."""
    depth = depth_branch_slices(model)
    if depth is None:
        return encode_slices(model, pixel_values, batch_size, placement)
    windows = pixel_values.repeat_interleave(depth, dim=0)  # picture k fills window k
    return encode_slices(model, windows, batch_size * depth, placement)[::depth]

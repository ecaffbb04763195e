# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""3-D batches in one place: how a volume batch becomes slices, and which D a call runs the depth branch with.

A volume batch is `pixel_values (V, C, D, H, W)`: V windows of D consecutive slices. The image encoder runs
on `(V * D, C, H, W)` with the slice index inner (window 0's slices, then window 1's, ...), and the depth
branch regroups that batch into V sequences of D. Per-slice prompts and labels `(V, D, ...)` flatten the same
way, so row `v * D + d` of every tensor is slice d of window v. The native model, the peft model, training
and evaluation all use these functions, so the order is defined once.
"""

from __future__ import annotations

from typing import Any

import torch

from msa_hf.modeling.adapter_layers import check_num_slices

PER_SLICE_KEYS = ("input_points", "input_labels", "labels")


def flatten_volume_pixels(pixel_values: torch.Tensor) -> tuple[torch.Tensor, int]:
    """`(V, C, D, H, W)` -> `((V * D, C, H, W)` with the slice index inner, `D)`."""
    volumes, channels, depth, height, width = pixel_values.shape
    return pixel_values.permute(0, 2, 1, 3, 4).reshape(volumes * depth, channels, height, width), depth


def unflatten_slices(tensor: torch.Tensor, num_slices: int) -> torch.Tensor:
    """`(V * D, ...)` -> `(V, D, ...)`: the inverse of the flattening above for any per-slice tensor."""
    check_num_slices(tensor.shape[0], num_slices)
    return tensor.unflatten(0, (tensor.shape[0] // num_slices, num_slices))


def resolve_volume_batch(
    pixel_values: torch.Tensor | None,
    num_slices: int | None,
    has_depth_branch: bool,
    default_num_slices: int,
    no_depth_branch_hint: str,
) -> tuple[torch.Tensor | None, int | None]:
    """The one rule for D: a 5-D input's own D (a contradicting `num_slices` is an error), else `num_slices`,
    else `default_num_slices`; `None` when there is no depth branch (then `num_slices` for a 4-D input is
    an error that ends with `no_depth_branch_hint`).

    Returns `(pixel_values (V * D, C, H, W) or the 4-D input unchanged, D or None)`.
    """
    from_volume = False
    if pixel_values is not None and pixel_values.ndim == 5:
        if num_slices is not None and num_slices != pixel_values.shape[2]:
            raise ValueError(
                f"num_slices={num_slices} contradicts the 5-D pixel_values of shape {tuple(pixel_values.shape)} "
                f"(V, C, D, H, W) with D={pixel_values.shape[2]}; drop num_slices or pass a 4-D batch."
            )
        pixel_values, num_slices = flatten_volume_pixels(pixel_values)
        from_volume = True
    elif pixel_values is not None and pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must be (B, C, H, W) or (V, C, D, H, W); got shape {tuple(pixel_values.shape)}."
        )
    if not has_depth_branch:
        if num_slices is not None and not from_volume:
            raise ValueError(f"num_slices={num_slices} was given but {no_depth_branch_hint}")
        return pixel_values, None
    if num_slices is None:
        num_slices = default_num_slices
    if pixel_values is not None:
        check_num_slices(pixel_values.shape[0], num_slices)
    return pixel_values, num_slices


def flatten_volume_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A collated 3-D batch -> model inputs: `pixel_values` stay `(V, C, D, S, S)` (the model flattens them
    with `flatten_volume_pixels`); per-slice prompts and labels `(V, D, ...)` become `(V * D, ...)` in the
    same slice order, and each window's class name repeats per slice. A 4-D batch is returned unchanged."""
    if batch["pixel_values"].ndim != 5:
        return batch
    out = dict(batch)
    depth = batch["pixel_values"].shape[2]
    for key in PER_SLICE_KEYS:
        if key in batch:
            out[key] = batch[key].flatten(0, 1)
    if "class_name" in batch:
        out["class_name"] = [name for name in batch["class_name"] for _ in range(depth)]
    return out

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Benchmark models at SAM's geometries and any input size, and the encoder's multiply-accumulates computed
from the shapes (the FLOP side of every time ratio)."""

from __future__ import annotations

import math
from typing import Any

import torch

from msa_hf.modeling.parameter_report import SAM_GEOMETRIES
from msa_hf.testing import TINY_MASK_DECODER, TINY_PROMPT_ENCODER, TINY_VISION

GEOMETRIES = ("ViT-B", "ViT-L", "ViT-H", "tiny")


def adapter_config(geometry: str, image_size: int, **adapter_settings: Any):
    """`SamAdapterConfig` of `geometry` taking `image_size` inputs (position tables sized for its grid)."""
    from msa_hf import SamAdapterConfig

    if geometry == "tiny":
        vision = dict(TINY_VISION, image_size=image_size)
        prompt = dict(TINY_PROMPT_ENCODER, image_size=image_size)
        return SamAdapterConfig(
            vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=dict(TINY_MASK_DECODER),
            **adapter_settings,
        )  # fmt: skip
    vision = dict(SAM_GEOMETRIES[geometry], image_size=image_size)
    return SamAdapterConfig(
        vision_config=vision, prompt_encoder_config={"image_size": image_size}, **adapter_settings
    )


@torch.no_grad()
def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    # SAM's vision weights start at std 1e-10: denormal floats make CPU math ~30x slower, which would time
    # the floating-point unit, not the model
    from msa_hf.testing import randomize_weights

    randomize_weights(model, seed=seed, std=0.02, include_adapters=True)


def build_model(kind: str, geometry: str, image_size: int, depth: int = 1, **adapter_settings: Any):
    """`kind`: "sam" (transformers' `SamModel`), "msa" (2-D adapters), "msa-3d" (adapters + depth branch) or
    "msa+fallback" (2-D adapters, and the base kept to answer the prompts they ignore: `keep_base_decoder`).

    The same seed gives the same frozen weights to all kinds, so their outputs differ by the adapters only.
    """
    from transformers import SamModel

    from msa_hf import SamAdapterModel

    if kind == "msa-3d":
        adapter_settings = dict(adapter_settings, use_depth_branch=True, num_slices=depth)
    config = adapter_config(geometry, image_size, **adapter_settings)
    model = SamAdapterModel(config) if kind.startswith("msa") else SamModel(config.to_sam_config())
    _randomise(model)
    if kind == "msa+fallback":
        model.keep_base_decoder()
    return model


def encoder_macs(
    geometry: str, image_size: int, adapters: bool, depth: int | None = None, ratio: float = 0.25
) -> int:
    """Multiply-accumulates of one image through the image encoder (patch embedding, blocks, neck).

    Per block of width C on N = (S/p)^2 tokens: qkv 3NC^2, projection NC^2, MLP 2NCM, attention 2 N n C
    (n = keys per query: the window's w^2 tokens, padded grid, or all N in global blocks) plus the
    decomposed relative-position terms; MSA adds two bottleneck adapters (2 N C rC each); the depth branch
    (`depth` = D) reruns qkv + projection over the slices (4NC^2), attends over D slices (2 N D C) and adds
    its adapter.
    """
    config = adapter_config(geometry, image_size).vision_config
    width, mlp, patch = config.hidden_size, config.mlp_dim, config.patch_size
    grid = image_size // patch
    tokens = grid * grid
    window = config.window_size
    padded = math.ceil(grid / window) * window
    total = tokens * 3 * patch * patch * width  # patch embedding
    bottleneck = int(width * ratio)
    for index in range(config.num_hidden_layers):
        total += tokens * (3 * width * width + width * width + 2 * width * mlp)
        if index in config.global_attn_indexes:
            total += 2 * tokens * tokens * width + tokens * 2 * grid * width
        else:
            total += 2 * padded * padded * window * window * width + padded * padded * 2 * window * width
        if adapters:
            total += 2 * (2 * tokens * width * bottleneck)
        if depth is not None:
            total += tokens * 4 * width * width + 2 * tokens * depth * width + 2 * tokens * width * bottleneck
    out = config.output_channels
    total += tokens * width * out + tokens * out * out * 9  # neck: 1x1 then 3x3 convolutions
    return total

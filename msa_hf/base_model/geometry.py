# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The small base model's shape (`base_config`) and the initialisation that makes it trainable from scratch.

Two transformers defaults make a from-scratch `SamModel` untrainable (docs/base-model.md): vision weights
start at std 1e-10 (`initializer_range`; also denormal floats on CPU), and the random-Fourier positional
matrix starts with std hidden/2 instead of SAM's 1.0. `initialise_from_scratch` fixes both.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import SamConfig, SamModel

# ~0.8 M parameters: ViT width 96, 4 blocks (two global), 128 px input, 16x16 embedding, 64x64 masks.
BASE_GEOMETRY: dict[str, dict[str, Any]] = {
    "vision_config": {
        "hidden_size": 96,
        "output_channels": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "image_size": 128,
        "patch_size": 8,
        "window_size": 8,
        "global_attn_indexes": [1, 3],
        "num_pos_feats": 32,
        "mlp_dim": 384,
        "initializer_range": 0.02,
    },
    "prompt_encoder_config": {
        "hidden_size": 64,
        "image_size": 128,
        "patch_size": 8,
        "mask_input_channels": 16,
    },
    "mask_decoder_config": {
        "hidden_size": 64,
        "mlp_dim": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "iou_head_hidden_dim": 64,
    },
}


def base_config() -> SamConfig:
    """The small base's `SamConfig`."""
    return SamConfig(**{key: dict(value) for key, value in BASE_GEOMETRY.items()})


@torch.no_grad()
def initialise_from_scratch(model: SamModel, seed: int = 0) -> SamModel:
    """Trainable from-scratch init: trunc-normal(0.02) vision linears, SAM's N(0, 1) positional matrix
    (tied between the image and prompt encoders)."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.vision_encoder.named_parameters():
        if parameter.ndim >= 2 and "pos_embed" not in name and "rel_pos" not in name:
            parameter.copy_(torch.randn(parameter.shape, generator=generator).clamp_(-2, 2) * 0.02)
    gaussian = torch.randn(model.shared_image_embedding.positional_embedding.shape, generator=generator)
    model.shared_image_embedding.positional_embedding.copy_(gaussian)
    model.prompt_encoder.shared_embedding.positional_embedding.copy_(gaussian)
    return model

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Running a SAM checkpoint at another input size (e.g. 1024 weights at 256 or 512).

SAM's patch embedding refuses any input but `config.image_size`, and two parameter shapes depend on it:
the absolute position embedding `(1, S, S, C)` with S = image_size / patch_size, and the relative-position
tables `(2S - 1, head_dim)` of the global-attention blocks. Windowed blocks keep their tables (the window
does not change). Both are resampled the way timm and SAM's own `get_rel_pos` resample them.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from transformers import SamModel


def resize_position_embedding(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Bicubic resampling of an absolute position embedding: `(1, S, S, C) -> (1, grid, grid, C)`."""
    resized = F.interpolate(
        pos_embed.permute(0, 3, 1, 2).float(), size=(grid, grid), mode="bicubic", align_corners=False
    )
    return resized.permute(0, 2, 3, 1).to(pos_embed.dtype)


def resize_relative_position(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """Linear resampling of a relative-position table: `(L, head_dim) -> (length, head_dim)`."""
    resized = F.interpolate(rel_pos.T[None].float(), size=length, mode="linear", align_corners=False)
    return resized[0].T.to(rel_pos.dtype).contiguous()


def build_at_image_size(model: SamModel, image_size: int) -> SamModel:
    """A copy of `model` (any `SamModel`, `SamAdapterModel` included) that takes `image_size` inputs.

    Position embeddings and global-attention relative-position tables are resampled; every other weight is
    copied unchanged. Low-resolution masks then come out at `4 * image_size / patch_size`.

    Args:
        model: the model at its trained size.
        image_size: the new square input side, a multiple of the patch size.
    """
    vision = model.config.vision_config
    if image_size % vision.patch_size != 0:
        raise ValueError(
            f"image_size={image_size} must be a multiple of the patch size {vision.patch_size}; "
            f"e.g. {image_size - image_size % vision.patch_size or vision.patch_size}."
        )
    config = copy.deepcopy(model.config)
    config.vision_config = type(vision)(**{**vision.to_dict(), "image_size": image_size})
    prompt = config.prompt_encoder_config.to_dict()
    prompt.pop("image_embedding_size", None)  # derived from image_size; a stale copy would win otherwise
    config.prompt_encoder_config = type(config.prompt_encoder_config)(**{**prompt, "image_size": image_size})

    grid = image_size // vision.patch_size
    state = model.state_dict()
    for name, tensor in list(state.items()):
        if name == "vision_encoder.pos_embed":
            state[name] = resize_position_embedding(tensor, grid)
        elif name.endswith(("attn.rel_pos_h", "attn.rel_pos_w")):
            layer = int(name.split("vision_encoder.layers.")[1].split(".")[0])
            if layer in vision.global_attn_indexes:
                state[name] = resize_relative_position(tensor, 2 * grid - 1)
    resized = type(model)(config)
    resized.load_state_dict(state, strict=True)
    return resized.to(next(model.parameters()).device)

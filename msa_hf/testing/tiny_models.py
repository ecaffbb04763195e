# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Tiny SAM geometries, weight randomisation and small models built from them, for tests, benchmarks and
examples.

A randomly initialised SAM has vision weights of std 1e-10 (`SamVisionConfig.initializer_range`): its output
barely depends on the input, so any comparison of outputs on it proves nothing. `randomize_weights` gives
every parameter a meaningful random value first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import SamConfig, SamModel

if TYPE_CHECKING:
    from msa_hf.modeling.modeling_msa import SamAdapterModel
    from msa_hf.modeling.text_prompts import TextEncoder

TINY_VISION = dict(
    hidden_size=32,
    output_channels=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=64,
    patch_size=8,
    window_size=4,
    global_attn_indexes=[1],
    num_pos_feats=8,
    mlp_dim=64,
)
TINY_PROMPT_ENCODER = dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4)
TINY_MASK_DECODER = dict(
    hidden_size=16, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=16
)


def tiny_sam_kwargs() -> dict:
    """Sub-config kwargs of a tiny SAM (ViT hidden 32, 2 blocks, 64x64 input, 8x8 embedding grid)."""
    return dict(
        vision_config=dict(TINY_VISION),
        prompt_encoder_config=dict(TINY_PROMPT_ENCODER),
        mask_decoder_config=dict(TINY_MASK_DECODER),
    )


@torch.no_grad()
def randomize_weights(
    model: nn.Module, seed: int = 0, std: float = 0.2, include_adapters: bool = False
) -> None:
    """Fill parameters with N(0, std^2) noise (LayerNorm weights around 1).

    Adapters keep their (zero up-projection) values unless `include_adapters`.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if not include_adapters and is_any_adapter_parameter(name):
            continue
        noise = torch.randn(parameter.shape, generator=generator) * std
        if "layer_norm" in name and name.endswith("weight"):
            noise = noise + 1.0
        parameter.copy_(noise.to(parameter.dtype))


def is_any_adapter_parameter(name: str) -> bool:
    """An MSA adapter parameter under either naming (native `space_adapter.`, PEFT `msa_space_adapter.<name>.`)."""
    from msa_hf.modeling.modeling_msa import is_adapter_parameter

    return is_adapter_parameter(name) or ".msa_" in name


@torch.no_grad()
def randomize_adapter_weights(model: nn.Module, seed: int = 0, std: float = 0.2) -> None:
    """Give every adapter parameter (and nothing else) N(0, std^2) values, so adapters change outputs."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if is_any_adapter_parameter(name):
            parameter.copy_((torch.randn(parameter.shape, generator=generator) * std).to(parameter.dtype))


def fresh_sam(**vision) -> SamModel:
    """A tiny `SamModel` with randomised weights (seed 0); `vision` overrides vision-config fields."""
    kwargs = tiny_sam_kwargs()
    kwargs["vision_config"].update(vision)
    model = SamModel(SamConfig(**kwargs)).eval()
    randomize_weights(model, seed=0)
    return model


def make_msa(sam: SamModel | None = None, **adapter_kwargs) -> SamAdapterModel:
    """A tiny `SamAdapterModel` holding `sam`'s weights (adapters at their zero-output init)."""
    from msa_hf.modeling import SamAdapterConfig, SamAdapterModel

    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs(), **adapter_kwargs)).eval()
    if sam is not None:
        missing, unexpected = model.load_state_dict(sam.state_dict(), strict=False)
        if unexpected or not all("_adapter." in k for k in missing):
            raise ValueError(
                f"{type(sam).__name__} is not a tiny SAM: unexpected {unexpected}, missing {missing}"
            )
    return model


def saved_msa_adapter(folder, seed: int, **vision) -> None:
    """Save a peft `msa` adapter (decoder adapters on, random adapter weights from `seed`) for `fresh_sam`."""
    from peft import get_peft_model

    from msa_hf.peft_msa import MsaAdapterConfig

    model = get_peft_model(fresh_sam(**vision), MsaAdapterConfig(decoder_training="adapters"))
    randomize_adapter_weights(model, seed=seed)
    model.save_pretrained(folder)


def tiny_text_encoder() -> TextEncoder:
    """A 2-layer CLIP text model with a character tokenizer: text features of width 32, no download."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from msa_hf.modeling.text_prompts import CharacterTokenizer, TextEncoder

    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=64, eos_token_id=299, bos_token_id=298, pad_token_id=0,
    )  # fmt: skip
    return TextEncoder(CLIPTextModel(config), CharacterTokenizer(300, max_length=64))


def text_model(seed: int = 0) -> SamAdapterModel:
    """A tiny `SamAdapterModel` taking text prompts of width 32 (two text tokens), weights from `seed`."""
    torch.manual_seed(seed)
    from msa_hf.modeling import SamAdapterConfig, SamAdapterModel

    model = SamAdapterModel(SamAdapterConfig(**tiny_sam_kwargs(), text_embedding_dim=32, num_text_tokens=2))
    randomize_weights(model, seed=seed, std=0.1)
    return model

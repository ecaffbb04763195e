"""Import the original segment-anything package (PyPI `segment-anything`), with or without torchvision.

Its package __init__ imports torchvision through the automatic mask generator and resize transforms;
only `segment_anything.modeling` is used here, so where torchvision is not installed, empty stand-ins for
those modules suffice while it imports (docs/stack-notes.md). Where it is, the real one is left alone.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from functools import partial

import torch
from torch import nn

_STAND_INS = (
    "torchvision",
    "torchvision.ops",
    "torchvision.ops.boxes",
    "torchvision.transforms",
    "torchvision.transforms.functional",
)
if importlib.util.find_spec("torchvision") is not None:  # the real one is there: nothing to stand in for
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
else:
    for _name in _STAND_INS:
        sys.modules[_name] = types.ModuleType(_name)
    sys.modules["torchvision.ops.boxes"].batched_nms = None
    sys.modules["torchvision.ops.boxes"].box_area = None
    sys.modules["torchvision.transforms.functional"].resize = None
    sys.modules["torchvision.transforms.functional"].to_pil_image = None
    try:
        from segment_anything.modeling import (
            ImageEncoderViT,
            MaskDecoder,
            PromptEncoder,
            Sam,
            TwoWayTransformer,
        )
    finally:
        # Remove the stand-ins again: other libraries probe for torchvision (datasets calls find_spec, which
        # fails on a module without __spec__) and must keep seeing it as absent.
        for _name in _STAND_INS:
            del sys.modules[_name]


def build_tiny_original_sam(seed: int = 0) -> Sam:
    """A small original SAM (embed 32, depth 2, 64x64 input, patch 8) with random, non-degenerate weights."""
    torch.manual_seed(seed)
    encoder = ImageEncoderViT(
        img_size=64,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        out_chans=16,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=4,
        global_attn_indexes=(1,),
    )
    prompt_encoder = PromptEncoder(
        embed_dim=16, image_embedding_size=(8, 8), input_image_size=(64, 64), mask_in_chans=4
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=16, mlp_dim=32, num_heads=8),
        transformer_dim=16,
        iou_head_depth=3,
        iou_head_hidden_dim=16,
    )
    sam = Sam(encoder, prompt_encoder, decoder, pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0, 1.0, 1.0]).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sam.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * 0.5
            parameter.copy_(noise + 1.0 if "norm" in name and name.endswith("weight") else noise)
    return sam

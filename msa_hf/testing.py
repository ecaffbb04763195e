# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Tiny SAM geometries and weight randomisation, for tests, benchmarks and examples.

A randomly initialised SAM has vision weights of std 1e-10 (`SamVisionConfig.initializer_range`): its output
barely depends on the input, so any comparison of outputs on it proves nothing. `randomize_weights` gives
every parameter a meaningful random value first.
"""

from __future__ import annotations

import torch
from torch import nn

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


def write_nifti_case(
    folder, name: str, shape=(24, 20, 10), seed: int = 0, affine=None, hu: bool = True
) -> tuple:
    """A Decathlon-style case under `folder` (`imagesTr/<name>_0000.nii.gz`, `labelsTr/<name>.nii.gz`):
    random int16 HU (or float) noise `shape` with two box-shaped structures (labels 1 and 2) on slices
    3-7. Returns `(image, labels)` as written (needs nibabel, the `medical` extra)."""
    from pathlib import Path

    import nibabel as nib
    import numpy as np

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    image = (
        rng.integers(-1000, 1000, shape).astype(np.int16)
        if hu
        else rng.random(shape).astype(np.float32) * 500
    )
    labels = np.zeros(shape, np.uint8)
    labels[4:12, 5:13, 3:6] = 1
    labels[14:20, 6:12, 4:8] = 2
    affine = np.diag([0.7, 0.7, 3.0, 1.0]) if affine is None else affine
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), folder / "imagesTr" / f"{name}_0000.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / "labelsTr" / f"{name}.nii.gz")
    return image, labels

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Convert original segment-anything checkpoints (`sam_vit_b_01ec64.pth`, MedSAM's `medsam_vit_b.pth`, ...)
into `SamAdapterModel`.

The original layout is `image_encoder.*`, `prompt_encoder.*`, `mask_decoder.*`. The geometry (ViT-B/L/H or
any other) is read off the tensors; the only thing weights cannot tell is the decoder's head count, which
is 8 in every released SAM. Every key is accounted for: a checkpoint with missing or unexpected keys is
refused with their names, never loaded partially.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from msa_hf.modeling.configuration_msa import SamAdapterConfig
from msa_hf.modeling.modeling_msa import SamAdapterModel, is_adapter_parameter

# Plain renames, applied in order (the same correspondence as transformers' convert_sam_to_hf.py).
_RENAMES = (
    ("image_encoder.", "vision_encoder."),
    (".blocks.", ".layers."),
    ("patch_embed.proj.", "patch_embed.projection."),
    ("neck.0.", "neck.conv1."),
    ("neck.1.", "neck.layer_norm1."),
    ("neck.2.", "neck.conv2."),
    ("neck.3.", "neck.layer_norm2."),
    (
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "shared_image_embedding.positional_embedding",
    ),
    ("prompt_encoder.point_embeddings.", "prompt_encoder.point_embed."),
    ("mask_downscaling.0.", "mask_embed.conv1."),
    ("mask_downscaling.1.", "mask_embed.layer_norm1."),
    ("mask_downscaling.3.", "mask_embed.conv2."),
    ("mask_downscaling.4.", "mask_embed.layer_norm2."),
    ("mask_downscaling.6.", "mask_embed.conv3."),
    ("output_upscaling.0.", "upscale_conv1."),
    ("output_upscaling.1.", "upscale_layer_norm."),
    ("output_upscaling.3.", "upscale_conv2."),
    (".norm_final_attn.", ".layer_norm_final_attn."),
)
_NORM = re.compile(r"\.norm(\d)\.")
_FEED_FORWARD = re.compile(
    r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.(\d+)\.(.*)$"
)


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an original SAM `.pth` safely (`weights_only=True`: tensors only, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}: pass the path of a segment-anything .pth file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt file, or a pickle that needs code to load
        raise ValueError(
            f"Could not read {path} as a tensors-only PyTorch checkpoint ({_first_line(error)}). Is it a complete "
            "segment-anything .pth (e.g. sam_vit_b_01ec64.pth)?"
        ) from error
    for key in ("model", "state_dict"):  # training scripts often nest the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors.")
    return state


def rename_original_key(key: str, feed_forward_depths: dict[str, int]) -> str:
    """Map one original segment-anything key to its transformers `SamModel` name."""
    for old, new in _RENAMES:
        key = key.replace(old, new)
    key = _NORM.sub(lambda m: f".layer_norm{m.group(1)}.", key)
    match = _FEED_FORWARD.match(key)
    if match:
        head, index, rest = match.group(1), int(match.group(2)), match.group(3)
        depth = feed_forward_depths[head]
        part = "proj_in" if index == 0 else "proj_out" if index == depth - 1 else f"layers.{index - 1}"
        key = f"{head}.{part}.{rest}"
    return key


def detect_sam_config_kwargs(state: dict[str, torch.Tensor], decoder_attention_heads: int = 8) -> dict:
    """SamConfig sub-config kwargs read off an original checkpoint's tensors (ViT-B/L/H or custom)."""
    try:
        pos_embed = state["image_encoder.pos_embed"]
        patch = state["image_encoder.patch_embed.proj.weight"]
        hidden, grid, patch_size = pos_embed.shape[-1], pos_embed.shape[1], patch.shape[-1]
        blocks = sorted({int(k.split(".")[2]) for k in state if k.startswith("image_encoder.blocks.")})
        rel_lengths = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] for i in blocks]
        head_dim = state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
        global_blocks = [i for i, length in zip(blocks, rel_lengths, strict=True) if length == 2 * grid - 1]
        windowed = [length for length in rel_lengths if length != 2 * grid - 1]
        window = (windowed[0] + 1) // 2 if windowed else 14
        decoder_layers = {
            int(k.split(".")[3]) for k in state if k.startswith("mask_decoder.transformer.layers.")
        }
        iou_layers = {
            int(k.split(".")[3]) for k in state if k.startswith("mask_decoder.iou_prediction_head.layers.")
        }
        decoder_hidden = state["mask_decoder.iou_token.weight"].shape[1]
    except KeyError as error:
        raise ValueError(
            f"Not an original segment-anything checkpoint: key {error} is missing "
            "(expected image_encoder.*, prompt_encoder.*, mask_decoder.*)."
        ) from error
    return dict(
        vision_config=dict(
            hidden_size=hidden,
            output_channels=state["image_encoder.neck.0.weight"].shape[0],
            num_hidden_layers=len(blocks),
            num_attention_heads=hidden // head_dim,
            image_size=grid * patch_size,
            patch_size=patch_size,
            window_size=window,
            global_attn_indexes=global_blocks,
            mlp_dim=state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0],
            num_pos_feats=state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape[1],
        ),
        prompt_encoder_config=dict(
            hidden_size=state["prompt_encoder.no_mask_embed.weight"].shape[1],
            image_size=grid * patch_size,
            patch_size=patch_size,
            mask_input_channels=state["prompt_encoder.mask_downscaling.3.weight"].shape[0],
        ),
        mask_decoder_config=dict(
            hidden_size=decoder_hidden,
            mlp_dim=state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0],
            num_hidden_layers=len(decoder_layers),
            num_attention_heads=decoder_attention_heads,
            num_multimask_outputs=state["mask_decoder.mask_tokens.weight"].shape[0] - 1,
            iou_head_depth=len(iou_layers),
            iou_head_hidden_dim=state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        ),
    )


def convert_original_state_dict(
    state: dict[str, torch.Tensor], model: SamAdapterModel
) -> dict[str, torch.Tensor]:
    """Rename an original state dict for `model`; raise listing any missing or unexpected key."""
    depths = {}
    for key in state:
        match = re.match(
            r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.(\d+)\.", key
        )
        if match:
            head = f"mask_decoder.{match.group(1)}"
            depths[head] = max(depths.get(head, 0), int(match.group(2)) + 1)
    renamed = {rename_original_key(key, depths): tensor for key, tensor in state.items()}
    positional = renamed["shared_image_embedding.positional_embedding"]
    renamed["prompt_encoder.shared_embedding.positional_embedding"] = positional  # tied in SamModel
    expected = {k for k in model.state_dict() if not is_adapter_parameter(k)}
    missing, unexpected = sorted(expected - renamed.keys()), sorted(renamed.keys() - expected)
    if missing or unexpected:
        raise ValueError(
            "The checkpoint does not match SAM's layout: "
            f"missing {len(missing)} key(s) {missing[:10]}, unexpected {len(unexpected)} key(s) {unexpected[:10]} "
            "(names after renaming to transformers' SAM). Nothing was loaded."
        )
    return renamed


def convert_segment_anything_checkpoint(
    path: str | Path, decoder_attention_heads: int = 8, **adapter_settings
) -> SamAdapterModel:
    """Build a `SamAdapterModel` from an original segment-anything `.pth` (SAM or MedSAM).

    Args:
        path: the `.pth` file.
        decoder_attention_heads: heads of the mask decoder's attention (8 in every released SAM).
        **adapter_settings: `SamAdapterConfig` adapter fields, e.g. `use_depth_branch=True`.

    Returns:
        The model with every SAM weight loaded and zero-output adapters (it computes what SAM computes).
    """
    state = load_original_state_dict(path)
    try:
        detected = detect_sam_config_kwargs(state, decoder_attention_heads)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    config = SamAdapterConfig(**detected, **adapter_settings)
    model = SamAdapterModel(config)
    renamed = convert_original_state_dict(state, model)
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    assert not unexpected and all(is_adapter_parameter(k) for k in missing)  # checked above, by name
    return model.eval()


def _first_line(error: Exception) -> str:
    """An exception's first meaningful line (torch's refusal of a code-running pickle is a page long)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]

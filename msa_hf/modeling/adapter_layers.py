# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The MSA adapter math, shared by the native `SamAdapterModel` and the PEFT `msa` method.

Everything that computes an adapted SAM block lives here once: the bottleneck adapter, the
prompt-conditioned decoder adapter, the depth-attention branch, and the adapted forward of a SAM vision
block and of a two-way decoder block. The two front ends only decide where the adapter modules are stored
(as block attributes, or in PEFT's per-adapter-name `ModuleDict`s) and pass them in.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.sam.modeling_sam import SamTwoWayAttentionBlock, SamVisionAttention, SamVisionLayer

from msa_hf.modeling.frozen_mlp import frozen_mlp_forward


class AdapterDown(nn.Linear):
    """Down-projection of an adapter. A type of its own so weight init can find it (see `init_adapter_weights`)."""


class AdapterUp(nn.Linear):
    """Up-projection of an adapter: zero-initialised, so an untrained MSA computes exactly what SAM computes."""


def bottleneck_width(width: int, ratio: float) -> int:
    """Hidden width of an adapter on a `width`-wide stream (at least 1)."""
    return max(1, int(round(width * ratio)))


class Adapter(nn.Module):
    """`Adapter(x) = up(act(down(x)))` (docs/method.md, "Adapter").

    Args:
        width: channels C of the stream the adapter reads and writes.
        bottleneck_ratio: hidden width as a fraction of C.
        activation: a name from transformers' `ACT2FN`.

    Shapes: `(..., C) -> (..., C)`.
    """

    def __init__(self, width: int, bottleneck_ratio: float, activation: str):
        super().__init__()
        hidden = bottleneck_width(width, bottleneck_ratio)
        self.down = AdapterDown(width, hidden)
        self.act = ACT2FN[activation]
        self.up = AdapterUp(hidden, width)
        reset_adapter_parameters(self)

    disabled = (
        False  # set by `adapters_disabled`: the adapter adds nothing, and the frozen SAM computes alone
    )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.disabled:
            return torch.zeros_like(hidden_states)
        return self.up(self.act(self.down(hidden_states)))


class PromptConditionedAdapter(nn.Module):
    """`up(act(down(t) + prompt_down(p)))` after the decoder's prompt self-attention (docs/method.md, decoder 1).

    `p` is the prompt embedding pooled over the sparse prompt tokens (see `pool_prompt_embedding`); with no
    sparse prompt the prompt term is absent. With `condition_on_prompt=False` there is no `prompt_down` and
    this is a plain `Adapter` that ignores `p`.

    Shapes: tokens `(B, P, N, C)`, prompt `(B, P, 1, C)` or `None` -> `(B, P, N, C)`.
    """

    def __init__(
        self, width: int, bottleneck_ratio: float, activation: str, condition_on_prompt: bool = True
    ):
        super().__init__()
        hidden = bottleneck_width(width, bottleneck_ratio)
        self.down = AdapterDown(width, hidden)
        self.prompt_down = AdapterDown(width, hidden) if condition_on_prompt else None
        self.act = ACT2FN[activation]
        self.up = AdapterUp(hidden, width)
        reset_adapter_parameters(self)

    disabled = False  # set by `adapters_disabled`

    def forward(self, tokens: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        if self.disabled:
            return torch.zeros_like(tokens)
        hidden = self.down(tokens)
        if prompt is not None and self.prompt_down is not None:
            hidden = hidden + self.prompt_down(prompt)
        return self.up(self.act(hidden))


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Inside the block every MSA adapter of `model` adds nothing, so the encoder and the decoder compute what
    the frozen SAM computes (a decoder trained in full keeps its trained weights: see
    `msa_hf.training.retention.self_distillation.BaseTeacher`). Adapters that add a residual output zeros of their input's shape."""
    adapters = [
        module for module in model.modules() if isinstance(module, Adapter | PromptConditionedAdapter)
    ]
    for adapter in adapters:
        adapter.disabled = True
    try:
        yield
    finally:
        for adapter in adapters:
            adapter.disabled = False


@contextmanager
def running_as_base(model: nn.Module, base_decoder: nn.Module | None) -> Iterator[None]:
    """Inside the block `model` computes what its base computes: every adapter off (`adapters_disabled`) and
    `base_decoder` as its mask decoder (the base's own, kept before the decoder trained; None: the model's own
    decoder, when it never trained). The self-distillation teacher and the base fallback both run the base so."""
    trained = model.mask_decoder
    if base_decoder is not None:
        model.mask_decoder = base_decoder
    try:
        with adapters_disabled(model):
            yield
    finally:
        model.mask_decoder = trained


@torch.no_grad()
def reset_adapter_parameters(module: nn.Module) -> None:
    """Initialise every adapter projection under `module`: down as `nn.Linear` does, up to zero."""
    for leaf in module.modules():
        if isinstance(leaf, AdapterUp):
            nn.init.zeros_(leaf.weight)
            nn.init.zeros_(leaf.bias)
        elif isinstance(leaf, AdapterDown):
            nn.init.kaiming_uniform_(leaf.weight, a=math.sqrt(5))
            nn.init.zeros_(leaf.bias)


def init_adapter_weights(module: nn.Module) -> None:
    """transformers `_init_weights` hook for adapter leaves.

    transformers 5 initialises only the parameters a checkpoint did not provide, per leaf module, through the
    owning `PreTrainedModel._init_weights`. Its generic rule would draw `AdapterUp` from N(0, 0.02) (or 1e-10
    inside SAM's vision encoder); this puts the adapter rule back.
    """
    from transformers import initialization as init

    if isinstance(module, AdapterUp):
        init.zeros_(module.weight)
        init.zeros_(module.bias)
    elif isinstance(module, AdapterDown):
        init.kaiming_uniform_(module.weight, a=math.sqrt(5))
        init.zeros_(module.bias)


def _sum_of(adapters: Sequence[nn.Module], *inputs: torch.Tensor | None) -> torch.Tensor | None:
    """Sum of several adapters' outputs on the same inputs (several active PEFT adapters add up)."""
    total = None
    for adapter in adapters:
        out = adapter(*inputs)
        total = out if total is None else total + out
    return total


def depth_attention(
    attention: SamVisionAttention, hidden_states: torch.Tensor, num_slices: int
) -> torch.Tensor:
    """Attention across the slices of each volume, with the block's frozen `qkv` and `proj` weights.

    For every spatial token, the D slices of its own volume form a length-D sequence (docs/method.md, "Depth
    branch"): computed on the un-windowed token grid, as a 1-D sequence without SAM's 2-D relative-position
    bias, so volumes in one batch never see each other.

    Args:
        attention: the SAM vision attention of this block (its weights are reused, never changed).
        hidden_states: `(V * D, H, W, C)` layer-normed tokens, slice index inner.
        num_slices: D.

    Returns:
        `(V * D, H, W, C)`.
    """
    batch, height, width, channels = hidden_states.shape
    volumes = batch // num_slices
    heads = attention.num_attention_heads
    # (V*D, H, W, C) -> (V, D, HW, C) -> (V, HW, D, C) -> (V*HW, D, C): one length-D sequence per token.
    sequences = (
        hidden_states.reshape(volumes, num_slices, height * width, channels)
        .transpose(1, 2)
        .reshape(volumes * height * width, num_slices, channels)
    )
    qkv = attention.qkv(sequences).reshape(-1, num_slices, 3, heads, channels // heads).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)  # each (V*HW, heads, D, head_dim)
    out = F.scaled_dot_product_attention(query, key, value)
    out = attention.proj(out.transpose(1, 2).reshape(-1, num_slices, channels))
    return (
        out.reshape(volumes, height * width, num_slices, channels)
        .transpose(1, 2)
        .reshape(batch, height, width, channels)
    )


def check_num_slices(batch_size: int, num_slices: int | None) -> None:
    """Raise a clear error when D does not split the batch into whole volumes."""
    if num_slices is None:
        return
    if num_slices < 1 or batch_size % num_slices != 0:
        raise ValueError(
            f"num_slices={num_slices} does not divide the batch of {batch_size} images: a 3-D batch is V volumes "
            f"of D consecutive slices flattened to (V*D, C, H, W). Pass a batch whose size is a multiple of D, "
            "or a 5-D tensor (V, C, D, H, W)."
        )


def msa_vision_layer_forward(
    layer: SamVisionLayer,
    hidden_states: torch.Tensor,
    space_adapters: Sequence[nn.Module],
    mlp_adapters: Sequence[nn.Module],
    depth_adapters: Sequence[nn.Module],
    mlp_adapter_scale: float,
    num_slices: int | None,
    recompute_frozen_mlp: bool = False,
) -> torch.Tensor:
    """One SAM image-encoder block with MSA adapters (docs/method.md, "Image encoder").

    ```
    a = attn(ln1(x)) ; a = a + Adapter_space(a) ; a = a + Adapter_depth(attn_D(ln1(x))) ; x = x + a
    xn = ln2(x) ; x = x + mlp(xn) + s * Adapter_mlp(xn)
    ```
    The space adapter runs after window un-partitioning: the partition is a per-token permutation, so a
    per-token adapter gives the same result on either side of it.

    Args:
        layer: the frozen SAM block whose weights are used.
        hidden_states: `(B, H, W, C)` tokens; for 3-D, B = V * D with the slice index inner.
        space_adapters, mlp_adapters, depth_adapters: the active adapters of each kind (outputs add up).
        mlp_adapter_scale: s.
        num_slices: D; the depth branch runs only when this is given and depth adapters exist.
        recompute_frozen_mlp: recompute the frozen MLP's hidden layer in the backward pass instead of keeping
            it (`msa_hf.modeling.frozen_mlp`); the same values either way.

    Returns:
        `(B, H, W, C)`.
    """
    residual = hidden_states
    normed = layer.layer_norm1(hidden_states)
    attn_input = normed
    if layer.window_size > 0:
        height, width = normed.shape[1], normed.shape[2]
        attn_input, padding_shape = layer.window_partition(normed, layer.window_size)
    attn_output, _ = layer.attn(hidden_states=attn_input)
    if layer.window_size > 0:
        attn_output = layer.window_unpartition(attn_output, layer.window_size, padding_shape, (height, width))

    delta = _sum_of(space_adapters, attn_output)
    if depth_adapters and num_slices is not None:
        across_slices = depth_attention(layer.attn, normed, num_slices)
        depth_delta = _sum_of(depth_adapters, across_slices)
        delta = depth_delta if delta is None else delta + depth_delta
    if delta is not None:
        attn_output = attn_output + delta
    hidden_states = residual + attn_output

    normed = layer.layer_norm2(hidden_states)
    out = hidden_states + frozen_mlp_forward(layer.mlp, normed, recompute_frozen_mlp)
    mlp_delta = _sum_of(mlp_adapters, normed)
    if mlp_delta is not None:
        out = out + mlp_adapter_scale * mlp_delta
    return out


def pool_prompt_embedding(query_point_embedding: torch.Tensor, num_output_tokens: int) -> torch.Tensor | None:
    """The prompt embedding `p` for the prompt-conditioned adapter.

    The decoder's token sequence is `[iou token, mask tokens, sparse prompt tokens]`. **decision**: `p` is the
    mean of the sparse prompt tokens (points, padding point, box corners as SAM's prompt encoder embeds
    them), one vector per prompt set. `None` when the call has no sparse prompt.

    Shapes: `(B, P, num_output_tokens + N_prompt, C) -> (B, P, 1, C)`.
    """
    if query_point_embedding.shape[2] <= num_output_tokens:
        return None
    return query_point_embedding[:, :, num_output_tokens:, :].mean(dim=2, keepdim=True)


def msa_two_way_block_forward(
    block: SamTwoWayAttentionBlock,
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_point_embedding: torch.Tensor,
    key_point_embedding: torch.Tensor,
    attention_similarity: torch.Tensor | None,
    prompt_adapters: Sequence[PromptConditionedAdapter],
    mlp_adapters: Sequence[nn.Module],
    image_to_token_adapters: Sequence[nn.Module],
    mlp_adapter_scale: float,
    num_output_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One SAM two-way decoder block with the three MSA decoder adapters (docs/method.md, "Mask decoder").

    1. prompt-conditioned adapter on the prompt self-attention output, before its residual;
    2. adapter parallel to the token MLP, scaled by s;
    3. adapter on the image-to-token cross-attention output, before its residual and LayerNorm.

    Args:
        queries: `(B, P, N_tokens, C)` tokens; keys: `(B, P, HW, C)` image tokens.
        query_point_embedding: `(B, P, N_tokens, C)` the decoder's input tokens (prompt tokens last).
        key_point_embedding: `(B, P, HW, C)` image positional encoding.
        num_output_tokens: iou + mask tokens ahead of the prompt tokens.

    Returns:
        `(queries, keys, image_to_token_attention_output)` as `SamTwoWayAttentionBlock` returns them.
    """
    if block.skip_first_layer_pe:
        attn_out, _ = block.self_attn(query=queries, key=queries, value=queries)
    else:
        query = queries + query_point_embedding
        attn_out, _ = block.self_attn(query=query, key=query, value=queries)
    prompt = pool_prompt_embedding(query_point_embedding, num_output_tokens) if prompt_adapters else None
    delta = _sum_of(prompt_adapters, attn_out, prompt)
    if delta is not None:
        attn_out = attn_out + delta
    queries = attn_out if block.skip_first_layer_pe else queries + attn_out
    queries = block.layer_norm1(queries)

    query = queries + query_point_embedding
    key = keys + key_point_embedding
    attn_out, _ = block.cross_attn_token_to_image(
        query=query, key=key, value=keys, attention_similarity=attention_similarity
    )
    queries = block.layer_norm2(queries + attn_out)

    mlp_out = block.mlp(queries)
    mlp_delta = _sum_of(mlp_adapters, queries)
    if mlp_delta is not None:
        mlp_out = mlp_out + mlp_adapter_scale * mlp_delta
    queries = block.layer_norm3(queries + mlp_out)

    query = queries + query_point_embedding
    key = keys + key_point_embedding
    attn_out, _ = block.cross_attn_image_to_token(query=key, key=query, value=queries)
    image_delta = _sum_of(image_to_token_adapters, attn_out)
    if image_delta is not None:
        attn_out = attn_out + image_delta
    keys = block.layer_norm4(keys + attn_out)
    return queries, keys, attn_out


__all__ = [
    "Adapter",
    "AdapterDown",
    "AdapterUp",
    "PromptConditionedAdapter",
    "bottleneck_width",
    "check_num_slices",
    "depth_attention",
    "init_adapter_weights",
    "msa_two_way_block_forward",
    "msa_vision_layer_forward",
    "pool_prompt_embedding",
    "reset_adapter_parameters",
]

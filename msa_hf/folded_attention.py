# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""SAM's image-encoder attention with the relative-position bias folded into queries and keys, for training.

SAM adds a decomposed relative-position bias to every attention score (MViTv2):
`s(q, k) = scale * q.k + rel_h[q, i(k)] + rel_w[q, j(k)]`, with `rel_h = q . R_h` `(N, H)` and
`rel_w = q . R_w` `(N, W)` for a key at grid row i and column j. transformers' SDPA attention materialises
that bias as a dense `(B, heads, N, N)` mask, and training keeps it (and its gradient) for the backward pass:
at 1024 px a global block has N = 4096 tokens, so that is 805 MB per block per image in float32, most of a
training step's activation memory.

The same scores come out of a dot product in a wider space, with no mask:
`q' = [scale * q, rel_h(q), rel_w(q)]` and `k' = [k, onehot_H(i), onehot_W(j)]`, so `q'.k' = s(q, k)`
exactly (the one-hot products pick one term each). SDPA then runs fused, keeping only q', k', v, the
output and the log-sum-exp for the backward pass. The score product is wider (d + H + W instead of d: 3x
for ViT-B's global blocks at 1024 px), so in evaluation mode the stock path runs; in training mode this
one does (the memory is the bottleneck there, and the mask's own gradient is no longer computed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.sam.modeling_sam import SamVisionAttention, SamVisionSdpaAttention


def _grid_one_hot(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """`(H * W, H + W)`: for the token at row i, column j, a one at i and one at H + j."""
    rows = torch.arange(height, device=like.device).repeat_interleave(width)
    columns = torch.arange(width, device=like.device).repeat(height)
    return torch.cat([F.one_hot(rows, height), F.one_hot(columns, width)], dim=-1).to(like.dtype)


def folded_relative_position_attention(
    attention: SamVisionAttention, hidden_states: torch.Tensor
) -> torch.Tensor:
    """What `attention(hidden_states)[0]` computes, with the relative-position bias folded into q and k.

    Shapes: `(B, H, W, C) -> (B, H, W, C)`.
    """
    batch, height, width, _ = hidden_states.shape
    heads = attention.num_attention_heads
    tokens = height * width
    qkv = attention.qkv(hidden_states).reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)  # (B, heads, N, d)
    along_height = attention.get_rel_pos(height, height, attention.rel_pos_h)  # (H, H, d)
    along_width = attention.get_rel_pos(width, width, attention.rel_pos_w)  # (W, W, d)
    grid_query = query.reshape(batch, heads, height, width, -1)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_query, along_height).reshape(batch, heads, tokens, height)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_query, along_width).reshape(batch, heads, tokens, width)
    wide_query = torch.cat([query * attention.scale, rel_h, rel_w], dim=-1)
    positions = _grid_one_hot(height, width, key).expand(batch, heads, tokens, height + width)
    wide_key = torch.cat([key, positions], dim=-1)
    # fused SDPA kernels need values as wide as the keys: zero columns, cut off again after
    wide_value = F.pad(value, (0, height + width))
    out = F.scaled_dot_product_attention(wide_query, wide_key, wide_value, scale=1.0)[..., : value.shape[-1]]
    out = out.view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
    return attention.proj(out)


class SamVisionFoldedAttention(SamVisionSdpaAttention):
    """`SamVisionSdpaAttention` that trains through `folded_relative_position_attention` (no N x N mask) and
    evaluates as transformers does. Same parameters and state-dict keys."""

    def forward(self, hidden_states: torch.Tensor, output_attentions=False) -> tuple[torch.Tensor, None]:
        if self.training and self.use_rel_pos and not output_attentions:
            return folded_relative_position_attention(self, hidden_states), None
        return super().forward(hidden_states, output_attentions=output_attentions)


def fold_relative_position_attention(model: nn.Module) -> nn.Module:
    """Switch every SAM image-encoder attention in `model` to `SamVisionFoldedAttention` in place (same
    weights; only the training-mode computation changes). Returns `model`."""
    for module in model.modules():
        # only transformers' SDPA attention: an eager one was asked for (attention maps), and stays eager
        if type(module) is SamVisionSdpaAttention:
            module.__class__ = SamVisionFoldedAttention
    return model


__all__ = [
    "SamVisionFoldedAttention",
    "fold_relative_position_attention",
    "folded_relative_position_attention",
]

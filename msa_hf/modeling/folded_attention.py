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
exactly (the one-hot products pick one term each). SDPA then runs fused with no mask. The score product is
wider (d + H + W instead of d: 3x for ViT-B's global blocks at 1024 px), so in evaluation mode the stock
path runs; in training mode this one does (the memory is the bottleneck there, and the mask's own gradient
is no longer computed).

What the backward pass keeps. Run through `F.scaled_dot_product_attention`, autograd keeps the wide q', k',
v' (values zero-padded to the key width: the fused kernels want equal widths) and the wide output: four
tensors 3x as wide as the stream in a global block. But all of them are cheap functions of q, k, v (which
the qkv projection's output already holds) and of the narrow output (the padded output columns are exactly
zero). So on CPU `FoldedFlashAttention` runs the flash kernel itself and keeps only q, k, v, the narrow
output and the log-sum-exp, rebuilding the wide tensors for the kernel's backward (two small einsums and
a concatenation per block). A ViT-B training step at 1024 px, batch 1, peaks 0.45 GB lower with MSA
(3.04 -> 2.59 GB) and 0.82 GB lower with full fine-tuning (4.70 -> 3.88 GB).

On CUDA (and any device without that CPU kernel) `FoldedRecomputedAttention` keeps the same narrow
tensors by another means: its forward runs SDPA without recording a graph and keeps only q, k, v and the
tables; its backward runs the block's attention again with a graph (whichever fused kernel SDPA picks
there) and differentiates it. One extra attention forward per block buys the wide tensors' memory: only
one block's wide tensors ever exist at a time, during its own backward. The kernels' private backward
entry points differ per device and version; this route uses only public calls, so it is the one that is
tested here (on CPU, with the kernel route switched off) and runs the same on a GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.sam.modeling_sam import SamVisionAttention, SamVisionSdpaAttention

# CUDA's fused attention kernels want head widths that are multiples of 8 (the flash kernel pads q, k and v
# to one with copies of its own, the memory-efficient one refuses others): there the folded width d + H + W
# is padded with zero columns to the next one (ViT-B's windowed blocks: 64 + 14 + 14 = 92 -> 96), which adds
# nothing to any score. The CPU kernels take any width, and the wider product would only cost time.
WIDTH_MULTIPLE: dict[str, int] = {"cuda": 8}


def folded_width(depth: int, height: int, width: int, device_type: str) -> int:
    """The width of the folded q', k', v' on `device_type`: `depth + height + width`, rounded up to that
    device's `WIDTH_MULTIPLE`."""
    multiple = WIDTH_MULTIPLE.get(device_type, 1)
    return -(-(depth + height + width) // multiple) * multiple


def _grid_one_hot(height: int, width: int, like: torch.Tensor, columns: int) -> torch.Tensor:
    """`(H * W, columns)`: for the token at row i, column j, a one at i and one at H + j (zeros after H + W)."""
    rows = torch.arange(height, device=like.device).repeat_interleave(width)
    grid_columns = torch.arange(width, device=like.device).repeat(height)
    one_hot = torch.cat([F.one_hot(rows, height), F.one_hot(grid_columns, width)], dim=-1).to(like.dtype)
    return F.pad(one_hot, (0, columns - height - width))


def _wide_query_key_value(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    along_height: torch.Tensor,
    along_width: torch.Tensor,
    scale: float,
    height: int,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The folded `q' = [scale q, q.R_h, q.R_w, 0]`, `k' = [k, onehot(row), onehot(col), 0]` and `v' = [v, 0]`.

    Shapes: query, key, value `(B, heads, N, d)` with `N = height * width`; `along_height` `(H, H, d)`,
    `along_width` `(W, W, d)` -> three `(B, heads, N, folded_width(d, H, W))`. The relative terms are
    computed in the query's dtype (what autocast would pick for the einsum).
    """
    batch, heads, tokens, depth = query.shape
    columns = folded_width(depth, height, width, query.device.type)
    grid_query = query.reshape(batch, heads, height, width, -1)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_query, along_height.to(query.dtype))
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_query, along_width.to(query.dtype))
    parts = [
        query * scale,
        rel_h.reshape(batch, heads, tokens, height),
        rel_w.reshape(batch, heads, tokens, width),
    ]
    if columns > depth + height + width:
        parts.append(rel_w.new_zeros(()).expand(batch, heads, tokens, columns - depth - height - width))
    wide_query = torch.cat(parts, dim=-1)
    positions = _grid_one_hot(height, width, key, columns - depth).expand(
        batch, heads, tokens, columns - depth
    )
    wide_key = torch.cat([key, positions], dim=-1)
    # fused SDPA kernels need values as wide as the keys: zero columns, cut off again after
    wide_value = F.pad(value, (0, columns - depth))
    return wide_query, wide_key, wide_value


class FoldedFlashAttention(torch.autograd.Function):
    """The folded attention through the CPU flash kernel, keeping only narrow tensors for the backward pass.

    `apply(query, key, value, along_height, along_width, scale, height, width)`; shapes as in
    `_wide_query_key_value`, output `(B, heads, N, d)`. Saved for backward: q, k, v (views of the qkv
    projection's output), the tables, the narrow output and the kernel's log-sum-exp `(B, heads, N)`; the
    wide tensors are rebuilt there. Gradients reach q, k, v and the tables (the one-hot columns are constants).
    """

    @staticmethod
    def forward(ctx, query, key, value, along_height, along_width, scale: float, height: int, width: int):
        wide_query, wide_key, wide_value = _wide_query_key_value(
            query, key, value, along_height, along_width, scale, height, width
        )
        wide_out, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            wide_query, wide_key, wide_value, scale=1.0
        )
        out = wide_out[..., : value.shape[-1]].contiguous()  # the rest is exactly zero (zero value columns)
        ctx.save_for_backward(query, key, value, along_height, along_width, out, logsumexp)
        ctx.geometry = (scale, height, width)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, along_height, along_width, out, logsumexp = ctx.saved_tensors
        scale, height, width = ctx.geometry
        batch, heads, tokens, depth = query.shape
        wide_query, wide_key, wide_value = _wide_query_key_value(
            query, key, value, along_height, along_width, scale, height, width
        )
        padding = (0, folded_width(depth, height, width, query.device.type) - depth)
        grad_wide_query, grad_wide_key, grad_wide_value = (
            torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                F.pad(grad_out.to(out.dtype), padding), wide_query, wide_key, wide_value,
                F.pad(out, padding), logsumexp, 0.0, False, scale=1.0,
            )
        )  # fmt: skip
        del wide_query, wide_key, wide_value
        grad_rel_h = grad_wide_query[..., depth : depth + height].reshape(batch, heads, height, width, height)
        grad_rel_w = grad_wide_query[..., depth + height : depth + height + width].reshape(
            batch, heads, height, width, width
        )
        tables = along_height.to(query.dtype), along_width.to(query.dtype)
        grad_query = grad_wide_query[..., :depth] * scale + (
            torch.einsum("bnhwk,hkc->bnhwc", grad_rel_h, tables[0])
            + torch.einsum("bnhwk,wkc->bnhwc", grad_rel_w, tables[1])
        ).reshape(batch, heads, tokens, depth)
        grid_query = query.reshape(batch, heads, height, width, depth)
        grad_along_height = grad_along_width = None
        if ctx.needs_input_grad[3]:
            grad_along_height = torch.einsum("bnhwk,bnhwc->hkc", grad_rel_h, grid_query).to(
                along_height.dtype
            )
        if ctx.needs_input_grad[4]:
            grad_along_width = torch.einsum("bnhwk,bnhwc->wkc", grad_rel_w, grid_query).to(along_width.dtype)
        return (
            grad_query.to(query.dtype),
            grad_wide_key[..., :depth].to(key.dtype),
            grad_wide_value[..., :depth].to(value.dtype),
            grad_along_height,
            grad_along_width,
            None,
            None,
            None,
        )


class FoldedRecomputedAttention(torch.autograd.Function):
    """The folded attention on any device, keeping only narrow tensors: the backward recomputes the wide ones.

    `apply(query, key, value, along_height, along_width, scale, height, width)`; shapes as in
    `_wide_query_key_value`, output `(B, heads, N, d)`. Saved for backward: q, k, v and the tables (no
    output, no log-sum-exp: the recomputation makes its own). The backward re-enters the forward's autocast
    state, so the recomputed attention is the one the forward ran, in the same dtypes.
    """

    @staticmethod
    def forward(ctx, query, key, value, along_height, along_width, scale: float, height: int, width: int):
        with torch.no_grad():
            out = _folded_sdpa(
                query, key, value, along_height, along_width, scale, height, width
            ).contiguous()
        ctx.save_for_backward(query, key, value, along_height, along_width)
        ctx.geometry = (scale, height, width)
        device_type = query.device.type
        ctx.autocast = (
            device_type,
            torch.is_autocast_enabled(device_type),
            torch.get_autocast_dtype(device_type),
        )
        return out

    @staticmethod
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors
        inputs = [
            tensor.detach().requires_grad_(needed)
            for tensor, needed in zip(saved, ctx.needs_input_grad[:5], strict=True)
        ]
        device_type, autocast, dtype = ctx.autocast
        with torch.enable_grad(), torch.autocast(device_type, dtype=dtype, enabled=autocast):
            out = _folded_sdpa(*inputs, *ctx.geometry)
        wanted = [tensor for tensor in inputs if tensor.requires_grad]
        grads = iter(torch.autograd.grad(out, wanted, grad_out.to(out.dtype)))
        return (*(next(grads) if tensor.requires_grad else None for tensor in inputs), None, None, None)


def _folded_sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    along_height: torch.Tensor,
    along_width: torch.Tensor,
    scale: float,
    height: int,
    width: int,
) -> torch.Tensor:
    """The folded attention through `F.scaled_dot_product_attention`: `(B, heads, N, d)` out, a view of the
    wide output's first d columns (the rest is zero)."""
    wide = _wide_query_key_value(query, key, value, along_height, along_width, scale, height, width)
    return F.scaled_dot_product_attention(*wide, scale=1.0)[..., : value.shape[-1]]


# the CPU flash kernel's backward entry point, looked up once (the check runs in every block of every step)
_HAS_CPU_FLASH_BACKWARD = hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward")
# the innermost saved-tensor hooks, where this torch can tell (2.8 and newer); likewise looked up once
_TOP_SAVED_TENSOR_HOOKS = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
_NARROW_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _saved_tensor_hooks_active() -> bool:
    """Whether saved-tensor hooks (activation checkpointing, offloading) handle what the backward keeps.

    torch 2.7 and older cannot say (no `_top_saved_tensors_default_hooks`): there the answer is False, so under
    activation checkpointing the narrow route runs too; the results are the same, the recomputation's peak a
    little higher."""
    if torch.compiler.is_compiling():  # a compiled graph plans its own saved tensors
        return False
    return _TOP_SAVED_TENSOR_HOOKS is not None and _TOP_SAVED_TENSOR_HOOKS(False) is not None


def _narrow_route(query: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor]) -> type | None:
    """The autograd function that keeps only narrow tensors for this call, or None for the SDPA route.

    The CPU flash kernel's own backward where it exists (`FoldedFlashAttention`), else the recomputing
    route (`FoldedRecomputedAttention`: CUDA and other devices). None where nothing is kept for a backward
    pass anyway (no gradient wanted), where a compiled graph plans its own saved tensors, or where saved-
    tensor hooks (activation checkpointing) are active: the forward keeps nothing there, and in the
    recomputation the narrow q, k, v and output would only sit beside the wide tensors rebuilt for the
    kernel's backward (measured: +21 MB at the peak of a ViT-B step at 256 px, batch 2).
    """
    if not torch.is_grad_enabled() or not (query.requires_grad or any(t.requires_grad for t in tables)):
        return None
    if _saved_tensor_hooks_active():
        return None
    if _HAS_CPU_FLASH_BACKWARD and query.device.type == "cpu" and query.dtype in _NARROW_DTYPES:
        return FoldedFlashAttention  # traced by the compiler as well
    if torch.compiler.is_compiling():  # a backward that differentiates inside itself is not traced
        return None
    return FoldedRecomputedAttention


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
    geometry = (along_height, along_width, attention.scale, height, width)
    narrow = getattr(attention, "narrow_backward", True)
    route = _narrow_route(query, (along_height, along_width)) if narrow else None
    if route is not None:
        out = route.apply(query, key, value, *geometry)
    else:
        out = _folded_sdpa(query, key, value, *geometry)
    out = out.view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
    return attention.proj(out)


class SamVisionFoldedAttention(SamVisionSdpaAttention):
    """`SamVisionSdpaAttention` that trains through `folded_relative_position_attention` (no N x N mask).
    Same parameters and state-dict keys.

    At inference the fold runs on CUDA, where the dense bias's memory traffic dominates the encoder (one
    ViT-B global block at 1024 px, batch 8, bf16 on an H200: 1.71 ms folded against 5.45 ms with the dense
    mask; the whole encoder 1.45x faster), and transformers' path runs elsewhere (on the CPU the wider score
    product costs more than the mask saves). `fold_at_inference` forces either (None: by device).

    `narrow_backward` (default True) lets training keep only narrow tensors (`FoldedFlashAttention` on the
    CPU, `FoldedRecomputedAttention` elsewhere); set False, the SDPA route runs and keeps the wide ones (the
    benchmarks use it to measure what the narrow routes save).
    """

    narrow_backward: bool = True
    fold_at_inference: bool | None = None

    def _folds(self, hidden_states: torch.Tensor) -> bool:
        if self.training:
            return True
        if self.fold_at_inference is None:
            return hidden_states.device.type == "cuda"
        return self.fold_at_inference

    def forward(self, hidden_states: torch.Tensor, output_attentions=False) -> tuple[torch.Tensor, None]:
        if self.use_rel_pos and not output_attentions and self._folds(hidden_states):
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
    "FoldedFlashAttention",
    "FoldedRecomputedAttention",
    "SamVisionFoldedAttention",
    "fold_relative_position_attention",
    "folded_relative_position_attention",
]

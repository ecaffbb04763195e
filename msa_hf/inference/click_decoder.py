# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Fast per-click decoding on a cached image embedding: SAM's mask decoder, rearranged for few prompt tokens.

Each decoder block attends between T prompt/output tokens (T ~ 7) and N image tokens (N = 4096 at 1024 px).
transformers' `SamAttention` projects all N image tokens to the internal width (N x C x C/2 multiply-adds per
projection, four per block plus two in the final attention) before attending. Because T is small, the same
numbers come out of attention computed through the tokens instead (exact algebra, float rounding aside):

- tokens -> image: `q . (W_k x + b_k) = (W_k^T q) . x + q . b_k`, and since softmax rows sum to one,
  `softmax(s) (W_v x + b_v) = W_v (softmax(s) x) + b_v`: two `N x C x HT` products instead of two projections
  of all image tokens to C/2 (H heads);
- image -> tokens: `(W_q y + b_q) . k = y . (W_q^T k) + b_q . k`, and the output projection folds into the
  values, `W_o (A V) = A (V W_o^T)`: again two `N x C x HT` products.

The image side of the first block does not depend on the prompt (no mask prompt: the dense embedding is the
"no mask" vector), so `image + positional encoding` is computed once per image. MSA's decoder adapters (the
prompt-conditioned, MLP and image-to-token adapters of `SamAdapterModel`) are applied where the model applies
them. The products over the N image tokens go through `onednn_products` (on CPU, for one image, oneDNN
instead of MKL: 19.5 -> 14 ms per click with MSA's adapters at ViT-B 1024 px on our 2-core AMD machines).
`ClickDecoder` returns what `model(image_embeddings=..., ...)` returns (tested to 1e-4).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.models.sam.modeling_sam import SamAttention, SamTwoWayAttentionBlock

from msa_hf.inference.click_products import rows_times_transposed, weight_times
from msa_hf.modeling.adapter_layers import Adapter, _sum_of, pool_prompt_embedding
from msa_hf.modeling.base_fallback import ADAPTER_SWITCH, has_base_fallback


def _decodes(model: Any, mask_decoder: Any) -> bool:
    """Whether `ClickDecoder` can run `mask_decoder` of `model` (a `SamModel`, SAM's or MSA's decoder blocks)."""
    from transformers import SamModel

    return (
        isinstance(model, SamModel)
        and mask_decoder is not None
        and all(
            type(layer).__name__ in ("SamTwoWayAttentionBlock", "SamAdapterTwoWayAttentionBlock")
            for layer in mask_decoder.transformer.layers
        )
    )


def supports_click_decoder(model: Any) -> bool:
    """`ClickDecoder` handles `SamModel` and `SamAdapterModel`; peft-wrapped decoders take the stock path, and
    models that fall back to their base (`SamAdapterConfig.base_fallback`) take `FallbackClickDecoder`
    (`click_decoder_for` picks)."""
    return not has_base_fallback(model) and _decodes(model, getattr(model, "mask_decoder", None))


def click_decoder_for(model: Any) -> ClickDecoder | FallbackClickDecoder | None:
    """The fast per-click decoder of `model`: `FallbackClickDecoder` for a model with the base fallback,
    `ClickDecoder` for the others it handles, None where the model's own forward must decode."""
    if has_base_fallback(model) and getattr(model, "base_mask_decoder", None) is not None:
        if _decodes(model, model.mask_decoder) and _decodes(model, model.base_mask_decoder):
            return FallbackClickDecoder(model)
        return None
    return ClickDecoder(model) if supports_click_decoder(model) else None


def _heads(attention: SamAttention) -> tuple[int, int]:
    heads = attention.num_attention_heads
    return heads, attention.internal_dim // heads


def tokens_to_image(
    attention: SamAttention, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """`attention(query=queries, key=keys, value=values)` for few queries: `(B, T, C), (B, N, C), (B, N, C) ->
    (B, T, C)`."""
    heads, head_dim = _heads(attention)
    batch, tokens, width = queries.shape
    query = attention.q_proj(queries).view(batch, tokens, heads, head_dim) * attention.scaling
    key_weight = attention.k_proj.weight.view(heads, head_dim, width)
    folded = torch.einsum("bthd,hdc->bhtc", query, key_weight).reshape(batch, heads * tokens, width)
    bias = torch.einsum("bthd,hd->bht", query, attention.k_proj.bias.view(heads, head_dim))
    # scores come out (B, N, HT), the layout the fast product gives; one small transposing copy makes the
    # softmax over the N image tokens run along contiguous rows
    scores = rows_times_transposed(keys, folded, bias.reshape(batch, -1)).transpose(1, 2).contiguous()
    weights = torch.softmax(scores, dim=-1)
    pooled = weight_times(weights, values).view(batch, heads, tokens, width)  # (B, H, T, C)
    value_weight = attention.v_proj.weight.view(heads, head_dim, width)
    out = torch.einsum("bhtc,hdc->bthd", pooled, value_weight) + attention.v_proj.bias.view(heads, head_dim)
    return attention.out_proj(out.reshape(batch, tokens, heads * head_dim))


def image_to_tokens(
    attention: SamAttention, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """`attention(query=queries, key=keys, value=values)` for few keys: `(B, N, C), (B, T, C), (B, T, C) ->
    (B, N, C)`."""
    heads, head_dim = _heads(attention)
    batch, tokens, width = keys.shape
    key = attention.k_proj(keys).view(batch, tokens, heads, head_dim) * attention.scaling
    value = attention.v_proj(values).view(batch, tokens, heads, head_dim)
    query_weight = attention.q_proj.weight.view(heads, head_dim, width)
    folded = torch.einsum("bthd,hdc->bhtc", key, query_weight).reshape(batch, heads * tokens, width)
    bias = torch.einsum("hd,bthd->bht", attention.q_proj.bias.view(heads, head_dim), key).reshape(batch, -1)
    # scores (B, N, HT) copied to (B, H, T, N): the softmax over the T tokens then runs along long contiguous
    # rows of N (over the 7-long rows of the (B, N, H, T) layout it is 15x slower)
    scores = rows_times_transposed(queries, folded, bias).transpose(1, 2).contiguous()
    weights = torch.softmax(scores.view(batch, heads, tokens, -1), dim=2).view(batch, heads * tokens, -1)
    out_weight = attention.out_proj.weight.view(width, heads, head_dim)
    value_out = torch.einsum("bthd,chd->bcht", value, out_weight).reshape(batch, width, heads * tokens)
    return rows_times_transposed(weights.transpose(1, 2).contiguous(), value_out, attention.out_proj.bias)


def adapter_on_tokens(adapter: Adapter, tokens: torch.Tensor) -> torch.Tensor:
    """`adapter(tokens)` with its two projections through `rows_times_transposed`: `(B, N, C) -> (B, N, C)`."""
    hidden = adapter.act(rows_times_transposed(tokens, adapter.down.weight[None], adapter.down.bias))
    return rows_times_transposed(hidden, adapter.up.weight[None], adapter.up.bias)


def _self_attention(attention: SamAttention, query: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    out, _ = attention(query=query[:, None], key=query[:, None], value=value[:, None])
    return out[:, 0]


class ClickDecoder:
    """Prompt encoder + mask decoder of `model` on one cached image embedding, one prompt set per call.

    `mask_decoder` (default: `model.mask_decoder`) names the decoder to run; `FallbackClickDecoder` passes each
    of a fallback model's two (a model with the base fallback takes that one, `click_decoder_for`)."""

    def __init__(self, model: Any, mask_decoder: Any = None) -> None:
        if mask_decoder is None and has_base_fallback(model):
            raise TypeError(
                "this model answers with its base where the adapted answer ignores the prompt (base_fallback): "
                "decode it with FallbackClickDecoder (click_decoder_for(model) picks)."
            )
        if not _decodes(model, model.mask_decoder if mask_decoder is None else mask_decoder):
            raise TypeError(f"ClickDecoder needs a SamModel or SamAdapterModel, got {type(model).__name__}.")
        self.model = model
        self._mask_decoder = mask_decoder  # None: whatever decoder the model holds when a click comes
        self._image: torch.Tensor | None = None  # (N, C) image tokens + the "no mask" dense embedding
        self._position: torch.Tensor | None = None  # (N, C) positional encoding of the image grid
        self._image_with_position: torch.Tensor | None = None
        self._grid: tuple[int, int] = (0, 0)

    @torch.no_grad()
    def set_image_embedding(self, embedding: torch.Tensor) -> None:
        """`embedding` `(B, C, h, w)` from `get_image_embeddings`: B images, each decoded with its own prompt."""
        if embedding.ndim != 4:
            raise ValueError(f"image embeddings must be (B, C, h, w); got shape {tuple(embedding.shape)}.")
        _, channels, height, width = embedding.shape
        no_mask = self.model.prompt_encoder.no_mask_embed.weight.view(1, 1, channels)
        # token-major memory: the per-click products then read the cached image without a transposing copy
        self._image = (embedding.flatten(2).transpose(1, 2) + no_mask).contiguous()
        if self._position is None or self._position.dtype != embedding.dtype:  # the grid's, not the image's
            self._position = (
                self.model.get_image_wide_positional_embeddings()[0]
                .flatten(1)
                .T.to(embedding.dtype)
                .contiguous()
            )
        self._image_with_position = self._image + self._position
        self._grid = (height, width)

    def _block(
        self,
        layer: SamTwoWayAttentionBlock,
        queries: torch.Tensor,
        image: torch.Tensor,
        prompt_tokens: torch.Tensor,
        image_with_position: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        adapted = hasattr(layer, "prompt_adapter")
        if layer.skip_first_layer_pe:
            attn_out = _self_attention(layer.self_attn, queries, queries)
        else:
            attn_out = _self_attention(layer.self_attn, queries + prompt_tokens, queries)
        if adapted:
            prompt = pool_prompt_embedding(prompt_tokens[:, None], layer.num_output_tokens)
            delta = _sum_of([layer.prompt_adapter], attn_out[:, None], prompt)
            attn_out = attn_out + delta[:, 0]
        queries = layer.layer_norm1(attn_out if layer.skip_first_layer_pe else queries + attn_out)

        attn_out = tokens_to_image(
            layer.cross_attn_token_to_image, queries + prompt_tokens, image_with_position, image
        )
        queries = layer.layer_norm2(queries + attn_out)
        mlp_out = layer.mlp(queries)
        if adapted:
            mlp_out = mlp_out + layer.mlp_adapter_scale * layer.mlp_adapter(queries)
        queries = layer.layer_norm3(queries + mlp_out)

        attn_out = image_to_tokens(
            layer.cross_attn_image_to_token, image_with_position, queries + prompt_tokens, queries
        )
        if adapted:
            attn_out = attn_out + adapter_on_tokens(layer.image_to_token_adapter, attn_out)
        return queries, layer.layer_norm4(image + attn_out)

    @torch.no_grad()
    def __call__(
        self,
        input_points: torch.Tensor | None = None,
        input_labels: torch.Tensor | None = None,
        input_boxes: torch.Tensor | None = None,
        input_masks: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts as `SamModel.forward` takes them, one prompt set per image: points `(B, 1, n, 2)`, labels
        `(B, 1, n)`, boxes `(B, 1, 4)`, masks `(B, 1, 4h, 4w)` logits.

        Returns `(pred_masks (B, 1, M, 4h, 4w), iou_scores (B, 1, M))`, M = 3 with `multimask_output` else 1.
        """
        if self._image is None:
            raise RuntimeError("call set_image_embedding first.")
        images = len(self._image)
        for name, tensor in (("input_points", input_points), ("input_boxes", input_boxes)):
            if tensor is not None and (tensor.shape[0] != images or tensor.shape[1] != 1):
                raise ValueError(
                    f"{name} must hold one prompt set for each of the {images} image(s); got shape "
                    f"{tuple(tensor.shape)}."
                )
        if input_points is not None and input_labels is None:
            input_labels = torch.ones_like(input_points[:, :, :, 0], dtype=torch.int)
        decoder = self.model.mask_decoder if self._mask_decoder is None else self._mask_decoder
        sparse, dense = self.model.prompt_encoder(
            input_points=input_points,
            input_labels=input_labels,
            input_boxes=input_boxes,
            input_masks=input_masks,
        )
        image, image_with_position = self._image, self._image_with_position
        if input_masks is not None:  # a mask prompt replaces the "no mask" embedding of the cached image side
            no_mask = self.model.prompt_encoder.no_mask_embed.weight.view(1, 1, -1)
            image = image - no_mask + dense.flatten(2).transpose(1, 2)
            image_with_position = image + self._position
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.expand(images, *output_tokens.shape)
        prompt_tokens = output_tokens if sparse is None else torch.cat([output_tokens, sparse[:, 0]], dim=1)
        prompt_tokens = prompt_tokens.to(decoder.iou_token.weight.dtype)

        queries = prompt_tokens
        for layer in decoder.transformer.layers:
            queries, image = self._block(layer, queries, image, prompt_tokens, image_with_position)
            image_with_position = image + self._position
        transformer = decoder.transformer
        attn_out = tokens_to_image(
            transformer.final_attn_token_to_image, queries + prompt_tokens, image_with_position, image
        )
        queries = transformer.layer_norm_final_attn(queries + attn_out)

        height, width = self._grid
        # the (B, N, C) tokens viewed as (B, C, h, w) are already in channels-last memory: the convolutions and
        # the channel LayerNorm (a permute to channels-last) then run without layout copies
        grid = image.view(images, height, width, -1).permute(0, 3, 1, 2)
        upscaled = decoder.activation(decoder.upscale_layer_norm(decoder.upscale_conv1(grid)))
        upscaled = decoder.activation(decoder.upscale_conv2(upscaled))
        mask_tokens = queries[:, 1 : 1 + decoder.num_mask_tokens]
        hyper = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1
        )  # (B, M, C/8)
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        pixels = upscaled.permute(0, 2, 3, 1).reshape(images, -1, upscaled.shape[1])  # free for channels-last
        masks = torch.bmm(pixels, hyper[:, chosen].transpose(1, 2)).transpose(1, 2)
        masks = masks.reshape(images, 1, -1, *upscaled.shape[-2:])
        iou = decoder.iou_prediction_head(queries[:, 0])[:, chosen].view(images, 1, -1)
        return masks, iou


class FallbackClickDecoder:
    """`ClickDecoder` for a model with the base fallback: its embedding `(B, 2C, h, w)` holds the adapted and the
    base image embedding; each prompt is decoded by the adapted decoder and by the base's (`base_mask_decoder`,
    no adapters), and the model's own rule keeps one answer (`SamAdapterModel._fallback_answers`), as its
    forward does. Same calls as `ClickDecoder`."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.adapted = ClickDecoder(model, model.mask_decoder)
        self.base = ClickDecoder(model, model.base_mask_decoder)
        self.channels = model.config.vision_config.output_channels

    def set_image_embedding(self, embedding: torch.Tensor) -> None:
        """`embedding` `(B, 2C, h, w)` from the model's `get_image_embeddings` (adapted, then base)."""
        if embedding.ndim != 4 or embedding.shape[1] != 2 * self.channels:
            raise ValueError(
                f"a model with the base fallback decodes image embeddings of {2 * self.channels} channels (adapted, "
                f"then base) from its own get_image_embeddings; got shape {tuple(embedding.shape)}."
            )
        adapted, base = embedding.split(self.channels, dim=1)
        self.adapted.set_image_embedding(adapted)
        self.base.set_image_embedding(base)

    @torch.no_grad()
    def __call__(
        self,
        input_points: torch.Tensor | None = None,
        input_labels: torch.Tensor | None = None,
        input_boxes: torch.Tensor | None = None,
        input_masks: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As `ClickDecoder.__call__`; per prompt the adapted answer where it follows the prompt, else the base's."""
        from types import SimpleNamespace

        prompts = dict(input_points=input_points, input_labels=input_labels, input_boxes=input_boxes,
                       input_masks=input_masks, multimask_output=multimask_output)  # fmt: skip
        # the adapters' state is module state another thread may be switching (the base's image encoding)
        with ADAPTER_SWITCH:
            adapted_masks, adapted_scores = self.adapted(**prompts)
            base_masks, base_scores = self.base(**prompts)
        chosen = self.model._fallback_answers(
            SimpleNamespace(pred_masks=adapted_masks, iou_scores=adapted_scores),
            SimpleNamespace(pred_masks=base_masks, iou_scores=base_scores),
            prompts,
        )
        return chosen.pred_masks, chosen.iou_scores


__all__ = [
    "ClickDecoder",
    "FallbackClickDecoder",
    "click_decoder_for",
    "image_to_tokens",
    "supports_click_decoder",
    "tokens_to_image",
]

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`SamAdapterModel`: SAM with Medical SAM Adapter (MSA) adapters, as a `SamModel` subclass.

Every SAM parameter keeps its name, so a plain SAM checkpoint (`facebook/sam-vit-base` layout) loads by
name; adapters are new parameters whose up-projections start at zero, so the untrained model computes
exactly what SAM computes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.models.sam.configuration_sam import SamMaskDecoderConfig, SamVisionConfig
from transformers.models.sam.modeling_sam import (
    SamImageSegmentationOutput,
    SamMaskDecoder,
    SamModel,
    SamPatchEmbeddings,
    SamPositionalEmbedding,
    SamPreTrainedModel,
    SamPromptEncoder,
    SamTwoWayAttentionBlock,
    SamVisionEncoder,
    SamVisionEncoderOutput,
    SamVisionLayer,
    SamVisionNeck,
)
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from msa_hf._registration import register_auto_classes
from msa_hf.modeling.adapter_layers import (
    Adapter,
    PromptConditionedAdapter,
    init_adapter_weights,
    msa_two_way_block_forward,
    msa_vision_layer_forward,
    running_as_base,
)
from msa_hf.modeling.base_fallback import ADAPTER_SWITCH, choose_answers, follows_prompt
from msa_hf.modeling.configuration_msa import SamAdapterConfig
from msa_hf.modeling.folded_attention import fold_relative_position_attention
from msa_hf.modeling.frozen_mlp import RecomputesFrozenMlp
from msa_hf.modeling.text_prompts import TextPromptProjection
from msa_hf.modeling.volume_batches import resolve_volume_batch

# Attribute names under which the native model stores its adapters. The PEFT method stores the same modules
# as `msa_<kind>.<adapter_name>` (see msa_hf/peft_msa/layer.py), which is what conversion maps between.
ADAPTER_KINDS = ("space_adapter", "mlp_adapter", "depth_adapter", "prompt_adapter", "image_to_token_adapter")
ADAPTER_PARAMETER_PATTERN = re.compile(r"\.(" + "|".join(ADAPTER_KINDS) + r")\.")

# The only keyword option SamModel honours that we pass on; anything else would vanish silently.
_FORWARD_OPTIONS = {"output_hidden_states"}


def is_adapter_parameter(name: str) -> bool:
    """True for a parameter name that belongs to an MSA adapter (native naming)."""
    return ADAPTER_PARAMETER_PATTERN.search(name) is not None


class SamAdapterVisionLayer(SamVisionLayer, RecomputesFrozenMlp):
    """SAM image-encoder block with the space adapter, the parallel MLP adapter and (3-D) the depth adapter.

    Its frozen MLP keeps no 4C-wide activation for backward (`RecomputesFrozenMlp`, `msa_hf.modeling.frozen_mlp`)."""

    def __init__(self, config: SamVisionConfig, window_size: int, adapter_config: SamAdapterConfig):
        super().__init__(config, window_size)
        width = config.hidden_size
        ratio, act = adapter_config.adapter_bottleneck_ratio, adapter_config.encoder_adapter_activation
        self.space_adapter = Adapter(width, ratio, act)
        self.mlp_adapter = Adapter(width, ratio, act)
        self.depth_adapter = Adapter(width, ratio, act) if adapter_config.use_depth_branch else None
        self.mlp_adapter_scale = adapter_config.mlp_adapter_scale

    def forward(self, hidden_states: torch.Tensor, num_slices: int | None = None) -> torch.Tensor:
        """`(B, H, W, C) -> (B, H, W, C)`; `num_slices` (D, with B = V * D) switches the depth branch on.

        `num_slices` is a call argument, not module state: gradient checkpointing re-runs this forward during
        backward with the same arguments, so D is known there too.
        """
        return msa_vision_layer_forward(
            self,
            hidden_states,
            space_adapters=[self.space_adapter],
            mlp_adapters=[self.mlp_adapter],
            depth_adapters=[self.depth_adapter] if self.depth_adapter is not None else [],
            mlp_adapter_scale=self.mlp_adapter_scale,
            num_slices=num_slices,
            recompute_frozen_mlp=self.recompute_frozen_mlp,
        )


class SamAdapterVisionEncoder(SamVisionEncoder):
    """SAM's ViT image encoder built from `SamAdapterVisionLayer`s; forward takes `num_slices`."""

    def __init__(self, config: SamVisionConfig, adapter_config: SamAdapterConfig):
        # SamVisionEncoder.__init__ builds plain layers and runs post_init; build ours in its place.
        SamPreTrainedModel.__init__(self, config)
        self.config = config
        self.image_size = config.image_size
        self.patch_embed = SamPatchEmbeddings(config)
        self.pos_embed = None
        if config.use_abs_pos:
            grid = config.image_size // config.patch_size
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, config.hidden_size))
        self.layers = nn.ModuleList(
            SamAdapterVisionLayer(
                config,
                window_size=config.window_size if i not in config.global_attn_indexes else 0,
                adapter_config=adapter_config,
            )
            for i in range(config.num_hidden_layers)
        )
        self.neck = SamVisionNeck(config)
        self.gradient_checkpointing = False
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # This encoder is its own PreTrainedModel (initializer_range=1e-10): adapters inside it are
        # initialised here, not by the top-level model.
        super()._init_weights(module)
        init_adapter_weights(module)

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self, pixel_values: torch.Tensor | None = None, num_slices: int | None = None, **kwargs
    ) -> SamVisionEncoderOutput:
        """`pixel_values (B, C, H, W)` -> `last_hidden_state (B, output_channels, H/p, W/p)`."""
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        hidden_states = self.patch_embed(pixel_values)
        if self.pos_embed is not None:
            hidden_states = hidden_states + self.pos_embed
        for layer in self.layers:
            hidden_states = layer(hidden_states, num_slices=num_slices)
        return SamVisionEncoderOutput(last_hidden_state=self.neck(hidden_states))


class SamAdapterTwoWayAttentionBlock(SamTwoWayAttentionBlock):
    """Two-way decoder block with MSA's three decoder adapters (prompt-conditioned, MLP, image-to-token)."""

    def __init__(
        self,
        config: SamMaskDecoderConfig,
        skip_first_layer_pe: bool,
        adapter_config: SamAdapterConfig,
    ):
        super().__init__(config, skip_first_layer_pe=skip_first_layer_pe)
        width = config.hidden_size
        ratio, act = adapter_config.adapter_bottleneck_ratio, adapter_config.decoder_adapter_activation
        self.prompt_adapter = PromptConditionedAdapter(width, ratio, act, adapter_config.prompt_conditioning)
        self.mlp_adapter = Adapter(width, ratio, act)
        self.image_to_token_adapter = Adapter(width, ratio, act)
        self.mlp_adapter_scale = adapter_config.mlp_adapter_scale
        self.num_output_tokens = config.num_multimask_outputs + 2  # iou token + (multimask + 1) mask tokens

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_point_embedding: torch.Tensor,
        key_point_embedding: torch.Tensor,
        attention_similarity: torch.Tensor | None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return msa_two_way_block_forward(
            self,
            queries,
            keys,
            query_point_embedding,
            key_point_embedding,
            attention_similarity,
            prompt_adapters=[self.prompt_adapter],
            mlp_adapters=[self.mlp_adapter],
            image_to_token_adapters=[self.image_to_token_adapter],
            mlp_adapter_scale=self.mlp_adapter_scale,
            num_output_tokens=self.num_output_tokens,
        )


@dataclass
class TrainableParameterReport:
    """Counts of trainable and total parameters, with the trainable ones split by group."""

    trainable: int
    total: int
    by_group: dict[str, int]

    @property
    def share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        groups = ", ".join(f"{k}: {v:,}" for k, v in self.by_group.items() if v)
        return f"trainable {self.trainable:,} of {self.total:,} ({100 * self.share:.2f}%) [{groups}]"


class SamAdapterModel(SamModel):
    r"""
    SAM with Medical SAM Adapter adapters (Wu et al., arXiv 2304.12620).

    - Image encoder: in every ViT block an adapter after attention (before the residual) and one parallel
      to the MLP (scaled by `config.mlp_adapter_scale`); with `config.use_depth_branch`, a depth-attention
      branch across the slices of each volume.
    - Mask decoder: in the blocks of `config.decoder_adapter_layers`, a prompt-conditioned adapter after the
      prompt self-attention, an MLP adapter and an image-to-token adapter.
    - In training mode the image encoder's attention runs `folded_attention` (the same numbers without SAM's
      dense relative-position mask: a fraction of the activation memory at 1024 px); evaluation runs
      transformers' own attention.

    Inputs are `SamModel`'s, plus `num_slices` for 3-D batches:
    - 2-D: `pixel_values (B, C, H, W)`.
    - 3-D: `pixel_values (V * D, C, H, W)` with `num_slices=D` (slice index inner), or a 5-D
      `pixel_values (V, C, D, H, W)` (flattened to `(V * D, C, H, W)` in that order). Prompts and outputs
      are per slice, batch `V * D`. Without either, `config.num_slices` is used when the depth branch is on.

    Example:
    ```python
    >>> model = SamAdapterModel.from_pretrained("facebook/sam-vit-base")  # SAM weights + zero adapters
    >>> model.mark_only_adapters_as_trainable()
    >>> outputs = model(pixel_values=pixel_values, input_boxes=boxes, multimask_output=False)
    ```
    """

    config_class = SamAdapterConfig
    config: SamAdapterConfig
    # a SAM checkpoint has no adapters: they start from their own init (zero up-projections), as designed, so
    # loading one is not reported as missing weights
    _keys_to_ignore_on_load_missing = [ADAPTER_PARAMETER_PATTERN.pattern]

    def __init__(self, config: SamAdapterConfig):
        # SamModel.__init__ would build a plain encoder and run post_init; build the adapted one instead.
        SamPreTrainedModel.__init__(self, config)
        self.shared_image_embedding = SamPositionalEmbedding(config.vision_config)
        self.vision_encoder = SamAdapterVisionEncoder(config.vision_config, config)
        self.prompt_encoder = SamPromptEncoder(config)
        config.mask_decoder_config._attn_implementation = config._attn_implementation
        self.mask_decoder = SamMaskDecoder(config.mask_decoder_config)
        for index in config.adapted_decoder_layers:
            self.mask_decoder.transformer.layers[index] = SamAdapterTwoWayAttentionBlock(
                config.mask_decoder_config, skip_first_layer_pe=(index == 0), adapter_config=config
            )
        self.text_projection = None
        if config.text_embedding_dim is not None:
            self.text_projection = TextPromptProjection(
                config.text_embedding_dim, config.mask_decoder_config.hidden_size, config.num_text_tokens
            )
        # the base's own decoder, for the prompts the adapted model does not follow (`base_fallback`)
        self.base_mask_decoder = SamMaskDecoder(config.mask_decoder_config) if config.base_fallback else None
        # training without the dense relative-position mask: most of a 1024 px step's activation memory
        fold_relative_position_attention(self.vision_encoder)
        self.post_init()

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any
    ) -> SamAdapterModel:
        """transformers' `from_pretrained` (a SAM or MSA checkpoint), refusing an adapter-only folder by name.

        Such a folder (`adapter_config.json`, no `config.json`) holds no SAM weights; transformers would look
        for its base on the Hub under the name `None` and fail with a network error.
        """
        folder = Path(str(pretrained_model_name_or_path))
        if (
            folder.is_dir()
            and (folder / "adapter_config.json").is_file()
            and not (folder / "config.json").is_file()
        ):
            raise ValueError(
                f"{folder} is an adapter-only checkpoint (peft), without the SAM weights it adapts. Load the full "
                f"model folder instead (train.py writes it as model/, the adapter as model/adapter/), or load the "
                f"adapter onto its base: PeftModel.from_pretrained(SamModel.from_pretrained(<base>), '{folder}'), "
                "then msa_hf.peft_model_to_sam_adapter(...) for a SamAdapterModel."
            )
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
        )
        if model.base_mask_decoder is not None and any(
            key.startswith("base_mask_decoder.") for key in info["missing_keys"]
        ):
            # the base fallback would answer with a randomly initialised decoder: refuse instead
            raise ValueError(
                f"{pretrained_model_name_or_path} holds no base mask decoder, which base_fallback=True answers "
                "with. A SAM base: load it without base_fallback and call model.keep_base_decoder() before "
                "training (train.py --base-fallback does). A trained model gets it only from a run with "
                "--base-fallback; load it without base_fallback."
            )
        return (model, info) if wants_info else model

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        init_adapter_weights(module)

    # ----------------------------------------------------------------------------------------- inputs
    def prepare_volume_batch(
        self, pixel_values: torch.Tensor | None, num_slices: int | None
    ) -> tuple[torch.Tensor | None, int | None]:
        """Resolve D for a batch and flatten a 5-D volume batch.

        Returns `(pixel_values (V*D, C, H, W) or (B, C, H, W), D or None)`; `None` means no depth branch.
        """
        pixel_values, num_slices = resolve_volume_batch(
            pixel_values,
            num_slices,
            self.config.use_depth_branch,
            self.config.num_slices,
            "this model has no depth branch (config.use_depth_branch=False): build it with "
            "use_depth_branch=True, or drop num_slices.",
        )
        if pixel_values is not None:
            self._check_pixel_size(pixel_values)
        return pixel_values, num_slices

    def _check_pixel_size(self, pixel_values: torch.Tensor) -> None:
        expected = self.config.vision_config.image_size
        channels = self.config.vision_config.num_channels
        if tuple(pixel_values.shape[-3:]) != (channels, expected, expected):
            raise ValueError(
                f"pixel_values has per-image shape {tuple(pixel_values.shape[-3:])}, but this model takes "
                f"({channels}, {expected}, {expected}). Resize and pad with SamProcessor (longest side "
                f"{expected}), or build the model at your size: msa_hf.build_at_image_size(model, size)."
            )

    # ----------------------------------------------------------------------------------------- base fallback
    @property
    def falls_back_to_base(self) -> bool:
        """Whether prompts the adapted model does not follow are answered by the base (`config.base_fallback`,
        at inference: training always trains the adapted model)."""
        return self.base_mask_decoder is not None and self.config.base_fallback and not self.training

    def keep_base_decoder(self) -> SamAdapterModel:
        """Switch `base_fallback` on, keeping the mask decoder as it is now as the base's (frozen). Call it on
        the base, before training (train.py's `--base-fallback`). Returns `self`."""
        if self.config.use_depth_branch:
            raise ValueError("base_fallback is for 2-D models; this one has the depth branch.")
        base = SamMaskDecoder(self.config.mask_decoder_config).to(
            device=self.mask_decoder.iou_token.weight.device, dtype=self.mask_decoder.iou_token.weight.dtype
        )
        # the adapter blocks keep SAM's own weights under SAM's names; their adapters are not the base's
        own = {k: v for k, v in self.mask_decoder.state_dict().items() if not is_adapter_parameter(k)}
        base.load_state_dict(own)
        self.base_mask_decoder = base.requires_grad_(False)
        self.config.base_fallback = True
        return self

    # ----------------------------------------------------------------------------------------- forward
    @torch.no_grad()
    def get_image_embeddings(
        self, pixel_values: torch.Tensor, num_slices: int | None = None, **kwargs
    ) -> torch.Tensor:
        """Image embeddings `(B, output_channels, h, w)` for the interactive path (encode once, decode per click).

        With the base fallback on, `(B, 2 * output_channels, h, w)`: the adapted embedding, then the base's
        (what `forward(image_embeddings=...)` takes back)."""
        pixel_values, num_slices = self.prepare_volume_batch(pixel_values, num_slices)
        if not self.falls_back_to_base:
            return self.vision_encoder(pixel_values, num_slices=num_slices, **kwargs).last_hidden_state
        with ADAPTER_SWITCH:
            adapted = self.vision_encoder(pixel_values, **kwargs).last_hidden_state
            with running_as_base(self, self.base_mask_decoder):
                base = self.vision_encoder(pixel_values, **kwargs).last_hidden_state
        return torch.cat([adapted, base], dim=1)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_points: torch.Tensor | None = None,
        input_labels: torch.LongTensor | None = None,
        input_boxes: torch.Tensor | None = None,
        input_masks: torch.LongTensor | None = None,
        image_embeddings: torch.Tensor | None = None,
        multimask_output: bool = True,
        attention_similarity: torch.Tensor | None = None,
        target_embedding: torch.Tensor | None = None,
        num_slices: int | None = None,
        text_embeddings: torch.Tensor | None = None,
        **kwargs,
    ) -> SamImageSegmentationOutput:
        r"""
        Same inputs and outputs as [`SamModel.forward`] (points `(B, P, N, 2)` as (x, y) in the resized input
        frame, labels `(B, P, N)` with 1/0/-1/-10, boxes `(B, nb, 4)` xyxy; `pred_masks (B, P, 3|1, h, w)`
        low-resolution logits, `iou_scores (B, P, 3|1)`), plus:

        num_slices (`int`, *optional*):
            D, the number of consecutive slices per volume in a `(V * D, C, H, W)` batch (depth branch).
        text_embeddings (`torch.Tensor` of shape `(B, D_text)` or `(B, P, D_text)`, *optional*):
            Pooled text features (`msa_hf.modeling.text_prompts.TextEncoder`); projected to `config.num_text_tokens`
            prompt tokens appended to the point/box tokens, or the only prompt. Needs `config.text_embedding_dim`.
        """
        unknown = set(kwargs) - _FORWARD_OPTIONS
        if unknown:
            # SamModel forwards unknown keyword arguments to the encoder, where they vanish silently.
            raise TypeError(f"SamAdapterModel.forward got unexpected keyword argument(s) {sorted(unknown)}.")
        if pixel_values is not None and image_embeddings is not None:
            raise ValueError("Only one of pixel_values and image_embeddings can be provided.")
        pixel_values, num_slices = self.prepare_volume_batch(pixel_values, num_slices)
        if self.falls_back_to_base:
            prompts = dict(input_points=input_points, input_labels=input_labels, input_boxes=input_boxes,
                           input_masks=input_masks, multimask_output=multimask_output,
                           attention_similarity=attention_similarity, target_embedding=target_embedding)  # fmt: skip
            return self._forward_with_fallback(
                pixel_values, image_embeddings, text_embeddings, prompts, kwargs
            )

        vision_hidden_states = None
        if pixel_values is not None:
            vision_outputs = self.vision_encoder(pixel_values, num_slices=num_slices, **kwargs)
            image_embeddings = vision_outputs.last_hidden_state
            vision_hidden_states = vision_outputs.hidden_states
        if text_embeddings is not None:
            return self._forward_with_text(
                image_embeddings, text_embeddings, input_points, input_labels, input_boxes, input_masks,
                multimask_output, vision_hidden_states,
            )  # fmt: skip
        outputs = super().forward(
            image_embeddings=image_embeddings,
            input_points=input_points,
            input_labels=input_labels,
            input_boxes=input_boxes,
            input_masks=input_masks,
            multimask_output=multimask_output,
            attention_similarity=attention_similarity,
            target_embedding=target_embedding,
        )
        outputs.vision_hidden_states = vision_hidden_states
        return outputs

    def _forward_with_fallback(
        self,
        pixel_values: torch.Tensor | None,
        image_embeddings: torch.Tensor | None,
        text_embeddings: torch.Tensor | None,
        prompts: dict[str, Any],
        encoder_options: dict[str, Any],
    ) -> SamImageSegmentationOutput:
        """`forward` with the base fallback: both answers, the adapted one kept where it follows the prompt.
        Text prompts have no base answer (the base takes no text): they take the adapted answer."""
        channels = self.config.vision_config.output_channels
        if pixel_values is not None:
            image_embeddings = self.get_image_embeddings(pixel_values, **encoder_options)
        if image_embeddings.shape[1] != 2 * channels:
            raise ValueError(
                f"this model answers with its base where the adapted answer ignores the prompt (base_fallback), so "
                f"it takes image embeddings of {2 * channels} channels (adapted, then base) from its own "
                f"get_image_embeddings; got {image_embeddings.shape[1]}."
            )
        adapted_embeddings, base_embeddings = image_embeddings.split(channels, dim=1)
        if text_embeddings is not None:
            return self._forward_with_text(
                adapted_embeddings, text_embeddings, prompts["input_points"], prompts["input_labels"],
                prompts["input_boxes"], prompts["input_masks"], prompts["multimask_output"], None,
            )  # fmt: skip
        with ADAPTER_SWITCH:
            adapted = super().forward(image_embeddings=adapted_embeddings, **prompts)
            with running_as_base(self, self.base_mask_decoder):
                base = super().forward(image_embeddings=base_embeddings, **prompts)
        return self._fallback_answers(adapted, base, prompts)

    def _fallback_answers(
        self, adapted: SamImageSegmentationOutput, base: SamImageSegmentationOutput, prompts: dict[str, Any]
    ) -> SamImageSegmentationOutput:
        """Per prompt, the adapted answer where it follows the prompt, else the base's (`follows_prompt`)."""
        follows = follows_prompt(
            adapted.pred_masks, adapted.iou_scores, self.config.vision_config.image_size,
            prompts["input_points"], prompts["input_labels"], prompts["input_boxes"],
        )  # fmt: skip
        return SamImageSegmentationOutput(
            iou_scores=choose_answers(adapted.iou_scores, base.iou_scores, follows),
            pred_masks=choose_answers(adapted.pred_masks, base.pred_masks, follows),
        )

    def text_prompt_tokens(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """`(B, D_text)` or `(B, P, D_text)` pooled text features -> `(B, P, K, C)` decoder prompt tokens."""
        if self.text_projection is None:
            raise ValueError(
                "this model takes no text prompts: build it with SamAdapterConfig(text_embedding_dim=...) (CLIP "
                "ViT-B/32: 512) and train the projection (train.py --text-prompts)."
            )
        if text_embeddings.ndim == 2:
            text_embeddings = text_embeddings[:, None]
        return self.text_projection(text_embeddings)

    def _forward_with_text(
        self,
        image_embeddings: torch.Tensor,
        text_embeddings: torch.Tensor,
        input_points: torch.Tensor | None,
        input_labels: torch.Tensor | None,
        input_boxes: torch.Tensor | None,
        input_masks: torch.Tensor | None,
        multimask_output: bool,
        vision_hidden_states: Any,
    ) -> SamImageSegmentationOutput:
        """SamModel's prompt encoding and decoding, with the text tokens after the point and box tokens."""
        if input_points is not None and input_labels is None:
            input_labels = torch.ones_like(input_points[:, :, :, 0], dtype=torch.int)
        sparse, dense = self.prompt_encoder(
            input_points=input_points,
            input_labels=input_labels,
            input_boxes=input_boxes,
            input_masks=input_masks,
        )
        text_tokens = self.text_prompt_tokens(text_embeddings).to(image_embeddings.dtype)
        sparse = text_tokens if sparse is None else torch.cat([sparse, text_tokens], dim=2)
        positions = self.get_image_wide_positional_embeddings().repeat(len(image_embeddings), 1, 1, 1)
        masks, iou = self.mask_decoder(
            image_embeddings=image_embeddings, image_positional_embeddings=positions,
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask_output,
        )  # fmt: skip
        return SamImageSegmentationOutput(
            iou_scores=iou, pred_masks=masks, vision_hidden_states=vision_hidden_states
        )

    # ----------------------------------------------------------------------------------------- training helpers
    def is_trainable_parameter(self, name: str) -> bool:
        """Whether MSA trains the parameter `name` (adapters, the text projection, plus the decoder parts
        `decoder_training` says)."""
        if is_adapter_parameter(name) or name.startswith("text_projection."):
            return True
        if self.config.decoder_training != "full" or not name.startswith("mask_decoder."):
            return False
        # "full": the decoder trains except the frozen SAM weights inside adapter-bearing blocks.
        adapted = self.config.adapted_decoder_layers
        return not any(name.startswith(f"mask_decoder.transformer.layers.{i}.") for i in adapted)

    def mark_only_adapters_as_trainable(self) -> SamAdapterModel:
        """Freeze SAM; leave trainable the adapters and what `config.decoder_training` says. Returns `self`."""
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(self.is_trainable_parameter(name))
        return self

    def trainable_parameter_report(self) -> TrainableParameterReport:
        """Trainable vs total parameters (counting `requires_grad`), split into adapter groups."""
        groups = {
            "encoder adapters": 0,
            "depth adapters": 0,
            "decoder adapters": 0,
            "decoder (full)": 0,
            "other": 0,
        }
        trainable = total = 0
        for name, parameter in self.named_parameters():
            total += parameter.numel()
            if not parameter.requires_grad:
                continue
            trainable += parameter.numel()
            if ".depth_adapter." in name:
                groups["depth adapters"] += parameter.numel()
            elif is_adapter_parameter(name):
                key = "encoder adapters" if name.startswith("vision_encoder.") else "decoder adapters"
                groups[key] += parameter.numel()
            elif name.startswith("mask_decoder."):
                groups["decoder (full)"] += parameter.numel()
            elif name.startswith("text_projection."):
                groups["text projection"] = groups.get("text projection", 0) + parameter.numel()
            else:
                groups["other"] += parameter.numel()
        return TrainableParameterReport(trainable=trainable, total=total, by_group=groups)


__all__ = [
    "ADAPTER_KINDS",
    "SamAdapterModel",
    "SamAdapterVisionEncoder",
    "SamAdapterVisionLayer",
    "SamAdapterTwoWayAttentionBlock",
    "TrainableParameterReport",
    "is_adapter_parameter",
]


# `import msa_hf` promises AutoModel / pipeline("mask-generation") support; see msa_hf/_registration.py
register_auto_classes(SamAdapterConfig, SamAdapterModel)

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""MSA tuner layers: the PEFT twins of `SamAdapterVisionLayer` and `SamAdapterTwoWayAttentionBlock`.

They wrap whole SAM blocks rather than single linears because MSA's adapters read block-internal tensors
(the layer-normed tokens for the parallel MLP and depth adapters, the un-windowed grid for depth attention,
the prompt tokens for the prompt-conditioned adapter). The math is msa_hf.modeling.adapter_layers, shared with the
native model; these classes only keep one adapter set per adapter name.
"""

from __future__ import annotations

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.sam.modeling_sam import SamTwoWayAttentionBlock, SamVisionLayer

from msa_hf.modeling.adapter_layers import (
    Adapter,
    PromptConditionedAdapter,
    msa_two_way_block_forward,
    msa_vision_layer_forward,
)
from msa_hf.modeling.frozen_mlp import RecomputesFrozenMlp
from msa_hf.peft_msa.config import MsaAdapterConfig


class MsaLayer(BaseTunerLayer):
    """Shared bookkeeping of the MSA tuner layers (adapter set per name, activation, scale)."""

    adapter_layer_names: tuple[str, ...] = ()
    other_param_names = ("msa_mlp_adapter_scale",)

    def _init_msa_layer(self, base_layer: nn.Module) -> None:
        self.base_layer = base_layer
        for name in self.adapter_layer_names:
            setattr(self, name, nn.ModuleDict())
        self.msa_mlp_adapter_scale: dict[str, float] = {}
        self._disable_adapters = False
        self.merged_adapters: list[str] = []

    def _active_msa_adapters(self) -> list[str]:
        """Active adapter names this layer holds (another adapter may not target this block)."""
        holder = getattr(self, self.adapter_layer_names[0])
        return [name for name in self.active_adapters if name in holder]

    def _mlp_scale(self, names: list[str]) -> float:
        scales = {self.msa_mlp_adapter_scale[name] for name in names}
        if len(scales) != 1:
            raise ValueError(
                f"Active MSA adapters {names} use different mlp_adapter_scale values {sorted(scales)}."
            )
        return scales.pop()

    def merge(self, *args, **kwargs) -> None:
        raise NotImplementedError(
            "MSA adapters are non-linear bottlenecks and cannot be merged into SAM's weights; "
            "convert to a SamAdapterModel with msa_hf.peft_msa.peft_model_to_sam_adapter instead."
        )

    def unmerge(self) -> None:
        raise NotImplementedError("MSA adapters are never merged.")


class MsaVisionLayer(GradientCheckpointingLayer, MsaLayer, RecomputesFrozenMlp):
    """A SAM image-encoder block with per-name space, MLP and (3-D) depth adapters.

    A `GradientCheckpointingLayer`, so activation checkpointing re-runs the adapters too, with the same
    `num_slices` argument: the peft model sets `call_num_slices` for the duration of one call, and the
    block turns it into an argument when it is called (before checkpointing keeps the arguments). Its frozen MLP keeps no 4C-wide
    activation for backward (`RecomputesFrozenMlp`, `msa_hf.modeling.frozen_mlp`).
    """

    adapter_layer_names = ("msa_space_adapter", "msa_mlp_adapter", "msa_depth_adapter")

    def __init__(self, base_layer: SamVisionLayer, adapter_name: str, config: MsaAdapterConfig):
        super().__init__()
        self._init_msa_layer(base_layer)
        self.update_layer(adapter_name, config)
        self.set_adapter(adapter_name, inference_mode=config.inference_mode)

    call_num_slices: int | None = None

    def __call__(self, *args, **kwargs):
        if self.call_num_slices is not None and "num_slices" not in kwargs:
            kwargs["num_slices"] = self.call_num_slices
        return super().__call__(*args, **kwargs)

    def update_layer(self, adapter_name: str, config: MsaAdapterConfig) -> None:
        width = self.base_layer.layer_norm1.normalized_shape[0]
        ratio, act = config.adapter_bottleneck_ratio, config.encoder_adapter_activation
        self.msa_space_adapter[adapter_name] = Adapter(width, ratio, act)
        self.msa_mlp_adapter[adapter_name] = Adapter(width, ratio, act)
        if config.use_depth_branch:
            self.msa_depth_adapter[adapter_name] = Adapter(width, ratio, act)
        self.msa_mlp_adapter_scale[adapter_name] = config.mlp_adapter_scale
        self._move_adapter_to_device_of_base_layer(adapter_name)

    def forward(self, hidden_states: torch.Tensor, num_slices: int | None = None) -> torch.Tensor:
        """`(B, H, W, C) -> (B, H, W, C)`; `num_slices` D switches the depth branch on (B = V * D)."""
        names = [] if self.disable_adapters else self._active_msa_adapters()
        if not names:
            return self.base_layer(hidden_states)
        return msa_vision_layer_forward(
            self.base_layer,
            hidden_states,
            space_adapters=[self.msa_space_adapter[n] for n in names],
            mlp_adapters=[self.msa_mlp_adapter[n] for n in names],
            depth_adapters=[self.msa_depth_adapter[n] for n in names if n in self.msa_depth_adapter],
            mlp_adapter_scale=self._mlp_scale(names),
            num_slices=num_slices,
            recompute_frozen_mlp=self.recompute_frozen_mlp,
        )


class MsaTwoWayBlockLayer(nn.Module, MsaLayer):
    """A SAM two-way decoder block with per-name prompt-conditioned, MLP and image-to-token adapters."""

    adapter_layer_names = ("msa_prompt_adapter", "msa_mlp_adapter", "msa_image_to_token_adapter")

    def __init__(
        self,
        base_layer: SamTwoWayAttentionBlock,
        adapter_name: str,
        config: MsaAdapterConfig,
        num_output_tokens: int,
    ):
        super().__init__()
        self._init_msa_layer(base_layer)
        self.num_output_tokens = num_output_tokens
        self.update_layer(adapter_name, config)
        self.set_adapter(adapter_name, inference_mode=config.inference_mode)

    def update_layer(self, adapter_name: str, config: MsaAdapterConfig) -> None:
        width = self.base_layer.hidden_size
        ratio, act = config.adapter_bottleneck_ratio, config.decoder_adapter_activation
        self.msa_prompt_adapter[adapter_name] = PromptConditionedAdapter(
            width, ratio, act, config.prompt_conditioning
        )
        self.msa_mlp_adapter[adapter_name] = Adapter(width, ratio, act)
        self.msa_image_to_token_adapter[adapter_name] = Adapter(width, ratio, act)
        self.msa_mlp_adapter_scale[adapter_name] = config.mlp_adapter_scale
        self._move_adapter_to_device_of_base_layer(adapter_name)

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_point_embedding: torch.Tensor,
        key_point_embedding: torch.Tensor,
        attention_similarity: torch.Tensor | None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        names = [] if self.disable_adapters else self._active_msa_adapters()
        if not names:
            return self.base_layer(
                queries, keys, query_point_embedding, key_point_embedding, attention_similarity, **kwargs
            )
        return msa_two_way_block_forward(
            self.base_layer,
            queries,
            keys,
            query_point_embedding,
            key_point_embedding,
            attention_similarity,
            prompt_adapters=[self.msa_prompt_adapter[n] for n in names],
            mlp_adapters=[self.msa_mlp_adapter[n] for n in names],
            image_to_token_adapters=[self.msa_image_to_token_adapter[n] for n in names],
            mlp_adapter_scale=self._mlp_scale(names),
            num_output_tokens=self.num_output_tokens,
        )

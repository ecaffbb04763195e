# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`MsaModel`: the PEFT tuner that injects MSA adapters into a transformers `SamModel`."""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch
from peft.tuners.tuners_utils import BaseTuner
from torch import nn
from transformers.models.sam.modeling_sam import SamTwoWayAttentionBlock, SamVisionLayer

from msa_hf.modeling.folded_attention import fold_relative_position_attention
from msa_hf.modeling.volume_batches import flatten_volume_pixels, resolve_volume_batch
from msa_hf.peft_msa.config import MsaAdapterConfig
from msa_hf.peft_msa.layer import MsaLayer, MsaTwoWayBlockLayer, MsaVisionLayer


def default_target_modules(config: MsaAdapterConfig) -> str:
    """Regex (full match) of the blocks MSA wraps: every encoder block and the adapted decoder blocks."""
    pattern = r"vision_encoder\.layers\.\d+"
    decoder_layers = config.adapted_decoder_layers
    if decoder_layers:
        pattern += r"|mask_decoder\.transformer\.layers\.(" + "|".join(map(str, decoder_layers)) + ")"
    return pattern


def fully_trained_decoder_modules(model: nn.Module, adapted_layers: list[int]) -> list[str]:
    """Full module paths of the decoder parts that `decoder_training="full"` trains (modules_to_save).

    Everything in `mask_decoder` with parameters, except the adapted two-way blocks (those keep SAM's weights
    frozen and train their adapters). ModuleLists are listed element-wise: a wrapper around a ModuleList would
    break the decoder's indexing. `modules_to_save=["mask_decoder"]` would also hide the decoder blocks from
    adapter injection (docs/stack-notes.md), hence the explicit list.
    """
    decoder = model.mask_decoder
    names = []
    for child_name, child in decoder.named_children():
        if child_name == "transformer":
            for sub_name, sub in child.named_children():
                if isinstance(sub, nn.ModuleList):
                    names += [
                        f"mask_decoder.transformer.{sub_name}.{i}"
                        for i in range(len(sub))
                        if i not in adapted_layers
                    ]
                elif any(True for _ in sub.parameters()):
                    names.append(f"mask_decoder.transformer.{sub_name}")
        elif isinstance(child, nn.ModuleList):
            names += [f"mask_decoder.{child_name}.{i}" for i in range(len(child))]
        elif any(True for _ in child.parameters()):
            names.append(f"mask_decoder.{child_name}")
    return names


def _flatten_volume_batch(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Drop `num_slices` (consumed by the layers' hooks) and flatten a 5-D (V, C, D, H, W) input."""
    kwargs = dict(kwargs)
    kwargs.pop("num_slices", None)
    if args:
        kwargs["pixel_values"], args = args[0], args[1:]
    pixel_values = kwargs.get("pixel_values")
    if pixel_values is not None and pixel_values.ndim == 5:
        kwargs["pixel_values"], _ = flatten_volume_pixels(pixel_values)
    return args, kwargs


class MsaModel(BaseTuner):
    """Medical SAM Adapter (Wu et al., arXiv 2304.12620) as a PEFT method for `SamModel`.

    Example:
    ```python
    >>> from peft import get_peft_model
    >>> import msa_hf  # registers the method
    >>> from msa_hf.peft_msa import MsaAdapterConfig
    >>> model = get_peft_model(SamModel.from_pretrained("facebook/sam-vit-base"), MsaAdapterConfig())
    >>> model.print_trainable_parameters()
    >>> model(pixel_values=volume_slices, input_boxes=boxes, num_slices=8)  # with use_depth_branch=True
    ```
    """

    prefix: str = "msa_"
    tuner_layer_cls = MsaLayer
    target_module_mapping = {"sam": None}

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        # Adapter modules are `msa_<kind>.<adapter_name>.<down|up|prompt_down>.<param>`: the name sits mid-key,
        # where peft's default (which strips it before the parameter name) would leave it. Loading inverts this
        # same mapping, so save and load stay symmetric.
        if "msa_" in key:
            return re.sub(rf"(\.?msa_[a-z_]+)\.{re.escape(adapter_name)}\.", r"\1.", key, count=1)
        return super()._remove_adapter_name_from_key(key, adapter_name)

    def _prepare_adapter_config(self, peft_config: MsaAdapterConfig, model_config: dict) -> MsaAdapterConfig:
        if peft_config.target_modules is None:
            peft_config.target_modules = default_target_modules(peft_config)
        return peft_config

    def _prepare_model(self, peft_config: MsaAdapterConfig, model: nn.Module) -> None:
        fold_relative_position_attention(model)  # as SamAdapterModel trains: no dense relative-position mask
        layers = len(model.mask_decoder.transformer.layers)
        if any(i >= layers for i in peft_config.adapted_decoder_layers):
            raise ValueError(
                f"MsaAdapterConfig.decoder_adapter_layers={peft_config.decoder_adapter_layers} names a block the "
                f"mask decoder does not have (it has {layers} two-way blocks)."
            )
        if peft_config.decoder_training == "full":
            wanted = fully_trained_decoder_modules(model, peft_config.adapted_decoder_layers)
            peft_config.modules_to_save = sorted(set(peft_config.modules_to_save or []) | set(wanted))

    def _create_and_replace(
        self,
        peft_config: MsaAdapterConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs,
    ) -> None:
        if isinstance(target, MsaLayer):
            target.update_layer(adapter_name, peft_config)
            if adapter_name not in self.active_adapters:
                for name in target.adapter_layer_names:
                    if adapter_name in getattr(target, name):
                        getattr(target, name)[adapter_name].requires_grad_(False)
            return
        if isinstance(target, SamVisionLayer):
            new_module = MsaVisionLayer(target, adapter_name, peft_config)
        elif isinstance(target, SamTwoWayAttentionBlock):
            decoder_config = self.model.config.mask_decoder_config
            new_module = MsaTwoWayBlockLayer(
                target, adapter_name, peft_config, num_output_tokens=decoder_config.num_multimask_outputs + 2
            )
        else:
            raise TypeError(
                f"Target module {current_key} ({type(target).__name__}) is not supported by MSA. Supported target "
                "modules: SamVisionLayer (vision_encoder.layers.N) and SamTwoWayAttentionBlock "
                "(mask_decoder.transformer.layers.N)."
            )
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    # ------------------------------------------------------------------------------------------ per-call D
    def _active_configs(self) -> list[MsaAdapterConfig]:
        return [self.peft_config[name] for name in self.active_adapters if name in self.peft_config]

    def resolve_num_slices(self, pixel_values: torch.Tensor | None, num_slices: int | None) -> int | None:
        """D for one call: the `num_slices` argument, a 5-D input's D, or the config default (depth branch on)."""
        configs = self._active_configs()
        depth_configs = [c for c in configs if c.use_depth_branch]
        _, num_slices = resolve_volume_batch(
            pixel_values,
            num_slices,
            bool(depth_configs),
            depth_configs[0].num_slices if depth_configs else 1,
            "no active MSA adapter has a depth branch (MsaAdapterConfig.use_depth_branch=False).",
        )
        return num_slices

    @torch.no_grad()
    def get_image_embeddings(
        self, pixel_values: torch.Tensor, num_slices: int | None = None, **kwargs
    ) -> torch.Tensor:
        """Image embeddings `(B, C, h, w)` with the active adapters, as `SamAdapterModel.get_image_embeddings`:
        `num_slices` (or a 5-D `(V, C, D, H, W)` input) runs the depth branch over windows of D slices."""
        if pixel_values.ndim == 5:
            num_slices = self.resolve_num_slices(pixel_values, num_slices)
            pixel_values, _ = flatten_volume_pixels(pixel_values)
        with self._enable_peft_forward_hooks(pixel_values=pixel_values, num_slices=num_slices):
            return self.model.get_image_embeddings(pixel_values, **kwargs)

    @contextmanager
    def _enable_peft_forward_hooks(self, *args, **kwargs):
        """Give every MSA encoder block this call's D (peft's per-call mechanism).

        Each block reads D when it is called and passes it on as a keyword argument of its forward, so
        activation checkpointing (which keeps a call's arguments) re-runs the block with the same D, in
        every transformers version, after this call has ended.
        """
        pixel_values = args[0] if args else kwargs.get("pixel_values")
        num_slices = self.resolve_num_slices(pixel_values, kwargs.get("num_slices"))
        handle = self.model.register_forward_pre_hook(_flatten_volume_batch, with_kwargs=True)
        layers = [module for module in self.model.modules() if isinstance(module, MsaVisionLayer)]
        for layer in layers:
            layer.call_num_slices = num_slices
        try:
            yield
        finally:
            handle.remove()
            for layer in layers:
                layer.call_num_slices = None

    def _unload_and_optionally_merge(
        self, merge=True, progressbar=False, safe_merge=False, adapter_names=None
    ):
        if merge:
            raise NotImplementedError(
                "MSA adapters cannot be merged into SAM's weights; use "
                "msa_hf.peft_msa.peft_model_to_sam_adapter to get a SamAdapterModel instead."
            )
        for name, module in list(self.model.named_modules()):
            if isinstance(module, MsaLayer):
                parent_name, _, child_name = name.rpartition(".")
                setattr(self.model.get_submodule(parent_name), child_name, module.get_base_layer())
        return self.model

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Conversion between a PEFT-wrapped `SamModel` (method `msa`) and a native `SamAdapterModel`.

The two hold the same modules under different names:

| native (`SamAdapterModel`)                        | PEFT (`base_model.model.` stripped)                         |
|---------------------------------------------------|-------------------------------------------------------------|
| `vision_encoder.layers.3.attn.qkv.weight`         | `vision_encoder.layers.3.base_layer.attn.qkv.weight`        |
| `vision_encoder.layers.3.space_adapter.up.weight` | `vision_encoder.layers.3.msa_space_adapter.<name>.up.weight`|
| `mask_decoder.iou_prediction_head.proj_in.weight` | `mask_decoder.iou_prediction_head.modules_to_save.<name>...`|
"""

from __future__ import annotations

import re

from peft import PeftModel
from transformers import SamModel

from msa_hf.modeling.configuration_msa import SamAdapterConfig
from msa_hf.modeling.modeling_msa import (
    ADAPTER_KINDS,
    ADAPTER_PARAMETER_PATTERN,
    SamAdapterModel,
    is_adapter_parameter,
)
from msa_hf.peft_msa.config import ADAPTER_SETTING_NAMES, MsaAdapterConfig
from msa_hf.peft_msa.wrapping import wrap_in_peft

_PEFT_ADAPTER = re.compile(r"\.msa_(" + "|".join(ADAPTER_KINDS) + r")\.([^.]+)\.")


def native_to_peft_key(name: str, adapter_name: str) -> str:
    """`...layers.0.space_adapter.up.weight` -> `...layers.0.msa_space_adapter.<adapter_name>.up.weight`."""
    return ADAPTER_PARAMETER_PATTERN.sub(lambda m: f".msa_{m.group(1)}.{adapter_name}.", name, count=1)


def peft_to_native_key(name: str, adapter_name: str) -> str | None:
    """Map a PEFT-wrapped model's state-dict key to the native key; `None` for keys of other adapters
    and for the frozen originals kept beside `modules_to_save` copies."""
    match = _PEFT_ADAPTER.search(name)
    if match:
        if match.group(2) != adapter_name:
            return None
        return name[: match.start()] + f".{match.group(1)}." + name[match.end() :]
    if ".original_module." in name:
        return None
    if ".modules_to_save." in name:
        head, tail = name.split(".modules_to_save.", 1)
        owner, _, rest = tail.partition(".")
        return f"{head}.{rest}" if owner == adapter_name else None
    return name.replace(".base_layer.", ".")


def sam_adapter_to_peft_model(model: SamAdapterModel, adapter_name: str = "default") -> PeftModel:
    """A `PeftModel` (method `msa`) over a plain `SamModel` that computes what `model` computes (the adapted
    model: a model's base fallback, `SamAdapterConfig.base_fallback`, lives in its full checkpoint only)."""
    config = model.config
    if getattr(model, "text_projection", None) is not None:
        raise ValueError(
            "this model has a text-prompt projection, which the peft method `msa` does not carry: share the full "
            "model (save_pretrained) instead of an adapter-only checkpoint."
        )
    sam = SamModel(config.to_sam_config())
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("base_mask_decoder.")}
    sam.load_state_dict({k: v for k, v in state.items() if not is_adapter_parameter(k)}, strict=True)
    peft_config = MsaAdapterConfig(**{name: getattr(config, name) for name in ADAPTER_SETTING_NAMES})
    peft_model = wrap_in_peft(sam, peft_config, adapter_name=adapter_name)  # runs in every adapter save
    wrapped = peft_model.get_base_model()
    for name, tensor in state.items():
        if is_adapter_parameter(name):
            wrapped.get_parameter(native_to_peft_key(name, adapter_name)).data.copy_(tensor)
    return peft_model.to(tensor.device)


def peft_model_to_sam_adapter(peft_model: PeftModel, adapter_name: str | None = None) -> SamAdapterModel:
    """The native `SamAdapterModel` equal to `peft_model` with adapter `adapter_name` (default: active)."""
    adapter_name = adapter_name or peft_model.active_adapter
    peft_config = peft_model.peft_config[adapter_name]
    if not isinstance(peft_config, MsaAdapterConfig):
        raise TypeError(f"Adapter {adapter_name!r} is a {type(peft_config).__name__}, not an MSA adapter.")
    base = peft_model.get_base_model()
    sam_config = base.config
    config = SamAdapterConfig(
        vision_config=sam_config.vision_config.to_dict(),
        prompt_encoder_config=sam_config.prompt_encoder_config.to_dict(),
        mask_decoder_config=sam_config.mask_decoder_config.to_dict(),
        **{name: getattr(peft_config, name) for name in ADAPTER_SETTING_NAMES},
    )
    state = {}
    for name, tensor in base.state_dict().items():
        native = peft_to_native_key(name, adapter_name)
        if native is not None:
            state[native] = tensor
    model = SamAdapterModel(config)
    model.load_state_dict(state, strict=True)
    return model.to(next(base.parameters()).device)

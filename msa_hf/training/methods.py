# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""What trains: MSA adapters (the default), a LoRA baseline, full fine-tuning, or the decoder only.

All four start from the same base and see the same data, so `method` is the only difference between runs
that compare them.
"""

from __future__ import annotations

from typing import Any

from msa_hf.modeling.folded_attention import fold_relative_position_attention
from msa_hf.training.base_loading import load_base
from msa_hf.training.config import TrainConfig

# LoRA on the image encoder's attention projections, the decoder trained fully: the same decoder budget as
# MSA's "full" mode, so the comparison is encoder adapters vs encoder LoRA.
LORA_TARGET_MODULES = r"vision_encoder\.layers\.\d+\.attn\.(qkv|proj)"


def build_model_for_method(config: TrainConfig, text_embedding_dim: int | None = None) -> Any:
    """Load `config.base` and set `requires_grad` for `config.method` (with `text_embedding_dim`, MSA also gets
    the text-prompt projection, recording `config.text_encoder` in its config).

    Returns a `SamAdapterModel` (msa), a `PeftModel` over `SamModel` (lora) or a `SamModel` (full, decoder).
    """
    from transformers import SamModel

    from msa_hf.modeling.modeling_msa import SamAdapterModel

    if config.use_depth_branch and config.method != "msa":
        raise ValueError(
            f"use_depth_branch needs method='msa' (the depth branch is an MSA adapter), got {config.method!r}."
        )
    if config.method == "msa":
        model = load_base(
            config.base,
            SamAdapterModel,
            decoder_training=config.decoder_training,
            adapter_bottleneck_ratio=config.adapter_bottleneck_ratio,
            use_depth_branch=config.use_depth_branch,
            num_slices=config.num_slices if config.use_depth_branch else 1,
            **(
                {"text_embedding_dim": text_embedding_dim, "text_encoder_name": config.text_encoder}
                if text_embedding_dim
                else {}
            ),
        )
        model.mark_only_adapters_as_trainable()
        # the base's decoder is kept as it is now, before any step changes the trained one
        return model.keep_base_decoder() if config.base_fallback else model
    # every method trains with the same attention as MSA (no dense relative-position mask), so the methods'
    # memory and time compare the methods, not two attention implementations
    model = fold_relative_position_attention(load_base(config.base, SamModel))
    if config.method == "full":
        model.requires_grad_(True)
        return model
    model.requires_grad_(False)
    if config.method == "decoder":
        model.mask_decoder.requires_grad_(True)
        return model
    from peft import LoraConfig

    from msa_hf.peft_msa.wrapping import wrap_in_peft

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_rank,
        target_modules=LORA_TARGET_MODULES,
        modules_to_save=["mask_decoder"],
    )
    return wrap_in_peft(model, lora)


def trainable_parameter_count(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters, counting `requires_grad`."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total

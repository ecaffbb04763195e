# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Configuration of the Medical SAM Adapter (MSA, Wu et al., arXiv 2304.12620)."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import SamConfig

# What of the mask decoder trains besides the encoder adapters (docs/method.md, "Mask decoder"):
# - "frozen":   no decoder adapters, nothing in the decoder trains.
# - "adapters": adapters in `decoder_adapter_layers` train, every SAM decoder weight stays frozen.
# - "full":     adapters in `decoder_adapter_layers` train, and every decoder weight outside those
#               blocks (the other two-way blocks, final attention, tokens, upscaling, mask and IoU heads)
#               trains fully. This is the paper's setting.
DECODER_TRAINING_MODES = ("frozen", "adapters", "full")

# Activations an adapter may use (names of transformers' ACT2FN table that make sense here).
ADAPTER_ACTIVATIONS = ("gelu", "relu", "silu", "quick_gelu", "tanh")


def validate_adapter_settings(
    *,
    adapter_bottleneck_ratio: float,
    mlp_adapter_scale: float,
    encoder_adapter_activation: str,
    decoder_adapter_activation: str,
    decoder_adapter_layers: list[int] | tuple[int, ...],
    decoder_training: str,
    num_slices: int,
    prompt_conditioning: bool,
    use_depth_branch: bool,
    num_decoder_layers: int | None,
    owner: str,
) -> None:
    """Raise a `ValueError` naming the field and the fix for any invalid MSA adapter setting.

    Shared by `SamAdapterConfig` and the PEFT `MsaAdapterConfig` so both accept exactly the same values.
    """
    for field, value in (
        ("prompt_conditioning", prompt_conditioning),
        ("use_depth_branch", use_depth_branch),
    ):
        if not isinstance(value, bool):
            raise ValueError(f"{owner}.{field}={value!r} must be True or False.")
    if not isinstance(adapter_bottleneck_ratio, int | float) or not 0.0 < adapter_bottleneck_ratio <= 1.0:
        raise ValueError(
            f"{owner}.adapter_bottleneck_ratio={adapter_bottleneck_ratio!r} must be in (0, 1]; "
            "the paper uses 0.25 (ViT-B 768 -> 192)."
        )
    if mlp_adapter_scale < 0.0:
        raise ValueError(f"{owner}.mlp_adapter_scale={mlp_adapter_scale!r} must be >= 0; the paper uses 0.5.")
    for field, value in (
        ("encoder_adapter_activation", encoder_adapter_activation),
        ("decoder_adapter_activation", decoder_adapter_activation),
    ):
        if value not in ADAPTER_ACTIVATIONS:
            raise ValueError(f"{owner}.{field}={value!r} is not one of {ADAPTER_ACTIVATIONS}.")
    if decoder_training not in DECODER_TRAINING_MODES:
        raise ValueError(
            f"{owner}.decoder_training={decoder_training!r} is not one of {DECODER_TRAINING_MODES}."
        )
    if num_slices < 1:
        raise ValueError(
            f"{owner}.num_slices={num_slices!r} must be >= 1 (slices per volume for the depth branch)."
        )
    layers = list(decoder_adapter_layers)
    if len(set(layers)) != len(layers) or any(not isinstance(i, int) or i < 0 for i in layers):
        raise ValueError(
            f"{owner}.decoder_adapter_layers={layers!r} must be distinct non-negative block indices, e.g. [0]."
        )
    if num_decoder_layers is not None and any(i >= num_decoder_layers for i in layers):
        raise ValueError(
            f"{owner}.decoder_adapter_layers={layers!r} names a block the mask decoder does not have "
            f"(it has {num_decoder_layers} two-way blocks: 0..{num_decoder_layers - 1})."
        )


@strict
class SamAdapterConfig(SamConfig):
    r"""
    Configuration of [`SamAdapterModel`]: a [`SamConfig`] plus the MSA adapter settings.

    A plain SAM checkpoint's config (`model_type="sam"`) loads into this class unchanged; the adapter fields
    then take their defaults.

    adapter_bottleneck_ratio (`float`, defaults to 0.25):
        Adapter hidden width as a fraction of the width it adapts (ViT-B: 768 -> 192; decoder: 256 -> 64).
    mlp_adapter_scale (`float`, defaults to 0.5):
        Scale `s` of the adapters that run parallel to an MLP: `x + mlp(xn) + s * adapter(xn)`.
    encoder_adapter_activation (`str`, defaults to `"gelu"`):
        Activation inside image-encoder adapters (the authors' code uses GELU; the paper text says ReLU).
    decoder_adapter_activation (`str`, defaults to `"relu"`):
        Activation inside mask-decoder adapters.
    decoder_adapter_layers (`list[int]`, defaults to `[0]`):
        Two-way decoder blocks that receive the three decoder adapters (the paper: the first block only).
    prompt_conditioning (`bool`, defaults to `True`):
        Whether the adapter after the decoder's prompt self-attention also sees the prompt embedding,
        `up(act(down(t) + prompt_down(p)))`.
    use_depth_branch (`bool`, defaults to `False`):
        Adds the depth-attention branch (3-D volumes) to every encoder block.
    num_slices (`int`, defaults to 1):
        Default number of consecutive slices D per volume when the depth branch is on and the forward call
        does not say otherwise.
    decoder_training (`str`, defaults to `"full"`):
        What of the mask decoder trains: `"frozen"`, `"adapters"` or `"full"` (see `DECODER_TRAINING_MODES`).
    text_embedding_dim (`int`, *optional*):
        Width of the pooled text features (CLIP ViT-B/32: 512). Set, the model holds a trained projection that
        turns them into `num_text_tokens` decoder prompt tokens (`forward(text_embeddings=...)`).
    num_text_tokens (`int`, defaults to 1):
        Prompt tokens per text.
    text_encoder_name (`str`, *optional*):
        The text encoder the projection was trained with (Hub id or folder), for `msa-hf predict --text`.
    base_fallback (`bool`, defaults to `False`):
        At inference, answer a prompt with the base (adapters off, the base's own mask decoder, kept as
        `base_mask_decoder`) wherever the adapted answer ignores the prompt: no positive click inside its
        mask, or most of it outside the box (`msa_hf.modeling.base_fallback`).
        The adaptation then keeps what the base could do on structures it was not adapted to, at twice the
        image-encoder cost. 2-D models only.
    """

    model_type = "sam_adapter"

    adapter_bottleneck_ratio: float = 0.25
    mlp_adapter_scale: float = 0.5
    encoder_adapter_activation: str = "gelu"
    decoder_adapter_activation: str = "relu"
    decoder_adapter_layers: list[int] | tuple[int, ...] = (0,)
    prompt_conditioning: bool = True
    use_depth_branch: bool = False
    num_slices: int = 1
    decoder_training: str = "full"
    text_embedding_dim: int | None = None
    num_text_tokens: int = 1
    text_encoder_name: str | None = None
    base_fallback: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.base_fallback and self.use_depth_branch:
            raise ValueError(
                f"{type(self).__name__}: base_fallback is for 2-D models; the depth branch's base is not "
                "defined yet. Set base_fallback=False or use_depth_branch=False."
            )
        if self.text_embedding_dim is not None and self.text_embedding_dim < 1 or self.num_text_tokens < 1:
            raise ValueError(
                f"{type(self).__name__}: text_embedding_dim ({self.text_embedding_dim}) and num_text_tokens "
                f"({self.num_text_tokens}) must be positive."
            )
        self.decoder_adapter_layers = list(self.decoder_adapter_layers)
        validate_adapter_settings(
            adapter_bottleneck_ratio=self.adapter_bottleneck_ratio,
            mlp_adapter_scale=self.mlp_adapter_scale,
            encoder_adapter_activation=self.encoder_adapter_activation,
            decoder_adapter_activation=self.decoder_adapter_activation,
            decoder_adapter_layers=self.decoder_adapter_layers,
            decoder_training=self.decoder_training,
            num_slices=self.num_slices,
            prompt_conditioning=self.prompt_conditioning,
            use_depth_branch=self.use_depth_branch,
            num_decoder_layers=self.mask_decoder_config.num_hidden_layers,
            owner=type(self).__name__,
        )

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict, dict]:
        """transformers' reader, with a plain SAM config relabelled as this class's type.

        A SAM checkpoint is the intended start of every MSA model, so transformers' warning that a `sam`
        config "can yield errors" in a `sam_adapter` model would be a false alarm on every load.
        """
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") == SamConfig.model_type:
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs

    @property
    def adapted_decoder_layers(self) -> list[int]:
        """Decoder blocks that actually carry adapters (none when the decoder is frozen)."""
        return [] if self.decoder_training == "frozen" else list(self.decoder_adapter_layers)

    def to_sam_config(self) -> SamConfig:
        """The plain [`SamConfig`] of the frozen base (adapter fields dropped)."""
        return SamConfig(
            vision_config=self.vision_config.to_dict(),
            prompt_encoder_config=self.prompt_encoder_config.to_dict(),
            mask_decoder_config=self.mask_decoder_config.to_dict(),
            initializer_range=self.initializer_range,
        )


__all__ = ["SamAdapterConfig", "DECODER_TRAINING_MODES", "ADAPTER_ACTIVATIONS"]

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`MsaAdapterConfig`: the PEFT configuration of the `msa` method."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig

from msa_hf.modeling.configuration_msa import validate_adapter_settings

# peft's PeftType enum cannot be extended from outside; the method is registered under this string key in
# peft's mapping dicts (see msa_hf/peft_msa/__init__.py).
MSA_PEFT_TYPE = "MSA"

# The settings shared with SamAdapterConfig, under the same names (conversion copies them one to one).
ADAPTER_SETTING_NAMES = (
    "adapter_bottleneck_ratio",
    "mlp_adapter_scale",
    "encoder_adapter_activation",
    "decoder_adapter_activation",
    "decoder_adapter_layers",
    "prompt_conditioning",
    "use_depth_branch",
    "num_slices",
    "decoder_training",
)


@dataclass
class MsaAdapterConfig(PeftConfig):
    """Configuration of the Medical SAM Adapter as a PEFT method, for a transformers `SamModel`.

    `get_peft_model(sam, MsaAdapterConfig())` wraps every image-encoder block and the decoder blocks in
    `decoder_adapter_layers` with MSA tuner layers. With `decoder_training="full"` (the paper), the other
    decoder parts become `modules_to_save` and are saved with the adapter.
    """

    adapter_bottleneck_ratio: float = field(
        default=0.25,
        metadata={"help": "Adapter hidden width as a fraction of the adapted width (ViT-B 768 -> 192)."},
    )
    mlp_adapter_scale: float = field(
        default=0.5,
        metadata={"help": "Scale s of adapters parallel to an MLP: x + mlp(xn) + s * adapter(xn)."},
    )
    encoder_adapter_activation: str = field(
        default="gelu", metadata={"help": "Activation in encoder adapters."}
    )
    decoder_adapter_activation: str = field(
        default="relu", metadata={"help": "Activation in decoder adapters."}
    )
    decoder_adapter_layers: list[int] = field(
        default_factory=lambda: [0],
        metadata={"help": "Two-way decoder blocks that get the three decoder adapters (paper: [0])."},
    )
    prompt_conditioning: bool = field(
        default=True,
        metadata={
            "help": "Condition the first decoder adapter on the prompt: up(act(down(t) + prompt_down(p)))."
        },
    )
    use_depth_branch: bool = field(
        default=False,
        metadata={"help": "Add the depth-attention branch (3-D volumes) to every encoder block."},
    )
    num_slices: int = field(
        default=1,
        metadata={"help": "Default slices per volume D when the depth branch is on and a call gives none."},
    )
    decoder_training: str = field(
        default="full",
        metadata={"help": "What of the decoder trains: 'frozen' (nothing), 'adapters', or 'full' (paper)."},
    )
    target_modules: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Blocks to wrap. None: every `vision_encoder.layers.N` and the decoder blocks named by "
            "`decoder_adapter_layers`. Targets must be SamVisionLayer or SamTwoWayAttentionBlock modules."
        },
    )
    modules_to_save: list[str] | None = field(
        default=None,
        metadata={"help": "Extra modules trained fully and saved; filled in for decoder_training='full'."},
    )

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = MSA_PEFT_TYPE
        self.decoder_adapter_layers = list(self.decoder_adapter_layers)
        validate_adapter_settings(
            **{name: getattr(self, name) for name in ADAPTER_SETTING_NAMES},
            num_decoder_layers=None,
            owner=type(self).__name__,
        )

    @property
    def adapted_decoder_layers(self) -> list[int]:
        """Decoder blocks that actually carry adapters (none when the decoder is frozen)."""
        return [] if self.decoder_training == "frozen" else list(self.decoder_adapter_layers)

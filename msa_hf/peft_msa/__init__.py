# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The `msa` PEFT method: MSA adapters injected into a transformers `SamModel` through peft.

peft's `register_peft_method` only accepts members of its `PeftType` enum, which an outside package cannot
extend. The working route (docs/stack-notes.md) is to put the config class, tuner class and prefix into peft's three
mapping dicts under a string key; `MsaAdapterConfig.__post_init__` sets `peft_type` to that string. This
touches private structures, so `peft` is capped below its next minor release (each one is tested before the
cap moves: the lowest-bounds run installs 0.21.0) and tests cover save, load and switching.
"""

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

from msa_hf.peft_msa.config import MSA_PEFT_TYPE, MsaAdapterConfig
from msa_hf.peft_msa.conversion import peft_model_to_sam_adapter, sam_adapter_to_peft_model
from msa_hf.peft_msa.layer import MsaLayer, MsaTwoWayBlockLayer, MsaVisionLayer
from msa_hf.peft_msa.model import MsaModel


def register_msa_peft_method() -> None:
    """Make `get_peft_model`, `PeftModel.from_pretrained` and `PeftConfig.from_pretrained` know `msa`."""
    PEFT_TYPE_TO_CONFIG_MAPPING[MSA_PEFT_TYPE] = MsaAdapterConfig
    PEFT_TYPE_TO_TUNER_MAPPING[MSA_PEFT_TYPE] = MsaModel
    PEFT_TYPE_TO_PREFIX_MAPPING[MSA_PEFT_TYPE] = MsaModel.prefix


register_msa_peft_method()

__all__ = [
    "MSA_PEFT_TYPE",
    "MsaAdapterConfig",
    "MsaLayer",
    "MsaModel",
    "MsaTwoWayBlockLayer",
    "MsaVisionLayer",
    "peft_model_to_sam_adapter",
    "register_msa_peft_method",
    "sam_adapter_to_peft_model",
]

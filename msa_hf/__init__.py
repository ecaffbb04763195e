# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""msa_hf: the Medical SAM Adapter (MSA) for Hugging Face transformers and peft.

Importing the package registers `SamAdapterConfig` / `SamAdapterModel` with transformers' Auto classes
and the `msa` method with peft.
"""

from transformers import AutoConfig, AutoModel

from msa_hf import _moved_modules
from msa_hf.base_model.shipped import TINY_BASE
from msa_hf.modeling.configuration_msa import SamAdapterConfig
from msa_hf.modeling.frozen_mlp import set_frozen_mlp_recompute
from msa_hf.modeling.modeling_msa import SamAdapterModel, TrainableParameterReport, is_adapter_parameter
from msa_hf.modeling.resolution import build_at_image_size
from msa_hf.peft_msa import MsaAdapterConfig, peft_model_to_sam_adapter, sam_adapter_to_peft_model

_moved_modules.install()

AutoConfig.register(SamAdapterConfig.model_type, SamAdapterConfig, exist_ok=True)
AutoModel.register(SamAdapterConfig, SamAdapterModel, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "TINY_BASE",
    "MsaAdapterConfig",
    "SamAdapterConfig",
    "SamAdapterModel",
    "TrainableParameterReport",
    "build_at_image_size",
    "is_adapter_parameter",
    "peft_model_to_sam_adapter",
    "sam_adapter_to_peft_model",
    "set_frozen_mlp_recompute",
]

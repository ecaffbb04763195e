# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""msa_hf: the Medical SAM Adapter (MSA) for Hugging Face transformers and peft.

Importing the package registers `SamAdapterConfig` / `SamAdapterModel` with transformers' Auto classes
(`AutoModel`, `AutoModelForMaskGeneration`) and the `msa` method with peft, each when that library is
imported (`_registration`). The names below load on first use, so `import msa_hf` stays cheap.
"""

from msa_hf import _moved_modules, _registration
from msa_hf._lazy import lazy_exports

_moved_modules.install()
_registration.install()

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TINY_BASE": "base_model.shipped",
        "MsaAdapterConfig": "peft_msa",
        "SamAdapterConfig": "modeling.configuration_msa",
        "SamAdapterModel": "modeling.modeling_msa",
        "TrainableParameterReport": "modeling.modeling_msa",
        "build_at_image_size": "modeling.resolution",
        "is_adapter_parameter": "modeling.modeling_msa",
        "peft_model_to_sam_adapter": "peft_msa",
        "sam_adapter_to_peft_model": "peft_msa",
        "set_frozen_mlp_recompute": "modeling.frozen_mlp",
    },
)

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

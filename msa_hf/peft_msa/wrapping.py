# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`get_peft_model` for msa_hf's own wrapping (adapter export, the LoRA baseline), without peft's
FutureWarning about transformers 5's deprecated `is_gradient_checkpointing`: it comes from peft reading that
property inside every wrap, and says nothing the user can act on."""

from __future__ import annotations

import warnings
from typing import Any


def wrap_in_peft(model: Any, peft_config: Any, adapter_name: str = "default") -> Any:
    """`peft.get_peft_model(model, peft_config, adapter_name=adapter_name)`, with that one warning silenced."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        return get_peft_model(model, peft_config, adapter_name=adapter_name)


__all__ = ["wrap_in_peft"]

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Turning on transformers' activation checkpointing across the transformers versions we support.

transformers 5.24 calls it `activation_checkpointing_enable` and keeps `gradient_checkpointing_enable` as a
deprecated alias; older 5.x releases (5.17, for example) have only `gradient_checkpointing_enable`.
"""

from __future__ import annotations

from typing import Any


def enable_activation_checkpointing(model: Any, **kwargs: Any) -> None:
    """Recompute each block's activations in the backward pass instead of keeping them (`model`: any
    transformers `PreTrainedModel`, or a peft model around one)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable(**kwargs)

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Several task adapters on one frozen base (peft multi-adapter): e.g. liver, kidney and tumour adapters
trained separately on the same SAM, loaded once and switched by name.

Each adapter is an adapter-only checkpoint (`train.py` writes one to `<run>/model/adapter/`; `msa-hf push`
publishes it), a folder or a Hub id. The base is loaded once; switching (`model.set_adapter(name)`) costs
nothing but a re-encode of the image, since MSA's encoder adapters change the image embedding.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class TaskAdapterError(ValueError):
    """Task adapters that cannot be loaded together; the message names the adapter and the fix."""


def _adapter_config(peft_config: Any, name: str, location: str) -> Any:
    """The `PeftConfig` of task adapter `name` at `location` (a folder or Hub id), or a `TaskAdapterError`
    naming the adapter and what its folder lacks."""
    from msa_hf.training.base_loading import is_missing_local_path

    local = Path(location)
    if is_missing_local_path(str(location)):
        raise TaskAdapterError(
            f"task adapter {name!r}: {location}: no such folder (a Hub id looks like 'org/name')."
        )
    if local.is_dir() and not (local / "adapter_config.json").is_file():
        raise TaskAdapterError(
            f"task adapter {name!r}: {location} has no adapter_config.json; point it at an adapter folder (a "
            "run's model/adapter, or a PeftModel's save_pretrained)."
        )
    return peft_config.from_pretrained(location)


def load_task_adapters(base: str | Any, adapters: Mapping[str, str]) -> Any:
    """A `PeftModel` over `base` holding every adapter of `adapters` (name -> folder or Hub id); the first
    one is active.

    Args:
        base: a base spec for `msa_hf.training.base_loading.load_base` ("tiny", a folder, a Hub id, a `.pth`) or a
            loaded `SamModel`.
        adapters: names (shown to users, e.g. in the demo) and where each adapter-only checkpoint lives.
    Raises:
        TaskAdapterError: no adapters, an empty name, adapters of different PEFT methods (peft cannot mix
            them in one model), or an adapter that does not fit the base.
    """
    from peft import PeftConfig, PeftModel
    from transformers import SamModel

    from msa_hf import peft_msa  # noqa: F401  (registers the MSA method with peft)
    from msa_hf.training.base_loading import load_base

    if not adapters:
        raise TaskAdapterError("no task adapters given: pass at least one {name: adapter folder or Hub id}.")
    if any(not str(name).strip() for name in adapters):
        raise TaskAdapterError(f"task adapter names must be non-empty; got {list(adapters)}.")
    configs = {name: _adapter_config(PeftConfig, name, location) for name, location in adapters.items()}
    kinds = {name: str(config.peft_type) for name, config in configs.items()}
    if len(set(kinds.values())) > 1:
        raise TaskAdapterError(
            f"task adapters of different PEFT methods cannot share one model: {kinds}. Serve them from "
            "separate demos, or train them with the same method."
        )
    model = load_base(base, SamModel) if isinstance(base, str) else base
    (first, first_location), *rest = adapters.items()
    try:
        model = PeftModel.from_pretrained(model, first_location, adapter_name=first)
        for name, location in rest:
            model.load_adapter(location, adapter_name=name)
    except (RuntimeError, ValueError) as error:
        raise TaskAdapterError(
            f"task adapters {list(adapters)}: one does not fit the base ({error}). Each must be trained on "
            "this same base model."
        ) from error
    model.set_adapter(first)
    return model.eval()


def task_adapter_names(model: Any) -> list[str]:
    """The names of the adapters a peft model holds (empty for a model without peft adapters)."""
    peft_config = getattr(model, "peft_config", None)
    return list(peft_config) if isinstance(peft_config, dict) else []

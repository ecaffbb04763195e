# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Old module paths keep working: `import msa_hf.modeling_msa` gives `msa_hf.modeling.modeling_msa`.

The package was once flat; its modules now live in rooms by role. An import of an old path returns the
very module object at its new path (so monkeypatching and `isinstance` behave the same) and warns once
with a `DeprecationWarning` naming the new path. The aliases go in a later release.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old path -> new path, both relative to `msa_hf`
MOVED_MODULES = {
    "configuration_msa": "modeling.configuration_msa",
    "modeling_msa": "modeling.modeling_msa",
    "adapter_layers": "modeling.adapter_layers",
    "folded_attention": "modeling.folded_attention",
    "frozen_mlp": "modeling.frozen_mlp",
    "resolution": "modeling.resolution",
    "convert": "modeling.convert",
    "text_prompts": "modeling.text_prompts",
    "parameter_report": "modeling.parameter_report",
    "mask_outputs": "processing.mask_outputs",
    "prompts": "processing.prompts",
    "volume_prediction": "inference.volume_predictor",
    "image_encoding": "inference.image_encoding",
    "click_decoder": "inference.click_decoder",
    "onednn_products": "inference.click_products",
    "cpu_memory": "inference.cpu_memory",
    "train_config": "training.config",
    "train_job": "training.job",
    "training_methods": "training.methods",
    "training_state": "training.state",
    "losses": "training.losses",
    "base_loading": "training.base_loading",
    "compare": "training.compare",
    "config_checks": "training.config_checks",
    "text_training": "training.text_training",
    "metrics": "evaluation.metrics",
    "reports": "evaluation.pictures",
    "synthetic": "base_model.data_engine",
    "base_pretraining": "base_model.pretraining",
    "base_gate": "base_model.gate",
    "pretrained_base": "base_model.shipped",
    "pretrain": "encoder_pretraining",
    "model_card": "hub.model_card",
    "task_adapters": "hub.task_adapters",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):  # the default (throw-away) module
        return None

    def exec_module(self, module) -> None:
        warnings.warn(
            f"{module.__name__} moved to {self.target}; the old path will be removed in a later release",
            DeprecationWarning,
            stacklevel=2,
        )
        # The import system returns what sys.modules holds after exec_module: the real module.
        sys.modules[module.__name__] = importlib.import_module(self.target)


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves `msa_hf.<old>` (and `msa_hf.<old>.<sub>`) to its new module."""

    def find_spec(self, fullname: str, path=None, target=None):
        if not fullname.startswith("msa_hf."):
            return None
        head, _, rest = fullname[len("msa_hf.") :].partition(".")
        if head not in MOVED_MODULES:
            return None
        new = "msa_hf." + MOVED_MODULES[head] + ("." + rest if rest else "")
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Adds the finder once (importing `msa_hf` calls this)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())

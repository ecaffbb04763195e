# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Registering msa_hf with transformers' Auto classes and with peft, without importing them up front.

`import msa_hf` must be cheap (`msa-hf --help` runs in well under a second), yet it promises that
`AutoModel.from_pretrained(<an MSA folder>)` and `PeftModel.from_pretrained(sam, <an msa adapter>)` work
afterwards. So the registration runs when the library it registers with is imported: at once when it already
is, otherwise right after its top-level package has loaded (a finder on `sys.meta_path` wraps that
package's loader). Importing transformers after msa_hf therefore also imports SAM's modeling code.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable


def register_auto_classes(config_class: type, model_class: type) -> None:
    """`AutoConfig` knows the `sam_adapter` model type; `AutoModel` and `AutoModelForMaskGeneration` (so
    `pipeline("mask-generation")`) build `model_class` from it. `modeling_msa` calls this when it loads."""
    from transformers import AutoConfig, AutoModel, AutoModelForMaskGeneration

    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    AutoModelForMaskGeneration.register(config_class, model_class, exist_ok=True)


def register_model() -> None:
    """Load `modeling_msa` (which registers itself), unless it is loaded or loading already."""
    if "msa_hf.modeling.modeling_msa" not in sys.modules:
        import msa_hf.modeling.modeling_msa  # noqa: F401


def register_peft_method() -> None:
    """Load `msa_hf.peft_msa` (which registers the `msa` method with peft), unless it is loaded or loading."""
    if "msa_hf.peft_msa" not in sys.modules:
        import msa_hf.peft_msa  # noqa: F401


# Top-level packages only: a hook inside a package's own import chain would import our modules while
# that package is half-initialised (transformers' auto modules import each other).
HOOKS: dict[str, Callable[[], None]] = {"transformers": register_model, "peft": register_peft_method}


def _msa_hf_module_initialising(besides: str) -> bool:
    """Whether a module of this package other than `besides` is part-way through its import."""
    return any(
        getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
        if (name == "msa_hf" or name.startswith("msa_hf.")) and name != besides
    )


class RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Runs a hook once its module has been executed for the first time and no module of this package is
    part-way through its own import (a hook imports our modules; doing so inside one of their import
    chains would meet them half-initialised). Until then the hook waits, and runs when the outermost
    module of this package being imported has finished."""

    def __init__(self, hooks: dict[str, Callable[[], None]]) -> None:
        self.hooks = dict(hooks)
        self.pending: list[Callable[[], None]] = []

    def find_spec(self, fullname, path, target=None):
        if not self.hooks and not self.pending:  # all registered: nothing left to watch
            return None
        if fullname not in self.hooks and not fullname.startswith("msa_hf."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec
            hook = self.hooks.pop(fullname, None)
            execute = spec.loader.exec_module

            def exec_module(module, execute=execute, hook=hook, name=fullname):
                execute(module)
                if hook is not None:
                    self.pending.append(hook)
                self.run_pending(besides=name)

            spec.loader.exec_module = exec_module
            return spec
        return None

    def run_pending(self, besides: str) -> None:
        if self.pending and not _msa_hf_module_initialising(besides):
            hooks, self.pending = self.pending, []
            for hook in hooks:
                hook()


def install() -> None:
    """Register now with what is imported already, and after import with the rest (once per process)."""
    if any(isinstance(finder, RegisterAfterImport) for finder in sys.meta_path):
        return
    pending = {}
    for name, hook in HOOKS.items():
        if name in sys.modules:
            hook()
        else:
            pending[name] = hook
    if pending:
        sys.meta_path.insert(0, RegisterAfterImport(pending))

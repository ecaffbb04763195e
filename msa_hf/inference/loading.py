# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Loading a model for serving, with the processor it was trained with.

`msa-hf predict`, `msa-hf evaluate` and the demo Space load through here, so a model is always served
with the intensity mapping it was trained with (`MsaProcessor`, saved in the model folder).
"""

from __future__ import annotations

from typing import Any

from msa_hf.processing.processor import MsaProcessor


def load_for_inference(spec: str, model_class: Any = None) -> tuple[Any, MsaProcessor]:
    """`(model, processor)` for `spec`: `"tiny"`, a `save_pretrained` folder, a Hub id or an original `.pth`.

    The model is a `SamAdapterModel` (or `model_class`) in eval mode; the processor is the one saved beside
    it, or the defaults for its geometry where none was saved (said once in the log).

    Raises:
        BaseLoadError: `spec` names nothing loadable (the message says what was tried).
    """
    from msa_hf.training.base_loading import load_base

    if model_class is None:
        from msa_hf.modeling.modeling_msa import SamAdapterModel

        model_class = SamAdapterModel
    model = load_base(spec, model_class, role="model").eval()
    return model, MsaProcessor.from_pretrained(spec, model)

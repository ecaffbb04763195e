# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Helpers for tests, benchmarks and examples: tiny SAM geometries and models (`tiny_models`), SAM-shaped
stand-ins with known answers (`stand_ins`) and small input files with known content (`files`).

A randomly initialised SAM has vision weights of std 1e-10 (`SamVisionConfig.initializer_range`): its output
barely depends on the input, so any comparison of outputs on it proves nothing. `randomize_weights` gives
every parameter a meaningful random value first.
"""

from msa_hf._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TINY_VISION": "tiny_models",
        "TINY_PROMPT_ENCODER": "tiny_models",
        "TINY_MASK_DECODER": "tiny_models",
        "tiny_sam_kwargs": "tiny_models",
        "randomize_weights": "tiny_models",
        "randomize_adapter_weights": "tiny_models",
        "is_any_adapter_parameter": "tiny_models",
        "fresh_sam": "tiny_models",
        "make_msa": "tiny_models",
        "saved_msa_adapter": "tiny_models",
        "tiny_text_encoder": "tiny_models",
        "text_model": "tiny_models",
        "BoxFillSam": "stand_ins",
        "BrightInBoxSam": "stand_ins",
        "FillPromptedSlices": "stand_ins",
        "overlapping_prompts": "stand_ins",
        "SCRAMBLED_AFFINE": "files",
        "write_nifti_case": "files",
        "write_itk_copy": "files",
        "write_png_folder": "files",
        "write_dicom_series": "files",
        "write_enhanced_acquisitions": "files",
        "sphere_volume": "files",
    },
)

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The frame round trip between a user's image and the model: prompts into the model frame, mask logits
back to the original size (`mask_outputs`), and prompt simulation from masks (`prompts`)."""

from msa_hf._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "box_from_mask": "prompts",
        "sample_point_prompt": "prompts",
        "next_error_clicks": "prompts",
        "to_model_frame": "prompts",
        "resized_shape": "prompts",
        "best_mask_logits": "mask_outputs",
        "upsample_mask_logits": "mask_outputs",
        "logits_to_original_logits": "mask_outputs",
        "logits_to_original_mask": "mask_outputs",
    },
)
